"""Sweep configs (``configs/sweep/*.yaml``) as W&B sweep specs.

A sweep config holds a search space in Hydra's override syntax, the form the Optuna sweeper
reads (``hydra.sweeper.params``)::

    hydra:
      sweeper:
        n_trials: 12
        params:
          optim.optimizer.lr: tag(log, interval(1e-4, 3e-3))
          optim.scheduler.num_warmup_steps: choice(0, 50, 100)

The same file drives both kinds of sweep:

* Optuna, inside Hydra: ``python -m vlmtrain -m +sweep=lr +recipe=sft_vqa``;
* W&B: ``python -m vlmtrain.sweep lr --recipe sft_vqa > sweep.yaml``, then ``wandb sweep
  sweep.yaml`` and ``wandb agent <id>``: each agent run is ``python -m vlmtrain +recipe=sft_vqa
  key=value ...`` (W&B's ``${args_no_hyphens}``: Hydra-style arguments).

Mapping of the search space: ``interval(a, b)`` -> uniform, ``tag(log, interval(a, b))`` ->
log-uniform, ``tag(int, interval(a, b))`` -> integer uniform, ``choice(...)`` / ``a,b,c`` /
``range(...)`` -> a list of values, a plain value -> a fixed value.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlmtrain.errors import VLMTrainError

_METHODS = {"tpe": "bayes", "random": "random", "grid": "grid", "cmaes": "bayes"}


def wandb_parameter(key: str, value: str) -> dict[str, Any]:
    """One Hydra sweep expression as a W&B sweep parameter.

    Raises:
        VLMTrainError: an expression W&B has no counterpart for.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    parsed = OverridesParser.create().parse_overrides([f"{key}={value}"])[0].value()
    if isinstance(parsed, IntervalSweep):
        low, high = parsed.start, parsed.end
        if "int" in parsed.tags:
            return {"distribution": "int_uniform", "min": int(low), "max": int(high)}
        kind = "log_uniform_values" if "log" in parsed.tags else "uniform"
        return {"distribution": kind, "min": float(low), "max": float(high)}
    if isinstance(parsed, ChoiceSweep):
        return {"values": list(parsed.list)}
    if isinstance(parsed, RangeSweep):
        values, current = [], parsed.start
        while (current < parsed.stop) if parsed.step > 0 else (current > parsed.stop):
            values.append(current)
            current += parsed.step
        return {"values": values}
    if isinstance(parsed, (str, int, float, bool)) or parsed is None:
        return {"value": parsed}
    raise VLMTrainError(f"sweep parameter {key}: {value!r} has no W&B counterpart; use "
                        f"interval(a, b), tag(log, interval(a, b)), choice(...) or range(...)")


def sweep_file(name_or_path: str) -> Path:
    """``lr`` -> ``configs/sweep/lr.yaml``; a path is taken as it is."""
    from vlmtrain.paths import config_dir

    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = config_dir() / "sweep" / f"{name_or_path}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in (config_dir() / "sweep").glob("*.yaml"))
        raise VLMTrainError(f"no sweep config {name_or_path!r}; use a file or one of "
                            f"{', '.join(known)}")
    return candidate


def _objective(recipe: str | None, overrides: Sequence[str]) -> tuple[str, str]:
    """The recipe's ``objective`` and ``objective_mode``, composed as a run would compose them."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from vlmtrain.__main__ import register_recipes
    from vlmtrain.paths import config_dir

    register_recipes()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[*([f"+recipe={recipe}"] if recipe else []),
                                          *overrides])
    GlobalHydra.instance().clear()
    return str(cfg.objective), str(cfg.objective_mode)


def wandb_spec(sweep: dict[str, Any], recipe: str | None = None,
               overrides: Sequence[str] = (), method: str | None = None,
               project: str | None = None) -> dict[str, Any]:
    """A W&B sweep spec for a vlmtrain sweep config.

    Args:
        sweep: the sweep config (``params``, optional ``n_trials``, ``direction``, ``sampler``).
        recipe: the recipe every run applies.
        overrides: fixed Hydra overrides every run gets (``trainer.max_steps=500``).
        method: W&B search method; default from the config's sampler (tpe -> bayes).
        project: W&B project; passed to the runs too (``project=...``) so they log into the
            sweep's project.
    """
    params = sweep.get("params") or {}
    if not params:
        raise VLMTrainError("the sweep config has no params: nothing to search")
    objective, mode = _objective(recipe, overrides)
    direction = sweep.get("direction") or ("maximize" if mode == "max" else "minimize")
    sampler = str((sweep.get("sampler") or {}).get("_target_", "tpe")).rsplit(".", 1)[-1]
    sampler = sampler.lower().removesuffix("sampler")
    fixed = [*([f"+recipe={recipe}"] if recipe else []), *overrides,
             *([f"project={project}"] if project else [])]
    spec: dict[str, Any] = {
        "program": "vlmtrain",  # W&B requires the key; the command below runs the module
        "method": method or _METHODS.get(sampler, "bayes"),
        "metric": {"name": objective, "goal": direction},
        "parameters": {str(k): wandb_parameter(str(k), str(v)) for k, v in params.items()},
        "command": ["${env}", "${interpreter}", "-m", "vlmtrain", *fixed, "${args_no_hyphens}"],
    }
    if sweep.get("n_trials"):
        spec["run_cap"] = int(sweep["n_trials"])
    if project:
        spec["project"] = project
    return spec


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vlmtrain.sweep NAME_OR_FILE [--recipe R] [override ...]``: print the spec."""
    import yaml
    from omegaconf import OmegaConf

    parser = argparse.ArgumentParser(
        prog="python -m vlmtrain.sweep",
        description="Print a W&B sweep spec (for `wandb sweep`) made from a vlmtrain sweep "
                    "config; its runs are `python -m vlmtrain` with Hydra-style arguments.")
    parser.add_argument("sweep", help="configs/sweep/<name>.yaml name, or a YAML file")
    parser.add_argument("overrides", nargs="*", help="fixed Hydra overrides for every run")
    parser.add_argument("--recipe", default=None, help="recipe every run applies")
    parser.add_argument("--method", choices=("bayes", "random", "grid"), default=None)
    parser.add_argument("--project", default=None, help="W&B project of the sweep and its runs")
    parser.add_argument("--out", type=Path, default=None, help="write here instead of stdout")
    args = parser.parse_intermixed_args(argv)  # overrides may follow the options
    try:
        loaded = OmegaConf.to_container(OmegaConf.load(sweep_file(args.sweep)), resolve=False)
        # a sweep config sets hydra.sweeper (package _global_); a bare sweeper node works too
        sweep = (loaded.get("hydra") or {}).get("sweeper") or loaded
        spec = wandb_spec(sweep, args.recipe, args.overrides, args.method, args.project)
    except VLMTrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = yaml.safe_dump(spec, sort_keys=False)
    if args.out is not None:
        args.out.write_text(text)
    else:
        print(text, end="")
    return 0
