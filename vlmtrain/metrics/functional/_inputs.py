"""Input checks shared by the per-sample answer metrics (VQA accuracy, SQuAD EM/F1, ANLS)."""

from __future__ import annotations

from collections.abc import Sequence


def check_answer_inputs(
    predictions: Sequence[str], references: Sequence[Sequence[str]], metric: str
) -> None:
    """Validate ``predictions`` / ``references`` and name the first bad record.

    The official scripts crash on an empty answer list (VQA: division by zero, SQuAD: ``max()``
    of an empty list, ANLS: ``min()`` of an empty list), so an empty list is an error here too,
    raised with the record's index instead of a bare traceback.

    Args:
        predictions: N answer strings.
        references: N lists of gold answer strings, each non-empty.
        metric: metric name used in the error message.

    Raises:
        ValueError: lengths differ, the set is empty, a value is not a string, or a reference
            list is empty.
    """
    if isinstance(predictions, str) or isinstance(references, str):
        raise ValueError(f"{metric}: predictions and references must be sequences, not a string")
    if len(predictions) != len(references):
        raise ValueError(
            f"{metric}: {len(predictions)} predictions but {len(references)} reference lists; "
            "pass one list of gold answers per prediction"
        )
    if len(predictions) == 0:
        raise ValueError(f"{metric}: no samples to score (empty predictions)")
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        if not isinstance(pred, str):
            raise ValueError(f"{metric}: predictions[{i}] must be a str, got {type(pred).__name__}")
        if isinstance(refs, str):
            raise ValueError(
                f"{metric}: references[{i}] is a str; wrap it in a list: [{refs!r}]"
            )
        if len(refs) == 0:
            raise ValueError(
                f"{metric}: references[{i}] is empty; each sample needs at least one reference"
            )
        for j, ref in enumerate(refs):
            if not isinstance(ref, str):
                raise ValueError(
                    f"{metric}: references[{i}][{j}] must be a str, got {type(ref).__name__}"
                )


def mean(scores: Sequence[float]) -> float:
    """Left-to-right sum divided by the count, the order the official scripts use."""
    return float(sum(scores)) / len(scores)
