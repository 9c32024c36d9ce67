"""TRL's ``DPOTrainer`` as a test oracle: one training step on a given LoRA VLM and batch.

vlmtrain's DPO must give the numbers TRL gives (loss, logged values, gradients). Rather than
transcribe TRL's maths, this module runs TRL's own code path -- ``DPOTrainer`` built from a
``DPOConfig``, its vision collator, ``training_step`` (forward, reference forward, loss, backward)
and ``log`` -- and hands back what it computed together with the exact tensors it fed the model,
so a test can rebuild vlmtrain's batch from the same tokens.

Everything runs offline on CPU in float32, no optimizer step. TRL 1.16 is what this was written
against (``trl/trainer/dpo_trainer.py``); its behaviour is summarised where it matters below.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

# The keys of TRL's collator output that are model inputs (the rest, completion_mask, is not).
MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw",
                    "mm_token_type_ids", "token_type_ids")
# What TRL logs for DPO and what vlmtrain must log identically.
LOGGED_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
               "logps/chosen", "logps/rejected", "logits/chosen", "logits/rejected")
IGNORE_INDEX = -100


@dataclass
class PreferenceExample:
    """One preference pair about one image (RLAIF-V style)."""

    image: Image.Image
    prompt: str
    chosen: str
    rejected: str


@dataclass
class TRLStep:
    """What one ``DPOTrainer.training_step`` computed.

    Attributes:
        loss: the loss TRL back-propagated (scalar).
        metrics: TRL's logged values for the step, keys as TRL logs them (``rewards/chosen``...).
        grads: gradient of every trainable parameter after backward, by parameter name.
        batch: the collator output TRL fed the model, rows ``[chosen (B); rejected (B)]``:
            ``input_ids, attention_mask, completion_mask`` (2B, T), ``pixel_values`` (every image
            twice), ``image_grid_thw`` (2B, 3), ``mm_token_type_ids`` (2B, T) for Qwen.
        labels: (2B, T) TRL's own labels, ``input_ids`` with -100 off the completion tokens.
    """

    loss: Tensor
    metrics: dict[str, float]
    grads: dict[str, Tensor]
    batch: dict[str, Tensor]
    labels: Tensor


def synthetic_examples(n: int = 2, image_size: int = 48, seed: int = 0) -> list[PreferenceExample]:
    """``n`` pairs on random-noise images, answers of different token lengths.

    Different lengths exercise the padding between chosen and rejected rows and IPO's
    per-sequence length normalisation.
    """
    rng = np.random.default_rng(seed)
    questions = [("What colour is the circle?", "red", "blue square"),
                 ("How many shapes are there?", "three", "two"),
                 ("What shape is on the left?", "a green triangle", "circle"),
                 ("Is there a square?", "yes", "no")]
    out = []
    for i in range(n):
        pixels = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
        prompt, chosen, rejected = questions[i % len(questions)]
        out.append(PreferenceExample(Image.fromarray(pixels), prompt, chosen, rejected))
    return out


def lora_tiny_qwen(seed: int = 0, std: float = 0.5) -> Any:
    """Tiny Qwen2.5-VL (48 px) with a LoRA adapter (r=4, no dropout) whose weights are random,
    so the policy differs from its adapter-less reference (see :func:`perturb_lora`)."""
    from vlmtrain.models.families import Qwen2_5_VL
    from vlmtrain.models.hf import load_vlm
    from vlmtrain.models.tiny import build_tiny_qwen2_5_vl

    vlm = load_vlm(build_tiny_qwen2_5_vl(image_size=48), Qwen2_5_VL(),
                   lora={"r": 4, "alpha": 8, "dropout": 0.0})
    perturb_lora(vlm.model, seed=seed, std=std)
    return vlm


def perturb_lora(model: nn.Module, seed: int = 0, std: float = 0.3) -> None:
    """Give every LoRA matrix random values, so the policy differs from its adapter-less base.

    A fresh adapter has ``lora_B = 0``: policy and reference would coincide and every DPO loss
    would sit at its trivial value, which cannot tell a right formula from a wrong one.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * std)


def trl_dpo_step(
    model: nn.Module,
    processor: Any,
    examples: list[PreferenceExample],
    beta: float = 0.1,
    loss_type: tuple[str, ...] | list[str] = ("sigmoid",),
    loss_weights: list[float] | None = None,
    label_smoothing: float = 0.0,
) -> TRLStep:
    """Run one TRL ``DPOTrainer`` training step (no optimizer step) and return what it computed.

    The examples are given to TRL in its conversational vision format (a user turn with the
    image and the prompt, an assistant turn per answer), the way TRL's docs feed VLM preference
    data; TRL's ``DataCollatorForVisionPreference`` tokenises them.

    TRL treats a ready ``PeftModel`` as a pretrained adapter and adds a frozen copy of it, ``ref``,
    as the reference (dpo_trainer.py L666-694). vlmtrain's default reference is the policy with
    its adapter disabled, which is TRL's reference for a new adapter (``use_adapter(model, None)``
    = ``model.disable_adapter()``, L1328-1336); the ``ref`` copy is deleted after construction so
    TRL takes that path. The model is otherwise left as found (its forward patch is removed),
    except that dropout modules get ``p = 0`` as TRL's ``disable_dropout`` does.

    Args:
        model: a PEFT LoRA model (``vlmtrain.models.hf.load_vlm(..., lora=...)``), float32.
        processor: its processor.
        examples: the B preference pairs of the batch, in batch order.
        beta, loss_type, loss_weights, label_smoothing: ``DPOConfig`` fields.

    Returns:
        A :class:`TRLStep`.
    """
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    rows = [{"image": ex.image,
             "prompt": [{"role": "user", "content": ex.prompt}],
             "chosen": [{"role": "assistant", "content": ex.chosen}],
             "rejected": [{"role": "assistant", "content": ex.rejected}]} for ex in examples]
    dataset = Dataset.from_list(rows)
    base = model.get_base_model()
    with tempfile.TemporaryDirectory() as out_dir:
        args = DPOConfig(
            output_dir=out_dir, report_to="none", use_cpu=True, bf16=False, fp16=False,
            gradient_checkpointing=False, dataloader_num_workers=0,
            per_device_train_batch_size=len(rows), beta=beta, loss_type=list(loss_type),
            loss_weights=loss_weights, label_smoothing=label_smoothing,
        )
        trainer = DPOTrainer(model=model, args=args, train_dataset=dataset,
                             processing_class=processor)
        try:
            return _one_step(trainer, model, dataset)
        finally:
            if "ref" in model.peft_config:
                model.delete_adapter("ref")
            base.__dict__.pop("forward", None)  # drop TRL's fused-head patch (an instance attr)


def _one_step(trainer: Any, model: nn.Module, dataset: Any) -> TRLStep:
    if "ref" in model.peft_config:
        model.delete_adapter("ref")
    # The collator on the rows in order is what the train dataloader yields (all columns are in
    # TRL's signature list, so none is dropped), without the random sampler's reordering.
    batch = trainer.data_collator([dataset[i] for i in range(len(dataset))])
    fed = {k: v.clone() for k, v in batch.items()}
    model.zero_grad(set_to_none=True)
    trainer.current_gradient_accumulation_steps = 1  # set by the train loop otherwise
    loss = trainer.training_step(trainer.model, batch)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
             if p.requires_grad and p.grad is not None}
    model.zero_grad(set_to_none=True)
    trainer.log({})  # TRL averages its per-step lists here, as at every logging step
    metrics = {k: v for k, v in trainer.state.log_history[-1].items()
               if k not in ("step", "epoch")}
    labels = fed["input_ids"].masked_fill(fed["completion_mask"] == 0, IGNORE_INDEX)
    return TRLStep(loss=loss, metrics=metrics, grads=grads, batch=fed, labels=labels)


def vlmtrain_batch(step: TRLStep) -> dict[str, Any]:
    """vlmtrain's preference batch built from exactly the tokens TRL used.

    Returns:
        ``{"inputs": model inputs, "labels": (2B, T) ids, -100 but on completion tokens}``, rows
        ``[chosen; rejected]`` as in TRL.
    """
    inputs = {k: v.clone() for k, v in step.batch.items() if k in MODEL_INPUT_KEYS}
    return {"inputs": inputs, "labels": step.labels.clone()}
