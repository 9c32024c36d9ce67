"""METEOR's paraphrase table restricted to the entries that can match in the evaluated set: same
matches, tiny table.

Loading ``data/paraphrase-en.gz`` (5.3 M entries, 272 MB of text) costs a METEOR JVM ~15 s, and
every entry that the trie walk reaches is compared with the other sentence word by word. In
METEOR 1.5 the table is used by one module only, ``ParaphraseMatcher.match`` (read from the
jar's bytecode): for each position of one sentence of a (hypothesis, reference) pair it walks a
trie of the entries' first phrases along the sentence's words (``getReferencePaths``), and for
every entry found it compares the entry's second phrase word for word with the other sentence at
every position; then the same with the two sentences swapped. So an entry can only produce a
match when one of its phrases occurs contiguously in the hypothesis of an image and the other
contiguously in one of that image's references. Keeping exactly the entries for which some image
has that keeps every entry that can match, and dropping the others changes nothing else: the
entries found at a trie node keep their file order (the matcher appends matches in that order),
and word ids are only compared for equality. On Flickr8k (8,092 images) this keeps ~3,700 of the
5.3 million entries: the JVM loads them in a blink and the paraphrase stage scans far fewer
candidates (~15% less CPU for the whole scoring than keeping every entry whose phrases both
occur somewhere in the set, ~36,000).

The sentences' words are those the jar builds with ``-lower``: the normalised fields
(``_meteor_norm``, the strings ``-norm`` would produce), lower-cased by Java and split by
``StringTokenizer``; phrases are compared through word keys and hashes that can only keep too
much (``_meteor_index``). The tests compare with pycocoevalcap (full table) on Flickr8k subsets
and hard cases, and with a brute-force selection on a small table; ``scripts/bench_metrics.py``
compares all 8,092 images.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path
from typing import NamedTuple

import numpy as np

from vlmtrain.metrics.functional._meteor_index import (
    ParaphraseIndex,
    key_hashes,
    load_index,
    ngram_hashes,
)

_log = logging.getLogger(__name__)
_BITMAP_BITS = 22  # 4 M flags (4 MB): few n-gram hashes share low bits with a phrase by chance
_BITMAP_MASK = np.uint64((1 << _BITMAP_BITS) - 1)


class Restriction(NamedTuple):
    """A restricted table and the entries it holds.

    Attributes:
        data: the restricted table, gzip bytes as the jar reads them.
        table: the full table it was cut from.
        entries: ``(K,)`` sorted int64 indices of the kept entries in the full table: another
            set may be scored with this table when the entries it needs are among these.
    """

    data: bytes
    table: Path
    entries: np.ndarray

    def covers(self, groups: Sequence[Sequence[str]]) -> bool:
        """Whether every entry that can match in ``groups`` (see :func:`needed_entries`) is kept."""
        index = load_index(self.table)
        if index is None:
            return False
        needed = needed_entries(index, groups)
        at = np.searchsorted(self.entries, needed)
        return bool(np.all(at < len(self.entries))
                    and np.array_equal(self.entries[np.minimum(at, len(self.entries) - 1)],
                                       needed))


def restrict(table: Path, groups: Sequence[Sequence[str]]) -> Restriction | None:
    """``table`` restricted to the entries that can match in ``groups``.

    Args:
        table: the jar's full table.
        groups: per image, the normalised fields of its ``SCORE`` line: references first, the
            hypothesis last (``_meteor_norm.normalize_score_lines``).

    Returns:
        The restriction; None if the table cannot be parsed the way the jar reads it or the
        index cannot be cached (then the full table must be used).
    """
    try:
        index = load_index(table)
    except OSError as err:
        _log.warning("meteor: using the full paraphrase table (%s)", err)
        return None
    if index is None:
        return None
    keep = needed_entries(index, groups)
    # Stored (level 0): the jar inflates it at once.
    return Restriction(gzip.compress(_entry_lines(index, keep), compresslevel=0, mtime=0), table,
                       keep)


def needed_entries(index: ParaphraseIndex, groups: Sequence[Sequence[str]]) -> np.ndarray:
    """Entries with one phrase in an image's hypothesis and the other in one of its references.

    Args:
        index: the full table.
        groups: per image, normalised fields (references, then the hypothesis); an image with
            fewer than two fields aligns nothing.

    Returns:
        ``(K,)`` sorted int64 entry indices (file order).
    """
    sentences, image, is_hyp = _flatten(groups)
    phrase, where = _phrases_in(index, sentences)
    n_phrases = np.int64(len(index.hash_order))
    keys = image[where] * n_phrases + phrase
    hyp = _unique(keys[is_hyp[where]])
    ref = _unique(keys[~is_hyp[where]])
    present = np.zeros(len(index.hash_order), dtype=bool)
    present[phrase] = True
    entries = index.entries
    candidates = np.flatnonzero(present[entries[:, 0]] & present[entries[:, 1]])
    first = entries[candidates, 0].astype(np.int64)
    second = entries[candidates, 1].astype(np.int64)
    found = [_pairs_found(hyp, ref, first, second, n_phrases),  # first phrase in the hypothesis
             _pairs_found(hyp, ref, second, first, n_phrases)]  # second phrase in the hypothesis
    return candidates[np.flatnonzero(found[0] | found[1])].astype(np.int64)


def _flatten(groups: Sequence[Sequence[str]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Sentences of the images that align something, their image and whether each is a
    hypothesis."""
    aligned = [g for g in groups if len(g) >= 2]
    sizes = np.fromiter(map(len, aligned), dtype=np.int64, count=len(aligned))
    image = np.repeat(np.arange(len(aligned), dtype=np.int64), sizes)
    is_hyp = np.zeros(int(sizes.sum()), dtype=bool)
    is_hyp[np.cumsum(sizes) - 1] = True
    return [s for g in aligned for s in g], image, is_hyp


def _phrases_in(index: ParaphraseIndex, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every (table phrase, sentence) pair where the phrase hashes like an n-gram of the sentence.

    Returns:
        ``(phrase, sentence)``: ``(H,)`` int64 phrase ids and ``(H,)`` int64 sentence indices.
    """
    nonempty = [s for s in sentences if s]
    flat = " ".join(nonempty).split(" ") if nonempty else []
    lengths = np.fromiter(map(str.count, sentences, repeat(" ")), dtype=np.int64,
                          count=len(sentences)) + 1
    lengths[np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences)) == 0] = 0
    if int(lengths.sum()) != len(flat):
        raise ValueError("meteor: normalised sentences must be single-space separated")
    vocab = dict.fromkeys(flat)
    word_hash = dict(zip(vocab, key_hashes(vocab).tolist()))
    tokens = np.fromiter(map(word_hash.__getitem__, flat), dtype=np.uint64, count=len(flat))
    hashes, sentence = ngram_hashes(tokens, lengths, index.max_words)
    # Distinct hashes first (sorted queries walk the large table once), then the occurrences
    # of those found, looked up among the few found (a small array that stays in cache).
    table = index.hash_sorted
    distinct = _unique(hashes)
    lo = np.searchsorted(table, distinct)
    hit = lo < len(table)
    hit[hit] = table[lo[hit]] == distinct[hit]
    found, lo = distinct[hit], lo[hit]
    count = np.searchsorted(table, found, side="right") - lo  # > 1 only for hash collisions
    # Occurrences of the found hashes: a bitmap of their low bits drops most of the others
    # cheaply, a binary search confirms the rest.
    bitmap = np.zeros(1 << _BITMAP_BITS, dtype=bool)
    bitmap[(found & _BITMAP_MASK).astype(np.int64)] = True
    maybe = np.flatnonzero(bitmap[(hashes & _BITMAP_MASK).astype(np.int64)])
    at = np.searchsorted(found, hashes[maybe])
    occurs = at < len(found)
    occurs[occurs] = found[at[occurs]] == hashes[maybe[occurs]]
    at, sentence = at[occurs], sentence[maybe[occurs]]
    n = count[at]
    first = np.repeat(lo[at] - np.concatenate(([0], np.cumsum(n)[:-1])), n)
    phrase = index.hash_order[first + np.arange(int(n.sum()), dtype=np.int64)]
    return phrase.astype(np.int64), np.repeat(sentence, n)


def _pairs_found(
    hyp: np.ndarray, ref: np.ndarray, in_hyp: np.ndarray, in_ref: np.ndarray, n_phrases: np.int64
) -> np.ndarray:
    """Per candidate entry: some image has phrase ``in_hyp`` in its hypothesis and phrase
    ``in_ref`` in a reference.

    Args:
        hyp: sorted unique ``image * P + phrase`` keys of the hypotheses' phrases.
        ref: the same for the references.
        in_hyp: ``(C,)`` phrase of each candidate entry looked for in a hypothesis.
        in_ref: ``(C,)`` its other phrase, looked for in a reference of the same image.
        n_phrases: P.

    Returns:
        ``(C,)`` bool.
    """
    order = np.argsort(in_hyp, kind="stable")
    by_phrase = in_hyp[order]
    hyp_image, hyp_phrase = hyp // n_phrases, hyp % n_phrases
    lo = np.searchsorted(by_phrase, hyp_phrase, side="left")
    count = np.searchsorted(by_phrase, hyp_phrase, side="right") - lo
    at = np.repeat(lo - np.concatenate(([0], np.cumsum(count)[:-1])), count)
    candidate = order[at + np.arange(int(count.sum()), dtype=np.int64)]
    wanted = np.repeat(hyp_image, count) * n_phrases + in_ref[candidate]
    pos = np.searchsorted(ref, wanted)
    ok = pos < len(ref)
    ok[ok] = ref[pos[ok]] == wanted[ok]
    found = np.zeros(len(in_hyp), dtype=bool)
    found[candidate[ok]] = True
    return found


def _unique(keys: np.ndarray) -> np.ndarray:
    keys = np.sort(keys)  # a sort: numpy's hash-based np.unique is slower on these
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))[: len(keys)]]


def _entry_lines(index: ParaphraseIndex, keep: np.ndarray, chunk: int = 1 << 16) -> bytes:
    """``0\\n<first phrase>\\n<second phrase>\\n`` for each kept entry, gathered with numpy.

    The jar reads (and ignores) a probability line before each pair. Every entry is three byte
    ranges of ``source`` (``"0\\n"`` followed by the phrase lines), copied by one fancy index per
    chunk of entries (the index array would be 8 bytes per output byte for all at once).
    """
    source = np.concatenate([np.frombuffer(b"0\n", dtype=np.uint8), index.phrase_blob])
    ptr = index.phrase_ptr + 2
    out = []
    for lo in range(0, len(keep), chunk):
        pairs = index.entries[keep[lo : lo + chunk]]
        starts = np.stack([np.zeros(len(pairs), np.int64), ptr[pairs[:, 0]], ptr[pairs[:, 1]]],
                          axis=1).ravel()
        lengths = np.stack([np.full(len(pairs), 2, np.int64),
                            ptr[pairs[:, 0] + 1] - ptr[pairs[:, 0]],
                            ptr[pairs[:, 1] + 1] - ptr[pairs[:, 1]]], axis=1).ravel()
        ends = np.cumsum(lengths)
        gather = np.repeat(starts - (ends - lengths), lengths) + np.arange(ends[-1])
        out.append(source[gather].tobytes())
    return b"".join(out)
