"""CLIPScore / RefCLIPScore as a torchmetrics metric (Hessel et al., 2021; formulas and the
details checked against the reference code in :mod:`vlmtrain.metrics.functional.clipscore`).

Not ``torchmetrics.multimodal.CLIPScore``: that one reports ``100 * cos`` (not ``2.5 * cos``),
adds no "A photo depicts " prefix, clamps only the final mean at 0 (not each sample), defaults to
ViT-L/14 and has no RefCLIPScore, so its numbers are not comparable to the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torchmetrics import Metric

from vlmtrain.metrics.functional.clipscore import (
    DEFAULT_MODEL,
    PREFIX,
    W,
    clip_score,
    clip_score_per_sample,
    load_clip,
    single_images,
)

if TYPE_CHECKING:
    from vlmtrain.metrics.functional.clipscore import ImageLike

__all__ = ["CLIPScore", "clip_score"]


class CLIPScore(Metric):
    """Mean CLIP-S, and RefCLIP-S when references are given, over every sample seen.

    Both are means of per-sample values, so each batch is embedded and scored in :meth:`update`
    (CLIP is small) and only the per-sample scores are kept (``cat`` states, gathered under DDP).
    The model is loaded on the first :meth:`update`, on the metric's device, and is not a
    submodule (it stays out of checkpoints).

    Args:
        model_name_or_path: CLIP checkpoint (hub name or local folder with its processor).
        prefix: text prepended to candidates and references ("A photo depicts ").
        w: CLIP-S scale (2.5).
        batch_size: images / texts per forward pass.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        model_name_or_path: str = DEFAULT_MODEL,
        prefix: str = PREFIX,
        w: float = W,
        batch_size: int = 64,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name_or_path, self.prefix, self.w, self.batch_size = (
            model_name_or_path, prefix, w, batch_size)
        self._clip: tuple | None = None  # (model, processor); a tuple is never registered
        # reference text / image -> features: the same come back at every validation
        self._reference_cache: dict[str, Tensor] = {}
        self._image_cache: dict[tuple, Tensor] = {}
        self.add_state("clip_scores", default=[], dist_reduce_fx="cat")
        self.add_state("refclip_scores", default=[], dist_reduce_fx="cat")

    def _model(self) -> tuple:
        if self._clip is None:
            self._clip = load_clip(self.model_name_or_path, self.device)
        elif self._clip[0].device != self.device:
            self._clip = (self._clip[0].to(self.device), self._clip[1])
            self._reference_cache, self._image_cache = {}, {}
        return self._clip

    def update(
        self,
        predictions: list[str],
        references: list[list[str]] | None = None,
        images: Sequence[ImageLike] | None = None,
        ids: Sequence[object] | None = None,
    ) -> None:
        """Score a batch.

        Args:
            predictions: B candidate captions.
            references: B lists of references, or None for reference-free CLIP-S only. Give
                them for every batch or for none.
            images: B images (PIL, paths, or ``(C, H, W)`` uint8 / [0, 1] float tensors).
            ids: B sample ids, to name a sample that cannot be scored.

        Raises:
            ValueError: a sample holds several images: CLIP-S is one caption against one image
                (Hessel et al., 2021), and no number is made up for it.
        """
        if images is None:
            raise ValueError("CLIPScore.update(): pass the batch's images=[...] (one per caption)")
        images = single_images(images, ids)  # before loading CLIP
        model, processor = self._model()
        clip_s, ref_s = clip_score_per_sample(images, predictions, references, model, processor,
                                              self.prefix, self.w, self.batch_size,
                                              self._reference_cache, self._image_cache, ids)
        self.clip_scores.append(clip_s.to(self.device))
        if ref_s is not None:
            self.refclip_scores.append(ref_s.to(self.device))

    def compute(self) -> dict[str, Tensor]:
        """Returns ``{"clipscore"}`` plus ``"refclipscore"`` when references were given
        (float64 scalars)."""
        clip_s = _cat(self.clip_scores)
        if clip_s.numel() == 0:
            raise RuntimeError("CLIPScore.compute(): no samples; call update() first")
        out = {"clipscore": clip_s.double().mean()}
        ref_s = _cat(self.refclip_scores)
        if ref_s.numel() not in (0, clip_s.numel()):
            raise ValueError(
                f"CLIPScore: references were given for {ref_s.numel()} of {clip_s.numel()} "
                "samples; give them for every batch (RefCLIPScore) or for none (CLIPScore only)"
            )
        if ref_s.numel():
            out["refclipscore"] = ref_s.double().mean()
        return out


def _cat(state: Tensor | list[Tensor]) -> Tensor:
    if isinstance(state, Tensor):  # after DDP sync torchmetrics has concatenated the list
        return state
    return torch.cat(state) if state else torch.zeros(0)
