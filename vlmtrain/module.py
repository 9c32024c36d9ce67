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
from vlmtrain.losses.base import LossOutput, needs_of
from vlmtrain.losses.kd import check_teacher_compatible
from vlmtrain.models.forward import FORWARD_FOR_LAYOUT, forward_supervised
from vlmtrain.models.hf import VLM

log = logging.getLogger(__name__)


class VLMModule(L.LightningModule):
    """Train a VLM with a pluggable loss.

    The loss declares what it needs (``loss.needs``, a :class:`~vlmtrain.losses.base.Needs`);
    this module owns the frozen models it asks for -- kept out of the optimizer, out of the
    checkpoint (they are not registered as submodules) and in eval mode -- and passes what they
    produce as the loss's third argument.

    Args:
        vlm: loaded model bundle (model, processor, family).
        loss: a loss module with ``needs`` and ``forward(policy, batch, frozen=None)``.
        optimizer: ``functools.partial`` of a torch optimizer taking param groups.
        scheduler: ``partial`` taking ``(optimizer, num_training_steps=...)``, or ``None``.
        lr_multipliers: per part (``vision``, ``projector``, ``language``) factor on the
            optimizer's ``lr``; tiny models from scratch need a faster vision side.
        generation: kwargs for ``generate`` in validation (``max_new_tokens`` ...).
        reference: reference log-probs (:mod:`vlmtrain.reference`) for a loss that needs them.
        teacher: a loaded teacher model for a loss that needs one (frozen here).
    """

    def __init__(
        self,
        vlm: VLM,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        lr_multipliers: dict[str, float] | None = None,
        generation: dict[str, Any] | None = None,
        reference: Any = None,
        teacher: VLM | None = None,
    ) -> None:
        super().__init__()
        self.vlm = vlm
        self.model = vlm.model
        self.loss_fn = loss
        self.needs = needs_of(loss)
        self._forward = FORWARD_FOR_LAYOUT[self.needs.layout]
        if hasattr(loss, "bind"):  # parameters sized by the model (projection heads)
            loss.bind(vlm)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.lr_multipliers = dict(lr_multipliers or {})
        self.generation = {"max_new_tokens": 16, "do_sample": False, **(generation or {})}
        name = type(loss).__name__
        if self.needs.reference and reference is None:
            raise VLMTrainError(f"{name} needs reference log-probs: set reference=auto "
                                "(or adapter / frozen / cached)")
        if self.needs.teacher and teacher is None:
            raise VLMTrainError(f"{name} needs a teacher model: pick one with teacher=<name> "
                                "(configs/teacher/), or teacher=checkpoint "
                                "teacher.name_or_path=DIR for a trained one")
        # Plain attributes, not submodules: frozen models stay out of parameters(), the
        # optimizer and state_dict().
        self.reference = reference if self.needs.reference else None
        if self.reference is not None:
            self.reference.attach(self.model)
        self.teacher = teacher if self.needs.teacher else None
        if self.teacher is not None:
            check_teacher_compatible(vlm, self.teacher)
            self.teacher.model.eval().requires_grad_(False)

    # -- forward / steps ------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> Any:
        """Run the policy as the loss's batch layout asks.

        Token layouts: logits only where the next token is supervised, and ``batch["targets"]``
        (N, K) aligned with them; contrastive layout: pooled image and caption embeddings.
        """
        return self._forward(self.model, batch)

    def on_fit_start(self) -> None:
        # A cached reference loads or computes its log-probs here, before the first step (and
        # before a stand-alone validate(), below); preparing twice is a no-op.
        if self.reference is not None:
            self.reference.prepare(self, getattr(self.trainer, "datamodule", None))

    def on_validation_start(self) -> None:
        self.on_fit_start()

    def _frozen(self, batch: dict[str, Any], stage: str) -> Any:
        """What the loss's frozen model produces for ``batch`` (``None`` if it needs none)."""
        if self.reference is not None:
            return self.reference.logps(batch, stage)
        if self.teacher is not None:
            teacher = self.teacher.model
            if next(teacher.parameters()).device != self.device:
                teacher.to(self.device)
            with torch.no_grad():
                return forward_supervised(teacher, batch)
        return None

    def _step(self, batch: dict[str, Any], stage: str) -> LossOutput:
        if "window_tokens" in batch:
            batch["token_divisor"] = self._token_divisor(batch.pop("window_tokens"))
        policy = self(batch)
        out = self.loss_fn(policy, batch, self._frozen(batch, stage))
        if not torch.isfinite(out.loss):
            raise VLMTrainError(
                f"{stage} loss is {out.loss.item()} at step {self.global_step}: lower optim.lr, "
                "use dtype=float32/bfloat16 instead of float16, or enable gradient clipping"
            )
        bs = len(batch["meta"]["ids"])
        self.log(f"{stage}/loss", out.loss, prog_bar=True, batch_size=bs, sync_dist=stage != "train")
        if stage != "train" or self.logs_written_this_step():
            for key, value in out.logs.items():
                self.log(f"{stage}/{key}", value, batch_size=bs, sync_dist=stage != "train")
        return out

    def logs_written_this_step(self) -> bool:
        """Whether the loggers write this training step's values (``trainer.log_every_n_steps``).

        ``self.log`` costs ~0.7 ms a value on CPU even when the value is never written (Lightning
        keeps a result object per key, moved and reset every step): 10 DPO statistics every step
        were 1/10 of a tiny model's step. Values a step will not write are therefore not logged
        at all; the loss itself always is (progress bar). Outside a fit loop: always.
        """
        trainer = self._trainer
        if trainer is None:
            return True
        connector = getattr(trainer, "_logger_connector", None)
        try:
            return bool(trainer.fast_dev_run or connector is None or connector.should_update_logs)
        except (AttributeError, NotImplementedError):  # another Lightning version: log
            return True

    def _token_divisor(self, window_tokens: Tensor) -> Tensor:
        """What a token-mean loss divides its micro-batch sum by (see ``data/window.py``).

        Lightning divides each micro-batch loss by ``k = accumulate_grad_batches`` and DDP
        averages gradients over ``W`` ranks, so dividing the sum by ``N / (k W)`` -- ``N`` the
        answer tokens of the whole step on all ranks -- makes the step's gradient that of the
        mean over all ``N`` tokens, whatever the micro-batches hold.
        """
        total = window_tokens.to(self.device, torch.float32)
        world = self.trainer.world_size if self._trainer is not None else 1
        if world > 1:
            total = self.trainer.strategy.reduce(total, reduce_op="sum")
        k = self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        return (total / (k * world)).clamp(min=1.0)

    def on_train_epoch_start(self) -> None:
        # Datasets whose targets depend on the epoch (captions rotate through their references)
        # are told the epoch here; Lightning has no datamodule hook for it.
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(self.current_epoch)

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int) -> Tensor | None:
        if batch is None:  # every sample of it was skipped as bad (on_bad_sample=skip)
            log.warning("training step %d skipped: every sample of its batch was bad",
                        self.global_step)
            return None  # Lightning skips the optimizer step
        out = self._step(batch, "train")
        if self.logs_written_this_step():
            opt = self.optimizers(use_pl_optimizer=False)
            self.log("train/lr", opt.param_groups[0]["lr"], prog_bar=False)
        return out.loss

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> Tensor | None:
        return None if batch is None else self._step(batch, "val").loss

    def on_validation_epoch_end(self) -> None:
        # skipped records per reason, found at start-up and while reading (DataLoader workers
        # included); in the progress of a run, not only in its final summary
        datamodule = getattr(self.trainer, "datamodule", None)
        counts = datamodule.skipped_by_reason() if hasattr(datamodule, "skipped_by_reason") else {}
        for key, value in counts.items():
            self.log(key, float(value), rank_zero_only=True)
        # metrics a loss scores over the whole split (retrieval recall); synced across ranks
        # by the metric itself, so every rank logs the same value
        epoch_metrics = getattr(self.loss_fn, "epoch_metrics", None)
        for key, value in (epoch_metrics() if epoch_metrics is not None else {}).items():
            self.log(f"val/{key}", value.float(), prog_bar=key.endswith("_at_1"))

    @torch.no_grad()
    def generate_answers(self, batch: dict[str, Any]) -> list[str]:
        """Greedy answers for the prompt-only inputs of a validation batch (``batch["gen"]``).

        Returns:
            One decoded string per sample, special tokens removed, whitespace stripped.
        """
        gen = batch["gen"]
        out = self.model.generate(**gen, **self.generation)
        new_tokens = out[:, gen["input_ids"].shape[1]:]
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
        unknown = set(self.lr_multipliers) - {"vision", "projector", "language", "loss"}
        if unknown:
            raise VLMTrainError(
                f"module.lr_multipliers has unknown parts {sorted(unknown)}; "
                "use vision, projector, language, loss"
            )
        buckets: dict[str, list[nn.Parameter]] = {"language": [], "vision": [], "projector": []}
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            part = next((p for p, subs in parts.items() if any(s in name for s in subs)),
                        "language")
            buckets[part].append(param)
        groups = [
            {"params": params, "name": part, "lr_multiplier": self.lr_multipliers.get(part, 1.0)}
            for part, params in buckets.items() if params
        ]
        # A loss's own parameters (InfoNCE's heads and temperature): weight matrices decay as
        # the optimizer says, scalars such as the logit scale never do (CLIP's rule).
        own = [p for p in self.loss_fn.parameters() if p.requires_grad]
        factor = self.lr_multipliers.get("loss", 1.0)
        if any(p.ndim >= 2 for p in own):
            groups.append({"params": [p for p in own if p.ndim >= 2], "name": "loss",
                           "lr_multiplier": factor})
        if any(p.ndim < 2 for p in own):
            groups.append({"params": [p for p in own if p.ndim < 2], "name": "loss_no_decay",
                           "lr_multiplier": factor, "weight_decay": 0.0})
        if not groups:
            raise VLMTrainError("no trainable parameters: everything is frozen")
        return groups

