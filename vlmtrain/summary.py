"""The short end-of-run report: final metrics, where the checkpoint and logs are."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# Per-batch counts the loss logs next to its metrics (``val/answer_tokens``): useful in the
# logger's charts, meaningless as a final score. Only ``<stage>/<name>`` keys: in a per-group key
# such as ``val/exact_match/count`` the last part names a question type, not a count.
_COUNT = re.compile(r"^[^/]+/(?:[^/]*_)?(n|num|count|tokens|samples)$")


def is_count(key: str) -> bool:
    """Whether a logged key is a count (``val/answer_tokens``), not a score."""
    return bool(_COUNT.search(key))


def print_summary(
    metrics: dict[str, float],
    checkpoints: dict[str, str],
    hf_model: str | None,
    output_dir: str,
    loggers: list[Any],
    samples: list[dict[str, Any]],
    skipped: int = 0,
    title: str = "vlmtrain: run finished",
) -> None:
    """Print a compact summary to the terminal (rank 0 only).

    Metrics go in a table; paths are printed on lines of their own and never cut, so they can be
    copied from the terminal whatever its width.

    Args:
        metrics: ``{"val/exact_match": 0.61, ...}``; counts such as ``val/answer_tokens`` are
            left out.
        checkpoints: ``{"last": path, "best": path}``; a value that is not a path says why there
            is none (see :func:`checkpoint_report`).
    """
    console = Console(stderr=False, soft_wrap=True)
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key in sorted(k for k in metrics if not is_count(k)):
        table.add_row(key, f"{metrics[key]:.4f}")
    console.print(table)
    rows = [("output dir", output_dir)]
    rows += [(f"{name} checkpoint", checkpoints.get(name, "none")) for name in ("last", "best")]
    rows.append(("hf model", hf_model or "none (no export callback)"))
    for logger in loggers:
        rows += logger_rows(logger)
    if skipped:
        rows.append(("skipped samples", str(skipped)))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        console.print(f"[bold]{name:<{width}}[/bold]  {value}", highlight=False, markup=True)
    for row in samples[:4]:
        console.print(f"  [dim]{row['prompt']}[/dim] -> {row['prediction']!r} "
                      f"(refs: {row['references'][:60]})", highlight=False)


def checkpoint_report(trainer: Any) -> dict[str, str]:
    """``{"last": path, "best": path}``; where a checkpoint is missing, the reason instead.

    Args:
        trainer: the Lightning trainer after ``fit``.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    monitored = [cb for cb in trainer.checkpoint_callbacks
                 if isinstance(cb, ModelCheckpoint) and cb.monitor]
    lasts = [cb.last_model_path for cb in trainer.checkpoint_callbacks
             if getattr(cb, "last_model_path", "")]
    out = {"last": _latest(lasts) if lasts else "none (checkpointing is off)"}
    best = next((cb.best_model_path for cb in monitored if cb.best_model_path), "")
    if best:
        out["best"] = str(Path(best))
    elif trainer.fast_dev_run:
        out["best"] = "none (fast_dev_run saves no checkpoints)"
    elif not trainer.checkpoint_callbacks:
        out["best"] = "none (checkpointing is off)"
    elif not monitored:
        out["best"] = "none (no checkpoint callback monitors a metric)"
    else:
        key = monitored[0].monitor
        logged = sorted(k for k in trainer.callback_metrics if k.startswith("val/"))
        if key in logged:
            out["best"] = (f"none (save_top_k={monitored[0].save_top_k})"
                           if monitored[0].save_top_k == 0 else
                           f"none ({key} was measured only after the last checkpoint)")
        elif logged:
            out["best"] = (f"none ({key} was never logged; set objective= to one of "
                           f"{', '.join(k for k in logged if not is_count(k))})")
        else:
            out["best"] = f"none (no validation ran, so {key} was never measured)"
    return out


def _latest(paths: list[str]) -> str:
    existing = [p for p in paths if Path(p).exists()]
    return str(max(existing, key=lambda p: Path(p).stat().st_mtime) if existing else paths[0])


def logger_rows(logger: Any) -> list[tuple[str, str]]:
    """``(label, location)`` rows for one logger: a URL, a folder, or how to sync it.

    Only real values are shown: a logger replaced by Lightning's ``DummyLogger`` (under
    ``fast_dev_run``) answers every attribute with a no-op method, which must not be printed.
    """
    name = type(logger).__name__
    if name == "DummyLogger":
        return [("logs", "none (loggers are off under fast_dev_run)")]
    if name == "WandbLogger":
        return _wandb_rows(logger)
    folder = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
    return [(f"logs ({name})", folder if isinstance(folder, str) else "-")]


def _wandb_rows(logger: Any) -> list[tuple[str, str]]:
    run = getattr(logger, "_experiment", None)  # never start a run just to print its location
    run_dir = getattr(run, "dir", None)
    if not isinstance(run_dir, str):
        return [("logs (W&B)", "none (no W&B run was started)")]
    offline = getattr(run, "offline", True) is not False
    url = None if offline else getattr(run, "url", None)
    if isinstance(url, str) and url:
        return [("logs (W&B)", url)]
    folder = Path(run_dir).parent  # <save_dir>/wandb/offline-run-<time>-<id>/files -> the run
    segments = sorted(folder.parent.glob(f"offline-run-*-{run.id}"))
    if len(segments) > 1:  # a resumed run: one folder per launch, oldest first
        return [("logs (W&B)", " ".join(map(str, segments))),
                ("sync W&B", f"wandb sync {folder.parent}/offline-run-*-{run.id} (W&B keeps only "
                             f"the last folder's history of a resumed offline run: "
                             f"docs/tracking.md)")]
    return [("logs (W&B)", str(folder)), ("sync W&B", f"wandb sync {folder}")]
