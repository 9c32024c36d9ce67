"""VLMModule: one LightningModule for every loss; the loss decides what it needs."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from vlmtrain.errors import VLMTrainError
from vlmtrain.losses.base import LossOutput
from vlmtrain.losses.functional import supervised_positions
from vlmtrain.models.hf import VLM

log = logging.getLogger(__name__)

# Batch keys that are not model inputs (labels are consumed by the loss, not by HF's own loss).
_NOT_MODEL_INPUTS = {"labels", "targets", "references", "ids", "prompts"}


class VLMModule(L.LightningModule):
    """Train a VLM with a pluggable loss.

    Args:
        vlm: loaded model bundle (model, processor, family).
        loss: a loss module with ``forward(policy, batch, reference=None) -> LossOutput``.
        optimizer: ``functools.partial`` of a torch optimizer taking param groups.
        scheduler: ``partial`` taking ``(optimizer, num_training_steps=...)``, or ``None``.
        lr_multipliers: per part (``vision``, ``projector``, ``language``) factor on the
            optimizer's ``lr``; tiny models from scratch need a faster vision side.
        generation: kwargs for ``generate`` in validation (``max_new_tokens`` ...).
    """

    def __init__(
        self,
        vlm: VLM,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        lr_multipliers: dict[str, float] | None = None,
        generation: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.vlm = vlm
        self.model = vlm.model
        self.loss_fn = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.lr_multipliers = dict(lr_multipliers or {})
        self.generation = {"max_new_tokens": 16, "do_sample": False, **(generation or {})}
        if getattr(loss, "needs_reference", False):
            raise VLMTrainError(
                f"{type(loss).__name__} needs a reference model, which this module does not "
                "load yet; pick a loss without one (loss=ce)"
            )

    # -- forward / steps ------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> Any:
        """Run the policy; logits only where the next token is supervised.

        Adds ``batch["targets"]`` (B, K), aligned with the returned ``logits`` (B, K, V).
        """
        positions, batch["targets"] = supervised_positions(batch["labels"])
        inputs = {k: v for k, v in batch.items()
                  if k not in _NOT_MODEL_INPUTS and not k.startswith("gen_")}
        return self.model(**inputs, use_cache=False, logits_to_keep=positions)

    def _step(self, batch: dict[str, Any], stage: str) -> LossOutput:
        out = self.loss_fn(self(batch), batch)
        if not torch.isfinite(out.loss):
            raise VLMTrainError(
                f"{stage} loss is {out.loss.item()} at step {self.global_step}: lower optim.lr, "
                "use dtype=float32/bfloat16 instead of float16, or enable gradient clipping"
            )
        bs = batch["input_ids"].shape[0]
        self.log(f"{stage}/loss", out.loss, prog_bar=True, batch_size=bs, sync_dist=stage != "train")
        for key, value in out.logs.items():
            self.log(f"{stage}/{key}", value, batch_size=bs, sync_dist=stage != "train")
        return out

    def on_train_epoch_start(self) -> None:
        # Datasets whose targets depend on the epoch (captions rotate through their references)
        # are told the epoch here; Lightning has no datamodule hook for it.
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(self.current_epoch)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        out = self._step(batch, "train")
        opt = self.optimizers(use_pl_optimizer=False)
        self.log("train/lr", opt.param_groups[0]["lr"], prog_bar=False)
        return out.loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._step(batch, "val").loss

    @torch.no_grad()
    def generate_answers(self, batch: dict[str, Any]) -> list[str]:
        """Greedy answers for the prompt-only part of a validation batch.

        Returns:
            One decoded string per sample, special tokens removed, whitespace stripped.
        """
        aligned = {k[4:]: v for k, v in batch.items()
                   if k.startswith("gen_") and k not in ("gen_input_ids", "gen_attention_mask")}
        images = {k: batch[k] for k in ("pixel_values", "image_grid_thw") if k in batch}
        prompt = batch["gen_input_ids"]
        out = self.model.generate(
            input_ids=prompt, attention_mask=batch["gen_attention_mask"], **images, **aligned,
            **self.generation,
        )
        new_tokens = out[:, prompt.shape[1]:]
        texts = self.vlm.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [t.strip() for t in texts]

    # -- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        groups = self._param_groups()
        optimizer = self.optimizer_factory(groups)
        for g in optimizer.param_groups:  # the factory's lr times the part's multiplier
            g["lr"] = g["lr"] * g.pop("lr_multiplier", 1.0)
        if self.scheduler_factory is None:
            return optimizer
        steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(steps):
            raise VLMTrainError("set trainer.max_steps or trainer.max_epochs for the LR schedule")
        scheduler = self.scheduler_factory(optimizer, num_training_steps=int(steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _param_groups(self) -> list[dict[str, Any]]:
        family = self.vlm.family
        parts = {"vision": family.vision_modules, "projector": family.projector_modules}
        unknown = set(self.lr_multipliers) - {"vision", "projector", "language"}
        if unknown:
            raise VLMTrainError(
                f"module.lr_multipliers has unknown parts {sorted(unknown)}; "
                "use vision, projector, language"
            )
        buckets: dict[str, list[nn.Parameter]] = {"language": [], "vision": [], "projector": []}
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            part = next((p for p, subs in parts.items() if any(s in name for s in subs)),
                        "language")
            buckets[part].append(param)
        if not any(buckets.values()):
            raise VLMTrainError("no trainable parameters: everything is frozen")
        return [
            {"params": params, "name": part, "lr_multiplier": self.lr_multipliers.get(part, 1.0)}
            for part, params in buckets.items() if params
        ]
