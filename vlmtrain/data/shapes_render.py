"""Scenes of the synthetic shapes world: what is where, and how it is drawn.

A scene is a 3x3 grid; each shape occupies its own cell, so shapes never overlap and the words
"left / middle / right" (column) and "top / centre / bottom" (row) are always well defined.
Everything random is drawn from a ``random.Random`` handed in by the caller, so a scene is a pure
function of that generator's seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

KINDS = ("circle", "square", "triangle", "diamond")
# Saturated and far apart in RGB so that "what colour" is never a judgement call.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (235, 200, 0),
    "purple": (135, 45, 175),
    "orange": (245, 125, 10),
}
SIZES = ("small", "large")
COLUMNS = ("left", "middle", "right")
ROWS = ("top", "centre", "bottom")
CELLS = tuple((col, row) for row in range(3) for col in range(3))
SPLITS = ("train", "val", "test")
# Radius as a fraction of the grid cell: a large shape is ~1.9x a small one in diameter.
_RADIUS = {"small": 0.21, "large": 0.40}


@dataclass(frozen=True)
class Shape:
    """One drawn shape.

    Attributes:
        kind: One of :data:`KINDS`.
        colour: One of :data:`COLOURS`.
        size: ``"small"`` or ``"large"``.
        col: Grid column 0..2 (left, middle, right).
        row: Grid row 0..2 (top, centre, bottom).
        cx: Centre x in pixels.
        cy: Centre y in pixels.
        r: Half the extent in pixels.
    """

    kind: str
    colour: str
    size: str
    col: int
    row: int
    cx: int
    cy: int
    r: int

    @property
    def column_name(self) -> str:
        return COLUMNS[self.col]

    @property
    def row_name(self) -> str:
        return ROWS[self.row]

    def as_dict(self) -> dict[str, object]:
        """Plain-data view (for ``Sample.meta``, JSON logs and W&B tables)."""
        return {"kind": self.kind, "colour": self.colour, "size": self.size, "col": self.col,
                "row": self.row, "cx": self.cx, "cy": self.cy, "r": self.r}


def background(rng: random.Random, split: str, low: int, high: int) -> tuple[int, int, int]:
    """A light background tint whose channel sum encodes the split.

    The split is folded into the tint (sum of channels modulo 3) so that no image can ever be
    byte-identical across train/val/test, whatever the random streams do; the tint varies by a
    few levels only and carries no label information.

    Args:
        rng: Random generator of the sample.
        split: ``"train" | "val" | "test"``.
        low: Smallest channel value.
        high: Largest channel value (inclusive).
    """
    target = SPLITS.index(split)
    r, g = rng.randint(low, high), rng.randint(low, high)
    b = rng.randint(low, high)
    # Nudge blue towards the split's residue, staying within [low, high].
    b += (target - (r + g + b)) % 3
    if b > high:
        b -= 3
    return r, g, b


def sample_scene(
    rng: random.Random,
    image_size: int,
    n: int,
    target: tuple[str, str, str | None] | None = None,
    target_cells: Sequence[tuple[int, int]] = CELLS,
    allow: Callable[[str, str], bool] = lambda kind, colour: True,
) -> tuple[list[Shape], Shape | None]:
    """Draw the shapes of a scene, optionally with one prescribed shape.

    Args:
        rng: Random generator of the sample.
        image_size: Image side in pixels.
        n: Number of shapes (1..9).
        target: ``(kind, colour, size or None)`` of a shape that must be present; a ``None`` size
            is drawn at random.
        target_cells: ``(col, row)`` cells the target may occupy.
        allow: Predicate on ``(kind, colour)`` that every *other* shape must satisfy (used to keep
            the target unique, or to keep a queried combination absent).

    Returns:
        ``(shapes, target_shape)``: shapes in reading order (row, then column), and the target
        shape (``None`` if no target was given).
    """
    if target is not None:
        target_cell = rng.choice(list(target_cells))
        free = [c for c in CELLS if c != target_cell]
        cells = [target_cell, *rng.sample(free, n - 1)]
    else:
        cells = rng.sample(CELLS, n)
    shapes: list[Shape] = []
    target_shape = None
    for index, (col, row) in enumerate(cells):
        if index == 0 and target is not None:
            kind, colour, size = target
            size = size or rng.choice(SIZES)
        else:
            kind, colour = rng.choice(KINDS), rng.choice(tuple(COLOURS))
            while not allow(kind, colour):
                kind, colour = rng.choice(KINDS), rng.choice(tuple(COLOURS))
            size = rng.choice(SIZES)
        shape = _place(rng, image_size, kind, colour, size, col, row)
        shapes.append(shape)
        if index == 0 and target is not None:
            target_shape = shape
    shapes.sort(key=lambda s: (s.row, s.col))
    return shapes, target_shape


def _place(rng: random.Random, image_size: int, kind: str, colour: str, size: str, col: int,
           row: int) -> Shape:
    cell = image_size / 3
    r = max(2, round(cell * _RADIUS[size] * rng.uniform(0.92, 1.08)))
    # Jitter inside the cell but keep a 1 px margin to the cell border: no overlap, ever.
    slack = max(0, int(cell / 2 - r - 1))
    cx = int((col + 0.5) * cell) + rng.randint(-slack, slack)
    cy = int((row + 0.5) * cell) + rng.randint(-slack, slack)
    return Shape(kind, colour, size, col, row, cx, cy, r)


def render_scene(shapes: Sequence[Shape], image_size: int,
                 bg: tuple[int, int, int]) -> Image.Image:
    """Draw shapes on a plain background.

    Args:
        shapes: Shapes to draw (non-overlapping).
        image_size: Side of the square image in pixels.
        bg: Background RGB.

    Returns:
        RGB image of size ``(image_size, image_size)``.
    """
    image = Image.new("RGB", (image_size, image_size), bg)
    draw = ImageDraw.Draw(image)
    for s in shapes:
        fill = COLOURS[s.colour]
        x, y, r = s.cx, s.cy, s.r
        if s.kind == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        elif s.kind == "square":
            h = round(r * 0.85)  # equal-ish area to the circle, so size stays comparable
            draw.rectangle((x - h, y - h, x + h, y + h), fill=fill)
        elif s.kind == "triangle":
            draw.polygon(((x, y - r), (x + r, y + r - 1), (x - r, y + r - 1)), fill=fill)
        elif s.kind == "diamond":
            w = round(r * 0.8)
            draw.polygon(((x, y - r), (x + w, y), (x, y + r), (x - w, y)), fill=fill)
        else:  # pragma: no cover - KINDS is closed
            raise ValueError(f"unknown shape kind {s.kind!r}; use one of {KINDS}")
    return image


@lru_cache(maxsize=8)
def page_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` px (no font file needed, nothing downloaded)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        # Pillow < 10.1 or built without FreeType: only the fixed ~11 px bitmap font exists.
        return ImageFont.load_default()


@dataclass(frozen=True)
class TextItem:
    """A word or number printed on a document page.

    Attributes:
        text: The printed string.
        line: Line slot index from the top (0-based).
        box: Ink bounding box ``(x0, y0, x1, y1)`` in pixels.
    """

    text: str
    line: int
    box: tuple[int, int, int, int]

    def as_dict(self) -> dict[str, object]:
        return {"text": self.text, "line": self.line, "box": self.box}


def render_page(rng: random.Random, texts: Sequence[str], lines: Sequence[int], image_size: int,
                n_lines: int, bg: tuple[int, int, int]) -> tuple[Image.Image, list[TextItem]]:
    """Print one text per line slot on a page, at a random horizontal offset.

    Args:
        rng: Random generator of the sample.
        texts: Strings to print, in top-to-bottom order.
        lines: Line slot of each string (increasing, each < ``n_lines``).
        image_size: Page side in pixels.
        n_lines: Number of line slots the page is divided into.
        bg: Page colour.

    Returns:
        ``(image, items)``: the RGB page and where each string's ink is.
    """
    image = Image.new("RGB", (image_size, image_size), bg)
    draw = ImageDraw.Draw(image)
    slot = image_size / n_lines
    font = page_font(max(10, round(slot * 0.55)))
    items = []
    for text, line in zip(texts, lines, strict=True):
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        width, height = x1 - x0, y1 - y0
        x = rng.randint(3, max(3, image_size - width - 3)) - x0
        y = int(line * slot + (slot - height) / 2) - y0 + rng.randint(-1, 1)
        ink = tuple(rng.randint(0, 60) for _ in range(3))
        draw.text((x, y), text, font=font, fill=ink)
        items.append(TextItem(text, line, (x + x0, y + y0, x + x1, y + y1)))
    return image, items
