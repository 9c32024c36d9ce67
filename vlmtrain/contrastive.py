"""Train and evaluate a CLIP on shapes image-caption pairs with InfoNCE and hard negatives.

In-batch negatives alone leave a small CLIP near chance at telling "a red circle on the left" from
"a blue circle on the left": the other scenes of a batch differ in everything at once, so a bag of
colours and kinds separates them. Each caption therefore also brings captions of its own scene
with one attribute changed (:mod:`vlmtrain.data.shapes_negatives`), as extra text columns of the
image->text loss (NegCLIP, Yuksekgonul et al., ICLR 2023).

:func:`attribute_accuracy` is the yardstick: for each probe, does the model give the true caption
a higher cosine than the altered one? It embeds exactly as CLIPScore does (processor, "A photo
depicts " prefix, L2-normalised features), so what it measures is what the metric sees.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from vlmtrain.data.shapes import ShapesDataset, sample_rng
from vlmtrain.data.shapes_negatives import ATTRIBUTES, Probe, caption_with_negatives, scene_shapes
from vlmtrain.losses.functional import CLIP_MAX_LOGIT_SCALE, info_nce
from vlmtrain.metrics.functional.clipscore import PREFIX, clip_image_features, clip_text_features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipTraining:
    """How a shapes CLIP is trained.

    Attributes:
        steps: optimizer steps.
        batch_size: image-caption pairs per step (in-batch negatives: ``batch_size - 1``).
        negatives: hard-negative captions per image (extra image->text columns).
        position_share: share of captions from templates that name every cell (the only ones
            that can get position negatives).
        negative_weights: attribute -> how likely a negative changes it (default: all alike).
        lr: peak AdamW rate (linear warm-up, cosine decay to 0).
        warmup: warm-up steps.
        weight_decay: on weight matrices only (not on norms, biases, the temperature).
        seed: scenes, negatives and initialisation.
        image_size: scene side (px).
        max_shapes: most shapes per scene.
    """

    steps: int = 1800
    batch_size: int = 64
    negatives: int = 2
    position_share: float = 0.5
    negative_weights: Mapping[str, float] | None = None
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.05
    seed: int = 0
    image_size: int = 48
    max_shapes: int = 3

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2 or self.negatives < 0:
            raise ValueError(f"ClipTraining needs steps >= 1, batch_size >= 2, negatives >= 0; "
                             f"got {self.steps}, {self.batch_size}, {self.negatives}")
        if not 0.0 <= self.position_share <= 1.0:
            raise ValueError(f"position_share must be in [0, 1], got {self.position_share}")
        weights = dict(self.negative_weights or {})
        if set(weights) - set(ATTRIBUTES) or any(w <= 0 for w in weights.values()):
            raise ValueError(f"negative_weights: attributes among {ATTRIBUTES}, weights > 0; "
                             f"got {weights}")


def training_batch(cfg: ClipTraining, step: int) -> tuple[list[Image.Image], list[str], list[str]]:
    """Step ``step``'s scenes: ``(images, captions, hard negatives)``, deterministic.

    Scenes are those of ``ShapesDataset("caption", "train")`` (index ``step * B + b``): every
    step sees fresh scenes. Captions carry no prefix.
    """
    data = ShapesDataset("caption", "train", size=cfg.steps * cfg.batch_size, seed=cfg.seed,
                         image_size=cfg.image_size, max_shapes=cfg.max_shapes)
    images, captions, negatives = [], [], []
    for index in range(step * cfg.batch_size, (step + 1) * cfg.batch_size):
        sample = data[index]
        rng = sample_rng(cfg.seed, "train", "clip-negatives", index)
        caption, negs = caption_with_negatives(rng, scene_shapes(sample.meta), cfg.negatives,
                                               cfg.position_share, cfg.negative_weights)
        images.append(sample.image)
        captions.append(caption)
        negatives += negs
    return images, captions, negatives


def _optimizer(model: torch.nn.Module, cfg: ClipTraining) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)


def _rate(step: int, cfg: ClipTraining) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.5 * (1 + math.cos(math.pi * progress))


def train_step(model, processor, images, captions, negatives) -> torch.Tensor:
    """InfoNCE of one batch (texts with the CLIPScore prefix, as they are scored)."""
    pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    texts = [PREFIX + t for t in [*captions, *negatives]]
    tokens = processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    image_emb = model.get_image_features(pixel_values=pixels)
    text_emb = model.get_text_features(**tokens)
    image_emb = getattr(image_emb, "pooler_output", image_emb)  # transformers >= 5: an output
    text_emb = getattr(text_emb, "pooler_output", text_emb)
    b = len(captions)
    extra = text_emb[b:] if negatives else None
    return info_nce(image_emb, text_emb[:b], model.logit_scale, extra)


def train_clip(model, processor, cfg: ClipTraining,
               evaluate: Callable[[int], dict[str, float]] | None = None,
               eval_every: int = 0) -> list[dict[str, float]]:
    """Train ``model`` in place.

    Args:
        model: a ``CLIPModel`` (e.g. from :func:`vlmtrain.models.shapes_clip.build_shapes_clip`).
        processor: its ``CLIPProcessor``.
        cfg: the training settings.
        evaluate: called as ``evaluate(step)`` every ``eval_every`` steps and at the end; what it
            returns is logged and kept.
        eval_every: 0 = only at the end.

    Returns:
        One record per evaluation (``step``, ``loss``, ``seconds`` and the evaluation's keys).
    """
    opt = _optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _rate(s, cfg))
    history, losses, start = [], [], time.monotonic()
    model.train()
    for step in range(cfg.steps):
        loss = train_step(model, processor, *training_batch(cfg, step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():  # CLIP's clamp: the temperature never goes below 1 / 100
            model.logit_scale.clamp_(0, math.log(CLIP_MAX_LOGIT_SCALE))
        losses.append(loss.item())
        last = step + 1 == cfg.steps
        if evaluate is not None and (last or (eval_every and (step + 1) % eval_every == 0)):
            model.eval()
            record = {"step": step + 1, "loss": sum(losses) / len(losses),
                      "seconds": time.monotonic() - start, **evaluate(step + 1)}
            model.train()
            losses = []
            history.append(record)
            log.info("step %d: %s", step + 1, {k: round(v, 4) for k, v in record.items()})
    model.eval()
    return history


@torch.no_grad()
def attribute_accuracy(model, processor,
                       probes: Sequence[tuple[Image.Image, Sequence[Probe]]]) -> dict[str, float]:
    """Share of probes whose true caption the model scores above the altered one, per attribute.

    Scores are cosines between CLIPScore's image and ``"A photo depicts " + text`` features
    (CLIP-S is ``2.5 * max(cos, 0)``: the same order wherever it is positive).

    Args:
        model, processor: a CLIP and its processor.
        probes: ``(image, probes)`` pairs from :func:`vlmtrain.data.shapes_negatives.probe_set`.

    Returns:
        ``{"colour": ..., "kind": ..., "size": ..., "position": ..., "all": ...}``: accuracies in
        [0, 1] (an attribute without probes is left out); ``"all"`` is over every probe.
    """
    if not probes:
        raise ValueError("attribute_accuracy: no probes; pass probe_set(n) with n >= 1")
    images = [image for image, _ in probes]
    flat = [(i, p) for i, (_, ps) in enumerate(probes) for p in ps]
    image_feats = clip_image_features(model, processor, images)
    true = clip_text_features(model, processor, [p.true for _, p in flat], PREFIX)
    altered = clip_text_features(model, processor, [p.altered for _, p in flat], PREFIX)
    rows = image_feats[torch.tensor([i for i, _ in flat])]
    right = ((rows * true).sum(-1) > (rows * altered).sum(-1)).tolist()
    per: dict[str, list[bool]] = defaultdict(list)
    for (_, p), ok in zip(flat, right):
        per[p.attribute].append(ok)
    out = {a: sum(per[a]) / len(per[a]) for a in ATTRIBUTES if per[a]}
    out["all"] = sum(right) / len(right)
    return out
