"""Image<->text retrieval recall@K over a whole validation set (CLIP-style evaluation)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.retrieval import RetrievalHitRate
from torchmetrics.utilities import dim_zero_cat


def caption_groups(captions: Sequence[str]) -> Tensor:
    """(B,) int64 ids equal for equal captions (whitespace and case folded).

    Two images with the same caption ("a red circle") are each a right answer for that caption;
    counting only the row's own index would score a perfect model below 1. A CRC32 of the text
    is the same on every rank, so the ids survive the DDP gather.
    """
    return torch.tensor([zlib.crc32(" ".join(c.lower().split()).encode()) for c in captions],
                        dtype=torch.int64)


class ImageTextRetrieval(Metric):
    """Recall@K of image->text and text->image retrieval among all validation pairs.

    As in the CLIP and ALIGN papers, recall@K is the share of queries with at least one right
    answer among their K most similar candidates (torchmetrics' ``RetrievalHitRate``); a
    candidate is right when its caption group equals the query's (:func:`caption_groups`). The
    embeddings of every batch are kept (``cat`` states, gathered over DDP ranks) because each
    query ranks against the whole set, not only its batch.

    Args:
        ks: the K values to report.

    Example:
        >>> m = ImageTextRetrieval(ks=(1,))
        >>> m.update(torch.eye(2), torch.eye(2), torch.tensor([0, 1]))
        >>> {k: float(v) for k, v in m.compute().items()}
        {'i2t_recall_at_1': 1.0, 't2i_recall_at_1': 1.0}
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, ks: Sequence[int] = (1, 5), **kwargs) -> None:
        super().__init__(**kwargs)
        if not ks or any(int(k) < 1 for k in ks):
            raise ValueError(f"ImageTextRetrieval: ks={list(ks)} must be positive integers")
        self.ks = tuple(int(k) for k in ks)
        self.add_state("images", default=[], dist_reduce_fx="cat")
        self.add_state("texts", default=[], dist_reduce_fx="cat")
        self.add_state("groups", default=[], dist_reduce_fx="cat")

    def update(self, image_emb: Tensor, text_emb: Tensor, groups: Tensor) -> None:
        """Add a batch of pairs.

        Args:
            image_emb: (B, E) image embeddings (normalised here).
            text_emb: (B, E) embeddings of their captions (normalised here).
            groups: (B,) caption group ids (:func:`caption_groups`).
        """
        self.images.append(F.normalize(image_emb.detach().float(), dim=-1))
        self.texts.append(F.normalize(text_emb.detach().float(), dim=-1))
        self.groups.append(groups.to(self.device))

    def compute(self) -> dict[str, Tensor]:
        """``{"i2t_recall_at_K", "t2i_recall_at_K"}`` for each K, fractions in [0, 1]."""
        images, texts = dim_zero_cat(self.images), dim_zero_cat(self.texts)
        groups = dim_zero_cat(self.groups)
        if images.numel() == 0:
            raise RuntimeError("ImageTextRetrieval.compute(): no pairs; call update() first")
        sim = images @ texts.T  # (N images, N texts)
        relevant = groups[:, None] == groups[None, :]  # symmetric: same caption group
        rows = torch.arange(len(groups), device=sim.device)[:, None].expand_as(sim)
        out = {}
        for k in self.ks:
            hit = RetrievalHitRate(top_k=k).to(sim.device)
            out[f"i2t_recall_at_{k}"] = hit(sim.flatten(), relevant.flatten(), indexes=rows.flatten())
            hit = RetrievalHitRate(top_k=k).to(sim.device)
            out[f"t2i_recall_at_{k}"] = hit(sim.T.flatten(), relevant.T.flatten(),
                                            indexes=rows.flatten())
        return out
