"""A pixel budget per dataset: its images resized to an area between two bounds.

Qwen2.5-VL turns an image into one token per 28 x 28 pixels (after its 2 x 2 merge), so the image
tokens of a sample follow its resolution: a document page needs many pixels to be read, a VQA
photo far fewer. The processor's ``min_pixels`` / ``max_pixels`` (``model.processor_kwargs``)
hold for every dataset of a run; wrapping a dataset here gives it its own, tighter bounds::

    train:
      _target_: torch.utils.data.ConcatDataset
      datasets:
        - _target_: vlmtrain.data.pixels.PixelBudget
          dataset: {_target_: vlmtrain.data.docvqa.docvqa, ...}
          max_pixels: 1003520          # 1280 tokens of 28 x 28
        - _target_: vlmtrain.data.pixels.PixelBudget
          dataset: {_target_: vlmtrain.data.vqav2.vqav2, ...}
          max_pixels: 200704           # 256 tokens

The aspect ratio is kept; the processor then rounds each side to its patch grid (and applies its
own bounds, so set ``model.processor_kwargs.max_pixels`` at least as high as the largest
budget). PaliGemma resizes every image to its fixed input size anyway: a budget changes nothing
there but the resampling.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from vlmtrain.data.records import Sample, images_of
from vlmtrain.errors import VLMTrainError


def fit_pixels(image: Image.Image, min_pixels: int | None, max_pixels: int | None) -> Image.Image:
    """``image`` scaled (aspect kept) so that its area lies in ``[min_pixels, max_pixels]``."""
    area = image.width * image.height
    scale = 1.0
    if max_pixels is not None and area > max_pixels:
        scale = math.sqrt(max_pixels / area)
    elif min_pixels is not None and area < min_pixels:
        scale = math.sqrt(min_pixels / area)
    if scale == 1.0:
        return image
    # floor when shrinking, so the area never ends above the budget
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    if scale > 1.0:
        size = (math.ceil(image.width * scale), math.ceil(image.height * scale))
    return image.resize(size, Image.Resampling.BICUBIC)


class PixelBudget(Dataset):
    """``dataset`` with every image of every sample fitted to ``[min_pixels, max_pixels]``.

    Args:
        dataset: any dataset of :class:`~vlmtrain.data.records.Sample` (``None`` items, skipped
            bad records, pass through).
        min_pixels: smallest image area; ``None``: no lower bound.
        max_pixels: largest image area; ``None``: no upper bound.

    Other attributes (``set_epoch``, ``skip_counts``, ``record`` ...) are the wrapped
    dataset's, so epoch-dependent targets, skip counts and length grouping see through it.
    """

    def __init__(self, dataset: Dataset, min_pixels: int | None = None,
                 max_pixels: int | None = None) -> None:
        if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
            raise VLMTrainError(f"PixelBudget: min_pixels={min_pixels} is above "
                                f"max_pixels={max_pixels}; swap or lower them")
        self.dataset, self.min_pixels, self.max_pixels = dataset, min_pixels, max_pixels

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample | None:
        sample = self.dataset[index]
        if sample is None:
            return None
        fitted = [fit_pixels(im, self.min_pixels, self.max_pixels) for im in images_of(sample)]
        image = tuple(fitted) if isinstance(sample.image, tuple) else fitted[0]
        return dataclasses.replace(sample, image=image)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling in a DataLoader worker)
            raise AttributeError(name)
        return getattr(self.dataset, name)
