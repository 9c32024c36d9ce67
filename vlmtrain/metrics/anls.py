"""ANLS as a torchmetrics metric (official DocVQA evaluation, see
:mod:`vlmtrain.metrics.functional.anls`)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from vlmtrain.metrics.functional.anls import (
    DEFAULT_THRESHOLD,
    anls,
    anls_per_sample,
    check_threshold,
)

__all__ = ["ANLS", "anls"]


class ANLS(Metric):
    """Average Normalized Levenshtein Similarity over questions, in [0, 1].

    Per-sample scores are summed in :meth:`update` (float64) and counted, so DDP sync is two
    all-reduces.

    Args:
        threshold: per-question scores below it become 0 (official DocVQA / ST-VQA: 0.5).

    Example:
        >>> m = ANLS()
        >>> m.update(["nip"], [["nlp"]])
        >>> round(float(m.compute()["anls"]), 4)
        0.6667
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    score_sum: Tensor
    count: Tensor

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, **kwargs) -> None:
        super().__init__(**kwargs)
        check_threshold(threshold)
        self.threshold = float(threshold)
        self.add_state("score_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, predictions: list[str], references: list[list[str]]) -> None:
        """Score a batch.

        Args:
            predictions: B predicted answers.
            references: B non-empty lists of gold answers.
        """
        scores = anls_per_sample(predictions, references, self.threshold)
        self.score_sum += float(sum(scores))
        self.count += len(scores)

    def sample_scores(self, predictions: list[str], references: list[list[str]]
                      ) -> dict[str, list[float]]:
        """Each question's ANLS (what :meth:`compute` averages); no state change."""
        return {"anls": anls_per_sample(predictions, references, self.threshold)}

    def compute(self) -> dict[str, Tensor]:
        """Returns ``{"anls": float64 scalar}`` over every sample seen (all ranks)."""
        if int(self.count) == 0:
            raise RuntimeError("ANLS.compute(): no samples; call update() first")
        return {"anls": self.score_sum / self.count}
