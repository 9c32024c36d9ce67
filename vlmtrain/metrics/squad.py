"""Exact match and token F1 as a torchmetrics metric (official SQuAD v1.1 evaluation, see
:mod:`vlmtrain.metrics.functional.squad`)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from vlmtrain.metrics.functional.squad import exact_match, squad_per_sample, squad_scores, token_f1

__all__ = ["SquadMatch", "exact_match", "squad_scores", "token_f1"]


class SquadMatch(Metric):
    """Mean exact match and token F1 over questions (SQuAD v1.1 normalisation), in [0, 1].

    One class returns both keys because both come from the same normalised tokens; log only the
    key you need. Per-sample scores are summed in :meth:`update` (float64) and counted, so DDP
    sync is three all-reduces. Unlike ``torchmetrics.text.SQuAD`` it takes plain string lists
    and returns fractions, not percentages.

    Example:
        >>> m = SquadMatch()
        >>> m.update(["The Eiffel tower"], [["eiffel tower", "tower"]])
        >>> {k: float(v) for k, v in m.compute().items()}
        {'exact_match': 1.0, 'f1': 1.0}
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    exact_sum: Tensor
    f1_sum: Tensor
    count: Tensor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("exact_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("f1_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, predictions: list[str], references: list[list[str]]) -> None:
        """Score a batch.

        Args:
            predictions: B predicted answers.
            references: B non-empty lists of gold answers.
        """
        exact, f1 = squad_per_sample(predictions, references)
        self.exact_sum += float(sum(exact))
        self.f1_sum += float(sum(f1))
        self.count += len(exact)

    def sample_scores(self, predictions: list[str], references: list[list[str]]
                      ) -> dict[str, list[float]]:
        """Each question's exact match and F1 (what :meth:`compute` averages); no state change.

        Used for the per-sample column of the validation sample table.
        """
        exact, f1 = squad_per_sample(predictions, references)
        return {"exact_match": exact, "f1": f1}

    def compute(self) -> dict[str, Tensor]:
        """Returns ``{"exact_match", "f1"}`` (float64 scalars) over every sample seen."""
        if int(self.count) == 0:
            raise RuntimeError("SquadMatch.compute(): no samples; call update() first")
        return {"exact_match": self.exact_sum / self.count, "f1": self.f1_sum / self.count}
