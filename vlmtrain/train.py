"""train(cfg): build every run object from config, fit, validate, summarise. Nothing else."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vlmtrain.callbacks.export import SaveHFModel
from vlmtrain.callbacks.generation_eval import GenerationEval
from vlmtrain.callbacks.run_record import RunRecord
from vlmtrain.eval_source import resolve_eval_source
from vlmtrain.losses.base import needs_of
from vlmtrain.summary import checkpoint_report, is_count, print_summary
from vlmtrain.tracking.wandb import redact

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job described by ``cfg`` (composed by Hydra).

    With ``fit=false`` (the ``eval_*`` recipes) nothing is trained: the model named by
    ``eval_from`` (see :mod:`vlmtrain.eval_source`) or the configured one is validated once.

    Returns:
        The final validation metrics (``{"val/exact_match": ...}``), also what a sweeper
        optimises.
    """
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    fit = cfg.get("fit", True)
    cfg, eval_ckpt = (cfg, None) if fit else resolve_eval_source(cfg)
    vlm = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, processor=vlm.processor, family=vlm.family)
    module = build_module(cfg, vlm, datamodule)
    callbacks = list(instantiate(cfg.callbacks).values()) if cfg.get("callbacks") else []
    loggers = list(instantiate(cfg.logger).values()) if cfg.get("logger") else []
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    record = next((c for c in callbacks if isinstance(c, RunRecord)), None)
    if record is not None:
        record.begin(cfg)  # run.json: status running, config hash, W&B id once loggers start
    hparams = redact(OmegaConf.to_container(cfg, resolve=True))
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)

    evaluator = next((c for c in callbacks if isinstance(c, GenerationEval)), None)
    if fit:
        _fit(cfg, trainer, module, datamodule, evaluator)
    else:
        trainer.validate(module, datamodule=datamodule, ckpt_path=eval_ckpt, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
               if k.startswith("val/") and torch.is_tensor(v) and v.numel() == 1}
    if record is not None:
        record.finish(trainer)
    if trainer.is_global_zero:
        print_summary(
            metrics=metrics,
            checkpoints=checkpoint_report(trainer) if fit else dict.fromkeys(
                ("last", "best"), "none (evaluation only)"),
            hf_model=next((c.saved for c in callbacks if isinstance(c, SaveHFModel)), None),
            output_dir=cfg.paths.output_dir,
            loggers=trainer.loggers,
            samples=evaluator.samples if evaluator is not None else [],
            skipped=datamodule.skipped,
            title="vlmtrain: run finished" if fit else "vlmtrain: evaluation finished",
        )
        if not fit:  # every digit, for scripts (the table above rounds)
            scores = {k: v for k, v in metrics.items() if not is_count(k)}
            print("metrics: " + json.dumps(scores, sort_keys=True), flush=True)
    return metrics


def _fit(cfg: DictConfig, trainer: L.Trainer, module: Any, datamodule: Any,
         evaluator: GenerationEval | None) -> None:
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    if (evaluator is not None and datamodule.val_set is not None and not trainer.interrupted
            and evaluator.last_step != trainer.global_step):
        # max_steps is rarely a multiple of val_check_interval: without this the summary (and
        # the value a sweeper optimises) would describe the weights of the last validation,
        # not the final ones that are exported.
        log.info("final validation at step %d", trainer.global_step)
        trainer.validate(module, datamodule=datamodule, verbose=False)
        _save_last_checkpoint(trainer)


def build_module(cfg: DictConfig, vlm: Any, datamodule: Any) -> Any:
    """The LightningModule of ``cfg``, with the frozen models its loss needs.

    The data must fit the loss (batch layout, preference pairs or not): checked here, before
    anything heavy is built, so a mismatch fails at start-up in one line.
    """
    loss = instantiate(cfg.loss)
    needs = needs_of(loss)
    datamodule.check_fits(needs, type(loss).__name__)
    # Frozen models are built only for a loss that asks for them (a teacher is a whole model).
    reference = instantiate(cfg.reference) if needs.reference and cfg.get("reference") else None
    teacher = instantiate(cfg.teacher) if needs.teacher and cfg.get("teacher") else None
    return instantiate(cfg.module, vlm=vlm, loss=loss, reference=reference, teacher=teacher)


def _save_last_checkpoint(trainer: L.Trainer) -> None:
    """Write ``last.ckpt`` for the final weights.

    ModelCheckpoint saves only at validations inside fit, so when ``max_steps`` falls between
    two of them ``last.ckpt`` would hold older weights than the exported model and the final
    metrics describe (and a resume would repeat those steps).
    """
    cb = trainer.checkpoint_callback
    if cb is None or not cb.save_last or not cb.dirpath:
        return
    path = Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
    trainer.save_checkpoint(path)
    cb.last_model_path = str(path)
