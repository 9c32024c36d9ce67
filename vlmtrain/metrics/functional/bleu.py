"""BLEU-1..4 of a caption set, equal to pycocoevalcap 1.2 ``Bleu(4)``.

Reference: pycocoevalcap ``bleu/bleu_scorer.py`` (David Chiang's scorer as modified for COCO):

* per image, candidate n-gram counts are clipped by the highest count of the n-gram in any one
  reference; ``guess_k = max(0, len - k + 1)``;
* the reference length is the "closest" one: ``min((abs(ref_len - len), ref_len))`` (ties go to
  the shorter reference);
* corpus score: correct and guess counts and lengths are summed over images, then
  ``bleu_k = prod_{i<=k} ((correct_i + tiny) / (guess_i + small)) ** (1/k)`` with
  ``tiny = 1e-15``, ``small = 1e-9``, times ``exp(1 - 1/ratio)`` when
  ``ratio = (testlen + tiny) / (reflen + small) < 1``.

Why hand-written: pycocoevalcap counts n-grams in Python dicts of string tuples (seconds on a few
thousand images), and torchmetrics' ``BLEUScore`` uses its own tokenizer, no ``tiny``/``small``
smoothing and the "shortest"-style effective reference length, so its numbers differ. Here the
counting and clipping run as numpy sorts over integer n-gram ids (see ``_captions``) and the final
formula is evaluated with the same float operations in the same order as pycocoevalcap, so the
corpus scores agree to the last bits. This module imports neither torch nor torchmetrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vlmtrain.metrics.functional._captions import (
    CaptionSet,
    candidate_entries,
    encode_set,
    lookup,
    prepare_captions,
    reference_max_counts,
)

MAX_N = 4
_SMALL = 1e-9
_TINY = 1e-15  # so that a guess count of 0 still gives 0


@dataclass(frozen=True)
class BleuCounts:
    """Sufficient statistics of BLEU, per image.

    Attributes:
        correct: ``(N, 4)`` int64 clipped n-gram matches per order.
        guess: ``(N, 4)`` int64 candidate n-gram counts per order.
        testlen: ``(N,)`` int64 candidate lengths.
        reflen: ``(N,)`` int64 closest reference lengths.
    """

    correct: np.ndarray
    guess: np.ndarray
    testlen: np.ndarray
    reflen: np.ndarray


def bleu_counts(corpus: CaptionSet) -> BleuCounts:
    """Clipped matches, guesses and lengths of every image (pycocoevalcap ``cook_test``)."""
    n_img = corpus.n_images
    lengths = corpus.words.lengths
    testlen = lengths[:n_img]
    correct = np.zeros((n_img, MAX_N), dtype=np.int64)
    for order in range(1, MAX_N + 1):
        ref_keys, ref_max = reference_max_counts(corpus, order)
        cand_keys, cand_count = candidate_entries(corpus, order)
        clipped = np.minimum(cand_count, lookup(ref_keys, ref_max, cand_keys))
        image = cand_keys // corpus.ngrams()[order - 1].size
        correct[:, order - 1] = np.bincount(image, weights=clipped, minlength=n_img)
    guess = np.maximum(0, testlen[:, None] - np.arange(MAX_N)[None, :])
    # Closest reference length, ties to the shorter one: minimise (distance, length) per image.
    ref_len = lengths[n_img:]
    scale = int(ref_len.max(initial=0)) + 1
    key = np.abs(ref_len - testlen[corpus.ref_image]) * scale + ref_len
    reflen = np.minimum.reduceat(key, corpus.ref_offsets) % scale
    return BleuCounts(correct, guess, testlen, reflen)


def corpus_bleu(counts: BleuCounts) -> dict[str, float]:
    """Corpus BLEU-1..4 from per-image statistics, as pycocoevalcap ``compute_score``."""
    correct = [int(c) for c in counts.correct.sum(axis=0)]
    guess = [int(g) for g in counts.guess.sum(axis=0)]
    testlen, reflen = int(counts.testlen.sum()), int(counts.reflen.sum())
    scores, bleu = [], 1.0
    for k in range(MAX_N):
        bleu *= float(correct[k] + _TINY) / (guess[k] + _SMALL)
        scores.append(bleu ** (1.0 / (k + 1)))
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return {f"bleu_{k + 1}": scores[k] for k in range(MAX_N)}


def sentence_bleu_from_counts(counts: BleuCounts) -> np.ndarray:
    """Per-image BLEU-1..4, as pycocoevalcap's second return value (``bleu_list``).

    Returns:
        ``(N, 4)`` float64.
    """
    ratio_terms = (counts.correct.astype(np.float64) + _TINY) / (counts.guess + _SMALL)
    cumulative = np.cumprod(ratio_terms, axis=1)
    scores = cumulative ** (1.0 / np.arange(1, MAX_N + 1))
    ratio = (counts.testlen + _TINY) / (counts.reflen + _SMALL)
    with np.errstate(divide="ignore"):
        penalty = np.where(ratio < 1, np.exp(1 - 1 / ratio), 1.0)
    return scores * penalty[:, None]


def bleu(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    tokenize: bool = True,
) -> dict[str, float]:
    """Corpus BLEU-1..4 (pycocoevalcap ``Bleu(4)``, "closest" reference length).

    Args:
        predictions: N candidate captions, one per image.
        references: N non-empty lists of reference captions.
        tokenize: PTB-tokenize first, as the COCO caption evaluation does. False: the captions
            are already tokenized (words separated by whitespace).

    Returns:
        ``{"bleu_1": ..., "bleu_4": ...}`` in [0, 1].

    Example:
        >>> round(bleu(["a dog runs"], [["a dog runs fast"]])["bleu_1"], 4)
        0.7165
    """
    preds, refs = prepare_captions(predictions, references, tokenize, "bleu")
    return corpus_bleu(bleu_counts(encode_set(preds, refs)))


def sentence_bleu(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    tokenize: bool = True,
) -> dict[str, list[float]]:
    """Per-image BLEU-1..4 (pycocoevalcap's per-image ``bleu_list``).

    Args:
        predictions: N candidate captions.
        references: N non-empty lists of reference captions.
        tokenize: see :func:`bleu`.

    Returns:
        ``{"bleu_1": [N floats], ..., "bleu_4": [N floats]}``.
    """
    preds, refs = prepare_captions(predictions, references, tokenize, "bleu")
    scores = sentence_bleu_from_counts(bleu_counts(encode_set(preds, refs)))
    return {f"bleu_{k + 1}": scores[:, k].tolist() for k in range(MAX_N)}
