"""Loss maths as tensor-in/tensor-out functions (no modules, no batches)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100


def supervised_positions(labels: Tensor, ignore_index: int = IGNORE_INDEX) -> tuple[Tensor, Tensor]:
    """Positions whose next token is supervised, and those next tokens, per sample.

    Position t predicts token t+1 (causal shift). Answers are a small part of a VLM sequence
    (image tokens dominate), so projecting only these positions onto the vocabulary (Hugging
    Face's ``logits_to_keep``) avoids a (B, T, V) logits tensor -- with a 150k vocabulary and
    1,000 image tokens that tensor alone is gigabytes.

    Args:
        labels: (B, T) token ids, ``ignore_index`` where nothing is learned.

    Returns:
        ``(positions, targets)``, both (B, K) with K = the most supervised tokens of any sample
        (at least 1): ``positions[b, k]`` indexes the sequence, ``targets[b, k]`` is the token
        to predict there, or ``ignore_index`` on padding (whose position is 0).
    """
    nxt = labels[:, 1:]
    sup = nxt != ignore_index
    counts = sup.sum(dim=1)
    k = max(int(counts.max()), 1) if labels.shape[0] else 1
    # a stable sort on "not supervised" brings supervised positions first, in sequence order
    order = torch.argsort((~sup).to(torch.int8), dim=1, stable=True)[:, :k]
    valid = torch.arange(k, device=labels.device)[None, :] < counts[:, None]
    positions = torch.where(valid, order, torch.zeros_like(order))
    targets = torch.where(valid, nxt.gather(1, order), torch.full_like(order, ignore_index))
    return positions, targets


def masked_cross_entropy(
    logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[Tensor, Tensor]:
    """Cross-entropy averaged over the supervised tokens of the batch.

    The mean is over all supervised tokens (not per sample then averaged), so every answer
    token weighs the same.

    Args:
        logits: (B, K, V) scores, aligned with ``targets`` (already shifted: see
            :func:`supervised_positions`).
        targets: (B, K) token ids to predict, ``ignore_index`` where nothing is learned.
        ignore_index: target value that is skipped.

    Returns:
        ``(loss, n_tokens)``: scalar mean loss (0 with no supervised token, never NaN) and the
        number of supervised tokens (int64 scalar).
    """
    mask = targets != ignore_index
    n_tokens = mask.sum()
    if n_tokens == 0:
        return logits.sum() * 0.0, n_tokens
    loss = F.cross_entropy(logits[mask].float(), targets[mask], reduction="sum") / n_tokens
    return loss, n_tokens


def token_accuracy(logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Fraction of supervised tokens predicted exactly (teacher forcing).

    Args:
        logits: (B, K, V); targets: (B, K), aligned as in :func:`masked_cross_entropy`.

    Returns:
        Scalar in [0, 1] (0 when no token is supervised).
    """
    mask = targets != ignore_index
    if not mask.any():
        return torch.zeros((), device=logits.device)
    return (logits.argmax(-1)[mask] == targets[mask]).float().mean()
