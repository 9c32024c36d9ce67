"""Exact match and token F1, equal to the official SQuAD v1.1 evaluation (``evaluate-v1.1.py``).

Normalisation (``normalize_answer``): lower-case, delete ASCII punctuation
(``string.punctuation``), replace the words a/an/the by a space, collapse whitespace. A
prediction's score is the maximum over its gold answers; the reported value is the mean over
questions. The official script prints percentages; these functions return fractions in [0, 1].

Edge cases, as in v1.1: when prediction and gold both normalise to ``""`` exact match is 1 but F1
is 0 (no common token); SQuAD v2.0's script gives F1 = 1 there, v1.1 does not.

This module imports neither torch nor torchmetrics.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from vlmtrain.metrics.functional._inputs import check_answer_inputs, mean

_PUNCTUATION = frozenset(string.punctuation)  # ASCII only: "’" or "–" are kept, as officially
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """The official ``normalize_answer`` (lower, punctuation, articles, whitespace, in that
    order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(pred_tokens)
    recall = 1.0 * num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def squad_single(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    """Exact match and token F1 of one prediction: each the max over the gold answers.

    Returns:
        ``(exact_match, f1)``, each in [0, 1].
    """
    pred = normalize_answer(prediction)
    pred_tokens = pred.split()
    golds = [normalize_answer(a) for a in answers]
    exact = max(float(pred == g) for g in golds)
    f1 = max(_token_f1(pred_tokens, g.split()) for g in golds)
    return exact, f1


def squad_per_sample(
    predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> tuple[list[float], list[float]]:
    """Exact match and F1 of each question.

    Args:
        predictions: N predicted answers.
        references: N non-empty lists of gold answers.

    Returns:
        ``(exact_match, f1)``: two lists of N floats in [0, 1].
    """
    check_answer_inputs(predictions, references, "exact_match/f1")
    pairs = [squad_single(p, r) for p, r in zip(predictions, references)]
    return [e for e, _ in pairs], [f for _, f in pairs]


def squad_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Mean exact match and token F1 over questions (fractions, not the official percentages).

    Returns:
        ``{"exact_match": float, "f1": float}``.
    """
    exact, f1 = squad_per_sample(predictions, references)
    return {"exact_match": mean(exact), "f1": mean(f1)}


def exact_match(
    predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    """``{"exact_match": float}`` only (see :func:`squad_scores`)."""
    return {"exact_match": squad_scores(predictions, references)["exact_match"]}


def token_f1(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """``{"f1": float}`` only (see :func:`squad_scores`)."""
    return {"f1": squad_scores(predictions, references)["f1"]}
