"""A callback the DDP test adds on the command line: each rank's train losses and final val/*.

Lightning logs ``train/loss`` on rank 0 only and unsynced, so the test reads every rank's own
values from these files instead of the logger's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torchmetrics import Metric


class LossTrace(L.Callback):
    """Write ``<folder>/rank<r>.json``: ``{"loss": [...], "tokens": [...], "val": {...}}``.

    Args:
        folder: where every rank writes its file.
    """

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.data: dict[str, Any] = {"loss": [], "tokens": [], "ids": [], "val": {}}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.data["loss"].append(float(outputs["loss"]))
        self.data["tokens"].append(int((batch["labels"][:, 1:] != -100).sum()))
        self.data["ids"].append(list(batch["meta"]["ids"]))

    def on_validation_end(self, trainer, pl_module) -> None:
        self.data["val"] = {k: float(v) for k, v in trainer.callback_metrics.items()
                            if k.startswith("val/") and v.numel() == 1}
        self.data["val_ids"] = len(trainer.val_dataloaders.sampler)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.data))


class SeenSamples(Metric):
    """How many samples were scored and their generated characters: which samples a gather
    over ranks counted (a dropped or a doubled one shows), not whether answers are right."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("seen", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("chars", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, predictions: list[str], references: list[list[str]]) -> None:
        self.seen += len(predictions)
        self.chars += sum(len(p) for p in predictions)

    def compute(self) -> dict[str, torch.Tensor]:
        return {"seen": self.seen, "chars": self.chars}
