"""Shared data and fixtures of the metric tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

FLICKR_300 = Path(__file__).parent / "data" / "flickr8k_300.jsonl"


def leave_one_out(n: int = 300) -> tuple[list[str], list[list[str]]]:
    """First ``n`` Flickr8k images: candidate = caption 0, references = captions 1-4."""
    rows = [json.loads(line) for line in FLICKR_300.open(encoding="utf-8")][:n]
    return [r["captions"][0] for r in rows], [r["captions"][1:] for r in rows]


@pytest.fixture(scope="session")
def flickr() -> tuple[list[str], list[list[str]]]:
    """The 300-image leave-one-out set, PTB-tokenized (as pycocoevalcap scores it)."""
    from vlmtrain.metrics.ptb import tokenize, tokenize_groups

    preds, refs = leave_one_out()
    return tokenize(preds), tokenize_groups(refs)


@pytest.fixture(scope="module")
def machine_meteor_index():
    """Reuse the machine's METEOR paraphrase index (it only mirrors the jar's table) instead of
    building it (10-20 s, 2 GB) in each test session's temporary cache."""
    patch = pytest.MonkeyPatch()
    default = Path.home() / ".cache" / "vlmtrain" / "meteor"
    patch.setenv("VLMTRAIN_METEOR_CACHE", os.environ.get("VLMTRAIN_METEOR_CACHE") or str(default))
    yield
    patch.undo()
