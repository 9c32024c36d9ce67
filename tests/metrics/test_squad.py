"""Exact match / token F1 against a transcription of the official SQuAD v1.1 evaluate script."""

from __future__ import annotations

import random
import re
import string
from collections import Counter

import pytest
import torch

from vlmtrain.metrics.functional.squad import (
    exact_match,
    normalize_answer,
    squad_per_sample,
    squad_scores,
    token_f1,
)
from vlmtrain.metrics.squad import SquadMatch


# ----------------------------------------------------------------------------------------------
# Oracle: functions of the official evaluate-v1.1.py, transcribed.
# ----------------------------------------------------------------------------------------------
def _official_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def _official_f1_score(prediction, ground_truth):
    prediction_tokens = _official_normalize_answer(prediction).split()
    ground_truth_tokens = _official_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def _official_exact_match_score(prediction, ground_truth):
    return _official_normalize_answer(prediction) == _official_normalize_answer(ground_truth)


def _official_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


def official(predictions, references):
    """The official ``evaluate`` loop; returns per-question (em, f1) and the percentages."""
    f1 = exact = total = 0
    per_q = []
    for prediction, ground_truths in zip(predictions, references):
        total += 1
        em_q = _official_metric_max_over_ground_truths(
            _official_exact_match_score, prediction, ground_truths
        )
        f1_q = _official_metric_max_over_ground_truths(
            _official_f1_score, prediction, ground_truths
        )
        exact += em_q
        f1 += f1_q
        per_q.append((em_q, f1_q))
    return per_q, {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}


# ----------------------------------------------------------------------------------------------
_WORDS = [
    "the", "The", "a", "an", "An", "banana", "theater", "anne", "cat", "Cat", "cats", "dog",
    "Denver", "Broncos", "Super", "Bowl", "50", "L", "1,000", "3.5", "U.S.", "don't", "it's",
    "(1998)", "--", "!", "?", "café", "naïve", "’s", "–", "東京", "İstanbul", "ß", "", " ",
    "e.g.", "state-of-the-art", "the-end", "a.", "Ångström",
]


def _random_text(rng: random.Random) -> str:
    n = rng.choice([0, 1, 1, 2, 2, 3, 4, 6])
    return rng.choice([" ", "  ", "\t", "\n"]).join(rng.choice(_WORDS) for _ in range(n))


def _random_case(rng: random.Random) -> tuple[str, list[str]]:
    golds = [_random_text(rng) for _ in range(rng.choice([1, 1, 2, 3, 5]))]
    roll = rng.random()
    if roll < 0.3:
        pred = rng.choice(golds)
    elif roll < 0.6:
        words = rng.choice(golds).split()
        rng.shuffle(words)
        pred = " ".join(words[: rng.randint(0, len(words))] + [rng.choice(_WORDS)])
    else:
        pred = _random_text(rng)
    return pred, golds


def test_matches_official_on_generated_cases():
    rng = random.Random(0)
    cases = [_random_case(rng) for _ in range(3000)]
    preds, refs = [p for p, _ in cases], [r for _, r in cases]
    want_per_q, want = official(preds, refs)
    got_em, got_f1 = squad_per_sample(preds, refs)
    for i, (em, f1) in enumerate(want_per_q):
        assert got_em[i] == pytest.approx(float(em), abs=1e-9), (i, preds[i], refs[i])
        assert got_f1[i] == pytest.approx(f1, abs=1e-9), (i, preds[i], refs[i])
    got = squad_scores(preds, refs)
    assert got["exact_match"] == pytest.approx(want["exact_match"] / 100, abs=1e-9)
    assert got["f1"] == pytest.approx(want["f1"] / 100, abs=1e-9)
    assert exact_match(preds, refs) == {"exact_match": got["exact_match"]}
    assert token_f1(preds, refs) == {"f1": got["f1"]}
    assert any(0 < f < 1 for f in got_f1) and {0.0, 1.0} <= set(got_em)


@pytest.mark.parametrize(
    ("pred", "golds", "em", "f1"),
    [
        ("The Denver Broncos!", ["Denver Broncos"], 1.0, 1.0),
        ("Denver", ["Denver Broncos"], 0.0, 2 * 1.0 * 0.5 / 1.5),
        ("", ["the"], 1.0, 0.0),  # both normalise to "": EM 1, F1 0 (v1.1; v2.0 gives F1 1)
        ("", ["Denver"], 0.0, 0.0),
        ("a banana", ["banana"], 1.0, 1.0),  # articles are whole words only
        ("cat cat dog", ["cat dog dog"], 0.0, 2 / 3),  # counts are clipped (multiset overlap)
        ("Super Bowl 50", ["Super Bowl L", "Super Bowl 50"], 1.0, 1.0),  # max over golds
    ],
)
def test_hand_worked_values(pred, golds, em, f1):
    got = squad_scores([pred], [golds])
    assert got["exact_match"] == pytest.approx(em, abs=1e-12)
    assert got["f1"] == pytest.approx(f1, abs=1e-12)


def test_normalisation_examples():
    assert normalize_answer("  The  Eiffel-Tower, (Paris). ") == "eiffeltower paris"
    assert normalize_answer("don’t") == "don’t"  # non-ASCII punctuation is kept, as officially


def test_class_matches_functional_across_batches():
    rng = random.Random(1)
    cases = [_random_case(rng) for _ in range(150)]
    preds, refs = [p for p, _ in cases], [r for _, r in cases]
    metric = SquadMatch()
    for start in range(0, 150, 40):
        metric.update(preds[start : start + 40], refs[start : start + 40])
    out = metric.compute()
    want = squad_scores(preds, refs)
    assert set(out) == {"exact_match", "f1"}
    assert all(v.dtype == torch.float64 for v in out.values())
    assert float(out["exact_match"]) == pytest.approx(want["exact_match"], abs=1e-12)
    assert float(out["f1"]) == pytest.approx(want["f1"], abs=1e-12)


def test_empty_reference_list_raises():
    with pytest.raises(ValueError, match=r"references\[1\] is empty"):
        squad_scores(["a", "b"], [["a"], []])
