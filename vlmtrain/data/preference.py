"""Preference pairs as one batch: ``[chosen rows; rejected rows]`` through one forward pass.

Each pair's prompt and image are encoded once (one processor call for the batch) and laid out
twice, once before the chosen answer and once before the rejected one, exactly as TRL's
``DPOTrainer`` concatenates them: rows ``0..B-1`` are the chosen answers, rows ``B..2B-1`` the
rejected answers of the same pairs in the same order, and the image tensors are repeated in that
order. A loss reads the two halves with ``logps[:B]`` and ``logps[B:]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vlmtrain.data.bad_records import BadRecord
from vlmtrain.data.collate import IGNORE_INDEX, IMAGE_INPUTS, VLMCollator
from vlmtrain.data.records import Sample


class PreferenceCollator:
    """Collate preference :class:`Sample` s (``target`` = chosen, ``rejected``) into pairs.

    Args:
        processor: the model's Hugging Face processor.
        family: the family adapter.
        max_length: longest row in tokens (see :class:`VLMCollator`); chosen and rejected are
            each cut to it on their own.
        on_bad_sample: ``error`` or ``skip`` (counted in :attr:`skipped`).
        with_generation: also emit ``gen`` inputs (the prompt alone, one row per pair) so the
            validation callback can generate and score answers.

    Batch: ``inputs`` and ``labels`` with ``2B`` rows (``[chosen; rejected]``), ``meta`` and
    ``gen`` with ``B`` entries (one per pair).
    """

    layout = "pairs"

    def __init__(self, processor: Any, family: Any, max_length: int = 512,
                 on_bad_sample: str = "error", with_generation: bool = False) -> None:
        self.sft = VLMCollator(processor, family, max_length, on_bad_sample, with_generation)
        self.policy = self.sft.policy  # one count table for every skip of this collator
        self.with_generation = with_generation

    @property
    def skipped(self) -> int:
        return self.sft.skipped

    def __call__(self, samples: Sequence[Sample]) -> dict[str, Any] | None:
        # None: a sample the dataset could not read under skip (it counted it already)
        pairs = [s for s in samples if s is not None and self._is_pair(s)]
        prepared = self.sft.prepare(pairs) if pairs else None
        if prepared is None:  # every pair was bad and skipped: the step is skipped too
            return None
        pairs, enc, prompts = prepared
        # a rejected answer is a one-turn reply: follow-up turns belong to the chosen side only
        # in SFT data, and preference records carry none
        rejected = [dataclasses.replace(s, target=s.rejected, followups=()) for s in pairs]
        batch = concat_rows(self.sft.rows(pairs, enc, prompts),
                            self.sft.rows(rejected, enc, prompts), self.sft.pad_id)
        batch["meta"] = self.sft.meta(pairs)
        if self.with_generation:
            batch["gen"] = self.sft.generation_inputs(enc, prompts)
        return batch

    def _is_pair(self, sample: Sample) -> bool:
        if sample.rejected is not None:
            return True
        self.policy.handle(BadRecord("not_a_pair", (
            f"sample {sample.id} has no rejected answer, but the batch layout is preference "
            "pairs (a loss such as loss=dpo reads them): use preference data (e.g. "
            "data=shapes_preference, or records with 'chosen' and 'rejected')")),
            sample.meta.get("where", "data"))
        return False


def concat_rows(first: dict[str, Any], second: dict[str, Any], pad_id: int) -> dict[str, Any]:
    """Stack two ``{"inputs", "labels"}`` row sets of the same images into one batch.

    Rows are right-padded to the wider set; image tensors (one entry per image, not per row)
    are concatenated in row order, so row ``B + i`` sees the same image as row ``i``.
    """
    width = max(first["labels"].shape[1], second["labels"].shape[1])
    fills = {"input_ids": pad_id, "labels": IGNORE_INDEX}
    inputs = {}
    for key, value in first["inputs"].items():
        other = second["inputs"][key]
        if key in IMAGE_INPUTS:
            inputs[key] = torch.cat([value, other])
        else:
            inputs[key] = torch.cat([_widen(value, width, fills.get(key, 0)),
                                     _widen(other, width, fills.get(key, 0))])
    labels = torch.cat([_widen(first["labels"], width, IGNORE_INDEX),
                        _widen(second["labels"], width, IGNORE_INDEX)])
    return {"inputs": inputs, "labels": labels}


def _widen(rows: Tensor, width: int, value: int) -> Tensor:
    """Right-pad ``(B, T)`` to ``(B, width)`` with ``value``."""
    if rows.shape[1] == width:
        return rows
    return F.pad(rows, (0, width - rows.shape[1]), value=value)
