"""``python -m vlmtrain +recipe=NAME key=value ...`` -- the Hydra entry point.

Recipes (``recipes/*.yaml``) are registered as the config group ``recipe`` (package
``_global_``), so ``+recipe=sft_vqa`` applies one and a misspelt name fails listing the others.
``python -m vlmtrain resume=<run dir>`` continues a run (see :mod:`vlmtrain.tracking.resume`).
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from vlmtrain.errors import VLMTrainError
from vlmtrain.paths import config_dir, recipe_dir
from vlmtrain.tracking.resume import ResumePlan, check_resume_config, plan_resume

log = logging.getLogger("vlmtrain")
EXIT_SIGTERM = 128 + 15  # the shell's status for a process ended by SIGTERM
_RESUME: ResumePlan | None = None  # set by main() for `resume=<run dir>`


def register_recipes() -> list[str]:
    """Store every ``recipes/*.yaml`` under group ``recipe``; returns the names."""
    store = ConfigStore.instance()
    names = []
    for path in sorted(recipe_dir().glob("*.yaml")):
        node = OmegaConf.load(path)
        store.store(group="recipe", name=path.stem, node=node, package="_global_")
        names.append(path.stem)
    return names


def user_error(exc: BaseException) -> str | None:
    """The message of a user-fixable error in ``exc``'s cause chain, else ``None``.

    Hydra's ``instantiate`` wraps what a constructor raises in ``InstantiationException``; the
    ``VLMTrainError`` (or a missing ``???`` value) underneath is what the user must see.
    """
    from omegaconf.errors import MissingMandatoryValue

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, VLMTrainError):
            return str(exc)
        if isinstance(exc, MissingMandatoryValue):
            # omegaconf appends full_key/object_type lines: the first line names the key
            first = str(exc.msg if hasattr(exc, "msg") else exc).splitlines()[0]
            return f"{first}: set it on the command line"
        exc = exc.__cause__ or exc.__context__
    return None


def _task(cfg: DictConfig) -> float | None:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from vlmtrain.callbacks.run_record import mark_ended
    from vlmtrain.tracking.wandb import finish_wandb, redact_argv
    from vlmtrain.train import train  # heavy imports after Hydra parsed the command line

    if _RESUME is not None:
        try:
            check_resume_config(_RESUME, cfg)
        except VLMTrainError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
    sys.argv = redact_argv(sys.argv)  # loggers record argv; secrets must not reach them
    try:
        metrics = train(cfg)
    except SIGTERMException:
        # Lightning ends fit with SystemExit(None), i.e. status 0, and a scheduler would count
        # the preempted job as done. The run's callback saved last.ckpt and recorded it.
        log.warning("stopped by SIGTERM; continue with: python -m vlmtrain resume=%s",
                    cfg.paths.output_dir)
        mark_ended(cfg.paths.output_dir, "interrupted")
        finish_wandb(EXIT_SIGTERM, preempted=True)
        sys.exit(EXIT_SIGTERM)
    except Exception as exc:  # noqa: BLE001 -- user errors become one line, bugs keep traces
        # an error outside Lightning's loops (which record their own) must not leave "running"
        mark_ended(cfg.paths.output_dir, "failed", f"{type(exc).__name__}: {exc}")
        finish_wandb(1)
        message = user_error(exc)
        if message is None:
            raise
        log.error("%s", message)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    finish_wandb(0)  # each multirun job ends its own W&B run; the next starts a fresh one
    objective = cfg.get("objective")
    return metrics.get(objective) if objective else None


def _has_optuna() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is not None
    except ModuleNotFoundError:
        return False


def main() -> None:
    """Console entry point (also ``python -m vlmtrain``)."""
    global _RESUME
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    register_recipes()
    config_path, config_name = str(config_dir()), "train"
    if any(a.startswith("+sweep=") for a in sys.argv[1:]) and not _has_optuna():
        print("error: +sweep=<name> runs an Optuna sweep, which needs the optional extra: "
              "pip install 'vlmtrain[sweep]'", file=sys.stderr)
        sys.exit(1)
    try:
        _RESUME = plan_resume(sys.argv[1:])
    except VLMTrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    if _RESUME is not None:
        # the run's own composed config, its folder, its checkpoint and W&B id (see resume.py)
        sys.argv = [sys.argv[0], *_RESUME.argv]
        config_path, config_name = str(_RESUME.config_dir), "config"
        print(f"resuming {_RESUME.run_dir} from "
              f"{_RESUME.checkpoint or 'the start (it saved no checkpoint)'}", file=sys.stderr)
    hydra.main(config_path=config_path, config_name=config_name, version_base="1.3")(_task)()


if __name__ == "__main__":
    main()
