"""Decode an image file (or its bytes) into the RGB image every processor expects.

``Image.convert("RGB")`` alone gets two common kinds of real-world files wrong, so they are
converted here first:

* 16-bit greyscale (``I;16`` PNG/TIFF scans, depth maps): Pillow clips every value above 255
  to white instead of rescaling, so a 16-bit scan comes out almost blank. Values are scaled
  by 255 / 65535 instead.
* transparency (``RGBA``, ``LA``, palette images with a transparent colour): ``convert`` drops
  alpha and keeps whatever colour the transparent pixels store, often black -- black text on a
  transparent page becomes black on black. They are composited over white, as a viewer
  shows them.

CMYK, palette, greyscale and 1-bit images convert with Pillow's own ``convert``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from vlmtrain.data.bad_records import BadRecord

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageNotFoundError(BadRecord, FileNotFoundError):
    """An image file named by a record does not exist (the message names record and path)."""


def to_rgb(image: Image.Image) -> Image.Image:
    """The image in mode ``"RGB"`` (see module docstring for the modes handled).

    Raises:
        ValueError: for a mode Pillow cannot convert to RGB.
    """
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT or image.mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(image), image.mode)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Greyscale ``(H, W)`` values as ``uint8``: 16-bit scaled by 255 / 65535, float [0, 1]
    by 255; 32-bit ``I`` / ``F`` data already in [0, 255] kept (Pillow opens some 16-bit files
    as ``I``, so ``I`` above 255 is taken as 16-bit)."""
    top = float(values.max()) if values.size else 0.0
    values = values.astype(np.float64)
    if mode.startswith("I;16") or (mode in ("I", "F") and top > 255):
        values = values * (255.0 / 65535.0)
    elif mode == "F" and top <= 1.0:
        values = values * 255.0
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def decode_image(source: str | Path | bytes | None, record_id: str,
                 annotations: str = "the annotation file") -> Image.Image:
    """Open an image file (or encoded bytes) as a fully loaded RGB image.

    Args:
        source: file path, or the encoded file's bytes (parquet / ``datasets`` columns).
        record_id: id of the record that names it, for the error message.
        annotations: the file that names the image, for the fix in the message.

    Raises:
        ImageNotFoundError: ``source`` is a path that does not exist (reason ``missing_image``).
        BadRecord: the file does not decode as an image (reason ``unreadable_image``: corrupt,
            empty, truncated, or a mode with no RGB conversion).
    """
    if source is None:
        raise ImageNotFoundError("missing_image", f"record {record_id} has no image; give it one "
                                 f"in {annotations} or drop it")
    if isinstance(source, (bytes, bytearray)):
        name, opened = "image bytes", io.BytesIO(source)
    else:
        path = Path(source)
        name, opened = f"image file '{path}'", path
        if not path.is_file():
            raise ImageNotFoundError(
                "missing_image",
                f"record {record_id}: {name} does not exist; fix the path in {annotations} or "
                "the image folder it is resolved against",
            )
    try:
        with Image.open(opened) as img:
            img.load()  # decode now: a truncated file fails here, not inside a processor
            return to_rgb(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        # SyntaxError: Pillow's plugins raise it for some malformed headers
        raise BadRecord(
            "unreadable_image",
            f"record {record_id}: {name} cannot be read as an image ({_first_line(err)}); "
            f"replace the file or drop the record from {annotations}",
        ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:120]
