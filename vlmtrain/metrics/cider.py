"""CIDEr-D as a torchmetrics metric, equal to pycocoevalcap 1.2 ``Cider``.

The computation lives in :mod:`vlmtrain.metrics.functional.cider` (torch-free).
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
from vlmtrain.metrics.functional.cider import SIGMA, cider_d

__all__ = ["CiderD", "cider_d"]


class CiderD(Metric):
    """Mean CIDEr-D over images, with document frequencies from the WHOLE evaluated set.

    CIDEr's idf comes from the references of the set being scored, so the value of a subset
    differs from the same images scored within a larger set: :meth:`update` only stores the
    strings and :meth:`compute` scores everything gathered (all DDP ranks) at once.

    Args:
        tokenize: PTB-tokenize in :meth:`compute`, as the COCO evaluation does.
        sigma: Gaussian length-penalty width (official: 6).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, tokenize: bool = True, sigma: float = SIGMA, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tokenize = tokenize
        self.sigma = float(sigma)
        add_caption_states(self)

    def update(self, predictions: list[str], references: list[list[str]]) -> None:
        """Store a batch: B captions and B non-empty reference lists."""
        append_captions(self, predictions, references, "cider")

    def compute(self) -> dict[str, Tensor]:
        """``{"cider": float64 scalar}``."""
        predictions, references = stored_captions(self)
        scores = cider_d(predictions, references, self.tokenize, self.sigma)
        return as_tensors(scores, self.device)
