"""Masked cross-entropy on response tokens (supervised fine-tuning)."""

from __future__ import annotations

from typing import Any

from torch import nn

from vlmtrain.losses import functional as LF
from vlmtrain.losses.base import LossOutput, Needs


class MaskedCrossEntropy(nn.Module):
    """Supervised fine-tuning loss: mean next-token CE over answer tokens (prompt = -100)."""

    needs = Needs(layout="sft")

    def forward(self, policy: Any, batch: dict, frozen: Any = None) -> LossOutput:
        """Args:
            policy: model output whose ``logits`` (B, K, V) are aligned with ``batch["targets"]``
                (B, K) -- the module computes logits only at supervised positions.
            batch: collated batch with ``targets``; in training also ``token_divisor``, the
                answer tokens of the whole optimizer step (see ``vlmtrain/data/window.py``).
            frozen: unused (SFT needs no frozen model).
        """
        loss, n_tokens = LF.masked_cross_entropy(policy.logits, batch["targets"],
                                                 divisor=batch.get("token_divisor"))
        acc = LF.token_accuracy(policy.logits.detach(), batch["targets"])
        return LossOutput(loss, {"token_accuracy": acc, "answer_tokens": n_tokens.float()})
