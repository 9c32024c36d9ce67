"""Consecutive metric calls on the same captions share tokenization and encoding: same values as
from scratch, and a caller changing its lists afterwards gets fresh results."""

from __future__ import annotations

from tests.metrics.conftest import leave_one_out
from vlmtrain.metrics.functional._captions import (
    encode_set,
    forget_shared_sets,
    prepare_captions,
)
from vlmtrain.metrics.functional.bleu import bleu
from vlmtrain.metrics.functional.cider import cider_d
from vlmtrain.metrics.functional.rouge import rouge_l


def _scores(preds: list[str], refs: list[list[str]], fresh: bool) -> dict[str, float]:
    out = {}
    for fn in (bleu, rouge_l, cider_d):
        if fresh:
            forget_shared_sets()
        out.update(fn(preds, refs))
    return out


def test_shared_work_gives_the_values_of_fresh_work():
    preds, refs = leave_one_out(80)
    assert _scores(preds, refs, fresh=False) == _scores(preds, refs, fresh=True)
    tokens = prepare_captions(preds, refs, True, "t")
    assert encode_set(*tokens) is encode_set(list(tokens[0]), [list(r) for r in tokens[1]])


def test_changed_lists_are_not_served_from_the_memo():
    preds, refs = leave_one_out(40)
    before = _scores(preds, refs, fresh=False)
    preds[3], refs[5][0] = "a completely different caption", "another one"
    after = _scores(preds, refs, fresh=False)
    assert after == _scores(preds, refs, fresh=True) and after != before


def test_returned_lists_are_the_callers_own():
    preds, refs = leave_one_out(10)
    got_preds, got_refs = prepare_captions(preds, refs, True, "t")
    got_preds[0], got_refs[0][0] = "changed", "changed"
    again = prepare_captions(preds, refs, True, "t")
    assert again[0][0] != "changed" and again[1][0][0] != "changed"
