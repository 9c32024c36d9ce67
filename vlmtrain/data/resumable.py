"""A training sampler that can start an epoch part-way: the data position of an exact resume.

Lightning restores weights, optimizer, scheduler and loop counters from a checkpoint, but a
plain ``DataLoader`` starts every epoch (the resumed one too) at its first batch, and a
``RandomSampler`` draws its order from the global RNG. A run resumed mid-epoch would then see
the epoch's first batches again -- with a staged (curriculum) dataset, the wrong stage. Here the
order of epoch ``e`` is a pure function of ``(seed, e)`` and the sampler can skip the batches a
checkpoint had already trained on.

Under DDP each rank takes every ``W``-th index of that one order (rank ``r``: ``r, r+W, ...``),
so the ``W`` per-rank batches of a step are exactly the global batch one process with batch
``B W`` would draw, and a resume skips ``batches * B * W`` indices of it. The sampler is a
``DistributedSampler`` so that Lightning does not wrap it in its ``DistributedSamplerWrapper``:
that wrapper reshuffles the indices with its own seed (another order than one process's) and
breaks on an iteration that starts part-way (it indexes a list shorter than the length it
reports: ``IndexError`` on a mid-epoch resume).

Wiring (in the datamodule; Lightning saves a ``LightningDataModule``'s ``state_dict()`` in every
checkpoint and hands it back to ``load_state_dict()`` before the train loader is built)::

    def state_dict(self):
        return data_position(self.trainer)

    def load_state_dict(self, state):
        self._resume_position = state

    def train_dataloader(self):
        sampler = ResumableSampler(self.train_set, shuffle=self.shuffle,
                                   num_replicas=self.trainer.world_size,
                                   rank=self.trainer.global_rank)
        sampler.resume(self._resume_position, self.batch_size)
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler,
                          drop_last=True, ...)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence, Sized
from typing import Any

import torch
from torch.utils.data import DistributedSampler

from vlmtrain.data.length_grouping import group_by_length


def data_position(trainer: Any) -> dict[str, int]:
    """Where training stands in its data: ``{"epoch": e, "batches": n}``.

    ``batches`` counts the training batches of epoch ``e`` already processed. Lightning
    increments it after a training step and before ``on_train_batch_end``, so a checkpoint saved
    there, at a validation or on SIGTERM covers exactly the batches the weights have seen.
    """
    if trainer is None or getattr(trainer, "fit_loop", None) is None:
        return {}
    progress = trainer.fit_loop.epoch_loop.batch_progress.current
    return {"epoch": int(trainer.current_epoch), "batches": int(progress.processed)}


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of epoch ``epoch``'s order: stable across processes and Python versions."""
    digest = hashlib.blake2b(f"vlmtrain-order|{seed}|{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


class ResumableSampler(DistributedSampler):
    """Indices of one epoch, shuffled by ``(seed, epoch)`` or in order, from a start position.

    Args:
        data_source: the training dataset (only its length is read).
        shuffle: a fresh permutation each epoch; ``False`` keeps dataset order (a staged
            ``ConcatDataset`` curriculum).
        seed: seed of the permutations; ``None``: ``torch.initial_seed()``, i.e. the run's
            ``seed_everything`` seed, the same again when the run is resumed.
        num_replicas: DDP world size ``W``; this rank yields every ``W``-th index of the epoch's
            order (see the module docstring).
        rank: this process's global rank.
        lengths: per-sample lengths (tokens) to group batches by
            (:func:`~vlmtrain.data.length_grouping.group_by_length`), or ``None``.
        batch_size: per-device batch size ``B``; with ``lengths``, batches of ``B W`` samples
            of similar length are formed, each rank taking ``B`` of them.

    ``set_epoch`` (called by Lightning at each epoch start) also tells the dataset, when it
    has a ``set_epoch`` of its own: Lightning skips ``on_train_epoch_start`` when it resumes
    mid-epoch, and the sampler is the one place every epoch start passes through.

    An epoch holds ``len(data_source) // W`` indices per rank (the last ``len % W`` of the order
    are left out, never repeated): DistributedSampler's padding would train twice on some
    samples and make the global batches differ from one process's.
    """

    def __init__(self, data_source: Sized, shuffle: bool = True, seed: int | None = None,
                 num_replicas: int = 1, rank: int = 0,
                 lengths: Sequence[int] | None = None, batch_size: int = 1) -> None:
        seed = int(torch.initial_seed() if seed is None else seed)
        super().__init__(data_source, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=True)
        self.data_source = data_source
        if lengths is not None and len(lengths) != len(data_source):
            raise ValueError(f"{len(lengths)} lengths for {len(data_source)} samples")
        self.lengths, self.batch_size = lengths, int(batch_size)
        self.start = 0  # indices of the epoch's order (all ranks) to skip, once

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if callable(getattr(self.data_source, "set_epoch", None)):
            self.data_source.set_epoch(self.epoch)

    def resume(self, position: dict[str, int] | None, batch_size: int) -> None:
        """Skip the batches ``position`` (from :func:`data_position`) says were trained on.

        ``batches`` counts this rank's batches of ``batch_size``; every rank trained as many,
        so ``batches * batch_size * W`` indices of the epoch's order are done. A position at the
        end of its epoch skips nothing: the next epoch starts afresh.
        """
        if not position:
            return
        skip = int(position.get("batches", 0)) * batch_size * self.num_replicas
        self.start = skip if skip < len(self.data_source) else 0

    def __len__(self) -> int:
        # The whole epoch, also when resuming: Lightning counts the skipped batches as done and
        # stops the epoch when the iterator ends.
        return len(self.data_source) // self.num_replicas

    def order(self) -> list[int]:
        """The epoch's order of every index, before it is split over ranks."""
        n = len(self.data_source)
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(n, generator=generator).tolist() if self.shuffle else list(range(n))
        if self.lengths is not None:  # a curriculum (no shuffle) keeps its order of batches
            order = group_by_length(order, self.lengths, self.batch_size * self.num_replicas,
                                    generator if self.shuffle else None)
        return order

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        usable = len(order) - len(order) % self.num_replicas
        start, self.start = self.start, 0
        yield from order[start + self.rank:usable:self.num_replicas]
