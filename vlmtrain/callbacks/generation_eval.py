"""Generate answers on the validation split and score them with torchmetrics metrics."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from torchmetrics import Metric

from vlmtrain.errors import VLMTrainError

log = logging.getLogger(__name__)


class GenerationEval(L.Callback):
    """Greedy-generate on validation batches, update metrics, log ``val/<name>``.

    Metrics follow the vlmtrain contract: ``update(predictions: list[str], references:
    list[list[str]])`` and ``compute() -> Tensor | dict[str, Tensor]``. They keep tensor states,
    so ``compute()`` gathers the whole validation set across DDP ranks.

    Args:
        metrics: name -> metric (from the ``metrics`` config group).
        every_n_val: generate on every n-th validation run (generation is slower than the loss).
        max_batches: cap on generated batches per validation run (``None`` = all).
        log_samples: how many (prompt, prediction, references) rows to keep for the logger's
            sample table and the end-of-run summary.
    """

    def __init__(
        self,
        metrics: dict[str, Metric],
        every_n_val: int = 1,
        max_batches: int | None = None,
        log_samples: int = 8,
    ) -> None:
        self.metrics = dict(metrics)
        self.every_n_val = max(1, every_n_val)
        self.max_batches = max_batches
        self.log_samples = log_samples
        self.samples: list[dict[str, Any]] = []
        self.last: dict[str, float] = {}
        self.last_step: int | None = None  # global step of the latest generation metrics
        self._runs = 0
        self._active = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # An image-grounded metric (CLIPScore) scores one image per caption: a validation
        # sample with several images stops the run here, not after the first training epoch.
        grounded = [name for name, m in self.metrics.items() if _takes(m, "images")]
        if grounded:
            _check_one_image_each(getattr(trainer.datamodule, "val_set", None), grounded)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A stand-alone validate() (e.g. the final one after fit) always generates.
        self._active = not trainer.sanity_checking and (
            trainer.state.fn == TrainerFn.VALIDATING or self._runs % self.every_n_val == 0)
        if not trainer.sanity_checking:
            self._runs += 1
        for metric in self.metrics.values():
            metric.to(pl_module.device)
            metric.reset()
        self.samples = []

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        if not self._active or batch is None or "gen" not in batch:
            return
        if self.max_batches is not None and batch_idx >= self.max_batches:
            return
        predictions = pl_module.generate_answers(batch)
        meta = batch["meta"]
        for metric in self.metrics.values():
            if _takes(metric, "images"):  # CLIPScore: scores each caption against its image
                named = {"ids": meta["ids"]} if _takes(metric, "ids") else {}
                metric.update(predictions, meta["references"], images=meta.get("images"),
                              **named)
            else:
                metric.update(predictions, meta["references"])
        for i in range(min(len(predictions), self.log_samples - len(self.samples))):
            self.samples.append({"id": meta["ids"][i], "prompt": meta["prompts"][i],
                                 "prediction": predictions[i],
                                 "references": " | ".join(meta["references"][i])})

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active:
            return
        values: dict[str, torch.Tensor] = {}
        for name, metric in self.metrics.items():
            result = metric.compute()
            if isinstance(result, dict):
                values.update({k: v for k, v in result.items()})
            else:
                values[name] = result
        for key, value in values.items():
            pl_module.log(f"val/{key}", value.float(), prog_bar=True, sync_dist=False)
        self.last = {k: float(v) for k, v in values.items()}
        self.last_step = trainer.global_step
        self._log_table(trainer)

    def _log_table(self, trainer: L.Trainer) -> None:
        if not self.samples or trainer.global_rank != 0:
            return
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                cols = list(self.samples[0])
                logger.log_text("val/samples", columns=cols,
                                data=[[row[c] for c in cols] for row in self.samples],
                                step=trainer.global_step)


def _takes(metric: Metric, argument: str) -> bool:
    """Whether ``metric.update`` has ``argument`` (torchmetrics keeps the signature)."""
    return argument in inspect.signature(metric.update).parameters


def _check_one_image_each(dataset: Any, metrics: list[str]) -> None:
    """Raise if a record of ``dataset`` holds several images (datasets of checked records only:
    their records name their images without decoding them; others are checked per batch)."""
    record = getattr(dataset, "record", None)
    if record is None:
        return
    for i in range(len(dataset)):
        rec = record(i)
        if isinstance(rec.image, tuple) and len(rec.image) > 1:
            raise VLMTrainError(
                f"{dataset.source}{rec.where}: validation record {rec.id} holds "
                f"{len(rec.image)} images, but metrics {', '.join(metrics)} score one image per "
                "caption (CLIPScore, Hessel et al. 2021); drop them (e.g. metrics=vqa) or "
                "validate on one-image data")
