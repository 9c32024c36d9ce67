"""``python -m vlmtrain.compare PATH_OR_PROJECT... [--metrics ...] [--out DIR]``.

Compares runs: a table of runs x the config keys that differ between them x final and best
metrics, and PNG plots of metric curves (one line per run, labelled by what differs).

Sources, freely mixed:
    * a run folder (holds ``run.json`` or ``.hydra/config.yaml``), or any folder above run
      folders (a multirun folder, ``outputs/``): read offline from ``run.json``,
      ``.hydra/config.yaml`` and the CSV logger's ``metrics.csv`` (the W&B offline run when
      there is no CSV);
    * ``entity/project`` or ``wandb:project``: read online through ``wandb.Api()``.

Filters: ``--recipe NAME``, ``--tag TAG`` (W&B tags), ``--where key=value`` (config value).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmtrain.errors import VLMTrainError

# Keys that differ between runs without making them different runs: where a resume started,
# which W&B run a resume continued.
_IGNORED = ("ckpt_path", "_wandb")
_IGNORED_SUFFIXES = (".id", ".resume", ".name", ".group")
_LABEL_KEYS = 3  # a curve's label lists at most this many differing keys


@dataclass
class RunData:
    """One run as compare sees it.

    Attributes:
        name: display name (W&B run name, else the folder name).
        source: the run folder or W&B path.
        record: the ``run.json`` fields (online: built from the W&B run).
        config: flattened config, ``dotted.key -> value``.
        history: metric -> ``[(step, value), ...]`` in step order.
        tags: W&B tags.
    """

    name: str
    source: str
    record: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [2]} -> {"a.b": 1, "c.0": 2}``."""
    if isinstance(node, dict):
        items: Iterable[tuple[Any, Any]] = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    if not out and prefix:
        out[prefix] = node  # an empty mapping or list is a value too
    return out


# -- offline ------------------------------------------------------------------------------------
def find_run_dirs(path: Path) -> list[Path]:
    """Run folders at or below ``path`` (a folder holding ``run.json`` or ``.hydra/``)."""
    if (path / "run.json").is_file() or (path / ".hydra" / "config.yaml").is_file():
        return [path]
    if not path.is_dir():
        return []
    found = {p.parent for p in path.rglob("run.json")}
    found |= {p.parent.parent for p in path.rglob(".hydra/config.yaml")}
    return sorted(found, key=lambda p: (len(p.parts), _natural(p.name), str(p)))


def _natural(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (10**9, name)


def read_csv_history(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Metric curves from the CSV logger, ``csv/version_*/metrics.csv`` merged.

    A resumed run writes a new version; its steps replace the older versions' rows from its
    first step on (they were trained again).
    """
    history: dict[str, dict[int, float]] = {}
    versions = sorted((run_dir / "csv").glob("version_*/metrics.csv"),
                      key=lambda p: _natural(p.parent.name.removeprefix("version_")))
    for path in versions:
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step")]
        if not rows:
            continue
        first = min(int(float(r["step"])) for r in rows)
        for curve in history.values():
            for step in [s for s in curve if s >= first]:
                del curve[step]
        for row in rows:
            step = int(float(row["step"]))
            for key, value in row.items():
                if key in ("step", "epoch") or value in ("", None):
                    continue
                history.setdefault(key, {})[step] = float(value)
    return {k: sorted(v.items()) for k, v in history.items()}


def _wandb_history(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from vlmtrain.tracking.offline import run_history

    history: dict[str, list[tuple[int, float]]] = {}
    for row in run_history(run_dir):
        step = row.get("trainer/global_step")
        for key, value in row.items():
            if step is not None and "/" in key and isinstance(value, (int, float)) \
                    and not key.startswith(("_", "trainer/")):
                history.setdefault(key, []).append((int(step), float(value)))
    return {k: sorted(v) for k, v in history.items()}


def load_offline(run_dir: Path) -> RunData:
    """A run folder: ``run.json``, its composed config and its metric curves."""
    from omegaconf import OmegaConf

    from vlmtrain.callbacks.run_record import read_record

    record = read_record(run_dir)
    config_file = run_dir / ".hydra" / "config.yaml"
    config = {}
    if config_file.is_file():
        # unresolved: `seed: 1` differs once, not in every key that interpolates it
        config = flatten(OmegaConf.to_container(OmegaConf.load(config_file), resolve=False))
    for resume in record.get("resumes") or []:  # what a resume changed (trainer.max_steps=...)
        config.update(_dotlist(resume.get("overrides") or []))
    history = read_csv_history(run_dir) or _wandb_history(run_dir)
    wandb = record.get("wandb") or {}
    tags = [str(t) for t in config.get("logger.wandb.tags") or []] if isinstance(
        config.get("logger.wandb.tags"), list) else []
    return RunData(wandb.get("name") or run_dir.name, str(run_dir), record, config, history,
                   tags)


# -- online -------------------------------------------------------------------------------------
def load_online(project: str, where: dict[str, str], tags: Sequence[str],
                metrics: Sequence[str]) -> list[RunData]:
    """Runs of a W&B project through ``wandb.Api()`` (needs network and credentials)."""
    import wandb

    filters: dict[str, Any] = {f"config.{k}": _parse(v) for k, v in where.items()}
    if tags:
        filters["tags"] = {"$in": list(tags)}
    runs = []
    for run in wandb.Api().runs(project, filters=filters or None):
        config = flatten({k: v for k, v in run.config.items() if not k.startswith("_")})
        keys = list(metrics) or [k for k in run.summary.keys() if k.startswith(("val/", "train/"))]
        history: dict[str, list[tuple[int, float]]] = {}
        for row in run.scan_history(keys=[*keys, "trainer/global_step"]):
            for key in keys:
                if isinstance(row.get(key), (int, float)):
                    history.setdefault(key, []).append((int(row["trainer/global_step"]),
                                                        float(row[key])))
        record = {"status": run.state, "recipe": run.config.get("run_name"),
                  "wandb": {"id": run.id, "project": run.project, "url": run.url},
                  "metrics": {"final": {}, "best": {}}}
        runs.append(RunData(run.name, f"wandb:{run.path and '/'.join(run.path)}", record,
                            config, {k: sorted(v) for k, v in history.items()}, list(run.tags)))
    return runs


def _dotlist(overrides: Sequence[str]) -> dict[str, Any]:
    """``["trainer.max_steps=50", "+x=a"]`` -> ``{"trainer.max_steps": 50, "x": "a"}``."""
    import yaml

    out = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep:
            out[key.lstrip("+~")] = yaml.safe_load(value) if value else None
    return out


def _parse(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


# -- comparing ----------------------------------------------------------------------------------
def differing_keys(runs: Sequence[RunData]) -> list[str]:
    """Config keys whose values are not the same in every run (in config order)."""
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.config))
    out = []
    for key in keys:
        if key.startswith(_IGNORED) or (key.startswith("logger.")
                                        and key.endswith(_IGNORED_SUFFIXES)):
            continue
        values = {json.dumps(run.config.get(key, "<unset>"), sort_keys=True, default=str)
                  for run in runs}
        if len(values) > 1:
            out.append(key)
    return out


def label(run: RunData, keys: Sequence[str]) -> str:
    """``seed=1 optim.optimizer.lr=0.0005``: what sets this run apart (its name if nothing)."""
    if not keys:
        return run.name
    shown = [f"{k}={_short(run.config.get(k, '<unset>'))}" for k in keys[:_LABEL_KEYS]]
    return " ".join(shown) + (" ..." if len(keys) > _LABEL_KEYS else "")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def final_and_best(run: RunData, metric: str, mode: str) -> tuple[tuple[float, int] | None, ...]:
    """``((final, step), (best, step))`` from ``run.json``, else from the metric's curve."""
    metrics = run.record.get("metrics") or {}
    found = []
    for kind in ("final", "best"):
        entry = (metrics.get(kind) or {}).get(metric)
        found.append((entry["value"], entry["step"]) if entry else None)
    curve = [(s, v) for s, v in run.history.get(metric, []) if not math.isnan(v)]
    if found[0] is None and curve:
        found[0] = (curve[-1][1], curve[-1][0])
    if found[1] is None and curve:
        step, value = (min if mode == "min" else max)(curve, key=lambda sv: sv[1])
        found[1] = (value, step)
    return tuple(found)


def metric_mode(metric: str, runs: Sequence[RunData]) -> str:
    """``min`` or ``max``: the runs' objective mode for their objective, else by name."""
    from vlmtrain.callbacks.run_record import lower_is_better

    for run in runs:
        objective = run.record.get("objective") or {}
        if objective.get("name") == metric and objective.get("mode"):
            return objective["mode"]
    return "min" if lower_is_better(metric) else "max"


def table_rows(runs: Sequence[RunData], keys: Sequence[str],
               metrics: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table (strings)."""
    header = ["run", "status", *keys]
    for metric in metrics:
        header += [f"{metric} final", f"{metric} best"]
    rows = []
    for run in runs:
        row = [run.name, str(run.record.get("status", "-"))]
        row += [_short(run.config.get(k, "<unset>")) for k in keys]
        for metric in metrics:
            for entry in final_and_best(run, metric, metric_mode(metric, runs)):
                row.append("-" if entry is None else f"{entry[0]:.4f} @{entry[1]}")
        rows.append(row)
    return header, rows


def default_metrics(runs: Sequence[RunData]) -> list[str]:
    """The runs' objectives, then ``val/loss`` and ``train/loss`` where logged."""
    names: dict[str, None] = {}
    for run in runs:
        name = (run.record.get("objective") or {}).get("name")
        if name:
            names[name] = None
    for name in ("val/loss", "train/loss"):
        if any(name in run.history or name in (run.record.get("metrics") or {}).get("final", {})
               for run in runs):
            names[name] = None
    return list(names)


def select(runs: list[RunData], recipe: str | None, tags: Sequence[str],
           where: dict[str, str]) -> list[RunData]:
    """Runs matching every filter (config values compared as text, ``1e-3`` == ``0.001``)."""
    def matches(run: RunData) -> bool:
        if recipe and run.record.get("recipe") != recipe and run.config.get("run_name") != recipe:
            return False
        if tags and not set(tags) & set(run.tags):
            return False
        return all(_same(run.config.get(k), v) for k, v in where.items())
    return [run for run in runs if matches(run)]


def _same(value: Any, wanted: str) -> bool:
    if str(value) == wanted:
        return True
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return False


# -- command line -------------------------------------------------------------------------------
def load(sources: Sequence[str], where: dict[str, str], tags: Sequence[str],
         metrics: Sequence[str]) -> list[RunData]:
    runs: list[RunData] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.exists():
            found = find_run_dirs(path)
            if not found:
                raise VLMTrainError(f"{source}: no vlmtrain run below it (a run folder holds "
                                    f"run.json or .hydra/config.yaml)")
            runs += [load_offline(p) for p in found]
        elif source.startswith("wandb:") or source.count("/") == 1:
            try:
                runs += load_online(source.removeprefix("wandb:"), where, tags, metrics)
            except Exception as exc:  # noqa: BLE001 -- network, credentials, unknown project
                raise VLMTrainError(f"{source}: no such folder here, and W&B could not read it "
                                    f"as entity/project ({type(exc).__name__}: {exc})") from exc
        else:
            raise VLMTrainError(f"{source}: neither a folder nor a W&B project (entity/project "
                                f"or wandb:project)")
    return runs


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--where takes key=value, got {text!r}")
    return key, value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m vlmtrain.compare",
        description="Compare vlmtrain runs: a table of differing config keys and final/best "
                    "metrics, and PNG plots of metric curves.")
    parser.add_argument("sources", nargs="+", metavar="PATH_OR_PROJECT",
                        help="run folder, folder of runs (multirun), or W&B entity/project")
    parser.add_argument("--metrics", nargs="+", default=None,
                        help="metrics to tabulate and plot (default: objective, val/loss, "
                             "train/loss)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for table.csv, table.md and one PNG per metric")
    parser.add_argument("--smooth", type=float, default=0.0,
                        help="EMA smoothing of plotted curves in [0, 1) (0.6 as in TensorBoard)")
    parser.add_argument("--recipe", default=None, help="only runs of this recipe")
    parser.add_argument("--tag", action="append", default=[], help="only runs with a W&B tag")
    parser.add_argument("--where", action="append", type=_key_value, default=[],
                        help="only runs whose config has key=value (repeatable)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.smooth < 1.0:
        parser.error(f"--smooth must be in [0, 1), got {args.smooth}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process status."""
    from rich.console import Console
    from rich.table import Table

    args = parse_args(argv)
    where = dict(args.where)
    try:
        runs = select(load(args.sources, where, args.tag, args.metrics or []),
                      args.recipe, args.tag, where)
    except VLMTrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not runs:
        print("error: no run matches the filters", file=sys.stderr)
        return 1
    keys = differing_keys(runs)
    metrics = args.metrics or default_metrics(runs)
    header, rows = table_rows(runs, keys, metrics)
    # piped output (a log, a report) is not cut to 80 columns
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)
    table = Table(title=f"{len(runs)} runs", title_justify="left")
    for name in header:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if args.out is not None:
        from vlmtrain.tracking.plots import plot_metric

        args.out.mkdir(parents=True, exist_ok=True)
        write_table(args.out, header, rows)
        for metric in metrics:
            curves = {label(run, keys): run.history.get(metric, []) for run in runs}
            if any(curves.values()):
                path = plot_metric(metric, curves, args.out, smooth=args.smooth)
                console.print(f"wrote {path}", highlight=False)
    return 0


def write_table(out: Path, header: list[str], rows: list[list[str]]) -> None:
    """``table.csv`` and ``table.md`` (paste into a report)."""
    with open(out / "table.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    (out / "table.md").write_text("\n".join(lines) + "\n")
