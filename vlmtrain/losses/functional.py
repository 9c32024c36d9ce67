"""Loss maths as tensor-in/tensor-out functions (no modules, no batches)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100


def supervised_positions(labels: Tensor, ignore_index: int = IGNORE_INDEX) -> tuple[Tensor, Tensor]:
    """Positions whose next token is supervised, and those next tokens, per sample.

    Position t predicts token t+1 (causal shift). Answers are a small part of a VLM sequence
    (image tokens dominate), so projecting only these positions onto the vocabulary (Hugging
    Face's ``logits_to_keep``) avoids a (B, T, V) logits tensor -- with a 150k vocabulary and
    1,000 image tokens that tensor alone is gigabytes.

    Args:
        labels: (B, T) token ids, ``ignore_index`` where nothing is learned.

    Returns:
        ``(positions, targets)``, both (B, K) with K = the most supervised tokens of any sample
        (at least 1): ``positions[b, k]`` indexes the sequence, ``targets[b, k]`` is the token
        to predict there, or ``ignore_index`` on padding (whose position is 0).
    """
    nxt = labels[:, 1:]
    sup = nxt != ignore_index
    counts = sup.sum(dim=1)
    k = max(int(counts.max()), 1) if labels.shape[0] else 1
    # a stable sort on "not supervised" brings supervised positions first, in sequence order
    order = torch.argsort((~sup).to(torch.int8), dim=1, stable=True)[:, :k]
    valid = torch.arange(k, device=labels.device)[None, :] < counts[:, None]
    positions = torch.where(valid, order, torch.zeros_like(order))
    targets = torch.where(valid, nxt.gather(1, order), torch.full_like(order, ignore_index))
    return positions, targets


def masked_cross_entropy(
    logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[Tensor, Tensor]:
    """Cross-entropy averaged over the supervised tokens of the batch.

    The mean is over all supervised tokens (not per sample then averaged), so every answer
    token weighs the same.

    Args:
        logits: (B, K, V) scores, aligned with ``targets`` (already shifted: see
            :func:`supervised_positions`).
        targets: (B, K) token ids to predict, ``ignore_index`` where nothing is learned.
        ignore_index: target value that is skipped.

    Returns:
        ``(loss, n_tokens)``: scalar mean loss (0 with no supervised token, never NaN) and the
        number of supervised tokens (int64 scalar).
    """
    mask = targets != ignore_index
    n_tokens = mask.sum()
    if n_tokens == 0:
        return logits.sum() * 0.0, n_tokens
    loss = F.cross_entropy(logits[mask].float(), targets[mask], reduction="sum") / n_tokens
    return loss, n_tokens


def token_accuracy(logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Fraction of supervised tokens predicted exactly (teacher forcing).

    Args:
        logits: (B, K, V); targets: (B, K), aligned as in :func:`masked_cross_entropy`.

    Returns:
        Scalar in [0, 1] (0 when no token is supervised).
    """
    mask = targets != ignore_index
    if not mask.any():
        return torch.zeros((), device=logits.device)
    return (logits.argmax(-1)[mask] == targets[mask]).float().mean()


#: CLIP's initial logit scale (Radford et al., 2021): log(1 / 0.07), i.e. temperature 0.07.
CLIP_INIT_LOGIT_SCALE = math.log(1 / 0.07)
#: CLIP's cap on the (exponentiated) logit scale, so the temperature never falls below 0.01.
CLIP_MAX_LOGIT_SCALE = 100.0


def info_nce(
    image_emb: Tensor,
    text_emb: Tensor,
    logit_scale: Tensor,
    extra_text_emb: Tensor | None = None,
) -> Tensor:
    """Symmetric image<->text contrastive loss of CLIP (Radford et al., 2021, Fig. 3).

    With ``i``, ``t`` the L2-normalised embeddings and ``s = min(exp(logit_scale), 100)``::

        L = ( CE(s * i @ [t; t_extra].T, arange(B)) + CE(s * t @ i.T, arange(B)) ) / 2

    Pair ``b`` is the positive of row ``b``; every other row's text (image) is a negative. Extra
    texts (hard negatives, e.g. the caption with one attribute changed: NegCLIP, Yuksekgonul et
    al., 2023) are further columns of the image->text side only: they have no image of their
    own, so they are never a row of the text->image side.

    Args:
        image_emb: (B, D) image embeddings (normalised here).
        text_emb: (B, D) text embeddings of the matching captions (normalised here).
        logit_scale: scalar, the *log* of the inverse temperature, as CLIP stores it
            (initialise at :data:`CLIP_INIT_LOGIT_SCALE`). Clamped so that ``exp`` stays
            <= 100, as CLIP does; above the cap it receives no gradient.
        extra_text_emb: optional (B * M, D) hard-negative texts, columns of image->text.

    Returns:
        Scalar loss (float32 maths whatever the input dtype).
    """
    if image_emb.ndim != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(f"info_nce: image_emb and text_emb must both be (B, D); got "
                         f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}")
    image = F.normalize(image_emb.float(), dim=-1)
    text = F.normalize(text_emb.float(), dim=-1)
    scale = logit_scale.float().clamp(max=math.log(CLIP_MAX_LOGIT_SCALE)).exp()
    columns = text
    if extra_text_emb is not None:
        if extra_text_emb.ndim != 2 or extra_text_emb.shape[1] != text_emb.shape[1]:
            raise ValueError(f"info_nce: extra_text_emb must be (B * M, {text_emb.shape[1]}); "
                             f"got {tuple(extra_text_emb.shape)}")
        columns = torch.cat([text, F.normalize(extra_text_emb.float(), dim=-1)])
    labels = torch.arange(image.shape[0], device=image.device)
    image_to_text = F.cross_entropy(scale * image @ columns.T, labels)
    text_to_image = F.cross_entropy(scale * text @ image.T, labels)
    return (image_to_text + text_to_image) / 2


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank, rank order, keeping the autograd graph.

    ``torch.distributed.all_gather`` returns leaves: the other ranks' rows would be constants
    and each rank's embeddings would get no gradient from the negatives it is on other ranks.
    ``torch.distributed.nn.functional.all_gather`` sums those gradients back onto their owner.
    Every rank must pass the same shape (the DistributedSampler pads to equal shards).

    Args:
        x: (B, ...) this rank's rows.

    Returns:
        (world_size * B, ...); ``x`` itself when no process group is initialised.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x))


def info_nce_distributed(
    image_emb: Tensor,
    text_emb: Tensor,
    logit_scale: Tensor,
    extra_text_emb: Tensor | None = None,
) -> Tensor:
    """:func:`info_nce` over the global batch: every rank's pairs are negatives of every other.

    Each rank computes the loss of the whole gathered batch, so the value equals one process
    with the full batch on every rank. Its gradient on this rank's embeddings is ``world_size``
    times the full-batch one (every rank's copy of the loss sends gradient back through the
    gather), which DistributedDataParallel's gradient *average* divides out: parameter
    gradients equal the single-process ones. The (W*B)^2 logits are a few MB even for a global
    batch of several thousand, so the local-rows variant of open_clip is not worth its bookkeeping.

    Args:
        image_emb, text_emb: (B, D) this rank's pairs; extra_text_emb: (B * M, D) or None.
        logit_scale: as in :func:`info_nce` (replicated on every rank).

    Returns:
        Scalar: the full-batch loss.
    """
    extra = None if extra_text_emb is None else gather_with_grad(extra_text_emb)
    return info_nce(gather_with_grad(image_emb), gather_with_grad(text_emb), logit_scale, extra)


def sequence_logps(logits: Tensor, targets: Tensor,
                   ignore_index: int = IGNORE_INDEX) -> tuple[Tensor, Tensor]:
    """Summed log-probability of each row's supervised tokens (a sequence's log-likelihood).

    Args:
        logits: (N, K, V) scores aligned with ``targets`` (see :func:`supervised_positions`).
        targets: (N, K) token ids, ``ignore_index`` on padding.

    Returns:
        ``(logps, n_tokens)``, both (N,): ``sum_k log p(targets[n, k])`` in float32 and the
        number of supervised tokens per row.
    """
    mask = targets != ignore_index
    safe = torch.where(mask, targets, torch.zeros_like(targets))
    # log_softmax in float32: bfloat16 log-probs summed over an answer lose ~1e-2 nats
    per_token = torch.gather(logits.float().log_softmax(-1), 2, safe.unsqueeze(-1)).squeeze(-1)
    return (per_token * mask).sum(-1), mask.sum(-1)
