"""Reference log-probs for preference losses, three ways behind one interface.

A loss that declares ``Needs(reference=True)`` receives a ``(N,)`` tensor of the reference
model's summed log-probs of each row's supervised tokens; it never learns which of these
produced them:

- ``LiveReference(mode="adapter")``: the policy itself with its LoRA adapter disabled -- no
  second copy of the weights in memory (the default for LoRA models);
- ``LiveReference(mode="frozen")``: a frozen copy of the policy as it was before training (full
  fine-tuning);
- ``CachedReference``: either of the above run once over the training and validation pairs
  before training, stored on disk under a fingerprint of the data, the reference weights and the
  tokenisation settings, then looked up by sample id (``vlmtrain/reference_cache.py``).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import Tensor, nn

from vlmtrain.errors import VLMTrainError
from vlmtrain.losses.functional import sequence_logps
from vlmtrain.models.forward import forward_supervised

log = logging.getLogger(__name__)

MODES = ("auto", "adapter", "frozen")


def is_peft(model: nn.Module) -> bool:
    """Whether ``model`` carries PEFT adapters that can be switched off."""
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


class LiveReference:
    """Reference log-probs computed on each batch.

    Args:
        mode: ``adapter`` (the policy with its LoRA adapter disabled), ``frozen`` (a frozen copy
            of the policy taken before training) or ``auto`` (``adapter`` for LoRA models,
            ``frozen`` otherwise).
    """

    def __init__(self, mode: str = "auto") -> None:
        if mode not in MODES:
            raise VLMTrainError(f"reference.mode={mode!r}: use one of {MODES}")
        self.mode = mode
        self.model: nn.Module | None = None

    def attach(self, policy: nn.Module) -> None:
        """Bind to the policy before any training step (a frozen copy is taken now)."""
        mode = self.mode
        if mode == "auto":
            mode = "adapter" if is_peft(policy) else "frozen"
        if mode == "adapter" and not is_peft(policy):
            raise VLMTrainError(
                "reference.mode=adapter needs a LoRA model (set model.lora, e.g. "
                "model.lora={r:16}); for full fine-tuning use reference=frozen")
        self.mode = mode
        if mode == "adapter":
            self.model = policy
        else:
            self.model = copy.deepcopy(policy).eval().requires_grad_(False)
        log.info("reference model: %s", "the policy with its LoRA adapter disabled"
                 if mode == "adapter" else "a frozen copy of the initial policy")

    def prepare(self, module: Any, datamodule: Any) -> None:
        """Nothing to precompute for a live reference."""

    @torch.no_grad()
    def logps(self, batch: dict[str, Any], stage: str = "train") -> Tensor:
        """Summed reference log-probs of each row's supervised tokens.

        Args:
            batch: collated batch (``inputs``, ``labels``, ``meta``).
            stage: ``train`` or ``val`` (unused by a live reference).

        Returns:
            (N,) float32.
        """
        if self.model is None:
            raise RuntimeError("LiveReference.attach(policy) must be called before use")
        model = self.model
        device = batch["labels"].device
        if next(model.parameters()).device != device:
            model.to(device)
        if self.mode == "frozen":
            out = forward_supervised(model, batch)
            return sequence_logps(out.logits, batch["targets"])[0]
        # The adapter-less policy in eval mode: a reference has no dropout. Switching modes is
        # a walk over the module tree, negligible next to the forward pass.
        was_training = model.training
        model.eval()
        try:
            with model.disable_adapter():
                out = forward_supervised(model, batch)
        finally:
            model.train(was_training)
        return sequence_logps(out.logits, batch["targets"])[0]
