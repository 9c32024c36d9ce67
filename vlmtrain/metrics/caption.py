"""The COCO caption metrics in one call: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D.

Equal to pycocoevalcap 1.2's ``COCOEvalCap`` pipeline (PTB tokenizer, then each scorer), which
this replaces with one pass: the captions are tokenized once (pure-Python PTB tokenizer), the
METEOR JVMs start right after (with a paraphrase table restricted to the set's words) so that
their start-up overlaps with the n-gram metrics computed in Python meanwhile, and BLEU / ROUGE-L /
CIDEr-D share one integer encoding of the set. This module imports neither torch nor torchmetrics
(the command-line evaluator imports it); the per-metric torchmetrics classes live in ``bleu``,
``rouge``, ``cider`` and ``meteor``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlmtrain.metrics.functional._captions import CaptionSet, encode_set, prepare_captions
from vlmtrain.metrics.functional.bleu import bleu_counts, corpus_bleu
from vlmtrain.metrics.functional.cider import cider_per_image
from vlmtrain.metrics.functional.meteor import MeteorScorer, default_jvms, use_restricted_table
from vlmtrain.metrics.functional.rouge import rouge_l_per_image

__all__ = ["CAPTION_KEYS", "caption_scores"]

CAPTION_KEYS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")
# Names accepted in ``metrics``: a family or one of its keys.
_FAMILIES = {
    "bleu": ("bleu_1", "bleu_2", "bleu_3", "bleu_4"),
    "meteor": ("meteor",),
    "rouge_l": ("rouge_l",),
    "cider": ("cider",),
}


def _requested_keys(metrics: Sequence[str]) -> list[str]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    wanted: set[str] = set()
    for name in metrics:
        if name in _FAMILIES:
            wanted.update(_FAMILIES[name])
        elif name in CAPTION_KEYS:
            wanted.add(name)
        else:
            raise ValueError(
                f"caption_scores: unknown metric {name!r}; choose from "
                f"{sorted(_FAMILIES)} or {list(CAPTION_KEYS)}"
            )
    if not wanted:
        raise ValueError("caption_scores: metrics is empty; ask for at least one metric")
    return [k for k in CAPTION_KEYS if k in wanted]


def caption_scores(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    metrics: Sequence[str] = ("bleu", "meteor", "rouge_l", "cider"),
    tokenize: bool = True,
    meteor_scorer: MeteorScorer | None = None,
    jvms: int | None = None,
) -> dict[str, float]:
    """Corpus caption metrics, each equal to pycocoevalcap 1.2.

    Args:
        predictions: N candidate captions, one per image.
        references: N non-empty lists of reference captions.
        metrics: families (``"bleu"``, ``"meteor"``, ``"rouge_l"``, ``"cider"``) or single keys
            (``"bleu_4"``); only the requested keys are returned.
        tokenize: PTB-tokenize first (once for all metrics), as ``COCOEvalCap`` does.
        meteor_scorer: an open :class:`~vlmtrain.metrics.functional.meteor.MeteorScorer` to reuse
            (stays open); default: a new one, closed before returning.
        jvms: METEOR JVMs when a new scorer is started (default: by set size).

    Returns:
        ``{key: float}`` for the requested keys, in the order of :data:`CAPTION_KEYS`.

    Raises:
        ValueError / TypeError: malformed inputs (the message names the record).
        MeteorNotInstalledError: METEOR requested but Java or the jar is missing.
    """
    keys = _requested_keys(metrics)
    preds, refs = prepare_captions(predictions, references, tokenize, "caption_scores")
    own_scorer = None
    if "meteor" in keys and meteor_scorer is None:
        # Started before the n-gram metrics: the JVMs load while Python computes those.
        restrict_to = (preds, refs) if use_restricted_table(len(preds)) else None
        own_scorer = meteor_scorer = MeteorScorer(jvms or default_jvms(len(preds)),
                                                  restrict_to=restrict_to)
    try:
        job = meteor_scorer.submit(preds, refs) if "meteor" in keys else None
        try:
            scores = _ngram_scores(encode_set(preds, refs), keys)
        finally:
            if job is not None:  # always collected, so a reused scorer is free again
                meteor_value = job.result()
        if job is not None:
            scores["meteor"] = meteor_value
    finally:
        if own_scorer is not None:
            own_scorer.close()
    return {k: scores[k] for k in keys}


def _ngram_scores(corpus: CaptionSet, keys: list[str]) -> dict[str, float]:
    scores: dict[str, float] = {}
    if any(k.startswith("bleu") for k in keys):
        scores.update(corpus_bleu(bleu_counts(corpus)))
    if "rouge_l" in keys:
        scores["rouge_l"] = float(np.mean(rouge_l_per_image(corpus)))
    if "cider" in keys:
        scores["cider"] = float(np.mean(cider_per_image(corpus)))
    return scores
