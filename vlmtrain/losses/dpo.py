"""Direct preference optimisation and its variants, as TRL's ``DPOTrainer`` computes them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from vlmtrain.errors import VLMTrainError
from vlmtrain.losses import functional as LF
from vlmtrain.losses.base import LossOutput, Needs

# The loss types users know from TRL (``DPOConfig.loss_type``), each a pure function of the
# pair log-likelihoods. RPO is ``["sigmoid", "sft"]`` with ``loss_weights``, as in TRL.
TERMS = {
    "sigmoid": LF.dpo_sigmoid,
    "hinge": LF.dpo_hinge,
    "ipo": LF.dpo_ipo,
    "robust": LF.dpo_robust,
    "sft": LF.chosen_nll,
}


class DPOLoss(nn.Module):
    """Preference loss on ``[chosen; rejected]`` batches against reference log-probs.

    Args:
        beta: strength of the implicit KL penalty (TRL's ``beta``).
        loss_type: one name or a list of names from :data:`TERMS` (``sigmoid`` default;
            ``["sigmoid", "sft"]`` is RPO).
        loss_weights: one weight per loss type (default 1 each); the loss is the weighted sum of
            each term's mean over pairs.
        label_smoothing: assumed label-noise rate for ``robust`` (in ``[0, 0.5)``).

    Logs (as TRL names them, under ``train/`` and ``val/``): ``rewards/chosen``,
    ``rewards/rejected``, ``rewards/accuracies``, ``rewards/margins``, ``logps/chosen``,
    ``logps/rejected``, ``logits/chosen``, ``logits/rejected``.
    """

    needs = Needs(reference=True, layout="pairs")

    def __init__(self, beta: float = 0.1, loss_type: str | Sequence[str] = "sigmoid",
                 loss_weights: Sequence[float] | None = None,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        types = [loss_type] if isinstance(loss_type, str) else list(loss_type)
        unknown = [t for t in types if t not in TERMS]
        if not types or unknown:
            raise VLMTrainError(f"loss.loss_type={types}: use names from {sorted(TERMS)}")
        weights = [1.0] * len(types) if loss_weights is None else [float(w) for w in loss_weights]
        if len(weights) != len(types):
            raise VLMTrainError(f"loss.loss_weights has {len(weights)} entries for "
                                f"{len(types)} loss types {types}: give one weight per type")
        if beta <= 0:
            raise VLMTrainError(f"loss.beta={beta} must be > 0")
        if not 0 <= label_smoothing < 0.5:
            raise VLMTrainError(f"loss.label_smoothing={label_smoothing} must be in [0, 0.5)")
        self.beta, self.label_smoothing = float(beta), float(label_smoothing)
        self.terms = list(zip(types, weights))

    def forward(self, policy: Any, batch: dict, reference: Tensor) -> LossOutput:
        """Args:
            policy: model output whose ``logits`` (2B, K, V) are aligned with
                ``batch["targets"]`` (2B, K); rows ``[chosen; rejected]``.
            batch: collated preference batch.
            reference: (2B,) summed reference log-probs of the same rows.
        """
        logps, tokens = LF.sequence_logps(policy.logits, batch["targets"])
        b = logps.shape[0] // 2
        ref = reference.to(logps)
        pairs = LF.PairLogps(logps[:b], logps[b:], ref[:b], ref[b:], tokens[:b], tokens[b:])
        loss = sum(weight * TERMS[name](pairs, self.beta, self.label_smoothing).mean()
                   for name, weight in self.terms)
        return LossOutput(loss, self._logs(pairs, policy.logits, batch["targets"], b))

    def _logs(self, p: LF.PairLogps, logits: Tensor, targets: Tensor, b: int) -> dict:
        chosen = self.beta * (p.chosen - p.ref_chosen).detach()
        rejected = self.beta * (p.rejected - p.ref_rejected).detach()
        with torch.no_grad():
            # mean over supervised positions of the mean logit over the vocabulary (TRL's
            # ``logits/*``: a drift indicator, not a probability)
            mask = targets != LF.IGNORE_INDEX
            mean_logit = logits.detach().float().mean(-1)
            per_half = [(mean_logit[s] * mask[s]).sum() / mask[s].sum().clamp(min=1)
                        for s in (slice(0, b), slice(b, None))]
        return {
            "rewards/chosen": chosen.mean(),
            "rewards/rejected": rejected.mean(),
            "rewards/accuracies": (chosen > rejected).float().mean(),
            "rewards/margins": (chosen - rejected).mean(),
            "logps/chosen": p.chosen.detach().mean(),
            "logps/rejected": p.rejected.detach().mean(),
            "logits/chosen": per_half[0],
            "logits/rejected": per_half[1],
        }
