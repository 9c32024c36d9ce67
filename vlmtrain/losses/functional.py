"""Loss maths as tensor-in/tensor-out functions (no modules, no batches)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100


def masked_cross_entropy(
    logits: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[Tensor, Tensor]:
    """Next-token cross-entropy averaged over the supervised (answer) tokens of the batch.

    Position t predicts label t+1 (causal shift). The mean is over all unmasked tokens of the
    batch (not per sample then averaged), so every answer token weighs the same.

    Args:
        logits: (B, T, V) unnormalised scores.
        labels: (B, T) target ids, ``ignore_index`` where nothing is learned.
        ignore_index: label value that is skipped.

    Returns:
        ``(loss, n_tokens)``: scalar mean loss (0 with no supervised token, never NaN) and the
        number of supervised tokens (int64 scalar).
    """
    shift_logits = logits[:, :-1, :]
    shift_labels = labels[:, 1:]
    mask = shift_labels != ignore_index
    n_tokens = mask.sum()
    if n_tokens == 0:
        return logits.sum() * 0.0, n_tokens
    # Gather only supervised positions: answers are a small fraction of a VLM sequence (image
    # tokens dominate), so this avoids a (B*T, V) log-softmax on positions that are discarded.
    picked = shift_logits[mask].float()
    loss = F.cross_entropy(picked, shift_labels[mask], reduction="sum") / n_tokens
    return loss, n_tokens


def token_accuracy(logits: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Fraction of supervised next tokens predicted exactly (teacher forcing).

    Args:
        logits: (B, T, V); labels: (B, T).

    Returns:
        Scalar in [0, 1] (0 when no token is supervised).
    """
    shift_labels = labels[:, 1:]
    mask = shift_labels != ignore_index
    if not mask.any():
        return torch.zeros((), device=logits.device)
    pred = logits[:, :-1, :].argmax(-1)
    return (pred[mask] == shift_labels[mask]).float().mean()
