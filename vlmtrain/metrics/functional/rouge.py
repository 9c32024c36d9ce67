"""ROUGE-L of a caption set, equal to pycocoevalcap 1.2 ``Rouge``.

Reference: pycocoevalcap ``rouge/rouge.py`` (Vedantam). Per image, with tokens from
``str.split(" ")`` (so an empty caption is one empty token):

* for each reference r: ``P_r = LCS(c, r) / len(c)``, ``R_r = LCS(c, r) / len(r)``;
* ``P = max_r P_r`` and ``R = max_r R_r`` (maximised separately, possibly over different
  references);
* ``score = (1 + beta^2) P R / (R + beta^2 P)`` with ``beta = 1.2``, 0 when P or R is 0.

ROUGE-L is the mean score over images.

Why hand-written: pycocoevalcap fills a full O(n m) dynamic-programming table in Python for every
(candidate, reference) pair, and torchmetrics' ``ROUGEScore`` uses its own tokenizer and
normaliser, averages F-scores per reference and uses beta = 1, so its numbers differ. Here the LCS
length comes from the bit-parallel algorithm of Allison & Dix (1986) in Hyyro's form (exact):
one machine word holds the match positions of the shorter sentence (up to 64 tokens), and all
pairs advance together as numpy uint64 vectors; longer pairs fall back to Python integers, which
are arbitrarily wide. This module imports neither torch nor torchmetrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlmtrain.metrics.functional._captions import CaptionSet, encode_set, prepare_captions

BETA = 1.2
_WORD = 64
_CHUNK_CELLS = 1 << 22  # pairs x scan length x word bits per numpy chunk (a few MB of booleans)


def lcs_lengths(
    ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, pairs: np.ndarray
) -> np.ndarray:
    """Longest-common-subsequence length of sentence pairs.

    Args:
        ids: ``(T,)`` int64 token ids of all sentences, concatenated.
        starts: ``(S,)`` int64 offset of each sentence in ``ids``.
        lengths: ``(S,)`` int64 token count of each sentence.
        pairs: ``(P, 2)`` int64 sentence indices.

    Returns:
        ``(P,)`` int64 LCS lengths.
    """
    a, b = pairs[:, 0], pairs[:, 1]
    # The shorter sentence goes in the bit vector, the other one is scanned token by token.
    swap = lengths[a] < lengths[b]
    bits = np.where(swap, a, b)
    scan = np.where(swap, b, a)
    out = np.zeros(len(pairs), dtype=np.int64)
    fits = lengths[bits] <= _WORD
    for idx in np.flatnonzero(~fits):  # both sentences longer than a machine word
        out[idx] = _lcs_python(_tokens(ids, starts, lengths, scan[idx]),
                               _tokens(ids, starts, lengths, bits[idx]))
    # Pairs sorted by scan length, cut into chunks whose padded (pairs x scan length x 64)
    # boolean match tensor stays under _CHUNK_CELLS.
    order = np.flatnonzero(fits)
    order = order[np.argsort(lengths[scan[order]], kind="stable")]
    scan_len = np.maximum(lengths[scan[order]], 1)
    lo = 0
    while lo < len(order):
        cells = np.arange(1, len(order) - lo + 1) * scan_len[lo:] * _WORD
        hi = lo + max(1, int(np.searchsorted(cells, _CHUNK_CELLS, side="right")))
        chunk = order[lo:hi]
        out[chunk] = _lcs_words(ids, starts, lengths, scan[chunk], bits[chunk])
        lo = hi
    return out


def _tokens(ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, s: int) -> list[int]:
    return ids[starts[s] : starts[s] + lengths[s]].tolist()


def _padded(ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, sents: np.ndarray,
            width: int, pad: int) -> np.ndarray:
    """``(len(sents), width)`` token ids, ``pad`` after each sentence's end."""
    col = np.arange(width)
    inside = col[None, :] < lengths[sents][:, None]
    flat = np.minimum(starts[sents][:, None] + col[None, :], max(len(ids) - 1, 0))
    return np.where(inside, ids[flat] if len(ids) else pad, pad)


def _lcs_words(ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, scan: np.ndarray,
               bits: np.ndarray) -> np.ndarray:
    """Bit-parallel LCS of P pairs whose ``bits`` sentences have at most 64 tokens."""
    n_scan = int(lengths[scan].max(initial=0))
    n_bits = int(lengths[bits].max(initial=0))
    if n_scan == 0 or n_bits == 0:
        return np.zeros(len(scan), dtype=np.int64)
    scan_tok = _padded(ids, starts, lengths, scan, n_scan, -1)
    bit_tok = _padded(ids, starts, lengths, bits, n_bits, -2)  # pads never match each other
    # match[p, t] has bit j set where bits-sentence token j equals scan token t.
    eq = scan_tok[:, :, None] == bit_tok[:, None, :]
    packed = np.packbits(eq, axis=2, bitorder="little")
    packed = np.pad(packed, ((0, 0), (0, 0), (0, 8 - packed.shape[2])))
    match = np.ascontiguousarray(packed).view("<u8")[:, :, 0]
    v = np.full(len(scan), np.iinfo(np.uint64).max, dtype=np.uint64)
    for t in range(n_scan):  # V' = (V + (V & M)) | (V - (V & M)); uint64 wraps like a word
        u = v & match[:, t]
        v = (v + u) | (v - u)
    n = lengths[bits]
    low = np.where(n >= _WORD, np.iinfo(np.uint64).max,
                   (np.uint64(1) << np.minimum(n, _WORD - 1).astype(np.uint64)) - np.uint64(1))
    return n - np.bitwise_count(v & low).astype(np.int64)  # zero bits in the low n = LCS


def _lcs_python(scan: list[int], bits: list[int]) -> int:
    """Same recurrence on Python integers (any width), for pairs of long sentences."""
    masks: dict[int, int] = {}
    for j, tok in enumerate(bits):
        masks[tok] = masks.get(tok, 0) | (1 << j)
    full = (1 << len(bits)) - 1
    v = full
    for tok in scan:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(bits) - bin(v).count("1")


def rouge_l_per_image(corpus: CaptionSet) -> np.ndarray:
    """ROUGE-L of every image of a tokenized set (pycocoevalcap ``calc_score``).

    Returns:
        ``(N,)`` float64.
    """
    n_img, words = corpus.n_images, corpus.rouge_words
    pairs = np.stack([corpus.ref_image, n_img + np.arange(len(corpus.ref_image))], axis=1)
    lcs = lcs_lengths(words.ids, words.starts, words.lengths, pairs).astype(np.float64)
    prec = np.maximum.reduceat(lcs / words.lengths[corpus.ref_image], corpus.ref_offsets)
    rec = np.maximum.reduceat(lcs / words.lengths[n_img:], corpus.ref_offsets)
    beta2 = BETA**2
    with np.errstate(divide="ignore", invalid="ignore"):
        score = ((1 + beta2) * prec * rec) / (rec + beta2 * prec)
    return np.where((prec != 0) & (rec != 0), score, 0.0)


def rouge_l(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    tokenize: bool = True,
) -> dict[str, float]:
    """Mean ROUGE-L over images (pycocoevalcap ``Rouge``, beta = 1.2).

    Args:
        predictions: N candidate captions, one per image.
        references: N non-empty lists of reference captions.
        tokenize: PTB-tokenize first, as the COCO caption evaluation does. False: the captions
            are already tokenized (words separated by single spaces).

    Returns:
        ``{"rouge_l": float}`` in [0, 1].

    Example:
        >>> round(rouge_l(["a dog runs"], [["a dog runs fast"]])["rouge_l"], 4)
        0.8496
    """
    preds, refs = prepare_captions(predictions, references, tokenize, "rouge_l")
    return {"rouge_l": float(np.mean(rouge_l_per_image(encode_set(preds, refs))))}


def rouge_l_samples(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    tokenize: bool = True,
) -> list[float]:
    """ROUGE-L of each caption (the terms :func:`rouge_l` averages), same arguments."""
    preds, refs = prepare_captions(predictions, references, tokenize, "rouge_l")
    return [float(x) for x in rouge_l_per_image(encode_set(preds, refs))]
