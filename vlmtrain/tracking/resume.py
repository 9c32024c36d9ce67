"""``python -m vlmtrain resume=<run dir>``: continue a run from its own record.

The run's recorded config (``<run dir>/.hydra/config.yaml``, what Hydra composed when the run
started) is the config; the run folder stays the output folder (its ``.hydra/`` is left as the
original record); the latest checkpoint is loaded; the W&B logger gets the run's id with
``resume="allow"``, so the same W&B run continues. Extra ``key=value`` overrides may follow
(``trainer.max_steps=5000``); one that changes what the run trains (model, data, loss,
reference, teacher, after interpolation) is refused with the keys listed, unless
``resume_force=true`` is given too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmtrain.errors import VLMTrainError

#: Config groups whose change makes a different run (compared after interpolation).
RUN_DEFINING = ("model", "data", "loss", "reference", "teacher")
_TRUE = ("1", "true", "yes")


@dataclass
class ResumePlan:
    """What a ``resume=`` command line turns into.

    Attributes:
        run_dir: the run folder being continued.
        config_dir: its ``.hydra`` folder (Hydra's config path for this launch).
        checkpoint: the checkpoint to continue from (``None``: start again from step 0).
        argv: the Hydra command line (overrides) to launch with.
        user_overrides: the overrides the user added after ``resume=``.
        force: continue even if a run-defining key differs.
    """

    run_dir: Path
    config_dir: Path
    checkpoint: Path | None
    argv: list[str]
    user_overrides: list[str] = field(default_factory=list)
    force: bool = False


def latest_checkpoint(run_dir: str | Path, record: dict[str, Any] | None = None) -> Path | None:
    """Newest checkpoint of a run: the most recently written ``*.ckpt`` of its folders.

    ``last.ckpt`` is rewritten at every interval, validation and SIGTERM, so it is normally
    the one; modification time (not the name) decides, so a newer best checkpoint would win.
    """
    folders = {Path(run_dir) / "checkpoints"}
    for path in ((record or {}).get("checkpoints") or {}).get("files") or []:
        folders.add(Path(path).parent)
    files = [p for d in folders if d.is_dir() for p in d.glob("*.ckpt")]
    if not files:
        return None
    return max(files, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"))


def _quote(value: str) -> str:
    """A Hydra override value that keeps spaces and quotes (``'sft_vqa seed=1'``)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def plan_resume(args: list[str]) -> ResumePlan | None:
    """Turn ``resume=<run dir> [overrides] [resume_force=true]`` into a launch plan.

    Args:
        args: the command line after the program name.

    Returns:
        ``None`` when no ``resume=`` is given (an ordinary launch).

    Raises:
        VLMTrainError: the folder is not a run folder, or ``resume=`` is combined with a
            multirun or a config choice that only a fresh run can make.
    """
    from omegaconf import OmegaConf

    from vlmtrain.callbacks.run_record import read_record

    resume = [a for a in args if a.startswith("resume=")]
    if not resume:
        return None
    if len(resume) > 1 or {"-m", "--multirun"} & set(args):
        raise VLMTrainError("resume=<run dir> continues one run: give it once, without -m")
    run_dir = Path(resume[0].split("=", 1)[1]).expanduser().resolve()
    config = run_dir / ".hydra" / "config.yaml"
    if not config.is_file():
        raise VLMTrainError(f"resume={run_dir}: no .hydra/config.yaml there; give the folder of "
                            f"a vlmtrain run (it holds run.json, .hydra/ and checkpoints/)")
    force = any(a.split("=", 1)[1].lower() in _TRUE for a in args if a.startswith("resume_force="))
    user = [a for a in args if not a.startswith(("resume=", "resume_force="))]
    for arg in user:
        if arg.startswith("-") or arg.lstrip("+~").startswith("hydra"):
            raise VLMTrainError(f"resume=: {arg!r} cannot be combined with a resume (the run's "
                                f"folder and Hydra settings are fixed); start a new run instead")
    record = read_record(run_dir)
    checkpoint = latest_checkpoint(run_dir, record)
    argv = [f"hydra.run.dir={run_dir}", "hydra.output_subdir=null", "hydra.job.name=vlmtrain"]
    if checkpoint is not None:
        argv.append(f"ckpt_path={_quote(str(checkpoint))}")
    wandb = record.get("wandb") or {}
    if wandb.get("id") and OmegaConf.select(OmegaConf.load(config), "logger.wandb") is not None:
        argv += [f"++logger.wandb.id={wandb['id']}", "++logger.wandb.resume=allow"]
        for key in ("name", "group"):
            if wandb.get(key):
                argv.append(f"++logger.wandb.{key}={_quote(wandb[key])}")
    return ResumePlan(run_dir, config.parent, checkpoint, argv + user, user, force)


def differing_keys(recorded: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain (resolved) configs."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(recorded) | set(current), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in recorded or key not in current:
                out.append(path)
            else:
                out += differing_keys(recorded[key], current[key], path)
        return out
    if isinstance(recorded, list) and isinstance(current, list) and len(recorded) == len(current):
        return [k for i, (a, b) in enumerate(zip(recorded, current))
                for k in differing_keys(a, b, f"{prefix}.{i}")]
    return [] if recorded == current else [prefix]


def check_resume_config(plan: ResumePlan, cfg: Any) -> None:
    """Refuse a resume whose config changes what the run trains (unless ``plan.force``).

    Both configs are resolved in the resumed job (same folder, same Hydra context), so an
    override such as ``seed=1`` shows up as the data keys it changes.

    Raises:
        VLMTrainError: listing the differing keys and how to force or start afresh.
    """
    from omegaconf import OmegaConf

    recorded = OmegaConf.load(plan.config_dir / "config.yaml")
    old = OmegaConf.to_container(recorded, resolve=True)
    new = OmegaConf.to_container(cfg, resolve=True)
    keys = [k for group in RUN_DEFINING
            for k in differing_keys(old.get(group), new.get(group), group)]
    if keys and not plan.force:
        shown = ", ".join(keys[:12]) + (f" and {len(keys) - 12} more" if len(keys) > 12 else "")
        raise VLMTrainError(
            f"resume={plan.run_dir}: the overrides change what the run trains ({shown}); "
            f"drop them, add resume_force=true to continue anyway, or start a new run")
