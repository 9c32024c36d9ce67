"""BLEU-1..4 against pycocoevalcap 1.2 ``Bleu(4)`` (tolerance 1e-9; in practice bit-equal).

Both sides get the same PTB-tokenized text (vlmtrain's pure-Python tokenizer, itself tested
against the Java one), so no Java is needed here.
"""

from __future__ import annotations

import math

import pytest
import torch
from pycocoevalcap.bleu.bleu import Bleu as CocoBleu

from tests.metrics.conftest import leave_one_out
from vlmtrain.metrics.bleu import Bleu, bleu, sentence_bleu

KEYS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4")

# (candidate, references): edge cases pycocoevalcap must agree on.
HAND_CASES = [
    ("", ["a dog runs on the grass", "the dog is running"]),  # empty candidate
    ("a dog runs on the grass", ["a dog runs on the grass", "a cat"]),  # identical to a reference
    ("dog", ["a dog runs on the grass"]),  # one word
    (" ".join(["a dog runs"] * 60), ["a dog runs on the grass", "dogs run"]),  # very long
    ("un café à zürich près du lac", ["un café près du lac à zürich", "東京 タワー の 夜景"]),
    ("a dog", [""]),  # empty reference string
    ("a b c d e", ["a b c", "a b c d e f g h"]),  # equidistant lengths: the shorter one wins
]



def _coco(preds: list[str], refs: list[list[str]]) -> tuple[list[float], list[list[float]]]:
    gts = {i: list(r) for i, r in enumerate(refs)}
    res = {i: [p] for i, p in enumerate(preds)}
    return CocoBleu(4).compute_score(gts, res, verbose=0)



def test_flickr8k_subset_equals_pycocoevalcap(flickr):
    preds, refs = flickr
    want, want_sentences = _coco(preds, refs)
    got = bleu(preds, refs, tokenize=False)
    assert list(got) == list(KEYS)
    for key, value in zip(KEYS, want):
        assert got[key] == pytest.approx(value, abs=1e-9, rel=0)
    sentences = sentence_bleu(preds, refs, tokenize=False)
    for key, values in zip(KEYS, want_sentences):
        assert sentences[key] == pytest.approx(values, abs=1e-9, rel=0)


@pytest.mark.parametrize("case", range(len(HAND_CASES)))
def test_hand_case_equals_pycocoevalcap(case):
    pred, refs = HAND_CASES[case]
    want, _ = _coco([pred], [refs])
    got = bleu([pred], [refs], tokenize=False)
    assert [got[k] for k in KEYS] == pytest.approx(want, abs=1e-9, rel=0)


def test_all_hand_cases_as_one_corpus():
    preds = [p for p, _ in HAND_CASES]
    refs = [r for _, r in HAND_CASES]
    want, want_sentences = _coco(preds, refs)
    got = bleu(preds, refs, tokenize=False)
    assert [got[k] for k in KEYS] == pytest.approx(want, abs=1e-9, rel=0)
    sentences = sentence_bleu(preds, refs, tokenize=False)
    for key, values in zip(KEYS, want_sentences):
        assert sentences[key] == pytest.approx(values, abs=1e-9, rel=0)


def test_worked_example():
    """'a dog leaps for a flying disc at the shore' vs 'a brown dog catches a frisbee on the
    beach': 10 candidate words, 9 reference words; clipped unigram matches a, a, dog, the = 4;
    no bigram or longer matches. Candidate longer than the reference: no brevity penalty."""
    tiny, small = 1e-15, 1e-9
    p = [(4 + tiny) / (10 + small), tiny / (9 + small), tiny / (8 + small), tiny / (7 + small)]
    expected = [math.prod(p[: k + 1]) ** (1 / (k + 1)) for k in range(4)]
    got = bleu(["a dog leaps for a flying disc at the shore"],
               [["a brown dog catches a frisbee on the beach"]])
    assert [got[k] for k in KEYS] == pytest.approx(expected, rel=1e-12)
    assert got["bleu_1"] == pytest.approx(0.4, rel=1e-9)
    assert got["bleu_4"] == pytest.approx(9.4e-13, rel=0.01)


def test_tokenize_option_lowercases_and_drops_punctuation():
    raw = bleu(["A dog runs."], [["a dog runs"]], tokenize=True)
    assert raw["bleu_1"] == pytest.approx(1.0)
    untokenized = bleu(["A dog runs."], [["a dog runs"]], tokenize=False)
    assert untokenized["bleu_1"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("predictions", "references", "error", "match"),
    [
        (["a", "b"], [["a"]], ValueError, "2 predictions but 1 reference lists"),
        (["a", "b"], [["a"], []], ValueError, r"references\[1\] is empty.*asserts"),
        (["a", 3], [["a"], ["b"]], TypeError, r"predictions\[1\] must be a str"),
        (["a"], [["a", None]], TypeError, r"references\[0\]\[1\] must be a str"),
        (["a"], ["a"], TypeError, r"references\[0\] is a str; wrap it in a list"),
        ("a dog", [["a dog"]], TypeError, "not a string"),
        ([], [], ValueError, "no samples"),
    ],
)
def test_bad_inputs_name_the_record(predictions, references, error, match):
    with pytest.raises(error, match=match):
        bleu(predictions, references)


def test_metric_in_batches_equals_functional():
    preds, refs = leave_one_out(120)
    metric = Bleu()
    for lo in range(0, 120, 50):
        metric.update(preds[lo : lo + 50], refs[lo : lo + 50])
    metric.update([], [])  # an empty batch is a no-op
    got = metric.compute()
    want = bleu(preds, refs)
    assert list(got) == list(KEYS)
    for key in KEYS:
        assert got[key].dtype == torch.float64
        assert float(got[key]) == want[key]
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):  # torchmetrics' own warning
        with pytest.raises(RuntimeError, match="call update"):
            metric.compute()
