"""``<run dir>/run.json``: what a run is, where it stands and where its pieces are.

One small JSON file per run folder, read by ``resume=`` and ``vlmtrain.compare``::

    {"status": "running" | "finished" | "interrupted" | "failed", "error": null,
     "recipe": "sft_vqa", "run_name": "sft_vqa seed=1", "overrides": ["+recipe=sft_vqa", ...],
     "config_hash": "3f2a...", "output_dir": "...", "global_step": 1200,
     "wandb": {"id", "project", "mode", "name", "group", "dir", "url"},
     "metrics": {"final": {"val/exact_match": {"value": 0.61, "step": 1200}, ...},
                 "best": {...}},
     "objective": {"name": "val/exact_match", "mode": "max", "value": 0.63, "step": 1000},
     "checkpoints": {"last": ".../last.ckpt", "best": ".../step1000.ckpt", "files": [...]},
     "skipped": {"total": 0, ...}, "started_at", "updated_at", "ended_at",
     "resumes": [{"at", "checkpoint", "step"}]}

Written atomically (a temporary file in the same folder, then ``os.replace``), so a reader never
sees half a record, at the start, after each validation, after each checkpoint and at the end.
On SIGTERM (what SLURM and Kubernetes send before preemption) the callback saves ``last.ckpt``
first and records ``interrupted``; any other exception records ``failed`` with its message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from vlmtrain.summary import is_count

log = logging.getLogger(__name__)

STATUSES = ("running", "finished", "interrupted", "failed")
_ORDER = ("status", "error", "recipe", "run_name", "global_step", "objective", "metrics",
          "checkpoints", "wandb", "config_hash", "overrides", "output_dir", "skipped",
          "started_at", "updated_at", "ended_at", "resumes")
# Metrics where lower is better; every other val/ metric (accuracy, CIDEr, ANLS ...) is maxed.
_LOWER_IS_BETTER = re.compile(r"(loss|perplexity|error|wer|cer)$")


def now() -> str:
    """UTC time, ISO 8601 to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_record(run_dir: str | Path) -> dict[str, Any]:
    """``run.json`` of a run folder (``{}`` when the folder has none)."""
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}


def config_hash(resolved: dict[str, Any], output_dir: str) -> str:
    """Hash of a resolved config, independent of the run folder and of ``ckpt_path``.

    Two runs with the same hash trained the same thing; a resume (which sets ``ckpt_path``) keeps
    its run's hash.
    """
    body = {k: v for k, v in resolved.items() if k not in ("ckpt_path", "hydra")}
    text = json.dumps(body, sort_keys=True, default=str)
    if output_dir:
        text = text.replace(output_dir, "<run>")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def lower_is_better(name: str) -> bool:
    """Whether a smaller value of metric ``name`` is better (``val/loss``)."""
    return bool(_LOWER_IS_BETTER.search(name))


class RunRecord(L.Callback):
    """Keep ``run.json`` up to date through a run (see the module docstring).

    Args:
        path: where the record lives, ``<run dir>/run.json``.
        objective: the metric the run optimises (``val/exact_match``).
        objective_mode: ``max`` or ``min``.
    """

    def __init__(self, path: str, objective: str | None = None, objective_mode: str = "max"):
        if objective_mode not in ("max", "min"):
            raise ValueError(f"objective_mode must be 'max' or 'min', got {objective_mode!r}")
        self.path = Path(path)
        self.objective, self.objective_mode = objective, objective_mode
        self.data: dict[str, Any] = {}
        self._dirty = False
        self._rng_states: dict[str, Any] | None = None

    # -- called by train() --------------------------------------------------------------------
    def begin(self, cfg: Any) -> None:
        """Start (or, in the same folder, continue) the record from the run's config."""
        from omegaconf import OmegaConf

        from vlmtrain.tracking.wandb import redact, redact_argv

        overrides, recipe = hydra_job()
        if overrides is not None:
            overrides = redact_argv(overrides)  # the record may be shared; secrets stay out
        resolved = OmegaConf.to_container(cfg, resolve=True)
        output_dir = str(cfg.paths.output_dir) if "paths" in cfg else ""
        previous = read_record(self.path.parent) if self.path.exists() else {}
        resuming = bool(previous and cfg.get("ckpt_path"))
        self.data = {
            **previous,
            "status": "running", "error": None,
            "recipe": recipe or previous.get("recipe") or cfg.get("run_name"),
            "run_name": cfg.get("run_name"),
            # the run's own command line; a resume's additions go to its "resumes" entry
            "overrides": list(previous.get("overrides", []) if resuming or overrides is None
                              else overrides),
            "config_hash": config_hash(redact(resolved), output_dir),
            "output_dir": output_dir,
            "started_at": previous.get("started_at") or now(),
            "ended_at": None,
        }
        self.data.setdefault("metrics", {"final": {}, "best": {}})
        self.data.setdefault("resumes", [])
        if resuming:
            added = [o for o in overrides or [] if not o.lstrip("+~").startswith(
                ("ckpt_path=", "logger.wandb.", "hydra."))]
            self.data["resumes"].append({"at": now(), "checkpoint": str(cfg.ckpt_path),
                                         "overrides": added})
        self.write()

    def finish(self, trainer: L.Trainer, status: str = "finished") -> None:
        """Final write: status, end time, the last metrics and checkpoints."""
        self._collect(trainer)
        self.data["status"] = status
        self.data["ended_at"] = now()
        self.write()

    def write(self) -> None:
        if rank_zero_only.rank != 0 or not self.data:
            return
        self.data["updated_at"] = now()
        rank = {k: i for i, k in enumerate(_ORDER)}
        ordered = dict(sorted(self.data.items(), key=lambda kv: rank.get(kv[0], len(rank))))
        write_json_atomic(self.path, ordered)
        self._dirty = False

    # -- Lightning hooks --------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.data["wandb"] = wandb_info(trainer.loggers) or self.data.get("wandb")
        self.write()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._rng_states is not None:  # restored last: setup may have drawn numbers
            _set_rng_states(_numpy_rng_states(self._rng_states))
            self._rng_states = None
        # From here on Lightning's SIGTERM handler is installed: a signal ends in a checkpoint.
        step = self.data["global_step"] = trainer.global_step
        if step and self.data.get("resumes"):
            self.data["resumes"][-1]["step"] = step
            # Values measured after the checkpoint are measured again from here on.
            for kind in ("final", "best"):
                metrics = self.data["metrics"][kind]
                self.data["metrics"][kind] = {k: v for k, v in metrics.items()
                                              if v["step"] <= step}
        self.write()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._collect(trainer)
            self.write()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        # Lightning keeps no RNG state in checkpoints; dropout, augmentation and sampling in a
        # resumed run continue the interrupted run's random streams only with these.
        checkpoint["rng_states"] = _safe_rng_states(
            _collect_rng_states(include_cuda=torch.cuda.is_available()))
        self._dirty = True  # the file is written after this hook: record it at the next batch

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._rng_states = checkpoint.get("rng_states")

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self._dirty:
            self._collect(trainer)
            self.write()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        interrupted = isinstance(exception, (SIGTERMException, KeyboardInterrupt))
        if isinstance(exception, SIGTERMException):
            save_interrupt_checkpoint(trainer)
        self._collect(trainer)
        self.data["status"] = "interrupted" if interrupted else "failed"
        self.data["error"] = None if interrupted else f"{type(exception).__name__}: {exception}"
        self.data["ended_at"] = now()
        self.write()

    # -- gathering ----------------------------------------------------------------------------
    def _collect(self, trainer: L.Trainer) -> None:
        self.data["global_step"] = trainer.global_step
        self._collect_metrics(trainer)
        self.data["checkpoints"] = checkpoint_paths(trainer)
        dm = getattr(trainer, "datamodule", None)
        skipped = {"total": int(getattr(dm, "skipped", 0) or 0)}
        skipped.update({k.removeprefix("data/skipped/"): int(v)
                        for k, v in trainer.callback_metrics.items()
                        if k.startswith("data/skipped/")})
        self.data["skipped"] = skipped

    def _collect_metrics(self, trainer: L.Trainer) -> None:
        step = trainer.global_step
        final, best = self.data["metrics"]["final"], self.data["metrics"]["best"]
        for key, value in trainer.callback_metrics.items():
            if not key.startswith("val/") or is_count(key) or not torch.is_tensor(value) \
                    or value.numel() != 1:
                continue
            value = float(value)
            final[key] = {"value": value, "step": step}
            low = (self.objective_mode == "min") if key == self.objective else lower_is_better(key)
            old = best.get(key)
            if old is None or (value < old["value"] if low else value > old["value"]):
                best[key] = {"value": value, "step": step}
        if self.objective:
            entry = best.get(self.objective, {})
            self.data["objective"] = {"name": self.objective, "mode": self.objective_mode,
                                      "value": entry.get("value"), "step": entry.get("step")}

    def state_dict(self) -> dict[str, Any]:
        return {"metrics": self.data.get("metrics", {})}


def _safe_rng_states(states: dict[str, Any]) -> dict[str, Any]:
    """RNG states that ``torch.load(weights_only=True)`` (Lightning's resume) accepts: numpy's
    key array as a tensor instead of an ndarray."""
    out = dict(states)
    if "numpy" in out:
        kind, keys, pos, has_gauss, cached = out["numpy"]
        out["numpy"] = (kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached)
    return out


def _numpy_rng_states(states: dict[str, Any]) -> dict[str, Any]:
    out = dict(states)
    if "numpy" in out and torch.is_tensor(out["numpy"][1]):
        kind, keys, pos, has_gauss, cached = out["numpy"]
        out["numpy"] = (kind, keys.numpy().astype("uint32"), pos, has_gauss, cached)
    return out


def hydra_job() -> tuple[list[str] | None, str | None]:
    """The job's command-line overrides and recipe name, when Hydra runs the job."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None, None
    hc = HydraConfig.get()
    return list(hc.overrides.task), hc.runtime.choices.get("recipe")


def checkpoint_paths(trainer: L.Trainer) -> dict[str, Any]:
    """``{"last", "best", "files"}`` of the run's checkpoint callbacks (absent ones are ``None``)."""
    last = best = None
    folders = set()
    for cb in trainer.checkpoint_callbacks:
        last = getattr(cb, "last_model_path", "") or last
        best = best or getattr(cb, "best_model_path", "") or None
        if getattr(cb, "dirpath", None):
            folders.add(Path(cb.dirpath))
    files = sorted(str(p) for d in folders if d.is_dir() for p in d.glob("*.ckpt"))
    return {"last": last, "best": best, "files": files}


def save_interrupt_checkpoint(trainer: L.Trainer) -> str | None:
    """Save ``last.ckpt`` into the checkpoint folder now (SIGTERM: the job is about to end).

    Lightning raises its SIGTERM exception only between two training steps (or validation
    batches), so the weights, optimizer and loop counters saved here are consistent.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    cbs = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
    dirpath = next((cb.dirpath for cb in cbs if cb.dirpath), None)
    if dirpath is None:
        log.warning("SIGTERM: no checkpoint folder configured, nothing saved")
        return None
    path = str(Path(dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}.ckpt")
    trainer.save_checkpoint(path)
    for cb in cbs:
        if cb.save_last:
            cb.last_model_path = path
    log.warning("SIGTERM at step %d: saved %s", trainer.global_step, path)
    return path


def wandb_info(loggers: list[Any]) -> dict[str, Any] | None:
    """Id, project, mode, names and folder of the run's W&B logger, if it has one."""
    from lightning.pytorch.loggers import WandbLogger

    logger = next((lg for lg in loggers if isinstance(lg, WandbLogger)), None)
    run = getattr(logger, "_experiment", None)
    if run is None or not isinstance(getattr(run, "id", None), str):
        return None
    offline = getattr(run, "offline", True) is not False
    return {"id": run.id, "project": run.project, "mode": "offline" if offline else "online",
            "name": run.name, "group": run.group or None,
            "dir": str(Path(run.dir).parent), "url": None if offline else run.url}


def mark_ended(run_dir: str | Path, status: str, error: str | None = None) -> None:
    """Set the status of a record that still says ``running`` (the run ended outside Lightning,
    e.g. an error after ``fit``); a record that already ended keeps what it says."""
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}; use one of {', '.join(STATUSES)}")
    record = read_record(run_dir)
    if record.get("status") != "running":
        return
    record.update(status=status, error=error, ended_at=now(), updated_at=now())
    write_json_atomic(Path(run_dir) / "run.json", record)
