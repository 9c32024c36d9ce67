"""ROUGE-L against pycocoevalcap 1.2 ``Rouge`` (tolerance 1e-9; in practice bit-equal), and the
bit-parallel LCS against the textbook dynamic programme."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from pycocoevalcap.rouge.rouge import Rouge as CocoRouge
from pycocoevalcap.rouge.rouge import my_lcs

from tests.metrics.conftest import leave_one_out
from vlmtrain.metrics.functional.rouge import lcs_lengths
from vlmtrain.metrics.ptb import tokenize, tokenize_groups
from vlmtrain.metrics.rouge import RougeL, rouge_l

HAND_CASES = [
    ("", ["a dog runs on the grass", "the dog is running"]),  # empty candidate: [""] vs refs
    ("", [""]),  # empty vs empty: pycocoevalcap's split(" ") gives [""] and [""], LCS 1
    ("a dog runs on the grass", ["a dog runs on the grass", "a cat"]),  # identical
    ("dog", ["a dog runs on the grass"]),  # one word
    (" ".join(["a dog runs"] * 60), ["a dog runs on the grass", "dogs run"]),  # 180 words
    (" ".join(f"w{i}" for i in range(100)), [" ".join(f"w{i}" for i in range(0, 140, 2))]),
    ("un café à zürich près du lac", ["un café près du lac à zürich", "東京 タワー の 夜景"]),
    ("a  dog\truns ", ["a dog runs", " a  dog"]),  # irregular spacing: split(" ") keeps "" tokens
]



def _coco(preds: list[str], refs: list[list[str]]) -> tuple[float, np.ndarray]:
    gts = {i: list(r) for i, r in enumerate(refs)}
    res = {i: [p] for i, p in enumerate(preds)}
    return CocoRouge().compute_score(gts, res)


def test_flickr8k_subset_equals_pycocoevalcap():
    preds, refs = leave_one_out()
    preds, refs = tokenize(preds), tokenize_groups(refs)
    want, _ = _coco(preds, refs)
    assert rouge_l(preds, refs, tokenize=False)["rouge_l"] == pytest.approx(want, abs=1e-9, rel=0)


@pytest.mark.parametrize("case", range(len(HAND_CASES)))
def test_hand_case_equals_pycocoevalcap(case):
    pred, refs = HAND_CASES[case]
    want, _ = _coco([pred], [refs])
    assert rouge_l([pred], [refs], tokenize=False)["rouge_l"] == pytest.approx(want, abs=1e-9)


def test_all_hand_cases_as_one_corpus():
    preds, refs = [p for p, _ in HAND_CASES], [r for _, r in HAND_CASES]
    want, _ = _coco(preds, refs)
    assert rouge_l(preds, refs, tokenize=False)["rouge_l"] == pytest.approx(want, abs=1e-9)


def test_worked_example():
    """LCS('a dog leaps for a flying disc at the shore', 'a brown dog catches a frisbee on the
    beach') = 4 ('a dog a the'): P = 4/10, R = 4/9, F = (1 + 1.2^2) P R / (R + 1.2^2 P)."""
    p, r = 4 / 10, 4 / 9
    expected = (1 + 1.44) * p * r / (r + 1.44 * p)
    got = rouge_l(["a dog leaps for a flying disc at the shore"],
                  [["a brown dog catches a frisbee on the beach"]])["rouge_l"]
    assert got == pytest.approx(expected, rel=1e-12)
    assert got == pytest.approx(0.42509, abs=5e-6)


def test_bit_parallel_lcs_equals_dynamic_programme():
    """Random token sequences over small alphabets (many matches), lengths around the 64-token
    machine word and far beyond it (Python-integer fallback), in one call (chunking)."""
    rng = random.Random(0)
    sentences = []
    for _ in range(400):
        n = rng.choice([0, 1, 2, 5, 12, 31, 63, 64, 65, 100, 200])
        sentences.append([rng.randrange(rng.choice([2, 4, 30])) for _ in range(n)])
    lengths = np.array([len(s) for s in sentences], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    ids = np.array([t for s in sentences for t in s], dtype=np.int64)
    pairs = np.array([(rng.randrange(400), rng.randrange(400)) for _ in range(1500)])
    got = lcs_lengths(ids, starts, lengths, pairs)
    want = [my_lcs(sentences[a], sentences[b]) for a, b in pairs]
    assert got.tolist() == want


def test_metric_in_batches_equals_functional():
    preds, refs = leave_one_out(120)
    metric = RougeL()
    for lo in range(0, 120, 50):
        metric.update(preds[lo : lo + 50], refs[lo : lo + 50])
    got = metric.compute()
    assert list(got) == ["rouge_l"]
    assert got["rouge_l"].dtype == torch.float64
    assert float(got["rouge_l"]) == rouge_l(preds, refs)["rouge_l"]


def test_bad_inputs_name_the_record():
    with pytest.raises(ValueError, match=r"references\[0\] is empty"):
        rouge_l(["a"], [[]])
    with pytest.raises(ValueError, match="1 predictions but 2 reference lists"):
        rouge_l(["a"], [["a"], ["b"]])
