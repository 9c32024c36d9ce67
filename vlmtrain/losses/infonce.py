"""Image-text alignment of a VLM with CLIP's symmetric InfoNCE loss (Radford et al., 2021)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from vlmtrain.errors import VLMTrainError
from vlmtrain.losses import functional as LF
from vlmtrain.losses.base import LossOutput, Needs
from vlmtrain.metrics.retrieval import ImageTextRetrieval, caption_groups

POOLS = ("mean", "last")


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE between projected image and caption embeddings of the same VLM.

    Image embedding: the projector's output for the image, mean-pooled, through ``image_head``;
    text embedding: the language model's states over the caption alone, pooled (``pool``),
    through ``text_head``. Both heads are linear maps without bias into a ``dim``-wide space, as
    CLIP's projections; the logit scale is learned, starts at ``log(1/0.07)`` and is capped at
    100 after ``exp``, as CLIP does. Under DDP every rank's pairs are negatives of every other
    rank's (:func:`~vlmtrain.losses.functional.info_nce_distributed`).

    The heads and the logit scale are this module's parameters: they are sized by
    :meth:`bind` (the module calls it with the model before building the optimizer), trained
    with the model's trainable parts and saved in the Lightning checkpoint.

    In validation the embeddings also feed an :class:`~vlmtrain.metrics.retrieval.
    ImageTextRetrieval` metric; :meth:`epoch_metrics` returns recall@K over the whole split.

    Args:
        dim: width of the shared embedding space.
        pool: how caption states become one vector: ``mean`` or ``last`` (see
            :func:`~vlmtrain.losses.functional.pool_states`).
        init_temperature: the softmax temperature at the start (CLIP: 0.07).
        learn_temperature: train the logit scale (CLIP does) or keep it fixed.
        retrieval_ks: K values of the validation recall@K.
    """

    needs = Needs(layout="contrastive")

    def __init__(self, dim: int = 128, pool: str = "mean", init_temperature: float = 0.07,
                 learn_temperature: bool = True, retrieval_ks: Sequence[int] = (1, 5)) -> None:
        super().__init__()
        if pool not in POOLS:
            raise VLMTrainError(f"loss.pool={pool!r}: use one of {POOLS}")
        if not 1.0 / LF.CLIP_MAX_LOGIT_SCALE <= init_temperature <= 1.0:
            raise VLMTrainError(f"loss.init_temperature={init_temperature} is outside [0.01, 1]: "
                                "CLIP starts at 0.07 and caps the logit scale at 100")
        if dim < 1:
            raise VLMTrainError(f"loss.dim={dim} must be >= 1")
        self.dim, self.pool = int(dim), pool
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)),
                                        requires_grad=learn_temperature)
        self.image_head: nn.Linear | None = None
        self.text_head: nn.Linear | None = None
        self.retrieval = ImageTextRetrieval(ks=retrieval_ks)

    def bind(self, vlm: Any) -> None:
        """Create the projection heads for ``vlm``'s hidden size (image and text sides).

        Args:
            vlm: the loaded model bundle (:class:`~vlmtrain.models.hf.VLM`).
        """
        config = vlm.model.config
        hidden = getattr(getattr(config, "text_config", config), "hidden_size", None)
        if hidden is None:
            raise VLMTrainError(f"loss=infonce cannot find the language model's hidden size in "
                                f"{type(config).__name__}: this family is not supported")
        # Initialised like CLIP's projections (std = width^-0.5); float32 whatever the model's
        # dtype: the heads are tiny and the loss is computed in float32 anyway.
        self.image_head = nn.Linear(hidden, self.dim, bias=False)
        self.text_head = nn.Linear(hidden, self.dim, bias=False)
        for head in (self.image_head, self.text_head):
            nn.init.normal_(head.weight, std=hidden**-0.5)

    def embed(self, policy: Any) -> tuple[Tensor, Tensor]:
        """Projected (not yet normalised) ``(image, text)`` embeddings, each (B, dim)."""
        if self.image_head is None or self.text_head is None:
            raise VLMTrainError("InfoNCELoss used before bind(vlm): build it through VLMModule")
        text = LF.pool_states(policy.text_states.float(), policy.text_mask, self.pool)
        return self.image_head(policy.image.float()), self.text_head(text)

    def forward(self, policy: Any, batch: dict, frozen: Any = None) -> LossOutput:
        """Args:
            policy: :class:`~vlmtrain.models.embed.Embeddings` of the batch.
            batch: an image-text batch; ``meta["prompts"]`` are the captions.
            frozen: unused (this loss needs no frozen model).
        """
        image, text = self.embed(policy)
        loss = LF.info_nce_distributed(image, text, self.logit_scale)
        if not self.training:
            self.retrieval.update(image, text, caption_groups(batch["meta"]["prompts"]))
        scale = self.logit_scale.detach().clamp(max=math.log(LF.CLIP_MAX_LOGIT_SCALE)).exp()
        return LossOutput(loss, {"logit_scale": scale})

    def epoch_metrics(self) -> dict[str, Tensor]:
        """Recall@K over every validation pair since the last call (then reset); ``{}`` if none."""
        if not self.retrieval.update_called:
            return {}
        values = self.retrieval.compute()
        self.retrieval.reset()
        return values
