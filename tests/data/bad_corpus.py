"""A small corpus of good and bad image files for the reader tests (written into tmp_path).

Each image has hand-known pixels, so a test can check what the decoder made of it:
``rgb.png`` is pure red; ``cmyk.jpg`` is (C, M, Y, K) = (0, 255, 0, 0) -> magenta; ``palette.png``
is palette red; ``transparent.png`` has a fully transparent left column over black (white once
composited); ``grey16.png`` is 16-bit grey with values 0, 32896, 65535 (-> 0, 128, 255).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

GOOD = ("rgb.png", "cmyk.jpg", "palette.png", "transparent.png", "grey16.png", "one_pixel.png")
# exist, but do not decode: found only when the sample is read
LATE_BAD = ("corrupt.jpg", "empty.png", "truncated.png")


def write_images(root: Path) -> Path:
    """Write every corpus image into ``root`` and return it."""
    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (255, 0, 0)).save(root / "rgb.png")
    Image.new("CMYK", (8, 8), (0, 255, 0, 0)).save(root / "cmyk.jpg", quality=100)
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    palette.save(root / "palette.png")
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:, 1:] = (0, 0, 255, 255)  # opaque blue, but the first column is transparent black
    Image.fromarray(rgba).save(root / "transparent.png")
    grey = np.array([[0, 32896, 65535]] * 2, np.uint16)
    Image.fromarray(grey).save(root / "grey16.png")
    Image.new("RGB", (1, 1), (0, 255, 0)).save(root / "one_pixel.png")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG body" * 4)
    (root / "empty.png").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        buf, format="PNG")
    (root / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return root


def png_bytes(color: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] = (8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()
