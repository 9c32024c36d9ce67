"""LightningDataModule: datasets from config, collated for the model family in use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from vlmtrain.data.collate import VLMCollator
from vlmtrain.data.length_grouping import sample_lengths
from vlmtrain.data.resumable import ResumableSampler, data_position
from vlmtrain.data.window import AccumulationWindowLoader
from vlmtrain.errors import VLMTrainError
from vlmtrain.models.families import Family


#: the collator that makes each batch layout (named in start-up errors)
COLLATOR_FOR_LAYOUT = {
    "sft": "vlmtrain.data.collate.VLMCollator",
    "pairs": "vlmtrain.data.preference.PreferenceCollator",
    "contrastive": "vlmtrain.data.image_text.ImageTextCollator",
}


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
        collator: ``partial`` of a collator class taking ``(processor, family, max_length,
            on_bad_sample, with_generation)`` -- :class:`VLMCollator` (one row per sample,
            the default) or :class:`~vlmtrain.data.preference.PreferenceCollator` (pairs). Its
            ``layout`` must be the one the loss reads (checked at start-up).
        group_by_length: form training batches of samples of similar text length (less
            padding; :mod:`vlmtrain.data.length_grouping`), still one order per (seed, epoch),
            resumable and split over DDP ranks.

    Under DDP (``trainer.world_size > 1``) the training sampler splits each epoch's one order
    over the ranks itself (:class:`~vlmtrain.data.resumable.ResumableSampler`), and validation
    is split without repeats (Lightning's default sampler pads the last ranks with copies of
    the first samples, which metrics gathered over ranks would then count twice).
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
        collator: Callable[..., Any] | None = None,
        group_by_length: bool = False,
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
        self.group_by_length = group_by_length
        self._lengths: list[int] | None = None
        make = collator or VLMCollator
        self.train_collator = make(processor=processor, family=family, max_length=max_length,
                                   on_bad_sample=on_bad_sample, with_generation=False)
        self.val_collator = make(processor=processor, family=family, max_length=max_length,
                                 on_bad_sample=on_bad_sample, with_generation=True)

    @property
    def layout(self) -> str:
        """The batch layout of the collator (``sft``, ``pairs`` or ``contrastive``)."""
        return self.train_collator.layout

    def check_fits(self, needs: Any, loss_name: str) -> None:
        """Fail at start-up, in one line, when the data cannot feed the loss.

        Args:
            needs: the loss's :class:`~vlmtrain.losses.base.Needs`.
            loss_name: the loss class name, for the message.
        """
        if needs.layout != self.layout:
            collator = COLLATOR_FOR_LAYOUT[needs.layout]
            raise VLMTrainError(
                f"{loss_name} reads '{needs.layout}' batches but the data collator makes "
                f"'{self.layout}' batches: set data.collator._target_={collator}")
        # under on_bad_sample=skip a dataset yields None for a record it could not read
        first = next((s for s in (self.train_set[i] for i in range(min(len(self.train_set), 64)))
                      if s is not None), None)
        if first is None:
            return
        if needs.layout == "pairs" and first.rejected is None:
            raise VLMTrainError(
                f"{loss_name} learns from preference pairs, but training sample {first.id} has no "
                "rejected answer: use data=shapes_preference or a JSONL file with 'chosen' and "
                "'rejected' (README: own preference data)")
        if needs.layout == "contrastive" and first.rejected is not None:
            raise VLMTrainError(
                f"{loss_name} aligns images with their captions, but training sample {first.id} "
                "is a preference pair: use captioning data (data=shapes_image_text, or "
                "data=coco_captions data.collator._target_=vlmtrain.data.image_text."
                "ImageTextCollator)")
        if needs.layout == "sft" and first.rejected is not None:
            raise VLMTrainError(
                f"the training data are preference pairs (sample {first.id} has a rejected "
                f"answer) but {loss_name} learns one answer per sample: use loss=dpo "
                "(+recipe=dpo_vqa), or read the data with task=vqa to fine-tune on the chosen "
                "answers alone")

    def skipped_by_reason(self, late_only: bool = False) -> dict[str, int]:
        """``{"data/skipped/<reason>": n}``: readers' start-up checks, datasets' and collators'
        read-time skips, from every DataLoader worker."""
        from vlmtrain.data.bad_records import skip_counts

        return skip_counts(self.train_set, self.val_set, self.train_collator, self.val_collator,
                           late_only=late_only)

    @property
    def skipped(self) -> int:
        """Samples dropped as bad so far (train + val), under ``on_bad_sample=skip``."""
        return sum(self.skipped_by_reason().values())

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)

    def state_dict(self) -> dict[str, int]:
        """The data position (epoch, batches done), saved in every checkpoint by Lightning."""
        return data_position(getattr(self, "trainer", None))

    def load_state_dict(self, state: dict[str, int]) -> None:
        # handed back before the train loader is built: a resumed epoch skips what was trained
        self._resume_position = state

    def transfer_batch_to_device(self, batch: Any, device: Any, dataloader_idx: int) -> Any:
        """Move the batch's tensor parts to ``device``; ``meta`` stays where it is.

        ``meta`` holds strings, reference lists and PIL images: Lightning's default walks every
        element of it on every step (~10 ms a step for 8 preference pairs on CPU, 1/8 of a tiny
        model's step) to move nothing. Defined here, on the datamodule that makes the batches,
        so Lightning uses it without a warning.
        """
        if batch is None:  # every sample of the batch was skipped as bad
            return None
        move = super().transfer_batch_to_device
        return {key: value if key == "meta" else move(value, device, dataloader_idx)
                for key, value in batch.items()}

    def train_dataloader(self) -> DataLoader:
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        if self.group_by_length and self._lengths is None:
            self._lengths = sample_lengths(self.train_set, self.train_collator.processor.tokenizer)
        # the epoch's order is a function of (seed, epoch), so a resumed run continues it
        sampler = ResumableSampler(self.train_set, shuffle=self.shuffle, num_replicas=world,
                                   rank=rank, lengths=self._lengths, batch_size=self.batch_size)
        sampler.resume(getattr(self, "_resume_position", None), self.batch_size)
        return AccumulationWindowLoader(
            self.train_set, batch_size=self.batch_size, sampler=sampler, drop_last=True,
            collate_fn=self.train_collator, num_workers=self.num_workers,
            # not persistent: workers hold a copy of the dataset, and set_epoch must reach it
            persistent_workers=False,
            window=trainer.accumulate_grad_batches if trainer is not None else 1,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        trainer = getattr(self, "trainer", None)
        sampler = None
        if trainer is not None and trainer.world_size > 1:
            if len(self.val_set) < trainer.world_size:  # a rank without a batch would hang
                raise VLMTrainError(   # in DDP's first forward, which all ranks must join
                    f"the validation set has {len(self.val_set)} samples for "
                    f"{trainer.world_size} ranks: give it at least one sample per rank")
            sampler = UnrepeatedDistributedSampler(self.val_set, num_replicas=trainer.world_size,
                                                   rank=trainer.global_rank, shuffle=False)
        return DataLoader(
            self.val_set, batch_size=self.eval_batch_size, sampler=sampler,
            collate_fn=self.val_collator, num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
