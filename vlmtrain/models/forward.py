"""One forward pass that projects only supervised positions onto the vocabulary."""

from __future__ import annotations

from typing import Any

from torch import nn

from vlmtrain.losses.functional import supervised_positions
from vlmtrain.models.embed import forward_embeddings


def forward_supervised(model: nn.Module, batch: dict[str, Any]) -> Any:
    """Run ``model`` on ``batch["inputs"]``; logits only where the next token is supervised.

    The policy, a reference and a teacher all go through here, so their logits line up
    position for position.

    Args:
        model: a Hugging Face VLM (or a PEFT wrapper of one).
        batch: collated batch with ``inputs`` (model inputs only) and ``labels`` (N, T).

    Returns:
        The model output, whose ``logits`` are (N, K, V); sets ``batch["targets"]`` (N, K), the
        token each of those positions predicts (-100 on padding; see
        :func:`~vlmtrain.losses.functional.supervised_positions`).
    """
    positions, batch["targets"] = supervised_positions(batch["labels"])
    return model(**batch["inputs"], use_cache=False, logits_to_keep=positions)


#: The policy forward for each batch layout (``Needs.layout``): token layouts project supervised
#: positions onto the vocabulary, the contrastive layout returns pooled embeddings.
FORWARD_FOR_LAYOUT = {
    "sft": forward_supervised,
    "pairs": forward_supervised,
    "contrastive": forward_embeddings,
}
