"""The paraphrase table of METEOR 1.5, parsed once into a cache, and the word keys and hashes
that the restriction in ``_meteor_table`` compares phrases with.

The cache (:func:`cache_dir`; built in 10-20 s with 2 GB of memory, once per machine and table)
holds the distinct phrase lines, the (first phrase, second phrase) pair of every entry in file
order, and a 64-bit hash of each phrase's word keys (:func:`word_key`), sorted for look-ups.

Why keys: the jar lower-cases text with Java's ``String.toLowerCase()``, whose result depends on
the JVM's default locale (Turkish maps "I" to dotless "ı") and on Java's own Unicode tables.
:func:`word_key` (case-folded, decomposed without combining marks, dotless i as i) maps a word and
every Java lower-casing of it to the same key; this was checked for every code point under the
default, Turkish, Azeri and Lithuanian locales of Java 17, and the tests check the Python side
for every code point. Equal keys are necessary for equal words, so comparing keys, and hashes of
key sequences (a collision merges two phrases), can only keep too much, never too little.
"""

from __future__ import annotations

import gc
import gzip
import logging
import os
import tempfile
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_log = logging.getLogger(__name__)
_CACHE_VERSION = "4"
_FILES = ("phrase_blob", "phrase_ptr", "entries", "hash_sorted", "hash_order", "max_words")
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: x -> x * M is a bijection modulo 2**64
_BYTE_BASE = np.uint64(0x100000001B3)


@dataclass(frozen=True)
class ParaphraseIndex:
    """The parsed table (arrays memory-mapped from the cache).

    Attributes:
        phrase_blob: ``(B,)`` uint8, the P distinct phrase lines, each ending with a newline.
        phrase_ptr: ``(P + 1,)`` int64 byte offsets of the lines in ``phrase_blob``.
        entries: ``(E, 2)`` int32 (first phrase, second phrase) of each entry, file order.
        hash_sorted: ``(P,)`` uint64 phrase hashes (:func:`sequence_hashes` of the words'
            :func:`key_hashes`), sorted.
        hash_order: ``(P,)`` int32 phrase id of each sorted hash.
        max_words: the most words in a phrase.
    """

    phrase_blob: np.ndarray
    phrase_ptr: np.ndarray
    entries: np.ndarray
    hash_sorted: np.ndarray
    hash_order: np.ndarray
    max_words: int


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


def load_index(table: Path) -> ParaphraseIndex | None:
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
    return ParaphraseIndex(max_words=int(loaded.pop("max_words")[0]), **loaded)


def _save(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent))  # write aside, then move: no torn caches
    for name, array in arrays.items():
        np.save(tmp / f"{name}.npy", array)
    for name in arrays:
        os.replace(tmp / f"{name}.npy", folder / f"{name}.npy")
    (folder / "done").touch()
    tmp.rmdir()


def word_key(word: str) -> str:
    """A key shared by ``word`` and every Java lower-casing of it (any locale).

    Case-folded, decomposed (NFD) without combining marks, dotless "ı" as "i": Java's
    ``toLowerCase`` may add or drop a combining dot (Lithuanian, Turkish), pick "ς" or "σ" for
    "Σ", or map "I" to "ı"; all of these fold to the same key.
    """
    if word.isascii():
        return word.lower()
    folded = unicodedata.normalize("NFD", word.casefold())
    return "".join(c for c in folded if not unicodedata.combining(c)).replace("\u0131", "i")


def key_hashes(words: Collection[str]) -> np.ndarray:
    """``(len(words),)`` uint64: a stable 64-bit hash of each word's :func:`word_key`.

    All words at once with numpy: a polynomial hash of each key's UTF-8 bytes (modulo 2**64),
    scrambled by the splitmix64 finaliser. Words hold no line break (they are whitespace-split).
    """
    words = list(words)
    text = "\n".join(words)
    if "\n" in "".join(words):
        raise ValueError("meteor: a word holds a line break")
    keys = text.lower() if text.isascii() else "\n".join(map(word_key, words))
    data = np.frombuffer(keys.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    ends = np.append(np.flatnonzero(data == 10), len(data))
    starts = np.concatenate(([0], ends[:-1] + 1))
    end_of = np.repeat(ends, ends - starts + 1)[: len(data)]  # the separator goes with its word
    powers = _BYTE_BASE ** np.arange(int((ends - starts).max(initial=0)) + 1, dtype=np.uint64)
    weighted = np.where(data == 10, np.uint64(0),
                        data * powers[np.maximum(end_of - 1 - np.arange(len(data)), 0)])
    sums = np.add.reduceat(weighted, starts) if len(data) else np.zeros(len(words), np.uint64)
    sums[ends == starts] = 0  # reduceat gives the next element for an empty range
    return _splitmix(sums + (ends - starts).astype(np.uint64))


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def ngram_hashes(
    tokens: np.ndarray, lengths: np.ndarray, max_n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Polynomial hashes (modulo 2**64) of every contiguous 1..max_n-gram of word sequences.

    The hash of words ``x1..xn`` is ``(..((x1 * M + x2) * M + x3)..) * M + xn``, the same as
    :func:`sequence_hashes` gives the whole sequence ``x1..xn``.

    Args:
        tokens: ``(T,)`` uint64 word hashes, sequence after sequence.
        lengths: ``(S,)`` int64 words per sequence.
        max_n: longest n-gram.

    Returns:
        ``(hashes, sequence)``: ``(G,)`` uint64, one hash per n-gram occurrence, and ``(G,)``
        int64 the sequence it occurs in.
    """
    owner = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    remaining = np.repeat(np.cumsum(lengths), lengths) - np.arange(len(tokens), dtype=np.int64)
    pos = np.arange(len(tokens), dtype=np.int64)
    current = tokens.copy()
    hashes, sequence = [current], [owner]
    for k in range(2, max_n + 1):
        keep = remaining[pos] >= k
        pos = pos[keep]
        if len(pos) == 0:
            break
        current = current[keep] * _MULTIPLIER + tokens[pos + k - 1]
        hashes.append(current)
        sequence.append(owner[pos])
    return np.concatenate(hashes), np.concatenate(sequence)


def sequence_hashes(tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``(S,)`` uint64: the :func:`ngram_hashes` hash of each whole sequence (0 if empty)."""
    starts = np.cumsum(lengths) - lengths
    result = np.zeros(len(lengths), dtype=np.uint64)
    for k in range(int(lengths.max(initial=0))):
        active = np.flatnonzero(lengths > k)
        result[active] = result[active] * _MULTIPLIER + tokens[starts[active] + k]
    return result


def _parse(table: Path) -> dict[str, np.ndarray] | None:
    """Distinct phrases, their hashes and the entries of a ``prob\\nphrase\\nphrase\\n`` table."""
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
    del phrases
    hashes = _phrase_hashes(blob)
    if hashes is None:
        return None
    phrase_hash, max_words = hashes
    order = np.argsort(phrase_hash, kind="stable").astype(np.int32)
    lengths = np.diff(np.concatenate(([-1], np.flatnonzero(
        np.frombuffer(blob, dtype=np.uint8) == 10))))  # each line with its newline
    return {
        "phrase_blob": np.frombuffer(blob, dtype=np.uint8),
        "phrase_ptr": _ptr(lengths),
        "entries": entries,
        "hash_sorted": phrase_hash[order],
        "hash_order": order,
        "max_words": np.array([max_words], dtype=np.int64),
    }


def _phrase_hashes(blob: bytes) -> tuple[np.ndarray, int] | None:
    """:func:`sequence_hashes` of each phrase line's words; None if the jar would read the
    words differently (not single-space separated, empty phrase, or not UTF-8)."""
    if b"  " in blob or b" \n" in blob or b"\n " in blob or blob.startswith((b" ", b"\n")):
        return None
    if b"\n\n" in blob:
        return None  # an empty phrase matches everywhere: keep the full table
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        return None  # Java's replacement characters are not reproduced here
    lines = text.split("\n")[:-1]
    words = " ".join(lines).split(" ")  # StringTokenizer: single spaces here (checked above)
    vocab = dict.fromkeys(words)
    word_hash = dict(zip(vocab, key_hashes(vocab).tolist()))
    tokens = np.fromiter(map(word_hash.__getitem__, words), dtype=np.uint64, count=len(words))
    lengths = np.fromiter((line.count(" ") + 1 for line in lines), dtype=np.int64,
                          count=len(lines))
    if lengths.sum() != len(tokens):
        return None
    return sequence_hashes(tokens, lengths), int(lengths.max(initial=0))


def _ptr(lengths: np.ndarray) -> np.ndarray:
    ptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    return ptr
