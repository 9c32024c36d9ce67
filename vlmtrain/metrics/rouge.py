"""ROUGE-L as a torchmetrics metric, equal to pycocoevalcap 1.2 ``Rouge`` (beta = 1.2).

The computation lives in :mod:`vlmtrain.metrics.functional.rouge` (torch-free).
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
from vlmtrain.metrics.functional.rouge import rouge_l, rouge_l_samples

__all__ = ["RougeL", "rouge_l"]


class RougeL(Metric):
    """Mean ROUGE-L (LCS F-measure, precision and recall maximised over references) over images.

    Args:
        tokenize: PTB-tokenize in :meth:`compute`, as the COCO evaluation does.

    Example:
        >>> m = RougeL()
        >>> m.update(["a dog runs"], [["a dog runs fast"]])
        >>> round(float(m.compute()["rouge_l"]), 4)
        0.8496
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
        append_captions(self, predictions, references, "rouge_l")

    def sample_scores(self, predictions: list[str], references: list[list[str]]
                      ) -> dict[str, list[float]]:
        """Each caption's ROUGE-L; no state change. ROUGE-L (unlike CIDEr's IDF or BLEU's
        corpus counts) is a mean of per-image scores, so a row's score is its share of the
        logged value: the per-sample column of caption sample tables."""
        return {"rouge_l": rouge_l_samples(predictions, references, self.tokenize)}

    def compute(self) -> dict[str, Tensor]:
        """``{"rouge_l": float64 scalar}``."""
        predictions, references = stored_captions(self)
        return as_tensors(rouge_l(predictions, references, self.tokenize), self.device)
