"""LightningDataModule: datasets from config, collated for the model family in use."""

from __future__ import annotations

from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset

from vlmtrain.data.collate import VLMCollator
from vlmtrain.errors import VLMTrainError
from vlmtrain.models.families import Family


class VLMDataModule(L.LightningDataModule):
    """Train/val datasets + the family collator.

    Args:
        train: training dataset of :class:`~vlmtrain.data.records.Sample` (from config).
        val: validation dataset, or ``None``.
        processor: the model's processor (passed in by ``train()``, not by config).
        family: the model's family adapter (passed in by ``train()``).
        batch_size: training batch size per device.
        eval_batch_size: validation batch size per device (generation included).
        num_workers: DataLoader workers (samples are rendered/decoded in workers).
        max_length: longest sequence in tokens (see :class:`VLMCollator`).
        on_bad_sample: ``error`` or ``skip`` (counted, logged).
        shuffle: shuffle the training set each epoch; ``False`` keeps the order of a staged
            dataset (e.g. a ``ConcatDataset`` curriculum).
    """

    def __init__(
        self,
        train: Dataset,
        val: Dataset | None = None,
        processor: Any = None,
        family: Family | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        max_length: int = 512,
        on_bad_sample: str = "error",
        shuffle: bool = True,
    ) -> None:
        super().__init__()
        if processor is None or family is None:
            raise VLMTrainError("VLMDataModule needs the model's processor and family")
        if batch_size < 1:
            raise VLMTrainError(f"data.batch_size={batch_size} must be >= 1")
        self.train_set, self.val_set = train, val
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.shuffle = shuffle
        self.train_collator = VLMCollator(processor, family, max_length, on_bad_sample)
        self.val_collator = VLMCollator(
            processor, family, max_length, on_bad_sample, with_generation=True
        )

    @property
    def skipped(self) -> int:
        """Samples dropped as bad so far (train + val), under ``on_bad_sample=skip``."""
        return self.train_collator.skipped + self.val_collator.skipped

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set, batch_size=self.batch_size, shuffle=self.shuffle, drop_last=True,
            collate_fn=self.train_collator, num_workers=self.num_workers,
            # not persistent: workers hold a copy of the dataset, and set_epoch must reach it
            persistent_workers=False,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(
            self.val_set, batch_size=self.eval_batch_size, shuffle=False,
            collate_fn=self.val_collator, num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
