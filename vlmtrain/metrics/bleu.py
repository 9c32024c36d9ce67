"""BLEU-1..4 as a torchmetrics metric, equal to pycocoevalcap 1.2 ``Bleu(4)``.

The computation lives in :mod:`vlmtrain.metrics.functional.bleu` (torch-free, shared with the
command-line evaluator and :func:`vlmtrain.metrics.caption.caption_scores`).
"""

from __future__ import annotations

from torch import Tensor
from torchmetrics import Metric

from vlmtrain.metrics._caption_states import (
    add_caption_states,
    append_captions,
    as_tensors,
    stored_captions,
)
from vlmtrain.metrics.functional.bleu import bleu, sentence_bleu

__all__ = ["Bleu", "bleu", "sentence_bleu"]


class Bleu(Metric):
    """Corpus BLEU-1..4 over every caption seen (COCO definition, "closest" reference length).

    :meth:`update` stores the strings (byte tensors, synced under DDP); :meth:`compute` scores
    the whole set at once, because BLEU's counts and brevity penalty are corpus-level.

    Args:
        tokenize: PTB-tokenize in :meth:`compute`, as the COCO evaluation does.

    Example:
        >>> m = Bleu()
        >>> m.update(["a dog runs"], [["a dog runs fast", "the dog is running"]])
        >>> round(float(m.compute()["bleu_1"]), 4)
        0.7165
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, tokenize: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tokenize = tokenize
        add_caption_states(self)

    def update(self, predictions: list[str], references: list[list[str]]) -> None:
        """Store a batch: B captions and B non-empty reference lists."""
        append_captions(self, predictions, references, "bleu")

    def compute(self) -> dict[str, Tensor]:
        """``{"bleu_1": ..., "bleu_4": ...}`` as float64 scalars."""
        predictions, references = stored_captions(self)
        return as_tensors(bleu(predictions, references, self.tokenize), self.device)
