"""Load a Hugging Face VLM + processor by name or path, then apply LoRA / freezing / dtype.

The tiny offline twins and real checkpoints (``Qwen/Qwen2.5-VL-3B-Instruct``,
``google/paligemma-3b-pt-224``) go through this one function.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vlmtrain.errors import VLMTrainError
from vlmtrain.models.families import Family
from vlmtrain.models.hub import cache_only, offline_error

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class VLM:
    """A loaded model with what the rest of vlmtrain needs to drive it."""

    model: nn.Module
    processor: Any
    family: Family
    name_or_path: str


@dataclass
class LoraSpec:
    """PEFT LoRA settings; ``target_modules=None`` means the language model's linear layers."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: Any = None
    modules_to_save: list[str] | None = None


def load_vlm(
    name_or_path: str,
    family: Family,
    lora: dict | LoraSpec | None = None,
    freeze_vision: bool = False,
    freeze_projector: bool = False,
    freeze_language: bool = False,
    gradient_checkpointing: bool = False,
    dtype: str = "float32",
    attn_implementation: str | None = "sdpa",
    processor_kwargs: dict | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> VLM:
    """Load model and processor with ``from_pretrained`` and prepare them for training.

    Args:
        name_or_path: hub id or local folder (a tiny builder returns a folder).
        family: the family adapter (prompt layout and module names).
        lora: LoRA settings; ``None`` trains all (unfrozen) weights.
        freeze_vision: freeze the vision encoder.
        freeze_projector: freeze the vision-to-language projector.
        freeze_language: freeze the language model (every parameter that is neither vision
            encoder nor projector: embeddings, decoder layers, LM head), as in the alignment
            stage of LLaVA-style training.
        gradient_checkpointing: recompute activations in backward to save memory.
        dtype: ``float32`` | ``bfloat16`` | ``float16`` for the weights.
        attn_implementation: ``sdpa`` | ``eager`` | ``flash_attention_2``.
        processor_kwargs: forwarded to ``AutoProcessor.from_pretrained`` (e.g. ``min_pixels``).
        revision: hub revision.
        trust_remote_code: run Python code shipped with the checkpoint (off: only
            architectures transformers itself implements load).

    Raises:
        VLMTrainError: the model cannot be loaded; without a reachable hub this is raised at
            once (no retries) when the model is not in the local cache.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if dtype not in _DTYPES:
        raise VLMTrainError(f"model.dtype={dtype!r} is not one of {sorted(_DTYPES)}")
    offline = cache_only(name_or_path, "model.name_or_path")  # no hub: cache, or fail at once
    common = {"revision": revision, "trust_remote_code": trust_remote_code,
              "local_files_only": offline}
    try:
        processor = AutoProcessor.from_pretrained(name_or_path, **common,
                                                  **(processor_kwargs or {}))
        model = AutoModelForImageTextToText.from_pretrained(
            name_or_path, **common, dtype=_DTYPES[dtype], attn_implementation=attn_implementation,
        )
    except OSError as exc:
        if offline:
            raise offline_error(name_or_path, "model.name_or_path") from None
        raise VLMTrainError(
            f"cannot load model '{name_or_path}': {str(exc).splitlines()[0]} -- without access "
            "to the Hugging Face Hub, download it elsewhere (`hf download "
            f"{name_or_path} --local-dir DIR`) and pass model.name_or_path=DIR"
        ) from exc
    model.train()  # from_pretrained returns eval mode; dropout etc. must be active in training
    _freeze(model, family, freeze_vision, freeze_projector, freeze_language)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if lora is not None:
        model = _apply_lora(model, family, lora if isinstance(lora, LoraSpec) else LoraSpec(**lora))
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    log.info("loaded %s: %s parameters, %s trainable", name_or_path, f"{n_all:,}", f"{n_train:,}")
    return VLM(model=model, processor=processor, family=family, name_or_path=str(name_or_path))


def _freeze(model: nn.Module, family: Family, vision: bool, projector: bool,
            language: bool = False) -> None:
    parts = (family.vision_modules if vision else ()) + (family.projector_modules if projector else ())
    if language:  # the language model is whatever is neither vision encoder nor projector
        image_side = family.vision_modules + family.projector_modules
        for name, param in model.named_parameters():
            if not any(part in name for part in image_side):
                param.requires_grad_(False)
    if not parts:
        return
    hit = 0
    for name, param in model.named_parameters():
        if any(part in name for part in parts):
            param.requires_grad_(False)
            hit += 1
    if hit == 0:
        raise VLMTrainError(
            f"freezing found no parameters matching {parts}: the model's module names do not "
            "match its family adapter; set model.family to the right family"
        )


def _apply_lora(model: nn.Module, family: Family, spec: LoraSpec) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    target = spec.target_modules if spec.target_modules is not None else family.lora_language_regex
    if isinstance(target, str):
        names = [n for n, _ in model.named_modules() if re.fullmatch(target, n)]
        if not names:
            raise VLMTrainError(f"model.lora.target_modules={target!r} matches no module")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    config = LoraConfig(
        r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
        target_modules=list(target) if not isinstance(target, str) else target,
        modules_to_save=spec.modules_to_save,
    )
    model = get_peft_model(model, config)
    # get_peft_model freezes everything but the adapters; with LoRA the base stays frozen
    # (standard practice) and explicitly frozen parts stay frozen even if listed to save.
    for name, param in model.named_parameters():
        if any(name.endswith(f) for f in frozen):
            param.requires_grad_(False)
    return model
