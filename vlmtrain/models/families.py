"""What differs between VLM families: prompt layout, end-of-answer marker, module names.

A family is chosen by the model config (``family: {_target_: ...}``), never by sniffing class
names. Each class is tiny and stateless; the collator and the module ask it questions.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from vlmtrain.data.records import IMAGE_PLACEHOLDER


class Family(Protocol):
    """The questions vlmtrain asks about a model family."""

    #: substrings of parameter names of the vision encoder (patch embedding + blocks)
    vision_modules: tuple[str, ...]
    #: substrings of parameter names of the vision-to-language projector
    projector_modules: tuple[str, ...]
    #: regex for PEFT ``target_modules`` that selects the language model's linear layers only
    lora_language_regex: str
    #: extra integer inputs aligned with ``input_ids`` that the model needs (0 on prompt side)
    aligned_inputs: tuple[str, ...]

    def prompt_text(self, processor: Any, prompt: str, images: int = 1) -> str:
        """The text (before image-token expansion) that precedes the answer.

        Args:
            processor: the model's processor.
            prompt: the user text; ``<image>`` placeholders, if any, mark where the images go.
            images: how many images the sample has (all first when the prompt marks none).
        """

    def answer_text(self, processor: Any, answer: str) -> str:
        """The answer followed by the end-of-turn marker the model must learn to emit."""

    def followup_text(self, processor: Any, prompt: str) -> str:
        """The text between one answer's end-of-turn marker and the next answer."""

    def answer_type_id(self, name: str) -> int:
        """The value of aligned input ``name`` on answer (and follow-up) tokens."""


class Qwen2_5_VL:
    """Qwen2.5-VL (and Qwen2-VL): ChatML turns, image placed before the question."""

    vision_modules = ("visual.patch_embed", "visual.blocks")
    projector_modules = ("visual.merger",)
    lora_language_regex = (
        r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    )
    aligned_inputs = ("mm_token_type_ids",)

    def __init__(self, system_prompt: str | None = None) -> None:
        self.system_prompt = system_prompt

    def prompt_text(self, processor: Any, prompt: str, images: int = 1) -> str:
        messages: list[dict[str, Any]] = []
        if self.system_prompt is not None:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": _interleaved(prompt, images)})
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def answer_text(self, processor: Any, answer: str) -> str:
        # The template closes an assistant turn with "<|im_end|>\n"; the model must learn to
        # emit <|im_end|> (generation stops there), the newline after it is never predicted.
        return answer + "<|im_end|>"

    def followup_text(self, processor: Any, prompt: str) -> str:
        # ChatML: the newline the template puts after <|im_end|>, then a text-only user turn and
        # the assistant header, exactly as the chat template renders a later turn.
        return f"\n<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"

    def answer_type_id(self, name: str) -> int:
        return 0  # mm_token_type_ids: 0 = text


class PaliGemma:
    """PaliGemma: ``<image>*N <bos> prompt \\n answer <eos>``, prefix-LM attention."""

    vision_modules = ("vision_tower",)
    projector_modules = ("multi_modal_projector",)
    lora_language_regex = (
        r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    )
    # token_type_ids: 0 = prefix (bidirectional attention), 1 = suffix (causal, trained on)
    aligned_inputs = ("token_type_ids",)

    def prompt_text(self, processor: Any, prompt: str, images: int = 1) -> str:
        # The processor expands each <image> into image_seq_length tokens and adds <bos> after
        # the last one (+ "\n" at the end): PaliGemma reads every image before the text, so
        # placeholders only count images here.
        text = re.sub(r"\s*<image>\s*", " ", prompt).strip() if IMAGE_PLACEHOLDER in prompt \
            else prompt
        return processor.image_token * images + text

    def answer_text(self, processor: Any, answer: str) -> str:
        return answer + processor.tokenizer.eos_token

    def followup_text(self, processor: Any, prompt: str) -> str:
        # PaliGemma has no chat format: a later question continues the causal suffix in the
        # prefix's own layout ("question\n"), so the first turn stays exactly what generation
        # sees and later turns add supervised answers about the same image.
        return prompt + "\n"

    def answer_type_id(self, name: str) -> int:
        return 1


def _interleaved(prompt: str, images: int) -> list[dict[str, str]]:
    """Chat-message content: images where the prompt's placeholders are, else all first."""
    if IMAGE_PLACEHOLDER not in prompt:
        return [{"type": "image"}] * images + [{"type": "text", "text": prompt}]
    content: list[dict[str, str]] = []
    for n, piece in enumerate(prompt.split(IMAGE_PLACEHOLDER)):
        if n:
            content.append({"type": "image"})
        if piece.strip():
            content.append({"type": "text", "text": piece.strip()})
    return content
