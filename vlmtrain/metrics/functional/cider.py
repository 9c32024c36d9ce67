"""CIDEr-D of a caption set, equal to pycocoevalcap 1.2 ``Cider`` (n = 4, sigma = 6).

Reference: pycocoevalcap ``cider/cider_scorer.py`` (Vedantam, Lin); paper: Vedantam, Zitnick &
Parikh, "CIDEr: Consensus-based Image Description Evaluation", CVPR 2015. With N images:

* document frequency ``df(g)`` = number of images whose references contain n-gram g (the
  evaluated set's own references: CIDEr of a subset differs from the same images in a larger set);
  ``ref_len = log(N)``;
* each sentence is a tf-idf vector per order: ``v(g) = count(g) * (ref_len - log(max(1, df(g))))``
  (n-grams absent from all references get ``df = 0``, i.e. ``log(1) = 0``);
* per reference and order: ``sum_g min(v_c(g), v_r(g)) v_r(g) / (|v_c| |v_r|)`` (the "-D"
  clipping; 0 when a norm is 0), times the Gaussian length penalty
  ``exp(-(l_c - l_r)^2 / (2 sigma^2))``. pycocoevalcap's length ``l`` counts the sentence's
  *bigrams* (``if n == 1`` on a 0-based order index), i.e. ``max(len - 1, 0)``; kept as is;
* image score = mean over the 4 orders of the sum over references, divided by the number of
  references, times 10. CIDEr-D is the mean over images.

Why hand-written: pycocoevalcap builds per-sentence dicts of n-gram tuples and loops over them in
Python (seconds on a few thousand images); torchmetrics has no CIDEr. Here every step is a numpy
gather/bincount over integer n-gram ids (see ``_captions``). Sums run in another order than
pycocoevalcap's dict order, so results agree to ~1e-15, not bit for bit. This module imports
neither torch nor torchmetrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlmtrain.metrics.functional._captions import (
    CaptionSet,
    candidate_entries,
    encode_set,
    lookup,
    prepare_captions,
)

MAX_N = 4
SIGMA = 6.0


def cider_per_image(corpus: CaptionSet, sigma: float = SIGMA) -> np.ndarray:
    """CIDEr-D of every image of an encoded set (pycocoevalcap ``compute_cider``).

    Args:
        corpus: the encoded set with n-gram orders 1..4.
        sigma: standard deviation of the Gaussian length penalty (official: 6).

    Returns:
        ``(N,)`` float64.

    Raises:
        ValueError: no reference has a word (pycocoevalcap crashes on such a set).
    """
    n_img = corpus.n_images
    if not np.any(corpus.words.lengths[n_img:]):
        raise ValueError(
            "cider: every reference caption is empty (after tokenization), so CIDEr-D is "
            "undefined (pycocoevalcap fails with 'max() arg is an empty sequence'); check the "
            "references"
        )
    ref_len = np.log(float(n_img))
    # Length in pycocoevalcap's sense: the number of bigrams.
    bigrams = np.maximum(corpus.words.lengths - 1, 0).astype(np.float64)
    delta = bigrams[corpus.ref_image] - bigrams[n_img:]
    penalty = np.e ** (-(delta**2) / (2 * sigma**2))
    per_order = np.zeros((len(corpus.ref_image), MAX_N), dtype=np.float64)
    for order in range(1, MAX_N + 1):
        per_order[:, order - 1] = _similarity(corpus, order, ref_len) * penalty
    summed = np.add.reduceat(per_order, corpus.ref_offsets, axis=0)  # (N, 4) over references
    return summed.mean(axis=1) / corpus.ref_counts * 10.0


def _similarity(corpus: CaptionSet, order: int, ref_len: float) -> np.ndarray:
    """Clipped cosine similarity of each reference with its image's candidate, one order.

    Returns:
        ``(R,)`` float64.
    """
    n_img, ng = corpus.n_images, corpus.ngrams()[order - 1]
    is_ref = ng.sent >= n_img
    ref_idx = ng.sent[is_ref] - n_img
    ref_keys = corpus.ref_image[ref_idx] * ng.size + ng.gram[is_ref]
    # df: number of images whose references contain the n-gram (unique (image, gram) pairs).
    present = np.sort(ref_keys)  # (a sort: numpy's hash-based np.unique is slower here)
    present = present[np.concatenate(([True], present[1:] != present[:-1]))[: len(present)]]
    df = np.bincount(present % ng.size, minlength=ng.size).astype(np.float64)
    weight = ref_len - np.log(np.maximum(1.0, df))
    vec = ng.count * weight[ng.gram]  # tf-idf value of every (sentence, n-gram) entry
    norm = np.sqrt(np.bincount(ng.sent, weights=vec**2, minlength=len(corpus.texts)))
    cand_keys, _ = candidate_entries(corpus, order)
    cand_vec = vec[: len(cand_keys)]
    ref_vec = vec[is_ref]
    hyp_vec = lookup(cand_keys, cand_vec, ref_keys)  # 0 where the candidate lacks the n-gram
    dot = np.bincount(ref_idx, weights=np.minimum(hyp_vec, ref_vec) * ref_vec,
                      minlength=len(corpus.ref_image))
    norm_hyp, norm_ref = norm[corpus.ref_image], norm[n_img:]
    both = (norm_hyp != 0) & (norm_ref != 0)
    return np.where(both, dot / np.where(both, norm_hyp * norm_ref, 1.0), dot)


def cider_d(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    tokenize: bool = True,
    sigma: float = SIGMA,
) -> dict[str, float]:
    """Mean CIDEr-D over images (pycocoevalcap ``Cider``), with idf from this set's references.

    Args:
        predictions: N candidate captions, one per image.
        references: N non-empty lists of reference captions.
        tokenize: PTB-tokenize first, as the COCO caption evaluation does. False: the captions
            are already tokenized (words separated by whitespace).
        sigma: Gaussian length-penalty width (official: 6).

    Returns:
        ``{"cider": float}`` (>= 0, typically up to ~10; x10 scaling as in pycocoevalcap).
    """
    preds, refs = prepare_captions(predictions, references, tokenize, "cider")
    return {"cider": float(np.mean(cider_per_image(encode_set(preds, refs), sigma)))}
