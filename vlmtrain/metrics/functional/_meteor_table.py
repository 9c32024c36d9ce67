"""METEOR's paraphrase table restricted to the words of the evaluated set: same matches, 3x faster
start.

Loading ``data/paraphrase-en.gz`` (5.3 M entries, 272 MB of text) is about half of a METEOR run
on a few thousand captions. In METEOR 1.5 the table is used by one module only
(``ParaphraseMatcher``): for each position of one sentence it walks a trie of the entries' first
phrases along the sentence's words, and for every entry found there it looks for the entry's
second phrase, word for word, in the other sentence. An entry with a word that occurs in neither
sentence can therefore never produce a match, and dropping it changes nothing else: the entries
found at a trie node keep their file order (the matcher appends matches in that order), and word
ids are only compared for equality. So a table holding only the entries whose words all occur in
the evaluated set gives exactly the same statistics; the tests (300 Flickr8k images and edge
cases) and ``scripts/bench_metrics.py`` (8,092 images) compare with pycocoevalcap (full table).

"Words of the set" must include every token the jar builds with ``-norm`` (normalise, then
lower-case, then split on whitespace). Its normaliser only splits tokens, rewrites quotes and
dashes, and drops dots inside abbreviations ("U.S." -> "us"), so each of its tokens is a substring
of a whitespace token of the lower-cased, quote/dash-normalised text, or of that token without
dots: every such substring (up to the longest table word) counts as a word of the set. This
over-approximation keeps about a quarter of the table on Flickr8k.

The table is parsed once into a cache (:func:`cache_dir`; 170 MB, 10-20 s and 2 GB of memory
once); each evaluation then writes its restricted table (~1 s) to a temporary file.
"""

from __future__ import annotations

import gc
import gzip
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_log = logging.getLogger(__name__)
_CACHE_VERSION = "2"
_FILES = ("phrase_blob", "phrase_ptr", "word_ids", "word_ptr", "entries", "words_blob",
          "words_ptr")
# The jar splits table lines and sentences with java.util.StringTokenizer: these 5 characters.
_JAVA_SPACE = re.compile(r"[ \t\n\r\f]+")
# Normaliser rewrites applied before tokens are cut (Normalizer.normalizeLine, same order).
_REWRITES = (("`", "'"), ("\u2018", "'"), ("\u2019", "'"), ("\u201c", ' " '), ("\u201d", ' " '),
             ("''", ' " '), ("\u2013", "-"), ("--", "-"))


@dataclass(frozen=True)
class ParaphraseTable:
    """The parsed table (arrays may be memory-mapped).

    Attributes:
        phrase_blob: ``(B,)`` uint8, the distinct phrase lines, each ending with a newline.
        phrase_ptr: ``(P + 1,)`` int64 byte offsets of the P lines in ``phrase_blob``.
        word_ids: ``(W,)`` int32 word ids of every phrase, phrase after phrase.
        word_ptr: ``(P + 1,)`` int64 offsets of each phrase's words in ``word_ids``.
        entries: ``(E, 2)`` int32 (first phrase, second phrase) of each entry, file order.
        words: the V distinct words (decoded as UTF-8).
    """

    phrase_blob: np.ndarray
    phrase_ptr: np.ndarray
    word_ids: np.ndarray
    word_ptr: np.ndarray
    entries: np.ndarray
    words: list[str]

    @property
    def max_word_length(self) -> int:
        return max(map(len, self.words), default=0)


def cache_dir() -> Path:
    """``$VLMTRAIN_METEOR_CACHE``, else ``$VLMTRAIN_CACHE/meteor``, else
    ``~/.cache/vlmtrain/meteor``. The index only mirrors the jar's table (keyed by its size and
    date), so one folder can serve every run and user of a machine."""
    if os.environ.get("VLMTRAIN_METEOR_CACHE"):
        return Path(os.environ["VLMTRAIN_METEOR_CACHE"]).expanduser()
    root = os.environ.get("VLMTRAIN_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "vlmtrain") / "meteor"


def _index_folder(table: Path) -> Path:
    stat = table.stat()
    return cache_dir() / f"paraphrase-v{_CACHE_VERSION}-{stat.st_size}-{int(stat.st_mtime)}"


def index_ready(table: Path) -> bool:
    """Whether the cached index of ``table`` exists (no build needed)."""
    return (_index_folder(table) / "done").exists()


def load_table(table: Path) -> ParaphraseTable | None:
    """The parsed ``table``, from the cache (built on first use); None if it cannot be parsed
    the way the jar reads it (then the full table must be used)."""
    folder = _index_folder(table)
    if not (folder / "done").exists():
        _log.warning("meteor: indexing the paraphrase table once into %s (about 20 s, 2 GB of "
                     "memory; later runs reuse it)", folder)
        arrays = _parse(table)
        if arrays is None:
            return None
        _save(folder, arrays)
    loaded = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in _FILES}
    blob, ptr = bytes(loaded.pop("words_blob")), loaded.pop("words_ptr")
    words = [blob[ptr[i] : ptr[i + 1]].decode("utf-8", "replace") for i in range(len(ptr) - 1)]
    return ParaphraseTable(words=words, **loaded)


def _save(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent))  # write aside, then move: no torn caches
    for name, array in arrays.items():
        np.save(tmp / f"{name}.npy", array)
    for name in arrays:
        os.replace(tmp / f"{name}.npy", folder / f"{name}.npy")
    (folder / "done").touch()
    tmp.rmdir()


def _parse(table: Path) -> dict[str, np.ndarray] | None:
    """Distinct phrases, their word ids and the entries of a ``prob\nphrase\nphrase\n`` table."""
    data = gzip.decompress(table.read_bytes())
    if any(c in data for c in (b"\r", b"\t", b"\x0b", b"\x0c")):
        return None  # Java would cut these lines or words differently from the splits below
    enabled = gc.isenabled()
    gc.disable()  # millions of new objects, no cycles: the collector would only rescan them
    try:
        return _parse_lines(data)
    finally:
        if enabled:
            gc.enable()


def _parse_lines(data: bytes) -> dict[str, np.ndarray] | None:
    lines = data.split(b"\n")
    del data
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) % 3:
        return None
    pair_lines = lines[1::3] + lines[2::3]  # first phrases, then second phrases
    del lines
    phrase_of = dict.fromkeys(pair_lines)
    for i, phrase in enumerate(phrase_of):
        phrase_of[phrase] = i
    ids = np.fromiter(map(phrase_of.__getitem__, pair_lines), dtype=np.int32,
                      count=len(pair_lines))
    entries = np.stack([ids[: len(ids) // 2], ids[len(ids) // 2 :]], axis=1)
    phrases = list(phrase_of)
    del phrase_of, pair_lines, ids
    blob = b"\n".join(phrases) + b"\n"
    lengths = np.fromiter(map(len, phrases), dtype=np.int64, count=len(phrases))
    del phrases
    if b"  " in blob or b" \n" in blob or b"\n " in blob or blob.startswith(b" "):
        return None  # words separated by single spaces only: counted below without splitting
    words = blob.split()
    vocab = dict.fromkeys(words)
    for i, word in enumerate(vocab):
        vocab[word] = i
    word_ids = np.fromiter(map(vocab.__getitem__, words), dtype=np.int32, count=len(words))
    phrase_ptr = _ptr(lengths + 1)
    spaces = np.concatenate([[0], np.cumsum(np.frombuffer(blob, dtype=np.uint8) == 32)])
    counts = np.where(lengths > 0, spaces[phrase_ptr[1:]] - spaces[phrase_ptr[:-1]] + 1, 0)
    if counts.sum() != len(word_ids):
        return None
    vocab_words = list(vocab)
    return {
        "phrase_blob": np.frombuffer(blob, dtype=np.uint8),
        "phrase_ptr": phrase_ptr,
        "word_ids": word_ids,
        "word_ptr": _ptr(counts),
        "entries": entries,
        "words_blob": np.frombuffer(b"".join(vocab_words), dtype=np.uint8),
        "words_ptr": _ptr(np.fromiter(map(len, vocab_words), dtype=np.int64,
                                      count=len(vocab_words))),
    }


def _ptr(lengths: np.ndarray) -> np.ndarray:
    ptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    return ptr


def coarse_tokens(texts: list[str]) -> set[str]:
    """Lower-cased, quote/dash-normalised tokens of ``texts`` cut at Java whitespace only.

    Every token the jar's ``-norm`` makes is a substring of one of these, or of one of these
    without its dots (see the module docstring).
    """
    text = "\n".join(texts)
    tokens: set[str] = set()
    for variant in {text.lower(), text.casefold()}:
        for old, new in _REWRITES:
            variant = variant.replace(old, new)
        tokens.update(_JAVA_SPACE.split(variant))
    tokens.discard("")
    return tokens


def set_words(tokens: set[str], max_length: int) -> set[str]:
    """Every substring (up to ``max_length`` characters) of the tokens and their dotless forms."""
    tokens = tokens | {t.replace(".", "") for t in tokens if "." in t}
    words: set[str] = set()
    for token in tokens:
        n = len(token)
        for start in range(n):
            words.update(token[start:end] for end in range(start + 1, min(n, start + max_length)
                                                           + 1))
    return words


def write_restricted(table: ParaphraseTable, tokens: set[str], path: Path) -> int:
    """Write the entries whose words all occur in the texts (file order) as a gzip table.

    Args:
        table: the full table.
        tokens: :func:`coarse_tokens` of every string the jar will score.
        path: output file.

    Returns:
        The number of entries written.
    """
    allowed = set_words(tokens, table.max_word_length)
    word_ok = np.fromiter((w in allowed for w in table.words), dtype=bool, count=len(table.words))
    missing = np.concatenate([[0], np.cumsum(~word_ok[table.word_ids])])
    phrase_ok = missing[table.word_ptr[1:]] == missing[table.word_ptr[:-1]]  # no missing word
    keep = np.flatnonzero(phrase_ok[table.entries[:, 0]] & phrase_ok[table.entries[:, 1]])
    with open(path, "wb") as f:  # stored (level 0): the jar inflates it at once
        f.write(gzip.compress(_entry_lines(table, keep), compresslevel=0, mtime=0))
    return len(keep)


def _entry_lines(table: ParaphraseTable, keep: np.ndarray, chunk: int = 1 << 16) -> bytes:
    """``0\n<first phrase>\n<second phrase>\n`` for each kept entry, gathered with numpy.

    The jar reads (and ignores) a probability line before each pair. Every entry is three byte
    ranges of ``source`` (``"0\n"`` followed by the phrase lines), copied by one fancy index per
    chunk of entries (the index array would be 8 bytes per output byte for all at once).
    """
    source = np.concatenate([np.frombuffer(b"0\n", dtype=np.uint8), table.phrase_blob])
    ptr = table.phrase_ptr + 2
    out = []
    for lo in range(0, len(keep), chunk):
        pairs = table.entries[keep[lo : lo + chunk]]
        starts = np.stack([np.zeros(len(pairs), np.int64), ptr[pairs[:, 0]], ptr[pairs[:, 1]]],
                          axis=1).ravel()
        lengths = np.stack([np.full(len(pairs), 2, np.int64),
                            ptr[pairs[:, 0] + 1] - ptr[pairs[:, 0]],
                            ptr[pairs[:, 1] + 1] - ptr[pairs[:, 1]]], axis=1).ravel()
        ends = np.cumsum(lengths)
        index = np.repeat(starts - (ends - lengths), lengths) + np.arange(ends[-1])
        out.append(source[index].tobytes())
    return b"".join(out)
