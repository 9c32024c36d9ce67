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

from vlmtrain.callbacks.sample_table import SampleTable, wandb_rows
from vlmtrain.errors import VLMTrainError
from vlmtrain.metrics.grouped import GroupedMetrics

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
        log_samples: rows of the W&B sample table ``val/samples`` (id, image, prompt,
            prediction, references and each per-sample score the metrics give, see
            :class:`~vlmtrain.callbacks.sample_table.ScoresSamples`). The same samples at
            every evaluation: the first ``log_samples`` ids of the first one.
        group_by: a ``Sample.meta`` key (``qtype`` for shapes VQA, ``answer_type`` for VQAv2,
            ``question_types`` for DocVQA): every metric is also logged per group as
            ``val/<key>/<group>`` (``val/exact_match/colour``). ``None``: no groups.
        group_metrics: the metrics split by group (``None`` = all of them).

    The count of validations (for ``every_n_val``) and the table's sample ids are saved in
    checkpoints, so a resumed run continues both.
    """

    def __init__(
        self,
        metrics: dict[str, Metric],
        every_n_val: int = 1,
        max_batches: int | None = None,
        log_samples: int = 8,
        group_by: str | None = None,
        group_metrics: list[str] | None = None,
    ) -> None:
        self.metrics = dict(metrics)
        self.every_n_val = max(1, every_n_val)
        self.max_batches = max_batches
        self.log_samples = log_samples
        self.table = SampleTable(log_samples)
        self.grouped = GroupedMetrics(self.metrics, group_by, group_metrics) if group_by else None
        self.samples: list[dict[str, Any]] = []  # the latest table's rows (end-of-run summary)
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
        if self.grouped is not None:
            self.grouped.reset()
        self.table.start()

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
            _update(metric, predictions, meta["references"], meta.get("images"), meta["ids"])
        if self.grouped is not None:
            self.grouped.update(meta, predictions, _update)
        self.table.add(meta, predictions, self.metrics)

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
        if self.grouped is not None:
            values.update(self.grouped.compute())
        for key, value in values.items():
            pl_module.log(f"val/{key}", value.float(), prog_bar="/" not in key, sync_dist=False)
        self.last = {k: float(v) for k, v in values.items()}
        self.last_step = trainer.global_step
        self.samples = self.table.finish()
        self._log_table(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"runs": self._runs, "table": self.table.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._runs = int(state_dict.get("runs", 0))
        self.table.load_state_dict(state_dict.get("table", {}))

    def _log_table(self, trainer: L.Trainer) -> None:
        if not self.samples or trainer.global_rank != 0:
            return
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                columns, data = wandb_rows(self.samples)
                logger.log_table("val/samples", columns=columns, data=data,
                                 step=trainer.global_step)


def _update(metric: Metric, predictions: list[str], references: list[list[str]],
            images: list[Any] | None, ids: list[Any] | None = None) -> None:
    if _takes(metric, "images"):  # CLIPScore: scores each caption against its image
        named = {"ids": ids} if ids is not None and _takes(metric, "ids") else {}
        metric.update(predictions, references, images=images, **named)
    else:
        metric.update(predictions, references)


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
