"""String states shared by the caption metric classes (BLEU, ROUGE-L, CIDEr-D, METEOR).

Each class stores the raw captions of every ``update`` as byte tensors (list states with
``dist_reduce_fx="cat"``, see :mod:`vlmtrain.metrics.text_state`), so that ``compute`` sees the
whole evaluated set, gathered across DDP ranks, and calls the functional core once on it: the
corpus statistics (BLEU counts, CIDEr's document frequencies, METEOR's aggregate) are those of the
full set, as in pycocoevalcap.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from vlmtrain.metrics.functional._captions import check_caption_inputs
from vlmtrain.metrics.text_state import decode_groups, decode_texts, encode_groups, encode_texts

_STATES = ("pred_bytes", "pred_lens", "ref_bytes", "ref_lens", "ref_counts")


def add_caption_states(metric: Metric) -> None:
    """Declare the five list states (gathered with ``cat`` under DDP)."""
    for name in _STATES:
        metric.add_state(name, default=[], dist_reduce_fx="cat")


def append_captions(
    metric: Metric,
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    name: str,
) -> None:
    """Validate a batch (errors name the record in the batch) and store it.

    Args:
        metric: the metric holding the states.
        predictions: B candidate captions.
        references: B non-empty lists of reference captions.
        name: metric name for error messages.
    """
    if len(predictions) == 0 and len(references) == 0:
        return
    check_caption_inputs(predictions, references, name)
    data, lens = encode_texts(predictions)
    metric.pred_bytes.append(data.to(metric.device))
    metric.pred_lens.append(lens.to(metric.device))
    data, lens, counts = encode_groups(references)
    metric.ref_bytes.append(data.to(metric.device))
    metric.ref_lens.append(lens.to(metric.device))
    metric.ref_counts.append(counts.to(metric.device))


def stored_captions(metric: Metric) -> tuple[list[str], list[list[str]]]:
    """All stored ``(predictions, references)``; raises if ``update`` was never called."""
    predictions = decode_texts(metric.pred_bytes, metric.pred_lens)
    if not predictions:
        raise RuntimeError(f"{type(metric).__name__}.compute(): no samples; call update() first")
    references = decode_groups(metric.ref_bytes, metric.ref_lens, metric.ref_counts)
    return predictions, references


def as_tensors(scores: dict[str, float], device: torch.device) -> dict[str, Tensor]:
    """float64 scalars, so values equal the functional ones to the last bit."""
    return {k: torch.tensor(v, dtype=torch.float64, device=device) for k, v in scores.items()}
