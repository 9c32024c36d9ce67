"""The validation sample table: the same examples at every evaluation, with image and scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ScoresSamples(Protocol):
    """A metric whose value is a mean of per-sample scores says what each sample scored.

    ``sample_scores`` returns the terms its ``compute`` averages (``{"exact_match": [1.0, 0.0],
    "f1": [1.0, 0.5]}``) and leaves the metric's state alone. Corpus metrics (CIDEr, BLEU) do not
    implement it: a sample has no score of its own there.
    """

    def sample_scores(self, predictions: list[str], references: list[list[str]]
                      ) -> dict[str, list[float]]: ...


class SampleTable:
    """Rows of (id, image, prompt, prediction, references, per-sample scores) for a logger.

    The ids are picked once, the first ``size`` seen at the first evaluation, and kept: every
    later evaluation shows the same examples, so a reader watches one answer change as the model
    trains. The picked ids travel in the checkpoint (:meth:`state_dict`), so a resumed run keeps
    them too.

    Args:
        size: rows per table (0 = no table).
    """

    def __init__(self, size: int) -> None:
        self.size = max(0, int(size))
        self.ids: list[str] = []
        self.frozen = False  # True once an evaluation picked the ids
        self.rows: dict[str, dict[str, Any]] = {}

    def start(self) -> None:
        """Forget the previous evaluation's rows (the picked ids stay)."""
        self.rows = {}

    def add(self, meta: Mapping[str, Sequence[Any]], predictions: Sequence[str],
            metrics: Mapping[str, Any]) -> None:
        """Keep the rows of this batch whose ids are (or become) the table's.

        Args:
            meta: the batch's ``meta`` (``ids``, ``prompts``, ``references``, ``images``).
            predictions: one generated text per sample.
            metrics: name -> metric; those implementing :class:`ScoresSamples` add columns.
        """
        ids = [str(i) for i in meta["ids"]]
        if not self.frozen:
            self.ids += [i for i in ids if i not in self.ids][: self.size - len(self.ids)]
        wanted = set(self.ids)
        keep = [k for k, i in enumerate(ids) if i in wanted]
        if not keep:
            return
        preds = [predictions[k] for k in keep]
        refs = [list(meta["references"][k]) for k in keep]
        scores: dict[str, list[float]] = {}
        for metric in metrics.values():
            if isinstance(metric, ScoresSamples):
                scores.update(metric.sample_scores(preds, refs))
        images = meta.get("images") or [None] * len(ids)
        for j, k in enumerate(keep):
            self.rows[ids[k]] = {
                "id": ids[k], "image": images[k], "prompt": meta["prompts"][k],
                "prediction": preds[j], "references": " | ".join(refs[j]),
                **{name: float(values[j]) for name, values in scores.items()},
            }

    def finish(self) -> list[dict[str, Any]]:
        """End an evaluation: fix the ids and return its rows in the table's order."""
        self.frozen = self.frozen or bool(self.ids)
        return [self.rows[i] for i in self.ids if i in self.rows]

    def state_dict(self) -> dict[str, Any]:
        return {"ids": list(self.ids), "frozen": self.frozen}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.ids = [str(i) for i in state.get("ids", [])][: self.size]
        self.frozen = bool(state.get("frozen", bool(self.ids)))


def wandb_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Columns and data for ``wandb.Table``: images become ``wandb.Image`` (shown inline)."""
    import wandb

    columns = list(rows[0])
    data = [[wandb.Image(v) if c == "image" and v is not None else v for c, v in row.items()]
            for row in rows]
    return columns, data
