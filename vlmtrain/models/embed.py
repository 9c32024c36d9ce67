"""Pooled image and text embeddings from a VLM's own parts, for image-text alignment losses.

The image side is what the language model sees of an image: the vision tower's output after the
projector (Qwen2.5-VL's patch merger, PaliGemma's linear projector), mean-pooled over the
image's tokens. The text side is the language model's last hidden states over the caption alone
(no image, no chat template); the loss pools them. Both live in the language model's hidden
size, so a loss can put its projection heads on top without knowing the family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class Embeddings:
    """What :func:`forward_embeddings` returns.

    Attributes:
        image: (B, D) mean of each image's projected tokens (D: language hidden size).
        text_states: (B, T, D) the language model's last hidden states over each caption.
        text_mask: (B, T) 1 on caption tokens, 0 on padding (captions are right-padded).
    """

    image: Tensor
    text_states: Tensor
    text_mask: Tensor


def forward_embeddings(model: nn.Module, batch: dict[str, Any]) -> Embeddings:
    """Run the image side on ``batch["inputs"]`` and the text side on ``batch["text"]``.

    Args:
        model: a Hugging Face VLM (or a PEFT wrapper of one) with ``get_image_features`` and
            ``get_decoder``.
        batch: an image-text batch (:class:`~vlmtrain.data.image_text.ImageTextCollator`):
            ``inputs`` holds the image processor's tensors (``pixel_values``, and for
            Qwen2.5-VL ``image_grid_thw``), ``text`` the caption ids and attention mask (B, T).

    Returns:
        :class:`Embeddings`, one image embedding per caption row.
    """
    features = model.get_image_features(**batch["inputs"]).pooler_output
    # Qwen2.5-VL: a tuple with one (tokens_i, D) tensor per image (images may differ in size);
    # PaliGemma: one (B, tokens, D) tensor.
    if isinstance(features, (tuple, list)):
        image = torch.stack([f.mean(dim=0) for f in features])
    else:
        image = features.mean(dim=1)
    text = batch["text"]
    states = model.get_decoder()(input_ids=text["input_ids"],
                                 attention_mask=text["attention_mask"], use_cache=False)
    return Embeddings(image=image, text_states=states.last_hidden_state,
                      text_mask=text["attention_mask"])
