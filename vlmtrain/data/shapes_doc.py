"""Document-style pages of the shapes world: printed words and numbers, reading questions.

A page holds 1..``max_words`` items (a common short word or a number), one per line slot, at a
random horizontal offset. Questions ask to read one item back, so the answer is always visible in
the pixels and ANLS can be computed against the printed string.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from PIL import Image, ImageDraw

from vlmtrain.data.shapes_render import TextItem, background, page_font, render_page

DOC_QTYPES = ("first_word", "last_word", "top", "bottom", "number", "below")
DOC_WORDS = (
    "apple", "house", "river", "table", "chair", "water", "light", "music", "paper", "bread",
    "money", "train", "phone", "plant", "stone", "cloud", "smile", "dream", "heart", "night",
    "world", "beach", "clock", "field", "glass", "horse", "lemon", "mouse", "ocean", "piano",
    "queen", "robot", "sugar", "tiger", "towel", "voice", "wheel", "zebra", "cat", "dog",
    "sun", "map", "box", "cup", "pen", "car", "bus", "hat", "key", "bed",
    "egg", "fish", "bird", "book", "door", "tree", "milk", "rain", "snow", "moon",
    "road", "ship", "shoe", "king", "lamp", "leaf", "lion", "nest", "park", "ring",
    "rose", "salt", "sand", "seed", "sock", "song", "soup", "tent", "toy", "wind",
    "wolf", "yard", "bank", "cake", "coat", "corn", "desk", "drum", "farm", "fork",
    "gate", "gold", "hill", "kite", "lake", "mask", "nose", "pear", "rock", "city",
)
NUMBER_RANGE = (1, 999)
CASE_STYLES = ("lower", "title", "upper")
DOC_TEMPLATES: dict[str, tuple[str, ...]] = {
    "first_word": ("What is the first word?", "Which word comes first?"),
    "last_word": ("What is the last word?", "Which word comes last?"),
    "top": ("What is written at the top?", "What is the text at the top of the page?"),
    "bottom": ("What is written at the bottom?", "What is the text at the bottom of the page?"),
    "number": ("What number is shown?", "Which number is written on the page?"),
    "below": ("What is written below {text}?", "What comes after {text}?"),
}
_NUMBER_SHARE = 0.25
_MARGIN_PX = 3  # render_page keeps text this far from the left and right edges
_JITTER_PX = 1  # and moves each line up or down by up to this much


@dataclass(frozen=True)
class DocQuestion:
    """A reading question about a rendered page.

    Attributes:
        qtype: One of :data:`DOC_QTYPES`.
        text: The question.
        answer: The printed string that answers it.
        references: Gold answers: the printed string and, if different, its lowercase form.
        image: The page.
        items: What is printed where.
        meta: Extras.
    """

    qtype: str
    text: str
    answer: str
    references: tuple[str, ...]
    image: Image.Image
    items: list[TextItem]
    meta: dict[str, Any] = field(default_factory=dict)


def page_lines(max_words: int) -> int:
    """Line slots of a page that holds up to ``max_words`` items (at least 4)."""
    return max(4, max_words)


def _font_px(image_size: int, n_lines: int) -> int:
    return max(10, round(image_size / n_lines * 0.55))  # as render_page sizes its font


@lru_cache(maxsize=16)
def min_page_size(max_words: int) -> int:
    """Smallest page side (px) on which every printed string is whole and lines stay apart.

    Two limits: the widest string (``MONEY`` in capitals, 37 px in the smallest, 10 px font)
    plus the side margins must fit across the page, and a line slot must hold the tallest ink
    (10 px with descenders) plus the vertical jitter on both sides, or the top line is cut at the
    page edge and neighbouring lines overlap. 4 items per page (the default) need 48 px, the
    shipped scene size; each further item 12 px more (8 items: 96 px).
    """
    n_lines = page_lines(max_words)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    texts = [styled(w, s) for w in DOC_WORDS for s in CASE_STYLES] + ["888", "999", "444"]
    size = 32
    while True:  # the font grows with the page, so search upward; ends within ~100 steps
        font = page_font(_font_px(size, n_lines))
        boxes = [draw.textbbox((0, 0), t, font=font) for t in texts]
        widest = max(x1 - x0 for x0, _, x1, _ in boxes)
        tallest = max(y1 - y0 for _, y0, _, y1 in boxes)
        if (widest + 2 * _MARGIN_PX <= size
                and size / n_lines >= tallest + 2 * _JITTER_PX):
            return size
        size += 1


def styled(word: str, style: str) -> str:
    """``word`` in lower, Title or UPPER case."""
    return {"lower": word.lower(), "title": word.title(), "upper": word.upper()}[style]


def _texts(rng: random.Random, qtype: str, n: int) -> list[str]:
    """Printed strings, top to bottom, satisfying what ``qtype`` needs."""
    if qtype == "number":
        kinds = ["word"] * n
        kinds[rng.randrange(n)] = "number"
    else:
        kinds = ["number" if rng.random() < _NUMBER_SHARE else "word" for _ in range(n)]
        if qtype in ("first_word", "last_word") and "word" not in kinds:
            kinds[rng.randrange(n)] = "word"
    words = iter(rng.sample(DOC_WORDS, n))
    numbers = iter(rng.sample(range(NUMBER_RANGE[0], NUMBER_RANGE[1] + 1), n))
    return [styled(next(words), rng.choice(CASE_STYLES)) if kind == "word" else str(next(numbers))
            for kind in kinds]


def make_doc_question(rng: random.Random, qtype: str, split: str, image_size: int,
                      max_words: int) -> DocQuestion:
    """Lay out a page and ask a question whose answer is printed on it.

    Args:
        rng: Random generator of the sample.
        qtype: One of :data:`DOC_QTYPES`.
        split: ``"train" | "val" | "test"`` (folded into the page tint, see ``background``).
        image_size: Page side in pixels.
        max_words: Most items on a page (also the number of line slots if above 4).
    """
    if qtype not in DOC_QTYPES:
        raise ValueError(f"unknown doc question type {qtype!r}; use one of {', '.join(DOC_QTYPES)}")
    n = rng.randint(2 if qtype == "below" else 1, max_words)
    n_lines = page_lines(max_words)
    lines = sorted(rng.sample(range(n_lines), n))
    texts = _texts(rng, qtype, n)
    image, items = render_page(rng, texts, lines, image_size, n_lines,
                               background(rng, split, 246, 255))
    words = [t for t in texts if not t.isdigit()]
    template = rng.choice(DOC_TEMPLATES[qtype])
    meta: dict[str, Any] = {}
    if qtype == "first_word":
        answer = words[0]
    elif qtype == "last_word":
        answer = words[-1]
    elif qtype == "top":
        answer = texts[0]
    elif qtype == "bottom":
        answer = texts[-1]
    elif qtype == "number":
        answer = next(t for t in texts if t.isdigit())
    else:
        j = rng.randrange(n - 1)
        answer, template = texts[j + 1], template.format(text=texts[j])
        meta["anchor"] = texts[j]
    references = (answer,) if answer.lower() == answer else (answer, answer.lower())
    return DocQuestion(qtype, template, answer, references, image, items, meta)
