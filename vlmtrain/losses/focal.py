"""Focal loss on answer tokens (Lin et al. 2017): cross-entropy that down-weights easy tokens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vlmtrain.errors import VLMTrainError
from vlmtrain.losses import functional as LF
from vlmtrain.losses.base import LossOutput, Needs


class FocalLoss(nn.Module):
    """Mean token-level focal loss ``-alpha_t (1 - p_t)^gamma log p_t`` over answer tokens.

    Args:
        gamma: focusing parameter ``>= 0``; 0 is plain cross-entropy, 2 the paper's default.
        alpha: ``None``; a float applied to every token; or one weight per vocabulary entry
            (``alpha_t = alpha[target token]``), e.g. inverse answer frequencies. See
            :func:`vlmtrain.losses.functional.focal_loss` for why a per-class weight.
    """

    needs = Needs(layout="sft")

    def __init__(self, gamma: float = 2.0, alpha: float | Sequence[float] | None = None) -> None:
        super().__init__()
        if gamma < 0:
            raise VLMTrainError(
                f"loss.gamma={gamma} is negative, which up-weights easy tokens: set loss.gamma "
                "to 0 (plain cross-entropy) or more (2 is the focal-loss default)"
            )
        self.gamma = float(gamma)
        self.alpha: float | None = None
        if alpha is not None and not isinstance(alpha, (int, float)):
            weights = torch.as_tensor(list(alpha), dtype=torch.float32)
            if weights.ndim != 1 or bool((weights < 0).any()):
                raise VLMTrainError("loss.alpha must be null, a number >= 0 or a list of "
                                    "non-negative weights, one per vocabulary entry")
            # a buffer follows the module to the GPU; not persistent: it is config, not state
            self.register_buffer("alpha_weights", weights, persistent=False)
        else:
            if alpha is not None and alpha < 0:
                raise VLMTrainError(f"loss.alpha={alpha} is negative: use a weight >= 0 or null")
            self.alpha = None if alpha is None else float(alpha)
            self.alpha_weights = None

    def forward(self, policy: Any, batch: dict, frozen: Any = None) -> LossOutput:
        """Args:
            policy: model output whose ``logits`` (N, K, V) are aligned with
                ``batch["targets"]`` (N, K).
            batch: collated batch with ``targets``.
            frozen: unused (focal loss needs no frozen model).
        """
        logits, targets = policy.logits, batch["targets"]
        alpha = self.alpha if self.alpha_weights is None else self.alpha_weights
        if self.alpha_weights is not None and self.alpha_weights.numel() != logits.shape[-1]:
            raise VLMTrainError(
                f"loss.alpha has {self.alpha_weights.numel()} weights but the model's vocabulary "
                f"has {logits.shape[-1]} entries: give one weight per entry, or a single number"
            )
        loss, n_tokens = LF.focal_loss(logits, targets, self.gamma, alpha,
                                       divisor=batch.get("token_divisor"))
        with torch.no_grad():  # CE alongside, on the scale CE runs log, to compare the two
            ce, _ = LF.masked_cross_entropy(logits, targets)
        acc = LF.token_accuracy(logits.detach(), targets)
        return LossOutput(loss, {"ce": ce, "token_accuracy": acc,
                                 "answer_tokens": n_tokens.float()})
