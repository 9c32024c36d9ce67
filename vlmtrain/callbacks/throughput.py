"""Tokens per second of training, measured around each optimisation step."""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class TokenThroughput(L.Callback):
    """Log ``train/tokens_per_sec`` (non-padding tokens incl. image tokens, all ranks).

    An image-text batch counts its caption tokens (its images go through the vision tower
    alone, with no tokens in a sequence).
    """

    def __init__(self) -> None:
        self._start = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if batch is None:  # a batch of skipped bad records: no step was taken
            return
        written = getattr(pl_module, "logs_written_this_step", None)
        if written is not None and not written():  # not written anyway (see VLMModule)
            return
        elapsed = time.perf_counter() - self._start
        # every token sequence of the batch: the model inputs, and the captions of an image-text
        # batch (whose ``inputs`` hold images only)
        parts = [p for p in batch.values() if isinstance(p, dict) and "attention_mask" in p]
        tokens = sum(float(p["attention_mask"].sum()) for p in parts) * trainer.world_size
        if elapsed > 0 and tokens > 0:
            pl_module.log("train/tokens_per_sec", tokens / elapsed, prog_bar=False)
