"""VQA accuracy as a torchmetrics metric (official VQA evaluation, current ``vqaEval.py`` by
default; see :mod:`vlmtrain.metrics.functional.vqa` for the versions, normalisation and formula)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from vlmtrain.metrics.functional.vqa import (
    DEFAULT_VERSION,
    check_version,
    vqa_accuracy,
    vqa_accuracy_per_sample,
)

__all__ = ["VQAAccuracy", "vqa_accuracy"]


class VQAAccuracy(Metric):
    """Mean VQA accuracy over questions, a fraction in [0, 1].

    VQA accuracy of a question depends on that question alone, so each sample is scored in
    :meth:`update` and only a float64 sum and a count are kept: DDP sync is two all-reduces.

    Args:
        version: which official ``vqaEval.py`` to follow: ``"2021"`` (default; the current
            script, commit a013f00) or ``"2017"`` (the pre-fix script, only to reproduce old
            numbers). Config: ``metrics.vqa.version=2017``.
        **kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> m = VQAAccuracy()
        >>> m.update(["two"], [["2", "2", "2", "two", "3"]])
        >>> float(m.compute()["vqa_accuracy"])
        1.0
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    score_sum: Tensor
    count: Tensor

    def __init__(self, version: str | int = DEFAULT_VERSION, **kwargs) -> None:
        super().__init__(**kwargs)
        self.version = check_version(version)  # a bad name fails when the config is built
        self.add_state("score_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, predictions: list[str], references: list[list[str]]) -> None:
        """Score a batch.

        Args:
            predictions: B predicted answers.
            references: B non-empty lists of gold answers (10 per question in VQA v2).
        """
        scores = vqa_accuracy_per_sample(predictions, references, self.version)
        self.score_sum += float(sum(scores))
        self.count += len(scores)

    def sample_scores(self, predictions: list[str], references: list[list[str]]
                      ) -> dict[str, list[float]]:
        """Each question's VQA accuracy (what :meth:`compute` averages); no state change."""
        return {"vqa_accuracy": vqa_accuracy_per_sample(predictions, references, self.version)}

    def compute(self) -> dict[str, Tensor]:
        """Returns ``{"vqa_accuracy": float64 scalar}`` over every sample seen (all ranks)."""
        if int(self.count) == 0:
            raise RuntimeError("VQAAccuracy.compute(): no samples; call update() first")
        return {"vqa_accuracy": self.score_sum / self.count}
