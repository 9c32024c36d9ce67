"""ANLS (Average Normalized Levenshtein Similarity), equal to the official DocVQA evaluation.

Reference: the DocVQA / InfographicVQA evaluation script of the Robust Reading Competition
(docvqa.org, rrc.cvc.uab.es ch=17), ``evaluate_method``; ANLS was introduced for ST-VQA
(Biten et al., 2019). For one question with gold answers ``g_1..g_n`` and prediction ``p``:

* both strings are normalised as ``" ".join(s.strip().lower().split())``;
* ``NL_i = lev(norm(g_i), norm(p)) / max(len(g_i.upper()), len(p.upper()))`` (0 when both are
  empty). The official script divides by the lengths of the RAW strings (upper-cased), not of the
  normalised ones, so surrounding or repeated whitespace in the raw text lowers NL; kept as is;
* ``score = 1 - min_i NL_i``, set to 0 when ``score < threshold`` (0.5). The paper writes
  "NL < tau"; the code keeps a score of exactly 0.5 (NL = 0.5, e.g. "ab" vs "ax").

ANLS is the mean score over questions, in [0, 1].

The Levenshtein distance comes from ``rapidfuzz`` (C++, bit-parallel), which equals the official
pure-Python dynamic programme on Unicode code points but stays fast on very long strings.
This module imports neither torch nor torchmetrics.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz.distance import Levenshtein

from vlmtrain.metrics.functional._inputs import check_answer_inputs, mean

DEFAULT_THRESHOLD = 0.5


def normalize_answer(text: str) -> str:
    """The official normalisation: strip, lower-case, collapse whitespace."""
    return " ".join(text.strip().lower().split())


def anls_single(
    prediction: str, answers: Sequence[str], threshold: float = DEFAULT_THRESHOLD
) -> float:
    """ANLS score of one question, in [0, 1].

    Args:
        prediction: predicted answer.
        answers: n >= 1 gold answers.
        threshold: scores below it become 0 (official: 0.5).
    """
    pred = normalize_answer(prediction)
    pred_len = len(prediction.upper())  # raw length, as the official script measures it
    distances = []
    for answer in answers:
        length = max(len(answer.upper()), pred_len)
        dist = Levenshtein.distance(normalize_answer(answer), pred)
        distances.append(0.0 if length == 0 else float(dist) / float(length))
    score = 1 - min(distances)
    return 0.0 if score < threshold else score


def anls_per_sample(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    threshold: float = DEFAULT_THRESHOLD,
) -> list[float]:
    """ANLS score of each question.

    Args:
        predictions: N predicted answers.
        references: N non-empty lists of gold answers.
        threshold: see :func:`anls_single`; must lie in [0, 1].

    Returns:
        N floats in [0, 1].
    """
    check_threshold(threshold)
    check_answer_inputs(predictions, references, "anls")
    return [anls_single(p, r, threshold) for p, r in zip(predictions, references)]


def anls(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, float]:
    """Mean ANLS over questions.

    Returns:
        ``{"anls": float}``.
    """
    return {"anls": mean(anls_per_sample(predictions, references, threshold))}


def check_threshold(threshold: float) -> None:
    """Raise a ValueError unless ``0 <= threshold <= 1``."""
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"anls: threshold must lie in [0, 1], got {threshold} (official: 0.5)")
