"""``caption_scores``: the whole COCO caption pipeline in one call, against pycocoevalcap's
(Java PTB tokenizer, then Bleu(4), Meteor, Rouge, Cider) on raw Flickr8k captions."""

from __future__ import annotations

import pytest

from tests.metrics.conftest import leave_one_out
from vlmtrain.metrics.bleu import bleu
from vlmtrain.metrics.caption import CAPTION_KEYS, caption_scores
from vlmtrain.metrics.cider import cider_d
from vlmtrain.metrics.meteor import MeteorNotInstalledError
from vlmtrain.metrics.rouge import rouge_l

pytestmark = pytest.mark.usefixtures("machine_meteor_index")



def _coco_pipeline(preds: list[str], refs: list[list[str]]) -> dict[str, float]:
    """pycocoevalcap's COCOEvalCap.evaluate without SPICE, on id-keyed dicts."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in r] for i, r in enumerate(refs)})
    res = tokenizer.tokenize({i: [{"caption": p}] for i, p in enumerate(preds)})
    out = dict(zip(CAPTION_KEYS[:4], Bleu(4).compute_score(gts, res, verbose=0)[0]))
    meteor = Meteor()
    out["meteor"] = meteor.compute_score(gts, res)[0]
    meteor.meteor_p.kill()
    meteor.meteor_p.wait()
    out["rouge_l"] = Rouge().compute_score(gts, res)[0]
    out["cider"] = Cider().compute_score(gts, res)[0]
    return out


@pytest.mark.java
def test_raw_captions_equal_pycocoevalcap_pipeline():
    preds, refs = leave_one_out(150)
    want = _coco_pipeline(preds, refs)
    got = caption_scores(preds, refs)
    assert list(got) == list(CAPTION_KEYS)
    assert got["meteor"] == want["meteor"]
    for key in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider"):
        assert got[key] == pytest.approx(want[key], abs=1e-9, rel=0), key


def test_ngram_metrics_equal_the_single_metric_functions():
    preds, refs = leave_one_out(200)
    got = caption_scores(preds, refs, metrics=("bleu", "rouge_l", "cider"))
    want = {**bleu(preds, refs), **rouge_l(preds, refs), **cider_d(preds, refs)}
    assert got == {k: want[k] for k in CAPTION_KEYS if k != "meteor"}


def test_worked_example():
    """Hand-worked in test_bleu / test_rouge / test_cider: BLEU-4 ~ 9.4e-13 (no bigram matches,
    only the 1e-15 smoothing), ROUGE-L 0.42509, CIDEr-D 0 on a one-image set."""
    got = caption_scores(["a dog leaps for a flying disc at the shore"],
                         [["a brown dog catches a frisbee on the beach"]],
                         metrics=("bleu_4", "rouge_l", "cider"))
    assert list(got) == ["bleu_4", "rouge_l", "cider"]
    assert got["bleu_4"] == pytest.approx(9.4e-13, rel=0.01)
    assert got["rouge_l"] == pytest.approx(0.42509, abs=5e-6)
    assert got["cider"] == 0.0


def test_single_keys_and_unknown_names():
    preds, refs = ["a dog runs"], [["a dog runs fast"]]
    assert list(caption_scores(preds, refs, metrics=("bleu_2",))) == ["bleu_2"]
    assert list(caption_scores(preds, refs, metrics="rouge_l")) == ["rouge_l"]
    with pytest.raises(ValueError, match="unknown metric 'spice'"):
        caption_scores(preds, refs, metrics=("spice",))
    with pytest.raises(ValueError, match="metrics is empty"):
        caption_scores(preds, refs, metrics=())


def test_inputs_are_checked_before_java_starts(monkeypatch):
    monkeypatch.setenv("VLMTRAIN_JAVA", "no-such-java-binary")
    with pytest.raises(ValueError, match=r"references\[1\] is empty"):
        caption_scores(["a", "b"], [["a"], []])
    with pytest.raises(MeteorNotInstalledError, match="Java runtime"):
        caption_scores(["a"], [["a"]])
    assert caption_scores(["a"], [["a"]], metrics=("cider",)) == {"cider": 0.0}
