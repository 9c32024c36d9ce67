"""Reference captions for shapes scenes.

Five captions per image, from different templates, word orders (reading order, biggest first,
random) and synonyms ("big"/"large", "in the middle"/"in the centre"), each describing every
shape. The spread between references is what gives CIDEr's consensus weighting something to do.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from vlmtrain.data.shapes_render import Shape

N_CAPTIONS = 5
COUNT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SIZE_WORDS = {"large": ("large", "big"), "small": ("small", "little", "tiny")}
PICTURE_WORDS = ("a picture of", "an image of", "a drawing of", "a simple drawing of")
BACKGROUND_WORDS = ("on a light background", "on a plain background", "on a white background")
# (col, row) -> ways to say where a shape is.
POSITION_PHRASES: dict[tuple[int, int], tuple[str, ...]] = {
    (1, 1): ("in the centre", "in the middle"),
    (1, 0): ("at the top", "at the top in the middle"),
    (1, 2): ("at the bottom", "at the bottom in the middle"),
    (0, 1): ("on the left", "on the left side"),
    (2, 1): ("on the right", "on the right side"),
    (0, 0): ("in the top left corner", "at the top left"),
    (2, 0): ("in the top right corner", "at the top right"),
    (0, 2): ("in the bottom left corner", "at the bottom left"),
    (2, 2): ("in the bottom right corner", "at the bottom right"),
}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def bare_phrase(rng: random.Random, shape: Shape, with_size: bool) -> str:
    """``"big red circle"`` / ``"orange square"`` (no article)."""
    words = [shape.colour, shape.kind]
    if with_size:
        words.insert(0, rng.choice(SIZE_WORDS[shape.size]))
    return " ".join(words)


def noun_phrase(rng: random.Random, shape: Shape, with_size: bool) -> str:
    """``"a big red circle"`` / ``"an orange square"``."""
    bare = bare_phrase(rng, shape, with_size)
    return f"{_article(bare)} {bare}"


def position_phrase(rng: random.Random, shape: Shape) -> str:
    return rng.choice(POSITION_PHRASES[(shape.col, shape.row)])


def join_phrases(phrases: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(phrases) == 1:
        return phrases[0]
    return f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def _ordered(rng: random.Random, shapes: Sequence[Shape]) -> list[Shape]:
    order = rng.choice(("reading", "size", "random"))
    if order == "reading":
        return list(shapes)
    if order == "size":
        return sorted(shapes, key=lambda s: s.size != "large")  # stable: reading order within
    return rng.sample(list(shapes), len(shapes))


def _plain_list(rng: random.Random, shapes: Sequence[Shape]) -> str:
    return join_phrases([noun_phrase(rng, s, False) for s in _ordered(rng, shapes)])


def _sized_list(rng: random.Random, shapes: Sequence[Shape]) -> str:
    return join_phrases([noun_phrase(rng, s, True) for s in _ordered(rng, shapes)])


def _count_with_positions(rng: random.Random, shapes: Sequence[Shape]) -> str:
    parts = [f"{noun_phrase(rng, s, rng.random() < 0.5)} {position_phrase(rng, s)}"
             for s in _ordered(rng, shapes)]
    noun = "shape" if len(shapes) == 1 else "shapes"
    return f"{COUNT_WORDS[len(shapes)]} {noun}: {join_phrases(parts)}"


def _there_is(rng: random.Random, shapes: Sequence[Shape]) -> str:
    if len(shapes) == 1:
        return f"there is {noun_phrase(rng, shapes[0], True)} {position_phrase(rng, shapes[0])}"
    return f"there are {COUNT_WORDS[len(shapes)]} shapes, {_sized_list(rng, shapes)}"


def _picture_of(rng: random.Random, shapes: Sequence[Shape]) -> str:
    things = _sized_list(rng, shapes) if rng.random() < 0.5 else _plain_list(rng, shapes)
    return f"{rng.choice(PICTURE_WORDS)} {things} {rng.choice(BACKGROUND_WORDS)}"


def _position_first(rng: random.Random, shapes: Sequence[Shape]) -> str:
    parts = [f"{position_phrase(rng, s)} is {noun_phrase(rng, s, True)}"
             for s in _ordered(rng, shapes)]
    return join_phrases(parts)


def _relation(rng: random.Random, shapes: Sequence[Shape]) -> str:
    if len(shapes) == 1:
        only = shapes[0]
        return f"a single {bare_phrase(rng, only, True)} {position_phrase(rng, only)}"
    by_column = sorted(shapes, key=lambda s: (s.col, s.row))
    a, b = by_column[0], by_column[1]
    relation = "to the left of" if a.col < b.col else "above"
    head = f"{noun_phrase(rng, a, True)} {relation} {noun_phrase(rng, b, True)}"
    rest = [f"{noun_phrase(rng, s, True)} {position_phrase(rng, s)}" for s in by_column[2:]]
    return join_phrases([head, *rest])


CAPTION_TEMPLATES: tuple[Callable[[random.Random, Sequence[Shape]], str], ...] = (
    _plain_list, _sized_list, _count_with_positions, _there_is, _picture_of, _position_first,
    _relation,
)


def listing(shapes: Sequence[Shape]) -> str:
    """Every shape in reading order with its cell and all attributes, in one fixed format.

    ``"top left: small red circle; centre middle: large blue square"``. One answer per scene
    (no synonyms, no word-order choices): each item is read from one image token, found by its
    cell, so every kind, colour, size and position in the scene is supervised in every sample.

    Args:
        shapes: The scene, in any order.

    Returns:
        The listing (lowercase).
    """
    return "; ".join(f"{s.row_name} {s.column_name}: {s.size} {s.colour} {s.kind}"
                     for s in sorted(shapes, key=lambda s: (s.row, s.col)))


def make_captions(rng: random.Random, shapes: Sequence[Shape]) -> tuple[str, ...]:
    """Five distinct captions, each from a different template, each naming every shape.

    Args:
        rng: Random generator of the sample.
        shapes: The scene (1..9 shapes).

    Returns:
        ``N_CAPTIONS`` distinct lowercase captions.
    """
    captions: list[str] = []
    for template in rng.sample(CAPTION_TEMPLATES, len(CAPTION_TEMPLATES)):
        caption = template(rng, shapes)
        if caption not in captions:
            captions.append(caption)
        if len(captions) == N_CAPTIONS:
            return tuple(captions)
    # Templates can coincide for a one-shape scene; re-draw synonyms until five differ.
    for _ in range(50):
        caption = rng.choice(CAPTION_TEMPLATES)(rng, shapes)
        if caption not in captions:
            captions.append(caption)
            if len(captions) == N_CAPTIONS:
                return tuple(captions)
    raise RuntimeError(f"could not build {N_CAPTIONS} distinct captions for {shapes}")
