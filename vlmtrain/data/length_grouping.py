"""Batches of samples of similar length: less padding, the same samples per epoch.

A batch is padded to its longest row: a 20-token answer batched with a 200-token one costs 180
tokens of padding, computed and thrown away. Sorting the whole epoch by length would remove all
padding but make every batch a block of one length class (long batches in a row: memory
spikes, and a gradient that drifts with length). As in Hugging Face's ``LengthGroupedSampler`` (from
fairseq's bucketing), the shuffled order is cut into *megabatches* of ``megabatches`` batches,
sorted by length inside each, cut into batches, and the batches shuffled: each batch holds
similar lengths and the epoch still mixes them.

Lengths are counted in text tokens (prompt, answer, follow-ups): image tokens are the same for
images of one size (PaliGemma always; Qwen2.5-VL with ``max_pixels`` reached), and reading the
records' text needs no image decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Dataset


def group_by_length(order: Sequence[int], lengths: Sequence[int], batch: int,
                    generator: torch.Generator | None, megabatches: int = 50) -> list[int]:
    """Reorder ``order`` so each run of ``batch`` indices holds similar lengths.

    Args:
        order: an epoch's order of sample indices (already shuffled, or dataset order).
        lengths: ``lengths[i]`` is sample ``i``'s length.
        batch: samples per (global) batch: per-device batch size times DDP world size.
        generator: shuffles the order of whole batches; ``None`` keeps it (a curriculum).
        megabatches: batches per sorted group; larger sorts better, mixes lengths less.

    Returns:
        The same indices, each exactly once. An incomplete last batch stays last (the loader's
        ``drop_last`` drops it, as without grouping).
    """
    size = max(1, batch * megabatches)
    grouped: list[int] = []
    for i in range(0, len(order), size):  # sorted inside each megabatch, longest first
        grouped += sorted(order[i:i + size], key=lambda j: -lengths[j])
    batches = [grouped[i:i + batch] for i in range(0, len(grouped), batch)]
    tail = batches.pop() if batches and len(batches[-1]) < batch else []
    if generator is not None:
        batches = [batches[k] for k in torch.randperm(len(batches), generator=generator).tolist()]
    return [j for b in batches for j in b] + tail


def sample_lengths(dataset: Dataset, tokenizer: Any) -> list[int]:
    """Text tokens of every sample of ``dataset`` (prompt, answer and follow-up turns).

    Reads a :class:`~vlmtrain.data.readers.RecordDataset`'s records (text only, no pixels);
    any other dataset is read sample by sample. ``ConcatDataset`` parts are read one by one.
    A sample that is ``None`` (unreadable, skipped as bad) counts 0.
    """
    if isinstance(dataset, ConcatDataset):
        return [n for part in dataset.datasets for n in sample_lengths(part, tokenizer)]
    read = getattr(dataset, "record", dataset.__getitem__)  # records: text without pixels
    texts = []
    for i in range(len(dataset)):
        item = read(i)
        if item is None:
            texts.append("")
            continue
        turns = [t for pair in getattr(item, "followups", ()) for t in pair]
        texts.append(" ".join([item.prompt, item.target, *turns]))
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
