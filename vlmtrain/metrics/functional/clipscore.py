"""CLIPScore and RefCLIPScore (Hessel et al., "CLIPScore: A Reference-free Evaluation Metric for
Image Captioning", EMNLP 2021; reference code: github.com/jmhessel/clipscore, ``clipscore.py``).

For a candidate ``c`` of image ``v`` with references ``R`` (all embeddings L2-normalised):

* ``CLIP-S(c, v) = w * max(cos(c, v), 0)`` with ``w = 2.5``;
* ``RefCLIP-S(c, R, v) = H-Mean(CLIP-S(c, v), max(max_{r in R} cos(c, r), 0))``, the harmonic
  mean ``2ab / (a + b)``. Only the image side is scaled by ``w``, in the paper and in the code;
* corpus values are means of the per-sample scores.

One caption, one image: a sample with several images (``Sample.image`` a tuple) has no CLIP-S
-- a mean or a max over its images would be a number the paper never defines and no one could
compare -- so it is refused with an error naming it (:func:`single_images`); a one-item tuple
is its image.

Details checked against the reference code:

* every text, candidates AND references, is encoded as ``"A photo depicts " + text``: the repo's
  ``extract_all_captions`` always goes through ``CLIPCapDataset`` whose default prefix is that;
* features are normalised as ``x / sqrt(sum(x ** 2))``, the repo's branch for numpy >= 1.21 (it
  warns that sklearn's ``normalize`` on float16 features, used with older numpy and in the paper,
  gives slightly different numbers). Here features are cast to float32 first;
* the repo does not clip the text-text side at 0 and gives NaN when both sides are 0; the paper
  clips it at 0 and this code returns 0 for ``0 / 0``. Both agree whenever ``max cos >= 0``,
  which holds in practice for CLIP text embeddings;
* the repo runs OpenAI's ``clip`` package (fp16 on GPU); this code runs transformers'
  ``CLIPModel`` (same weights, float32 unless a dtype is given) with the checkpoint's
  ``CLIPProcessor``: bicubic resize of the short side to 224 and a 224 centre crop, as the repo's
  torchvision pipeline, except that the crop offset is rounded down where torchvision rounds to
  nearest (1 pixel shift for some odd sizes). Text is truncated to 77 tokens
  (``<start> + 75 + <end>``), as ``clip.tokenize(truncate=True)``.

This module imports neither torch nor transformers at import time (the command-line evaluator
imports it); they are imported when features are computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
import hashlib
from typing import TYPE_CHECKING, Any, Union

from vlmtrain.metrics.functional._inputs import check_answer_inputs

if TYPE_CHECKING:
    from PIL.Image import Image
    from torch import Tensor

    ImageLike = Union[Image, Tensor, str, Path]

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
PREFIX = "A photo depicts "
W = 2.5


def load_clip(model_name_or_path: str = DEFAULT_MODEL, device: Any = None, dtype: Any = None):
    """Load ``(CLIPModel, CLIPProcessor)`` in eval mode.

    Args:
        model_name_or_path: hub name or a local folder holding both (set ``HF_HUB_OFFLINE=1``
            when the hub is out of reach).
        device: torch device; None: cuda when available.
        dtype: torch dtype of the weights (None: as saved, float32 for openai checkpoints).
    """
    import torch
    from transformers import CLIPModel, CLIPProcessor

    from vlmtrain.models.hub import offline_unless_reachable

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # no hub: the local cache at once, instead of a minute of retries
    with offline_unless_reachable(model_name_or_path, "--clip-model (or model_name_or_path)"):
        model = CLIPModel.from_pretrained(model_name_or_path, dtype=dtype).to(device).eval()
        return model, CLIPProcessor.from_pretrained(model_name_or_path)


def _as_pil(image: ImageLike, index: int):
    """PIL image from a PIL image, a file path or a ``(C, H, W)`` tensor (uint8, or float in
    [0, 1]; C = 1 or 3)."""
    import torch
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (str, Path)):
        return Image.open(image)
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(
            f"clipscore: images[{index}] must be a PIL image, a path or a (C, H, W) tensor with "
            f"C in (1, 3); got {type(image).__name__} {getattr(image, 'shape', '')}"
        )
    if image.is_floating_point():
        if image.min() < 0 or image.max() > 1:
            raise ValueError(f"clipscore: float images[{index}] must lie in [0, 1]")
        image = (image * 255).round()
    array = image.to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def _features(output: Any) -> Tensor:
    # transformers >= 5 returns a model output whose pooler_output is the projected embedding;
    # older versions return the tensor itself.
    return getattr(output, "pooler_output", output)


def _normalise(x: Tensor) -> Tensor:
    x = x.float()
    return x / x.pow(2).sum(dim=-1, keepdim=True).sqrt()


def clip_image_features(model, processor, images: Sequence[ImageLike], batch_size: int = 64,
                        cache: dict[tuple, Tensor] | None = None):
    """L2-normalised image embeddings, float32 ``(N, D)`` on the model's device.

    Args:
        cache: image content (mode, size, BLAKE2 digest of the pixels) -> its features, read
            before encoding and filled after: features are a function of the pixels alone, and
            a validation split shows the same images at every evaluation.
    """
    import torch

    if cache is not None:
        pils = [_as_pil(im, k) for k, im in enumerate(images)]
        keys = [(im.mode, im.size, hashlib.blake2b(im.tobytes(), digest_size=16).digest())
                for im in pils]
        missing = dict(zip(keys, pils))
        missing = {k: im for k, im in missing.items() if k not in cache}
        if missing:
            cache.update(zip(missing, clip_image_features(model, processor,
                                                          list(missing.values()), batch_size)))
        return torch.stack([cache[k] for k in keys])
    device, out = model.device, []
    for start in range(0, len(images), batch_size):
        batch = [_as_pil(im, start + k) for k, im in enumerate(images[start : start + batch_size])]
        pixels = processor.image_processor(images=batch, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            out.append(_features(model.get_image_features(pixel_values=pixels.to(device,
                                                                                  model.dtype))))
    return _normalise(torch.cat(out))


def clip_text_features(
    model, processor, texts: Sequence[str], prefix: str = PREFIX, batch_size: int = 256
):
    """L2-normalised embeddings of ``prefix + text``, float32 ``(N, D)`` on the model's device."""
    import torch

    max_len = model.config.text_config.max_position_embeddings  # 77 for CLIP
    device, out = model.device, []
    for start in range(0, len(texts), batch_size):
        batch = [prefix + t for t in texts[start : start + batch_size]]
        tokens = processor.tokenizer(batch, padding=True, truncation=True, max_length=max_len,
                                     return_tensors="pt").to(device)
        with torch.no_grad():
            out.append(_features(model.get_text_features(**tokens)))
    return _normalise(torch.cat(out))


def clipscore_from_features(image_feats: Tensor, cand_feats: Tensor, w: float = W) -> Tensor:
    """``w * max(cos, 0)`` per sample, shape ``(N,)``, from normalised ``(N, D)`` features."""
    return w * (image_feats * cand_feats).sum(dim=-1).clamp(min=0)


def refclipscore_from_features(
    clip_s: Tensor, cand_feats: Tensor, ref_feats: Tensor, ref_counts: Sequence[int]
) -> Tensor:
    """Per-sample RefCLIP-S, shape ``(N,)``.

    Args:
        clip_s: CLIP-S per sample ``(N,)``.
        cand_feats: normalised candidate features ``(N, D)``.
        ref_feats: normalised features of all references, sample after sample,
            ``(sum(ref_counts), D)``.
        ref_counts: number of references of each sample (each >= 1).
    """
    import torch

    groups = torch.split(ref_feats, list(ref_counts))
    ref_s = torch.stack([(refs @ cand).max() for refs, cand in zip(groups, cand_feats)])
    ref_s = ref_s.clamp(min=0)
    denom = clip_s + ref_s
    return torch.where(denom > 0, 2 * clip_s * ref_s / denom.clamp(min=1e-12), 0.0)


def clip_score_per_sample(
    images: Sequence[ImageLike],
    predictions: Sequence[str],
    references: Sequence[Sequence[str]] | None,
    model,
    processor,
    prefix: str = PREFIX,
    w: float = W,
    batch_size: int = 64,
    reference_cache: dict[str, Tensor] | None = None,
    image_cache: dict[tuple, Tensor] | None = None,
    ids: Sequence[object] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Per-sample CLIP-S and RefCLIP-S (None without references), float32 ``(N,)`` each.

    Args:
        reference_cache: reference text -> its normalised features, filled as references are
            encoded and read before encoding: a validation split's references are the same at
            every evaluation, and with 5 per image they are 5/6 of the text encoder's work.
            Only valid for one model and prefix (the metric class keeps one per instance).
        image_cache: the same for images (see :func:`clip_image_features`).
        ids: name the samples in errors (see :func:`single_images`).
    """
    images = _check(images, predictions, references, ids)
    image_feats = clip_image_features(model, processor, images, batch_size, image_cache)
    cand_feats = clip_text_features(model, processor, predictions, prefix, batch_size)
    clip_s = clipscore_from_features(image_feats, cand_feats, w)
    if references is None:
        return clip_s, None
    flat = [r for refs in references for r in refs]
    ref_feats = _cached_text_features(model, processor, flat, prefix, batch_size, reference_cache)
    counts = [len(refs) for refs in references]
    return clip_s, refclipscore_from_features(clip_s, cand_feats, ref_feats, counts)


def _cached_text_features(model, processor, texts: Sequence[str], prefix: str, batch_size: int,
                          cache: dict[str, Tensor] | None) -> Tensor:
    """:func:`clip_text_features` of ``texts``, encoding only those not in ``cache`` (once)."""
    import torch

    if cache is None:
        return clip_text_features(model, processor, texts, prefix, batch_size)
    missing = list(dict.fromkeys(t for t in texts if t not in cache))
    if missing:
        cache.update(zip(missing, clip_text_features(model, processor, missing, prefix,
                                                     batch_size)))
    return torch.stack([cache[t] for t in texts])


def single_images(images: Sequence[Any], ids: Sequence[object] | None = None) -> list[Any]:
    """One image per sample: a one-item tuple or list becomes its image.

    Args:
        images: per sample an image, or a tuple / list of them (``Sample.image``).
        ids: the samples' ids, to name a refused sample (default: its index).

    Raises:
        ValueError: a sample holds several images (or none): CLIP-S compares one caption with
            one image, so it has no score (see the module docstring).
    """
    out = []
    for i, image in enumerate(images):
        if isinstance(image, (tuple, list)):
            if len(image) != 1:
                name = f"sample {ids[i]}" if ids is not None else f"images[{i}]"
                raise ValueError(
                    f"clipscore: {name} holds {len(image)} images, but CLIPScore scores one "
                    "caption against one image (Hessel et al., 2021); drop clipscore from the "
                    "metrics for multi-image data, or give each sample one image")
            image = image[0]
        out.append(image)
    return out


def _check(images, predictions, references, ids=None) -> list:
    """The inputs' checks; returns :func:`single_images` of ``images``."""
    if len(images) != len(predictions):
        raise ValueError(f"clipscore: {len(images)} images but {len(predictions)} predictions")
    if len(predictions) == 0:
        raise ValueError("clipscore: no samples to score (empty predictions)")
    if references is None:
        for i, pred in enumerate(predictions):
            if not isinstance(pred, str):
                raise ValueError(f"clipscore: predictions[{i}] must be a str")
    else:
        check_answer_inputs(predictions, references, "clipscore")
    return single_images(images, ids)


def clip_score(
    images: Sequence[ImageLike],
    predictions: Sequence[str],
    references: Sequence[Sequence[str]] | None = None,
    model_name_or_path: str = DEFAULT_MODEL,
    device: Any = None,
    batch_size: int = 64,
    prefix: str = PREFIX,
    w: float = W,
    model=None,
    processor=None,
    ids: Sequence[object] | None = None,
) -> dict[str, float]:
    """Mean CLIP-S (and RefCLIP-S when references are given) over N image-caption pairs.

    Args:
        images: N images (PIL, file paths, or ``(C, H, W)`` tensors: uint8 or float in [0, 1]).
        predictions: N candidate captions.
        references: optional N non-empty lists of reference captions.
        model_name_or_path: CLIP checkpoint (hub name or local folder with the processor).
        device: torch device (None: cuda when available).
        batch_size: images / texts per forward pass.
        prefix: prepended to every text ("A photo depicts ", as the reference code).
        w: CLIP-S scale (2.5).
        model, processor: an already loaded pair (from :func:`load_clip`); overrides the above.
        ids: the samples' ids, named when one is refused (several images per sample).

    Returns:
        ``{"clipscore": float}`` plus ``"refclipscore"`` when references are given.
    """
    images = _check(images, predictions, references, ids)  # before loading the model
    if model is None or processor is None:
        model, processor = load_clip(model_name_or_path, device)
    clip_s, ref_s = clip_score_per_sample(images, predictions, references, model, processor,
                                          prefix, w, batch_size)
    out = {"clipscore": float(clip_s.double().mean())}
    if ref_s is not None:
        out["refclipscore"] = float(ref_s.double().mean())
    return out
