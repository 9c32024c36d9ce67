"""A small Hugging Face ``CLIPModel`` for the synthetic shapes world, and where the trained one lives.

CLIPScore needs a CLIP that knows the images it scores; OpenAI's has never seen 48 px shapes
scenes (and the hub may be out of reach). The shapes CLIP is a real ``CLIPModel`` +
``CLIPProcessor`` folder, so :class:`vlmtrain.metrics.clipscore.CLIPScore` loads it by path like
any checkpoint. It is trained by ``scripts/train_shapes_clip.py`` and shipped in
``vlmtrain/assets/shapes_clip``.

The tokenizer is word-level (one id per word, lower-cased): every colour, kind, size and
position word is one token, and the vocabulary stays a few hundred ids. Its end-of-text id is
deliberately not 2: Hugging Face's CLIP text tower pools the *highest* token id of each row when
``eos_token_id == 2`` (a rule kept for old checkpoints), which with a word-level vocabulary is a
random word, not the end of the caption.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    PreTrainedTokenizerFast,
)

from vlmtrain.metrics.functional.clipscore import PREFIX
from vlmtrain.models.tiny import sincos_2d

#: Special tokens, ids 0..3 in this order; the end of text is id 3 (never 2: see above).
SPECIALS = ("<pad>", "<unk>", "<|startoftext|>", "<|endoftext|>")
ASSET = Path(__file__).resolve().parents[1] / "assets" / "shapes_clip"


def shapes_clip_path() -> str:
    """Folder of the shipped shapes CLIP (``vlmtrain/assets/shapes_clip``).

    Used from configs as ``model_name_or_path: {_target_: vlmtrain.models.shapes_clip.
    shapes_clip_path}`` so the path is resolved where the package is installed, at run time.
    """
    if not (ASSET / "config.json").exists():
        raise FileNotFoundError(
            f"the shapes CLIP is missing from {ASSET}; rebuild it with "
            "`python scripts/train_shapes_clip.py` (or reinstall vlmtrain with its package data)")
    return str(ASSET)


def caption_vocabulary(n_scenes: int = 500, seed: int = 0) -> list[str]:
    """Every word of shapes captions (reference templates and listings) and the CLIPScore prefix.

    Args:
        n_scenes: random scenes (1..9 shapes) whose captions are read for the templates' own
            words; the phrase tables add every synonym, so rare ones are never unknown.
        seed: of those scenes.
    """
    import random

    from vlmtrain.data.shapes_captions import (
        BACKGROUND_WORDS,
        COUNT_WORDS,
        PICTURE_WORDS,
        POSITION_PHRASES,
        SIZE_WORDS,
        listing,
        make_captions,
    )
    from vlmtrain.data.shapes_render import COLOURS, COLUMNS, KINDS, ROWS, sample_scene

    texts = [PREFIX, *COUNT_WORDS, *PICTURE_WORDS, *BACKGROUND_WORDS, *COLOURS, *KINDS, *ROWS,
             *COLUMNS, *(w for words in SIZE_WORDS.values() for w in words),
             *(p for phrases in POSITION_PHRASES.values() for p in phrases)]
    rng = random.Random(seed)
    for _ in range(n_scenes):
        shapes, _ = sample_scene(rng, 48, rng.randint(1, 9))
        texts += [*make_captions(rng, shapes), listing(shapes)]
    return sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]+", t.lower())})


def build_tokenizer(words: Iterable[str], max_length: int = 77) -> PreTrainedTokenizerFast:
    """Word-level tokenizer: lower-case, split on spaces and punctuation, ``<bos> ... <eos>``.

    Args:
        words: the vocabulary (specials are added first, ids 0..3).
        max_length: longest encoded text, specials included (CLIP's 77).
    """
    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for word in words:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # \w+ and runs of punctuation
    bos, eos = SPECIALS[2], SPECIALS[3]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=SPECIALS[0], unk_token=SPECIALS[1], bos_token=bos,
        eos_token=eos, model_max_length=max_length)


def build_shapes_clip(
    tokenizer: PreTrainedTokenizerFast,
    image_size: int = 48,
    patch_size: int = 8,
    width: int = 64,
    layers: int = 2,
    heads: int = 4,
    vision_width: int | None = None,
    vision_layers: int | None = None,
    projection_dim: int = 64,
    max_length: int = 77,
    position_init: str = "sincos",
) -> tuple[CLIPModel, CLIPProcessor]:
    """A randomly initialised ``CLIPModel`` and its ``CLIPProcessor`` (call ``torch.manual_seed``
    first for a reproducible init).

    Args:
        tokenizer: from :func:`build_tokenizer`.
        image_size: input side (px); the processor resizes and centre-crops to it.
        patch_size: ViT patch side (px). 8 on 48 px scenes: 2x2 patches per grid cell. With 16
            (one patch per cell) the tower never learned where a shape is: a supervised probe
            "which cell holds the one shape" stayed at chance (0.11) after 200 steps, against
            0.99 with 8 px patches and the sine-cosine start.
        width, layers, heads: of the text tower, and of the vision tower unless given below
            (MLP 4x width).
        vision_width, vision_layers: of the vision tower (default: ``width``, ``layers``).
        projection_dim: joint embedding size.
        max_length: text positions.
        position_init: ``"sincos"`` starts the vision tower's learned position table as a 2-D
            sine-cosine grid (:func:`vlmtrain.models.tiny.sincos_2d`), ``"random"`` keeps HF's
            init. From random positions neither tower ever learned position: the image
            embedding of a scene and of the same scene with its shape moved had cosine 0.99997
            after 1,500 steps, so position negatives had nothing to pull on.
    """
    vision_width, vision_layers = vision_width or width, vision_layers or layers
    tower = {"hidden_size": width, "intermediate_size": 4 * width,
             "num_hidden_layers": layers, "num_attention_heads": heads}
    vision = {"hidden_size": vision_width, "intermediate_size": 4 * vision_width,
              "num_hidden_layers": vision_layers, "num_attention_heads": heads}
    config = CLIPConfig(
        text_config=dict(tower, vocab_size=len(tokenizer), max_position_embeddings=max_length,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id),
        vision_config=dict(vision, image_size=image_size, patch_size=patch_size),
        projection_dim=projection_dim,
    )
    if config.text_config.eos_token_id == 2:  # pragma: no cover - SPECIALS fixes it at 3
        raise ValueError("eos_token_id 2 makes HF CLIP pool the highest token id, not the eos")
    if position_init not in ("random", "sincos"):
        raise ValueError(f"position_init must be 'random' or 'sincos', got {position_init!r}")
    model = CLIPModel(config)
    if position_init == "sincos":
        table = model.vision_model.embeddings.position_embedding.weight  # row 0: class token
        with torch.no_grad():
            table[1:] = sincos_2d(image_size // patch_size, vision_width)
    images = CLIPImageProcessor(size={"shortest_edge": image_size},
                                crop_size={"height": image_size, "width": image_size})
    return model, CLIPProcessor(image_processor=images, tokenizer=tokenizer)
