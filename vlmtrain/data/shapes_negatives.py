"""Hard-negative captions for the shapes world: the same caption with one attribute changed.

A caption of a scene and its negative come from the same template with the same random choices
(synonyms, word order, which shapes get a size word), so they differ only where the changed
attribute is named: "a big red circle at the top left" against "a big blue circle at the top
left". A contrastive model can then tell them apart only by looking at that attribute -- which
in-batch negatives (other scenes, differing in everything at once) never force it to do.

The templates draw from :class:`SteadyRandom`, whose ``choice`` consumes one draw whatever the
length of the sequence: "small" has three synonyms and "large" two, and with
``random.Random.choice`` a flipped size would shift every later draw of the caption.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from PIL import Image

from vlmtrain.data.shapes import ShapesDataset, sample_rng
from vlmtrain.data.shapes_captions import (
    CAPTION_TEMPLATES,
    SIZE_WORDS,
    _count_with_positions,
    _position_first,
)
from vlmtrain.data.shapes_render import CELLS, COLOURS, KINDS, Shape

ATTRIBUTES = ("colour", "kind", "size", "position")
Template = Callable[[random.Random, Sequence[Shape]], str]
# Position negatives only from templates that name every shape's cell: in the others a moved
# shape can leave the caption true ("a circle above a square" holds for many cells).
TEMPLATES: dict[str, tuple[Template, ...]] = {
    "colour": CAPTION_TEMPLATES, "kind": CAPTION_TEMPLATES, "size": CAPTION_TEMPLATES,
    "position": (_count_with_positions, _position_first),
}


_ATTRIBUTE_WORDS = {"colour": set(COLOURS), "kind": set(KINDS),
                    "size": {w for words in SIZE_WORDS.values() for w in words}}


class SteadyRandom(random.Random):
    """``random.Random`` whose ``choice`` always consumes exactly one ``random()`` draw."""

    def choice(self, seq):
        return seq[int(self.random() * len(seq))]


class Probe(NamedTuple):
    """A true caption and the same caption with one attribute of one shape changed.

    Attributes:
        true: caption of the scene.
        altered: the same template and random choices on the altered scene.
        attribute: one of :data:`ATTRIBUTES`.
    """

    true: str
    altered: str
    attribute: str


def alter(rng: random.Random, shapes: Sequence[Shape], attribute: str) -> list[Shape] | None:
    """The scene with ``attribute`` of one random shape changed to another value.

    Position moves the shape to a free cell and keeps the list order, so templates walk the
    shapes in the same order. Pixel coordinates are left as they were (captions do not read them).

    Args:
        rng: random generator.
        shapes: the scene.
        attribute: one of :data:`ATTRIBUTES`.

    Returns:
        A new list of shapes, or None when the change is impossible (no free cell).
    """
    index = rng.randrange(len(shapes))
    shape = shapes[index]
    if attribute == "colour":
        new = {"colour": rng.choice([c for c in COLOURS if c != shape.colour])}
    elif attribute == "kind":
        new = {"kind": rng.choice([k for k in KINDS if k != shape.kind])}
    elif attribute == "size":
        new = {"size": "small" if shape.size == "large" else "large"}
    elif attribute == "position":
        free = [c for c in CELLS if c not in {(s.col, s.row) for s in shapes}]
        if not free:
            return None
        col, row = rng.choice(free)
        new = {"col": col, "row": row}
    else:
        raise ValueError(f"unknown attribute {attribute!r}; use one of {', '.join(ATTRIBUTES)}")
    altered = list(shapes)
    altered[index] = dataclasses.replace(shape, **new)
    return altered


def negative(rng: random.Random, shapes: Sequence[Shape], attribute: str, template: Template,
             seed: int, tries: int = 10) -> str | None:
    """``template``'s caption of ``shapes`` with ``attribute`` of one shape changed.

    Args:
        rng: draws which shape changes and to what.
        shapes: the scene.
        attribute: one of :data:`ATTRIBUTES`.
        template: a caption template (one of ``CAPTION_TEMPLATES``).
        seed: seed of the template's :class:`SteadyRandom`, the same as for the true caption.
        tries: changes drawn before giving up.

    Returns:
        The negative, or None when the template does not name the attribute (no size words,
        no positions) or no change gave a clean negative.
    """
    if template not in TEMPLATES[attribute]:
        return None
    true = template(SteadyRandom(seed), shapes)
    for _ in range(tries):
        altered = alter(rng, shapes, attribute)
        if altered is None:
            return None
        text = template(SteadyRandom(seed), altered)
        if text != true and _only_attribute_changed(true, text, attribute):
            return text
    return None


def probe(rng: random.Random, shapes: Sequence[Shape], attribute: str,
          tries: int = 20) -> Probe | None:
    """A caption of ``shapes`` and its negative with ``attribute`` of one shape changed.

    Args:
        rng: random generator (which template, which words, which shape, which value).
        shapes: the scene.
        attribute: one of :data:`ATTRIBUTES`.
        tries: templates drawn before giving up.

    Returns:
        The probe, or None if no draw gave a negative.
    """
    for _ in range(tries):
        template = rng.choice(TEMPLATES[attribute])
        seed = rng.getrandbits(64)
        text = negative(rng, shapes, attribute, template, seed, tries=1)
        if text is not None:
            return Probe(template(SteadyRandom(seed), shapes), text, attribute)
    return None


def caption_with_negatives(rng: random.Random, shapes: Sequence[Shape], n_negatives: int,
                           position_share: float = 2 / 7,
                           weights: Mapping[str, float] | None = None) -> tuple[str, list[str]]:
    """A caption of the scene and up to ``n_negatives`` hard negatives of it (training).

    The template is drawn once and every negative reuses it and its random choices, so each
    negative differs from the caption only in one attribute. A template naming every cell is
    drawn with probability ``position_share`` (2/7 when all templates are equally likely), so
    that share of the captions can get position negatives. Attributes are drawn without
    replacement among those the template names, with probabilities proportional to
    ``weights``, then with replacement if more negatives are wanted.

    Args:
        rng: random generator of the sample.
        shapes: the scene.
        n_negatives: negatives wanted.
        position_share: probability of a positional template.
        weights: attribute -> weight (> 0; default: all 1).

    Returns:
        ``(caption, negatives)``; fewer negatives when the template names too few attributes.
    """
    positional = TEMPLATES["position"]
    others = [t for t in CAPTION_TEMPLATES if t not in positional]
    template = rng.choice(positional if rng.random() < position_share else others)
    seed = rng.getrandbits(64)
    pool = {a: (weights or {}).get(a, 1.0) for a in ATTRIBUTES if template in TEMPLATES[a]}
    order = []
    while pool and len(order) < n_negatives:
        order.append(rng.choices(list(pool), weights=list(pool.values()))[0])
        pool.pop(order[-1])
    attributes = [a for a in ATTRIBUTES if template in TEMPLATES[a]]
    order += [rng.choice(attributes) for _ in range(n_negatives - len(order))]
    negatives = []
    for attribute in order:
        text = negative(rng, shapes, attribute, template, seed)
        if text is not None:
            negatives.append(text)
    return template(SteadyRandom(seed), shapes), negatives


def _only_attribute_changed(true: str, negative: str, attribute: str) -> bool:
    """Whether the two captions are equal once the words of ``attribute`` are masked.

    A size flip can reorder a "biggest first" list (with or without size words), which would
    make a negative that is the true caption in another order; colour and kind changes never
    move anything, and a moved shape keeps its place in the list (see :func:`alter`).
    """
    if attribute not in _ATTRIBUTE_WORDS:
        return True
    mask = _ATTRIBUTE_WORDS[attribute] | {"a", "an"}  # "a red" -> "an orange"
    words = [re.sub(r"\w+", lambda m: "_" if m[0] in mask else m[0], t) for t in (true, negative)]
    return words[0] == words[1]


def scene_shapes(meta: dict) -> list[Shape]:
    """The :class:`Shape` list of a shapes sample's ``meta["shapes"]``."""
    return [Shape(**s) for s in meta["shapes"]]


def probe_set(n: int, split: str = "val", seed: int = 0, image_size: int = 48,
              max_shapes: int = 3) -> list[tuple[Image.Image, list[Probe]]]:
    """Caption-task images with one probe per attribute each: the evaluation set of a shapes CLIP.

    The images are those of ``ShapesDataset("caption", split, ...)``, the scenes the caption
    recipes are scored on; each gets a probe for every attribute that can change its caption.

    Args:
        n: number of images (the first ``n`` of the split).
        split: ``"train" | "val" | "test"``.
        seed: dataset seed.
        image_size: side of the images (px).
        max_shapes: most shapes per scene.

    Returns:
        ``[(PIL image, [Probe, ...]), ...]``, deterministic for its arguments.
    """
    data = ShapesDataset("caption", split, size=n, seed=seed, image_size=image_size,
                         max_shapes=max_shapes)
    out = []
    for i in range(n):
        sample = data[i]
        rng = sample_rng(seed, split, "clip-probe", i)
        shapes = scene_shapes(sample.meta)
        out.append((sample.image, [p for a in ATTRIBUTES if (p := probe(rng, shapes, a))]))
    return out
