"""The paraphrase-table restriction on a small table: the kept entries are exactly (ASCII words)
or at least (other scripts: case-folded keys) those with one phrase occurring contiguously in an
image's hypothesis and the other in one of its references, in file order. Equality of METEOR
with the full table is checked in test_meteor.py."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from vlmtrain.metrics.functional._meteor_index import index_ready, load_index
from vlmtrain.metrics.functional._meteor_table import restrict

ENTRIES = [
    ("big dog", "large dog"), ("dog", "hound"), ("large dog", "big dog"), ("runs", "is running"),
    ("is running", "runs"), ("red shirt", "crimson shirt"), ("shirt", "top"), ("a", "an"),
    ("the grass", "the lawn"), ("grass the", "lawn"), ("on the grass", "on the lawn"),
    ("caf\u00e9", "coffee shop"), ("coffee shop", "caf\u00e9"), ("dog runs", "canine runs"),
    ("\u0131stanbul", "city"), ("city", "istanbul"), ("dog", "hound"),  # a repeated entry
    ("man", "lawn"),  # both phrases occur, but in different images
    ("a big dog runs on the grass today", "x"),  # longer than any sentence
]
# Per image: references, then the hypothesis (as normalize_score_lines groups them).
GROUPS = [
    ["the large dog is running", "a hound on the lawn", "a big dog runs on the grass"],
    ["a man in a RED shirt", "Caf\u00e9 au lait", "a coffee shop"],
    ["ISTANBUL city", "a city"],
    ["only one field"],  # the jar aligns nothing here
    ["", ""],
]


def _write_table(path: Path, entries: list[tuple[str, str]]) -> None:
    text = "".join(f"0.5\n{a}\n{b}\n" for a, b in entries)
    path.write_bytes(gzip.compress(text.encode("utf-8")))


def _read_table(data: bytes) -> list[tuple[str, str]]:
    lines = gzip.decompress(data).decode("utf-8").split("\n")[:-1]
    return list(zip(lines[1::3], lines[2::3]))


def _in(phrase: str, sentence: str) -> bool:
    words, tokens = phrase.split(" "), sentence.lower().split()
    return any(tokens[i : i + len(words)] == words for i in range(len(tokens)))


def _can_match(entry: tuple[str, str], groups: list[list[str]]) -> bool:
    for group in groups:
        if len(group) < 2:
            continue
        hyp, refs = group[-1], group[:-1]
        for a, b in (entry, entry[::-1]):
            if _in(a, hyp) and any(_in(b, ref) for ref in refs):
                return True
    return False


@pytest.fixture()
def table(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VLMTRAIN_METEOR_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "paraphrase-en.gz"
    _write_table(path, ENTRIES)
    return path


def test_restriction_keeps_the_entries_that_can_match(table):
    assert not index_ready(table)
    restriction = restrict(table, GROUPS)
    assert index_ready(table) and load_index(table).max_words == 8
    kept = _read_table(restriction.data)
    exact = [e for e in ENTRIES if _can_match(e, GROUPS)]
    # Dotless "ı" shares the key of "i" (Java lower-cases "I" to "ı" in a Turkish locale): that
    # entry is kept as well, a safe over-approximation.
    assert kept == [e for e in ENTRIES if e in exact or e == ("\u0131stanbul", "city")]
    assert ("big dog", "large dog") in kept and ("dog", "hound") in kept
    assert ("caf\u00e9", "coffee shop") in kept and ("coffee shop", "caf\u00e9") in kept
    assert ("grass the", "lawn") not in kept  # words present, not contiguous
    assert ("man", "lawn") not in kept  # phrases in different images
    assert ("red shirt", "crimson shirt") not in kept


def test_restriction_keeps_file_order_and_repeats(table):
    restriction = restrict(table, [["a hound", "a dog"]])
    assert _read_table(restriction.data) == [("dog", "hound"), ("dog", "hound")]


def test_other_sets_are_covered_only_when_their_entries_are_kept(table):
    restriction = restrict(table, GROUPS)
    assert restriction.covers([["a large dog", "the BIG dog"]])
    assert restriction.covers([["no paraphrase here", "none"]])
    assert not restriction.covers([["a hound", "a man"], ["the lawn", "a man"]])


def test_unparsable_table_means_full_table(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMTRAIN_METEOR_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"0.5\nbig\tdog\nlarge dog\n"))  # Java splits at the tab
    assert load_index(path) is None
    assert restrict(path, [["big dog", "large dog"]]) is None
