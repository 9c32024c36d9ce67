"""METEOR's ``-norm`` normaliser (Python port) against the jar's own ``Normalizer``, and the
case-folding key that the paraphrase restriction compares words with."""

from __future__ import annotations

import random
import subprocess
import unicodedata

import pytest

from tests.metrics.conftest import leave_one_out
from vlmtrain.metrics.functional._meteor_index import word_key
from vlmtrain.metrics.functional._meteor_jvm import METEOR_JAR, locate_meteor
from vlmtrain.metrics.functional._meteor_norm import (
    nonbreaking_prefixes,
    normalize_lines,
    normalize_score_lines,
    score_lines,
)

# Every rule of the normaliser, its trigger characters and the ways they interact.
HARD_CASES = [
    "", " ", "a", ".", "..", "...", "a.", "A.", "U.S.", "U.S.-based firm", "e.g. this", "Mr. Smith",
    "No. 5", "No. five", "pp. 12", "Art. 3", "He is 6 ft. tall.", "end of line.", "tail. Next",
    "dots... and....more", "a . . b", "DOTMULTI", "DOTDOTMULTI.", "x DOTMULTI. y", "1,000,000",
    "a,b,c", "1,a", "a,1", "it's", "dogs' toys", "'quoted'", "''double''", "1990's", "rock 'n' roll",
    "`tick`", "\u2018single\u2019", "\u201cdouble\u201d", "en\u2013dash", "a--b", "a---b",
    "well-known", "-lead", "trail-", "3-4", "U.S.-made", "caf\u00e9's", "\u0416\u0443\u043a's",
    "tab\tsep", "form\x0cfeed", "vt\x0bchar", "nb\u00a0sp", "em\u2003sp", "ideo\u3000sp",
    "a  b   c", "  padded  ", "$5.00!", "(paren) [br] {cu}", "a|b||c", "\U0001F600 emoji",
    "\u0130stanbul I\u0307 DOTMULTI..", "\x1f ctl \x1c", "x' y", "'s", "O'Neil", "l'avion",
]


def _jar_normalize(lines: list[str]) -> list[str]:
    """The jar's ``Normalizer.main`` (English, keep punctuation), read and written as UTF-8."""
    install = locate_meteor()
    proc = subprocess.run(
        [install.java, "-Dfile.encoding=UTF-8", "-Dsun.stdout.encoding=UTF-8",
         "-Dstdout.encoding=UTF-8", "-cp", str(install.jar_dir / METEOR_JAR),
         "edu.cmu.meteor.util.Normalizer", "en", "true"],
        input=("\n".join(lines) + "\n").encode("utf-8"), capture_output=True, check=True,
        timeout=120)
    out = proc.stdout.decode("utf-8").split("\n")
    assert out[-1] == "" and len(out) == len(lines) + 1, proc.stderr[-500:]
    return out[:-1]


def _fuzz(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = list("aAbZ zI.,'`-\u2013\u2014\u2018\u2019\u201c\u201d\"0129 ()|!?;:&$%\t\x0b\x0c"
                    "\x1f\u00a0\u2003\u3000\u00e9\u00c0\u00df\u0160\u017e\u0416\u044f\ua640"
                    "\u1d00\u03a3\u03c2\u65e5\U0001F600\u0130\u0131") + [
        "DOTMULTI", "DOTDOTMULTI", "U.S.", "Mr.", "No.", "pp.", "...", "''", "--", "s"]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25))) for _ in range(n)]


@pytest.fixture(scope="module")
def prefixes() -> dict[str, int]:
    return nonbreaking_prefixes(locate_meteor().jar_dir / METEOR_JAR)


@pytest.mark.java
def test_normalizer_equals_the_jar(prefixes, flickr):
    raw_preds, raw_refs = leave_one_out()
    lines = (HARD_CASES + raw_preds + [r for refs in raw_refs for r in refs] + flickr[0]
             + [r for refs in flickr[1] for r in refs] + _fuzz(20_000, seed=0))
    got = normalize_lines(lines, prefixes)
    want = _jar_normalize(lines)
    bad = [(line, g, w) for line, g, w in zip(lines, got, want) if g != w]
    assert not bad, bad[:5]


def test_prefixes_come_from_the_jar(prefixes):
    assert prefixes["Mr"] == 1 and prefixes["No"] == 2 and prefixes["pp"] == 2
    assert "#NUMERIC_ONLY#" not in prefixes and len(prefixes) > 90


def test_score_lines_keep_the_jars_fields(prefixes):
    """Fields are split and trimmed as the jar does, then normalised; "|||" inside a reference
    makes two references for the jar, so it does here too."""
    raw = score_lines(["It's the U.S.", ""], [["a |||b", " Mr. X "], ["dogs..."]])
    lines, groups = normalize_score_lines(raw, prefixes)
    assert lines == ["SCORE ||| a ||| b ||| Mr. X ||| It 's the US", "SCORE ||| dogs ... ||| "]
    assert groups == [["a", "b", "Mr. X", "It 's the US"], ["dogs ...", ""]]
    assert normalize_score_lines(["SCORE ||| only"], prefixes) == (["SCORE ||| only"], [[]])


def test_line_breaks_are_refused(prefixes):
    with pytest.raises(ValueError, match="line break"):
        normalize_lines(["a\nb"], prefixes)


def test_word_key_is_shared_by_every_lower_casing():
    """Java's ``toLowerCase`` of a character gives Python's ``lower()`` or leaves it (older
    Unicode tables), plus the locale- and context-dependent forms below: all share a key.
    (Checked once against Java 17 for every code point under the default, Turkish, Azeri and
    Lithuanian locales.)"""
    for cp in range(0x110000):  # ~2 s
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        assert word_key(c.lower()) == word_key(c), hex(cp)
    special = {"I": ["\u0131", "i\u0307", "i"], "\u0130": ["i", "i\u0307"], "J": ["j\u0307"],
               "\u012e": ["\u012f\u0307"], "\u00cc": ["i\u0307\u0300"], "\u00cd": ["i\u0307\u0301"],
               "\u0128": ["i\u0307\u0303"], "\u03a3": ["\u03c2", "\u03c3"], "I\u0307": ["i"],
               "CAF\u00c9": ["caf\u00e9", "cafe\u0301"], "\u1e9e": ["\u00df", "ss"]}
    for word, lowered in special.items():
        for form in lowered:
            assert word_key(form) == word_key(word), (word, form)
    assert word_key("Dog") == "dog" and unicodedata.is_normalized("NFD", word_key("\u00c9t\u00e9"))
