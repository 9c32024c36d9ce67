"""Loss maths as tensor-in/tensor-out functions (no modules, no batches)."""

from __future__ import annotations

import math
from typing import NamedTuple

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
    logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX,
    divisor: Tensor | float | None = None,
) -> tuple[Tensor, Tensor]:
    """Cross-entropy averaged over the supervised tokens of the batch.

    The mean is over all supervised tokens (not per sample then averaged), so every answer
    token weighs the same.

    Args:
        logits: (B, K, V) scores, aligned with ``targets`` (already shifted: see
            :func:`supervised_positions`).
        targets: (B, K) token ids to predict, ``ignore_index`` where nothing is learned.
        ignore_index: target value that is skipped.
        divisor: what the summed loss is divided by; ``None`` = this batch's supervised
            tokens. Under gradient accumulation the module passes the tokens of the whole
            optimizer step (``batch["token_divisor"]``), so the step is one token mean.

    Returns:
        ``(loss, n_tokens)``: scalar mean loss (0 with no supervised token, never NaN) and the
        number of supervised tokens (int64 scalar).
    """
    mask = targets != ignore_index
    n_tokens = mask.sum()
    if n_tokens == 0:
        return logits.sum() * 0.0, n_tokens
    total = F.cross_entropy(logits[mask].float(), targets[mask], reduction="sum")
    return total / (n_tokens if divisor is None else divisor), n_tokens


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


def focal_loss(
    logits: Tensor,
    targets: Tensor,
    gamma: float = 2.0,
    alpha: float | Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    divisor: Tensor | float | None = None,
) -> tuple[Tensor, Tensor]:
    """Softmax focal loss (Lin et al. 2017, eq. 5) averaged over the supervised tokens.

    ``FL = -alpha_t (1 - p_t)^gamma log p_t`` with ``p_t`` the softmax probability of the target
    token. ``(1 - p_t)^gamma`` shrinks the loss of tokens the model already predicts well, so
    the gradient goes to the hard ones. ``gamma = 0`` with ``alpha=None`` is
    :func:`masked_cross_entropy`.

    In the paper ``alpha`` balances the two classes of a binary problem. Here there are V
    classes (the vocabulary), so ``alpha_t`` is the weight of the target token's class:
    ``alpha[target]`` for a (V,) tensor (e.g. inverse answer frequency), or the same ``alpha``
    for every token when it is a float (which only rescales the loss). The mean divides by the
    number of supervised tokens, not by the sum of ``alpha_t`` (as ``F.cross_entropy(weight=)``
    would), so a weight really is a multiplier and the normaliser is the same as CE's.

    Args:
        logits: (B, K, V) scores, aligned with ``targets`` as in :func:`masked_cross_entropy`.
        targets: (B, K) token ids, ``ignore_index`` where nothing is learned.
        gamma: focusing parameter, ``>= 0``.
        alpha: ``None`` (all 1), a float, or a (V,) tensor of per-token weights.
        ignore_index: target value that is skipped.

    Returns:
        ``(loss, n_tokens)``: scalar mean loss (0 with no supervised token, never NaN) and the
        number of supervised tokens (int64 scalar).
    """
    mask = targets != ignore_index
    n_tokens = mask.sum()
    if n_tokens == 0:
        return logits.sum() * 0.0, n_tokens
    tgt = targets[mask]
    log_probs = F.log_softmax(logits[mask].float(), dim=-1)
    logp = log_probs.gather(-1, tgt[:, None]).squeeze(-1)
    # 1 - p_t as -expm1(log p_t): no cancellation for confident tokens. The clamp keeps the
    # gradient of (1 - p_t)^gamma finite (0 < gamma < 1) when p_t rounds to exactly 1.
    hard = (-torch.expm1(logp)).clamp_min(torch.finfo(logp.dtype).tiny)
    weight = hard.pow(gamma)
    if isinstance(alpha, Tensor) and alpha.ndim > 0:
        weight = weight * alpha.to(weight)[tgt]
    elif alpha is not None:
        weight = weight * alpha
    # nll_loss sums in the order F.cross_entropy does, so gamma=0 without alpha reproduces
    # masked_cross_entropy bit for bit (a plain .sum() differs in the last place)
    total = F.nll_loss(log_probs * weight[:, None], tgt, reduction="sum")
    return total / (n_tokens if divisor is None else divisor), n_tokens


def generalized_jsd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    beta: float = 0.0,
    temperature: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
    divisor: Tensor | float | None = None,
) -> tuple[Tensor, Tensor]:
    """Teacher-student divergence per supervised token (GKD, Agarwal et al. 2024, eq. 1).

    With ``p_T = softmax(teacher / T)``, ``p_S = softmax(student / T)`` and the mixture
    ``m = beta p_T + (1 - beta) p_S``::

        D = KL(p_T || p_S)                                  beta = 0 (forward KL, Hinton)
        D = KL(p_S || p_T)                                  beta = 1 (reverse KL)
        D = beta KL(p_T || m) + (1 - beta) KL(p_S || m)     otherwise (generalised JSD)

    The same convention and reduction (mean over supervised tokens) as TRL's distillation
    trainer, so results compare with TRL runs. No T^2 factor here: see
    :func:`distillation_loss`.

    Args:
        student_logits: (B, K, V) student scores, aligned with ``targets``.
        teacher_logits: (B, K, V) teacher scores at the same positions (no gradient flows).
        targets: (B, K) token ids; only their mask is read (``ignore_index`` = skipped).
        beta: interpolation in [0, 1].
        temperature: softmax temperature T > 0 applied to both models.
        ignore_index: target value that is skipped.

    Returns:
        ``(divergence, n_tokens)``: scalar mean over supervised tokens (0 with none) and their
        number (int64 scalar).
    """
    mask = targets != ignore_index
    n_tokens = mask.sum()
    if n_tokens == 0:
        return student_logits.sum() * 0.0, n_tokens
    log_s = F.log_softmax(student_logits[mask].float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits.detach()[mask].float() / temperature, dim=-1)

    def kl(log_p: Tensor, log_q: Tensor) -> Tensor:  # KL(p || q) per row, (M,)
        return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(-1)

    if beta == 0.0:
        per_token = kl(log_t, log_s)
    elif beta == 1.0:
        per_token = kl(log_s, log_t)
    else:
        log_m = torch.logaddexp(log_t + math.log(beta), log_s + math.log1p(-beta))
        per_token = beta * kl(log_t, log_m) + (1.0 - beta) * kl(log_s, log_m)
    return per_token.sum() / (n_tokens if divisor is None else divisor), n_tokens


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    alpha: float = 0.5,
    temperature: float = 1.0,
    beta: float = 0.0,
    ignore_index: int = IGNORE_INDEX,
    divisor: Tensor | float | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Knowledge distillation (Hinton et al. 2015): ``alpha CE + (1 - alpha) T^2 D``.

    CE is on the true answer tokens at temperature 1; ``D`` is :func:`generalized_jsd` at
    temperature T. The soft-target gradients scale as 1/T^2 (Hinton et al., section 2), so the
    T^2 factor keeps the two terms' balance set by ``alpha`` whatever the temperature.

    Args:
        student_logits, teacher_logits: (B, K, V), aligned with ``targets`` (B, K).
        targets: (B, K) token ids, ``ignore_index`` where nothing is learned.
        alpha: weight of the hard-label CE in [0, 1] (1 = plain SFT, 0 = distillation only).
        temperature: T > 0 of the divergence.
        beta: divergence interpolation, as in :func:`generalized_jsd`.
        ignore_index: target value that is skipped.
        divisor: what the summed loss is divided by (``None``: this batch's supervised
            tokens); see :func:`masked_cross_entropy`.

    Returns:
        ``(loss, ce, divergence, n_tokens)``: scalars (the last int64).
    """
    ce, n_tokens = masked_cross_entropy(student_logits, targets, ignore_index, divisor)
    divergence, _ = generalized_jsd(student_logits, teacher_logits, targets, beta, temperature,
                                    ignore_index, divisor)
    loss = alpha * ce + (1.0 - alpha) * temperature**2 * divergence
    return loss, ce, divergence, n_tokens


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


def pool_states(states: Tensor, mask: Tensor, how: str = "mean") -> Tensor:
    """One vector per sequence from a causal language model's hidden states.

    ``mean`` averages the states of the real tokens (SGPT, Muennighoff 2022, found it the robust
    choice for a decoder not trained for embeddings); ``last`` takes the last real token's state,
    the only one that has attended to the whole caption (E5-Mistral, Wang et al. 2024).

    Args:
        states: (B, T, D) hidden states; mask: (B, T) 1 on real tokens, right-padded.
        how: ``mean`` or ``last``.

    Returns:
        (B, D).
    """
    mask = mask.to(states.dtype)
    if how == "mean":
        return (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    if how == "last":
        last = mask.sum(1).long().clamp(min=1) - 1
        return states[torch.arange(states.shape[0], device=states.device), last]
    raise ValueError(f"pool_states: how={how!r}; use 'mean' or 'last'")


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


class PairLogps(NamedTuple):
    """Per-pair log-likelihoods of a preference batch, all (B,).

    ``*_logps`` sum the log-probs of each answer's supervised tokens (:func:`sequence_logps`);
    ``ref_*`` are the reference model's; ``*_tokens`` count the supervised tokens.
    """

    chosen: Tensor
    rejected: Tensor
    ref_chosen: Tensor
    ref_rejected: Tensor
    chosen_tokens: Tensor
    rejected_tokens: Tensor


def dpo_sigmoid(p: PairLogps, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """DPO (Rafailov et al. 2023, eq. 7): ``-log sigmoid(beta * delta)``, (B,).

    ``delta = (chosen - ref_chosen) - (rejected - ref_rejected)``; ``label_smoothing`` is
    unused here (TRL's ``sigmoid`` ignores it too; see :func:`dpo_robust`).
    """
    return -F.logsigmoid(beta * _delta(p))


def dpo_hinge(p: PairLogps, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """SLiC hinge loss (Zhao et al. 2023): ``relu(1 - beta * delta)``, (B,)."""
    return torch.relu(1 - beta * _delta(p))


def dpo_ipo(p: PairLogps, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """IPO (Azar et al. 2023, eq. 17) on per-token averaged log-ratios, (B,).

    ``((chosen - ref_chosen) / n_chosen - (rejected - ref_rejected) / n_rejected - 1/(2 beta))^2``
    -- normalised by answer length as TRL does, so ``beta`` does not depend on answer length.
    """
    chosen = (p.chosen - p.ref_chosen) / p.chosen_tokens.clamp(min=1)
    rejected = (p.rejected - p.ref_rejected) / p.rejected_tokens.clamp(min=1)
    return (chosen - rejected - 1 / (2 * beta)) ** 2


def dpo_robust(p: PairLogps, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """Robust DPO (Chowdhury et al. 2024, eq. 10): unbiased under preference-label noise, (B,).

    ``(-(1-e) log s(beta d) + e log s(-beta d)) / (1 - 2e)`` with ``e = label_smoothing < 0.5``.
    """
    z = beta * _delta(p)
    e = label_smoothing
    return (-(1 - e) * F.logsigmoid(z) + e * F.logsigmoid(-z)) / (1 - 2 * e)


def chosen_nll(p: PairLogps, beta: float = 0.0, label_smoothing: float = 0.0) -> Tensor:
    """RPO's NLL term (Pang et al. 2024): mean negative log-prob over all chosen tokens.

    A batch-level token mean (every chosen token weighs the same), broadcast to (B,) so it
    combines with the per-pair terms by the same ``mean()``.
    """
    nll = -p.chosen.sum() / p.chosen_tokens.sum().clamp(min=1)
    return nll.expand(p.chosen.shape[0])


def _delta(p: PairLogps) -> Tensor:
    return (p.chosen - p.ref_chosen) - (p.rejected - p.ref_rejected)
