"""ANLS against a transcription of the official DocVQA (RRC) evaluation and hand-worked values."""

from __future__ import annotations

import random

import pytest
import torch

from vlmtrain.metrics.anls import ANLS
from vlmtrain.metrics.functional.anls import anls, anls_per_sample, normalize_answer


# ----------------------------------------------------------------------------------------------
# Oracle: levenshtein_distance and the scoring loop of the official evaluate_method, transcribed.
# ----------------------------------------------------------------------------------------------
def _official_levenshtein_distance(s1, s2):
    if len(s1) > len(s2):
        s1, s2 = s2, s1

    distances = range(len(s1) + 1)
    for i2, c2 in enumerate(s2):
        distances_ = [i2 + 1]
        for i1, c1 in enumerate(s1):
            if c1 == c2:
                distances_.append(distances[i1])
            else:
                distances_.append(1 + min((distances[i1], distances[i1 + 1], distances_[-1])))
        distances = distances_
    return distances[-1]


def official(predictions, references, anls_threshold=0.5):
    per_q, totalScore = [], 0
    for det, gt_answers in zip(predictions, references):
        values = []
        for answer in gt_answers:
            gt_answer = " ".join(answer.strip().lower().split())
            det_answer = " ".join(det.strip().lower().split())
            dist = _official_levenshtein_distance(gt_answer, det_answer)
            length = max(len(answer.upper()), len(det.upper()))
            values.append(0.0 if length == 0 else float(dist) / float(length))
        question_result = 1 - min(values)
        if question_result < anls_threshold:
            question_result = 0
        totalScore += question_result
        per_q.append(question_result)
    return per_q, totalScore / len(predictions)


# ----------------------------------------------------------------------------------------------
_ALPHABET = "abcdeABCDE 0123.,-/éÉßİﬁ東京\t"


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.choice([0, 1, 2, 3, 5, 8, 13, 30])))


def _perturb(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(0, 4)):
        op = rng.random()
        pos = rng.randint(0, len(chars))
        if op < 0.33:
            chars.insert(pos, rng.choice(_ALPHABET))
        elif op < 0.66 and chars:
            chars.pop(min(pos, len(chars) - 1))
        elif chars:
            chars[min(pos, len(chars) - 1)] = rng.choice(_ALPHABET)
    out = "".join(chars)
    return out.upper() if rng.random() < 0.2 else out


def _random_case(rng: random.Random) -> tuple[str, list[str]]:
    golds = [_random_text(rng) for _ in range(rng.choice([1, 1, 2, 3]))]
    pred = _perturb(rng, rng.choice(golds)) if rng.random() < 0.7 else _random_text(rng)
    return pred, golds


@pytest.mark.parametrize("threshold", [0.5, 0.0, 0.3, 1.0])
def test_matches_official_on_generated_cases(threshold):
    rng = random.Random(int(threshold * 10))
    cases = [_random_case(rng) for _ in range(2000)]
    preds, refs = [p for p, _ in cases], [r for _, r in cases]
    want_per_q, want = official(preds, refs, threshold)
    got_per_q = anls_per_sample(preds, refs, threshold)
    for i, (got, exp) in enumerate(zip(got_per_q, want_per_q)):
        assert got == pytest.approx(exp, abs=1e-9), (i, preds[i], refs[i])
    assert anls(preds, refs, threshold)["anls"] == pytest.approx(want, abs=1e-9)
    if threshold == 0.5:
        assert {0.0, 1.0} <= set(got_per_q) and any(0.5 <= s < 1 for s in got_per_q)


@pytest.mark.parametrize(
    ("pred", "golds", "expected"),
    [
        ("nlp", ["nlp"], 1.0),
        ("nip", ["nlp"], 1 - 1 / 3),  # one substitution over 3 characters
        ("NLP", ["nlp"], 1.0),  # case-insensitive
        ("  nlp  ", ["nlp"], 1.0),  # normalised strings are equal: distance 0
        (" nip ", ["nlp"], 1 - 1 / 5),  # raw length 5 is the denominator (official quirk)
        ("ab", ["ax"], 0.5),  # NL = 0.5 is kept: the code tests score < 0.5, not NL < 0.5
        ("abc", ["axy"], 0.0),  # NL = 2/3 > 0.5
        ("kitten", ["sitting"], 1 - 3 / 7),
        ("", [""], 1.0),  # both empty: NL = 0
        ("", ["a"], 0.0),
        ("new york", ["nyc", "new york city"], 1 - 5 / 13),  # best gold wins
        ("straße", ["strasse"], 1 - 2 / 7),  # "ß".upper() is "SS": raw length 7, not 6
    ],
)
def test_hand_worked_values(pred, golds, expected):
    assert anls([pred], [golds])["anls"] == pytest.approx(expected, abs=1e-12)
    assert official([pred], [golds])[1] == pytest.approx(expected, abs=1e-12)


def test_very_long_and_unicode_strings():
    long_a = "ab" * 50_000
    long_b = "ab" * 49_990 + "x" * 20
    got = anls([long_b, "東京タワー"], [[long_a], ["東京 タワー"]])["anls"]
    want_first = 1 - 20 / 100_000
    want_second = 1 - 1 / 6
    assert got == pytest.approx((want_first + want_second) / 2, abs=1e-12)


def test_normalisation():
    assert normalize_answer("  New\tYork \n CITY ") == "new york city"


def test_class_matches_functional_and_threshold():
    rng = random.Random(3)
    cases = [_random_case(rng) for _ in range(120)]
    preds, refs = [p for p, _ in cases], [r for _, r in cases]
    for threshold in (0.5, 0.2):
        metric = ANLS(threshold=threshold)
        metric.update(preds[:50], refs[:50])
        metric.update(preds[50:], refs[50:])
        out = metric.compute()
        assert set(out) == {"anls"} and out["anls"].dtype == torch.float64
        want = anls(preds, refs, threshold)["anls"]
        assert float(out["anls"]) == pytest.approx(want, abs=1e-12)


def test_bad_threshold_and_empty_refs_raise():
    with pytest.raises(ValueError, match="threshold"):
        ANLS(threshold=1.5)
    with pytest.raises(ValueError, match=r"references\[0\] is empty"):
        anls(["x"], [[]])
