"""METEOR against pycocoevalcap 1.2 ``Meteor`` (the same jar): exactly equal numbers.

One pycocoevalcap JVM and one two-JVM vlmtrain scorer (paraphrase table restricted to the
captions of this module) serve the comparisons; the Meteor class adds one full-table JVM. The
error paths use a stand-in ``java`` and need no Java.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from tests.metrics.conftest import leave_one_out
from vlmtrain.metrics.functional.meteor import aggregate_stats, score_lines
from vlmtrain.metrics.meteor import (
    Meteor,
    MeteorJvmError,
    MeteorNotInstalledError,
    MeteorScorer,
    meteor,
)

HAND_CASES = [
    ("", ["a dog runs on the grass", "the dog is running"]),  # empty candidate
    ("a dog runs on the grass", ["a dog runs on the grass", "a cat"]),  # identical: 1 chunk
    ("dog", ["a dog runs on the grass"]),  # one word
    (" ".join(["a dog runs"] * 60), ["a dog runs on the grass", "dogs run"]),  # very long
    ("un café à zürich près du lac", ["un café près du lac à zürich", "東京 タワー の 夜景"]),
    ("a dog ||| runs  fast", ["a dog runs fast"]),  # pycocoevalcap's hypothesis cleaning
    ("the grass runs on a dog", ["a dog runs on the grass"]),  # all words match, many chunks
    ("dogs running", ["a dog runs"]),  # stem matches
    # The jar's -norm normaliser (ported to Python, the jar runs -lower): abbreviations, dots,
    # contractions, quotes, dashes, commas in numbers, case, Turkish and accented letters.
    ("It's the U.S. Army's dog...", ["The US army's dog.", "a dog -- running \u2013 fast"]),
    ("Mr. Smith's caf\u00e9, 1,000 cups", ["MR. SMITH 'S CAFE", "\u0130stanbul \u201cquoted\u201d"]),
    ("dog", ["a ||| dog"]),  # "|||" in a reference: the jar sees two references
    # Paraphrase matches (multi-word phrases) against the restricted table.
    ("a kid is jumping into the pool", ["a child leaps into the swimming pool", "kids jump"]),
    ("a big dog runs on the grass", ["a large dog is running on the lawn"]),
]
PERFECT = ["a dog runs", "two cats sleep"]


pytestmark = pytest.mark.usefixtures("machine_meteor_index")



@pytest.fixture(scope="module")
def coco():
    from pycocoevalcap.meteor.meteor import Meteor as CocoMeteor

    jvm = CocoMeteor()

    def score(preds: list[str], refs: list[list[str]]) -> float:
        gts = {i: list(r) for i, r in enumerate(refs)}
        res = {i: [p] for i, p in enumerate(preds)}
        return jvm.compute_score(gts, res)[0]

    yield score
    jvm.meteor_p.stdin.close()
    jvm.meteor_p.kill()
    jvm.meteor_p.wait()



@pytest.fixture(scope="module")
def scorer(flickr):
    """Two JVMs whose paraphrase table is restricted to the words of every caption scored here
    (pycocoevalcap loads the full table: equal values also check the restriction)."""
    preds = flickr[0] + [p for p, _ in HAND_CASES] + PERFECT
    refs = flickr[1] + [r for _, r in HAND_CASES] + [[p] for p in PERFECT]
    with MeteorScorer(jvms=2, restrict_to=(preds, refs)) as restricted:
        yield restricted


@pytest.mark.java
def test_flickr8k_subset_equals_pycocoevalcap(coco, scorer, flickr):
    preds, refs = flickr
    assert meteor(preds, refs, tokenize=False, scorer=scorer)["meteor"] == coco(preds, refs)


@pytest.mark.java
def test_hand_cases_equal_pycocoevalcap(coco, scorer):
    for pred, refs in HAND_CASES:  # one image each: the per-image rules of the aggregate
        got = meteor([pred], [refs], tokenize=False, scorer=scorer)["meteor"]
        assert got == coco([pred], [refs]), (pred, refs)
    preds, refs = [p for p, _ in HAND_CASES], [r for _, r in HAND_CASES]
    assert meteor(preds, refs, tokenize=False, scorer=scorer)["meteor"] == coco(preds, refs)
    # Two one-chunk perfect matches: the aggregate skips their chunks.
    perfect_refs = [[p] for p in PERFECT]
    assert meteor(PERFECT, perfect_refs, tokenize=False,
                  scorer=scorer)["meteor"] == coco(PERFECT, perfect_refs)


@pytest.mark.java
def test_restricted_scorer_refuses_captions_needing_other_paraphrases(scorer, coco):
    # "physician" / "doctor" is a paraphrase entry that no image of the restriction needs.
    with pytest.raises(ValueError, match="restricted to other captions"):
        scorer.score(["a physician"], [["a doctor"]])
    # New words that no paraphrase entry links: the restricted table serves them unchanged.
    assert scorer.score(["a zebra"], [["an okapi"]]) == coco(["a zebra"], [["an okapi"]])


@pytest.mark.java
def test_metric_in_batches_with_full_table_equals_restricted(scorer, flickr):
    """The Meteor class keeps a full-table JVM (any captions) across compute() calls."""
    preds, refs = leave_one_out(60)
    metric = Meteor()
    for lo in range(0, 60, 25):
        metric.update(preds[lo : lo + 25], refs[lo : lo + 25])
    got = metric.compute()
    assert list(got) == ["meteor"]
    assert got["meteor"].dtype == torch.float64
    assert metric.compute()["meteor"] == got["meteor"]  # the kept JVM, a second time
    assert float(got["meteor"]) == meteor(flickr[0][:60], flickr[1][:60], tokenize=False,
                                          scorer=scorer)["meteor"]


@pytest.mark.java
def test_metric_without_kept_jvm_equals_functional(scorer, flickr):
    """keep_jvm=False: a JVM per compute() with a table restricted to the stored captions."""
    preds, refs = leave_one_out(20)
    metric = Meteor(keep_jvm=False)
    metric.update(preds, refs)
    assert float(metric.compute()["meteor"]) == meteor(
        flickr[0][:20], flickr[1][:20], tokenize=False, scorer=scorer)["meteor"]


def test_aggregate_follows_meteor_stats_add_stats():
    """Fields are summed in order; the chunks of a one-chunk perfect match are not added."""
    perfect = "3.0 3.0 1.0 1.0 2.0 2.0 1.0 1.0" + " 0.0" * 12 + " 1.0 3.0 3.0"
    partial = "4.0 5.0 1.0 2.0 2.0 2.0 0.0 1.0 1.0 1.0" + " 0.0" * 10 + " 2.0 3.0 4.0"
    total = [float(x) for x in aggregate_stats([perfect, partial]).split()]
    want = [a + b for a, b in zip(map(float, perfect.split()), map(float, partial.split()))]
    want[20] = 2.0  # only the partial match's chunks
    assert total == want
    with pytest.raises(MeteorJvmError, match="image 1 with 'Error: x'"):
        aggregate_stats([perfect, "Error: x"])


def test_score_lines_clean_like_pycocoevalcap():
    lines = score_lines(["a |||  b\nc"], [["r1", "r 2"]])
    assert lines == ["SCORE ||| r1 ||| r 2 ||| a  b c"]


def _fake_java(tmp_path: Path, script: str) -> str:
    path = tmp_path / "java"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_jvm_crash_raises_with_its_stderr(tmp_path):
    java = _fake_java(tmp_path, "echo 'java.lang.OutOfMemoryError: Java heap space' >&2\nexit 3\n")
    with pytest.raises(MeteorJvmError, match=r"exit status 3.*OutOfMemoryError: Java heap space"):
        meteor(["a dog"], [["a dog runs"]], java=java)


def test_jvm_garbage_answer_raises(tmp_path):
    java = _fake_java(tmp_path, "while read line; do echo 'Error: specify SCORE'; done\n")
    with pytest.raises(MeteorJvmError, match="answered image 0 with 'Error: specify SCORE'"):
        meteor(["a dog"], [["a dog runs"]], java=java, tokenize=False)


def test_missing_java_names_what_to_install(monkeypatch):
    monkeypatch.delenv("VLMTRAIN_JAVA", raising=False)
    with pytest.raises(MeteorNotInstalledError, match="needs a Java runtime.*install"):
        meteor(["a dog"], [["a dog runs"]], java="no-such-java-binary")


def test_bad_inputs_fail_before_java_starts():
    with pytest.raises(ValueError, match=r"references\[0\] is empty"):
        meteor(["a dog"], [[]], java="no-such-java-binary")


def test_close_stops_the_jvms(tmp_path):
    java = _fake_java(tmp_path, "exec sleep 60\n")  # a JVM that never answers
    scorer = MeteorScorer(jvms=2, java=java)
    procs = [jvm._proc for jvm in scorer.jvms]
    with scorer:
        assert all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs)
    scorer.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        scorer.score(["a"], [["a"]])
    assert os.path.exists(java)


@pytest.mark.java
def test_table_through_a_file_equals_through_a_named_pipe(monkeypatch, flickr):
    """Where named pipes are missing the restricted table goes to a file first: same value."""
    import vlmtrain.metrics.functional.meteor as functional

    preds, refs = flickr[0][:40], flickr[1][:40]
    piped = meteor(preds, refs, tokenize=False, jvms=1)["meteor"]
    monkeypatch.setattr(functional, "_named_pipes", lambda folder, n: None)
    assert meteor(preds, refs, tokenize=False, jvms=1)["meteor"] == piped


def test_close_does_not_wait_for_a_jvm_that_never_reads_its_table(tmp_path):
    java = _fake_java(tmp_path, "exec sleep 60\n")  # never opens the pipe it was given
    scorer = MeteorScorer(jvms=2, java=java, restrict_to=(["a dog"], [["a dog runs"]]))
    procs = [jvm._proc for jvm in scorer.jvms]
    scorer.close()
    assert all(p.poll() is not None for p in procs)
