"""METEOR 1.5 as a torchmetrics metric, equal to pycocoevalcap 1.2 ``Meteor`` (same jar).

The protocol, batching and aggregation live in :mod:`vlmtrain.metrics.functional.meteor`.
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
from vlmtrain.metrics.functional.meteor import (
    MeteorJvmError,
    MeteorNotInstalledError,
    MeteorScorer,
    default_jvms,
    meteor,
    shared_scorer,
)

__all__ = ["Meteor", "MeteorJvmError", "MeteorNotInstalledError", "MeteorScorer", "meteor"]


class Meteor(Metric):
    """Corpus METEOR over every caption seen (runs Java in :meth:`compute`).

    Args:
        tokenize: PTB-tokenize in :meth:`compute`, as the COCO evaluation does.
        keep_jvm: keep the JVM(s) running between :meth:`compute` calls (one process-wide
            scorer per setting with the full paraphrase table, ~0.6 GB, closed at exit), so
            later evaluations skip the JVM start and the table load (several seconds each).
            False: per call, a new JVM with a table restricted to the captions (faster for a
            single evaluation), stopped afterwards.
        jvms: JVMs to shard over (default: by set size for a fresh scorer, 1 when kept).
        java: Java executable (default ``$VLMTRAIN_JAVA`` or ``java``).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        tokenize: bool = True,
        keep_jvm: bool = True,
        jvms: int | None = None,
        java: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.tokenize, self.keep_jvm, self.jvms, self.java = tokenize, keep_jvm, jvms, java
        add_caption_states(self)

    def update(self, predictions: list[str], references: list[list[str]]) -> None:
        """Store a batch: B captions and B non-empty reference lists."""
        append_captions(self, predictions, references, "meteor")

    def compute(self) -> dict[str, Tensor]:
        """``{"meteor": float64 scalar}``."""
        predictions, references = stored_captions(self)
        scorer: MeteorScorer | None = None
        if self.keep_jvm:
            scorer = shared_scorer(self.jvms or 1, self.java)
        jvms = self.jvms or default_jvms(len(predictions))
        scores = meteor(predictions, references, self.tokenize, jvms, self.java, scorer)
        return as_tensors(scores, self.device)
