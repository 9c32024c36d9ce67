"""CIDEr-D against pycocoevalcap 1.2 ``Cider`` (tolerance 1e-9 on the mean and every image)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pycocoevalcap.cider.cider import Cider as CocoCider

from tests.metrics.conftest import leave_one_out
from vlmtrain.metrics.cider import CiderD, cider_d
from vlmtrain.metrics.functional._captions import CaptionSet
from vlmtrain.metrics.functional.cider import cider_per_image

HAND_CASES = [
    ("", ["a dog runs on the grass", "the dog is running"]),  # empty candidate
    ("a dog runs on the grass", ["a dog runs on the grass", "a cat"]),  # identical to a reference
    ("dog", ["a dog runs on the grass"]),  # one word (0 bigrams, like the empty caption)
    (" ".join(["a dog runs"] * 60), ["a dog runs on the grass", "dogs run"]),  # very long
    ("un café à zürich près du lac", ["un café près du lac à zürich", "東京 タワー の 夜景"]),
    ("a dog", [""]),  # empty reference string
    ("a dog runs", ["a dog runs", "a dog runs", "a dog runs"]),  # n-grams in every image's refs
]



def _coco(preds: list[str], refs: list[list[str]]) -> tuple[float, np.ndarray]:
    gts = {i: list(r) for i, r in enumerate(refs)}
    res = {i: [p] for i, p in enumerate(preds)}
    return CocoCider().compute_score(gts, res)



def test_flickr8k_subset_equals_pycocoevalcap(flickr):
    preds, refs = flickr
    want, want_images = _coco(preds, refs)
    assert cider_d(preds, refs, tokenize=False)["cider"] == pytest.approx(want, abs=1e-9, rel=0)
    got_images = cider_per_image(CaptionSet(preds, refs))
    np.testing.assert_allclose(got_images, want_images, rtol=0, atol=1e-9)


def test_hand_cases_within_a_larger_set(flickr):
    """Hand cases appended to 50 Flickr8k images, so the idf is not degenerate."""
    preds = flickr[0][:50] + [p for p, _ in HAND_CASES]
    refs = flickr[1][:50] + [r for _, r in HAND_CASES]
    want, want_images = _coco(preds, refs)
    got_images = cider_per_image(CaptionSet(preds, refs))
    np.testing.assert_allclose(got_images, want_images, rtol=0, atol=1e-9)
    assert cider_d(preds, refs, tokenize=False)["cider"] == pytest.approx(want, abs=1e-9, rel=0)


def test_hand_cases_alone_equal_pycocoevalcap():
    preds, refs = [p for p, _ in HAND_CASES], [r for _, r in HAND_CASES]
    want, want_images = _coco(preds, refs)
    np.testing.assert_allclose(cider_per_image(CaptionSet(preds, refs)), want_images, atol=1e-9)
    assert cider_d(preds, refs, tokenize=False)["cider"] == pytest.approx(want, abs=1e-9, rel=0)


def test_worked_example_one_image_is_zero():
    """One image: ref_len = log(1) = 0 and every reference n-gram has df = 1, so every tf-idf
    weight is 0 - log(1) = 0 and both vectors vanish: CIDEr-D = 0 (pycocoevalcap agrees)."""
    pred = "a dog leaps for a flying disc at the shore"
    ref = "a brown dog catches a frisbee on the beach"
    assert cider_d([pred], [[ref]])["cider"] == 0.0
    assert _coco([pred], [[ref]])[0] == 0.0


def test_worked_example_two_images():
    """Image 0: candidate 'a b', reference 'a b'; image 1: candidate 'c', reference 'd'.
    N = 2, so idf(g) = log 2 - log(df): 'a', 'b', 'a b' appear in one image's references
    (df = 1), weight log 2. Image 0, unigrams: v_c = v_r = (log 2, log 2), cosine 1; bigrams:
    ('a b') cosine 1; no 3-/4-grams: 0. Equal lengths, no penalty. Score = 10 * (1 + 1) / 4 = 5.
    Image 1: 'c' (df 0, weight log 2) and 'd' share nothing: 0. Mean 2.5."""
    got = cider_per_image(CaptionSet(["a b", "c"], [["a b"], ["d"]]))
    assert got.tolist() == pytest.approx([5.0, 0.0], abs=1e-12)
    assert cider_d(["a b", "c"], [["a b"], ["d"]])["cider"] == pytest.approx(2.5, abs=1e-12)


def test_length_penalty_counts_bigrams_as_pycocoevalcap():
    """Candidate 'a b c' vs reference 'a b c d e f g h': delta = 2 - 7 bigrams = -5."""
    preds, refs = ["a b c", "x"], [["a b c d e f g h"], ["y"]]
    want, want_images = _coco(preds, refs)
    got = cider_per_image(CaptionSet(preds, refs))
    np.testing.assert_allclose(got, want_images, rtol=0, atol=1e-12)
    assert math.isfinite(got[0]) and got[0] > 0


def test_subset_scores_differ_from_full_set(flickr):
    """The idf comes from the scored set: the first 100 images alone score differently."""
    preds, refs = flickr
    full = cider_per_image(CaptionSet(preds, refs))[:100].mean()
    alone = cider_d(preds[:100], refs[:100], tokenize=False)["cider"]
    assert abs(full - alone) > 1e-3


def test_metric_in_batches_equals_functional():
    preds, refs = leave_one_out(120)
    metric = CiderD()
    for lo in range(0, 120, 50):
        metric.update(preds[lo : lo + 50], refs[lo : lo + 50])
    got = metric.compute()
    assert list(got) == ["cider"]
    assert got["cider"].dtype == torch.float64
    assert float(got["cider"]) == cider_d(preds, refs)["cider"]


def test_bad_inputs_name_the_record():
    with pytest.raises(ValueError, match=r"references\[2\] is empty"):
        cider_d(["a", "b", "c"], [["a"], ["b"], []])
    with pytest.raises(TypeError, match=r"references\[1\]\[0\] must be a str"):
        cider_d(["a", "b"], [["a"], [b"b"]])


def test_all_references_empty_is_an_error():
    """pycocoevalcap crashes (max() of an empty sequence); here a clear ValueError."""
    with pytest.raises(ValueError, match="every reference caption is empty"):
        cider_d(["a dog", ""], [[""], ["", "."]])
