"""Offline tiny twins of Qwen2.5-VL and PaliGemma, saved as real Hugging Face checkpoints.

The hub is unreachable in CI and on many clusters, so the embedded default is a randomly
initialised model of the *same architecture* at a few hundred thousand parameters, with a
tokenizer and processor built locally. It is written to disk with ``save_pretrained`` and then
loaded by :func:`vlmtrain.models.hf.load_vlm` through ``from_pretrained`` -- exactly the path a
real checkpoint takes, so the tiny model exercises the real code (not a mock).

Builds are deterministic for a seed and cached by a hash of their arguments; writes go to a
temporary folder that is renamed into place, so parallel test workers never see half a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from vlmtrain.models.tokenizer import train_bpe

QWEN_SPECIALS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>",
)
PALIGEMMA_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<image>")

# The structure of Qwen2.5-VL's own chat template (default system turn, vision markers around
# the image pad token), restricted to what image-text fine-tuning uses.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def default_cache_dir() -> Path:
    """``$VLMTRAIN_CACHE`` or ``~/.cache/vlmtrain``."""
    return Path(os.environ.get("VLMTRAIN_CACHE", Path.home() / ".cache" / "vlmtrain"))


# Chat scaffolding the tiny tokenizers must encode compactly: without it in the corpus the
# default system turn alone costs ~25 byte-level tokens per sample, doubling sequence length.
_SCAFFOLD = ["system\nYou are a helpful assistant.", "user\n", "assistant\n", "\n"] * 200


def _corpus() -> list[str]:
    from vlmtrain.data.shapes import corpus_texts

    return corpus_texts() + _SCAFFOLD


def _cached_build(name: str, spec: dict, build: Callable[[Path], None], cache_dir: str | None) -> str:
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    target = root / "tiny" / f"{name}-{key}"
    if (target / "config.json").exists():
        return str(target)
    root.joinpath("tiny").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root / "tiny"))
    try:
        build(tmp)
        (tmp / "vlmtrain_tiny_spec.json").write_text(json.dumps(spec, indent=1, sort_keys=True))
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: theirs is identical (same seed)
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(target)


# Builder arguments left out of the cache key: where the cache lives, and the raw pixel statistics
# (their validated form, ``pixel_stats``, is in it).
_NOT_IN_KEY = ("cache_dir", "image_mean", "image_std")


def _pixel_stats(mean: Sequence[float] | None, std: Sequence[float] | None) -> dict[str, list]:
    """Image-processor kwargs for per-channel pixel statistics; ``None`` keeps the family's own.

    Returns plain float lists (Hydra hands in ``ListConfig``; the cache key must be JSON).
    """
    stats = {}
    for name, values in (("image_mean", mean), ("image_std", std)):
        if values is None:
            continue
        values = [float(x) for x in values]
        if len(values) != 3 or (name == "image_std" and min(values) <= 0):
            raise ValueError(f"image_mean and image_std need 3 values (RGB), std > 0; "
                             f"got {name}={values}")
        stats[name] = values
    return stats


def sincos_2d(side: int, dim: int) -> torch.Tensor:
    """2-D sine-cosine position table (MAE), row-major over a ``side x side`` patch grid.

    Half the channels encode the row, half the column, so "left/middle/right" and
    "top/centre/bottom" are the same direction in every row/column.

    Returns:
        ``(side * side, dim)``.
    """
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    grid = torch.arange(side, dtype=torch.float32)
    rows, cols = torch.meshgrid(grid, grid, indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    table = torch.cat([encode(rows), encode(cols)], dim=1)
    return torch.nn.functional.pad(table, (0, dim - table.shape[1]))


def _check_grid(image_size: int, step: int, what: str) -> None:
    # A size that does not divide would be resized or cropped by the processor without a word,
    # and the image tokens would no longer line up with the scene's 3x3 grid.
    if image_size % step:
        raise ValueError(
            f"image_size={image_size} is not a multiple of {what}={step}: pick image_size and "
            f"patch_size so that image_size / {what} is a whole number (e.g. image_size="
            f"{3 * step} for a 3x3 grid of image tokens)"
        )


def _mrope_section(head_dim: int) -> list[int]:
    # Qwen2.5-VL splits half the rotary dims into (time, height, width) = (1/4, 3/8, 3/8).
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def build_tiny_qwen2_5_vl(
    image_size: int = 64,
    patch_size: int = 8,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    vision_hidden_size: int = 128,
    vision_depth: int = 2,
    vision_heads: int = 4,
    vocab_size: int = 512,
    seed: int = 0,
    cache_dir: str | None = None,
    merge_size: int = 2,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    embedding_rows: int | None = None,
) -> str:
    """Build (or reuse) a tiny Qwen2.5-VL checkpoint folder and return its path.

    An ``image_size`` px square image becomes ``(image_size / patch_size)**2`` patches, merged
    ``merge_size`` x ``merge_size`` into ``(image_size / patch_size / merge_size)**2`` image tokens
    (16 with the defaults; the real models merge 2x2). ``image_mean`` / ``image_std`` (RGB) go
    into the saved image processor; ``None`` keeps Qwen2.5-VL's own (OpenAI CLIP's).
    ``embedding_rows`` sizes the embedding and output matrices (``None``: the tokenizer's size);
    151,936 gives the vocabulary projection of the real Qwen2.5-VL, for benchmarks.
    """
    _check_grid(image_size, patch_size * merge_size, "patch_size x merge_size")
    pixel_stats = _pixel_stats(image_mean, image_std)
    spec = {k: v for k, v in locals().items() if k not in _NOT_IN_KEY} | {"family": "qwen2_5_vl",
                                                                           "v": 3}
    if embedding_rows is None:  # keeps the cache keys of models built before the option
        del spec["embedding_rows"]

    def build(out: Path) -> None:
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
        from transformers import Qwen2_5_VLProcessor
        from transformers.models.qwen2_vl import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        tok = train_bpe(_corpus(), QWEN_SPECIALS, vocab_size, eos_token="<|im_end|>",
                        pad_token="<|endoftext|>")
        ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
        pixels = image_size * image_size
        image_processor = Qwen2VLImageProcessor(
            min_pixels=pixels, max_pixels=pixels, patch_size=patch_size, merge_size=merge_size,
            temporal_patch_size=2, **pixel_stats,
        )
        video_processor = Qwen2VLVideoProcessor(patch_size=patch_size, merge_size=merge_size)
        processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tok,
                                        video_processor=video_processor,
                                        chat_template=QWEN_CHAT_TEMPLATE)
        config = Qwen2_5_VLConfig(
            text_config=dict(
                vocab_size=embedding_rows or len(tok), hidden_size=hidden_size,
                intermediate_size=2 * hidden_size,
                num_hidden_layers=num_layers, num_attention_heads=num_heads,
                num_key_value_heads=num_heads, max_position_embeddings=1024,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": _mrope_section(hidden_size // num_heads)},
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"],
            ),
            vision_config=dict(
                depth=vision_depth, hidden_size=vision_hidden_size,
                intermediate_size=2 * vision_hidden_size, num_heads=vision_heads,
                patch_size=patch_size, spatial_merge_size=merge_size, temporal_patch_size=2,
                window_size=image_size, out_hidden_size=hidden_size,
                fullatt_block_indexes=[vision_depth - 1],
            ),
            image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
        )
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
        model.generation_config.eos_token_id = ids["<|im_end|>"]
        model.generation_config.pad_token_id = ids["<|endoftext|>"]
        model.save_pretrained(out)
        processor.save_pretrained(out)

    return _cached_build("tiny_qwen2_5_vl", spec, build, cache_dir)


def build_tiny_paligemma(
    image_size: int = 64,
    patch_size: int = 16,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    vision_hidden_size: int = 128,
    vision_depth: int = 2,
    vision_heads: int = 4,
    vision_mlp_ratio: int = 2,
    vocab_size: int = 512,
    seed: int = 0,
    cache_dir: str | None = None,
    tie_word_embeddings: bool = False,
    position_init: str = "random",
    position_scale: float = 1.0,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
) -> str:
    """Build (or reuse) a tiny PaliGemma checkpoint folder and return its path.

    SigLIP turns the image into ``(image_size / patch_size)**2`` tokens (16 with the defaults);
    the processor adds PaliGemma's 1,152 location/segmentation tokens to the vocabulary, as the
    real one does. The released PaliGemma ties its input and output embeddings; the twin, trained
    from random init, does not by default (``tie_word_embeddings``): tied, a two-layer model that
    copies a question word forward also predicts it ("What colour is the circle?" -> "circle").

    ``position_init="sincos"`` starts SigLIP's learned position table as a 2-D sine-cosine grid
    (:func:`sincos_2d`, as MAE does) instead of random numbers: cells of one column then share a
    direction from the first step, which is what "on the left / at the top" questions read.
    Trained from there like any other weight; the checkpoint carries it, so loading is unchanged.
    ``position_scale`` multiplies the starting table (either kind). ``vision_mlp_ratio`` sets SigLIP's MLP
    width as a multiple of ``vision_hidden_size``. ``image_mean`` / ``image_std`` (RGB) go into the
    saved image processor (``None`` keeps SigLIP's 0.5 / 0.5); e.g. the shapes scenes' background
    (~0.94) as the mean makes an empty cell embed to ~0.
    """
    if position_init not in ("random", "sincos"):
        raise ValueError(f"position_init must be 'random' or 'sincos', got {position_init!r}")
    _check_grid(image_size, patch_size, "patch_size")
    pixel_stats = _pixel_stats(image_mean, image_std)
    spec = {k: v for k, v in locals().items() if k not in _NOT_IN_KEY} | {"family": "paligemma",
                                                                           "v": 3}

    def build(out: Path) -> None:
        from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration
        from transformers import PaliGemmaProcessor, SiglipImageProcessor

        tok = train_bpe(_corpus(), PALIGEMMA_SPECIALS, vocab_size, eos_token="<eos>",
                        bos_token="<bos>", pad_token="<pad>", unk_token="<unk>")
        n_image_tokens = (image_size // patch_size) ** 2
        image_processor = SiglipImageProcessor(
            size={"height": image_size, "width": image_size}, image_seq_length=n_image_tokens,
            **pixel_stats,
        )
        image_processor.image_seq_length = n_image_tokens
        processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)
        tok = processor.tokenizer
        head_dim = hidden_size // num_heads
        config = PaliGemmaConfig(
            vision_config=dict(
                model_type="siglip_vision_model", hidden_size=vision_hidden_size,
                intermediate_size=vision_mlp_ratio * vision_hidden_size,
                num_hidden_layers=vision_depth,
                num_attention_heads=vision_heads, image_size=image_size, patch_size=patch_size,
                vision_use_head=False,
            ),
            text_config=dict(
                model_type="gemma", vocab_size=len(tok), hidden_size=hidden_size,
                intermediate_size=2 * hidden_size, num_hidden_layers=num_layers,
                num_attention_heads=num_heads, num_key_value_heads=num_heads, head_dim=head_dim,
                max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
                tie_word_embeddings=tie_word_embeddings,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            ),
            image_token_index=processor.image_token_id, vocab_size=len(tok),
            tie_word_embeddings=tie_word_embeddings,
            projection_dim=hidden_size, hidden_size=hidden_size,
        )
        torch.manual_seed(seed)
        model = PaliGemmaForConditionalGeneration(config)
        table = model.model.vision_tower.embeddings.position_embedding.weight
        with torch.no_grad():
            if position_init == "sincos":
                table.copy_(sincos_2d(image_size // patch_size, vision_hidden_size))
            table.mul_(position_scale)  # x 1.0 (the default) leaves every value as it was
        model.generation_config.eos_token_id = tok.eos_token_id
        model.generation_config.pad_token_id = tok.pad_token_id
        model.save_pretrained(out)
        processor.save_pretrained(out)

    return _cached_build("tiny_paligemma", spec, build, cache_dir)
