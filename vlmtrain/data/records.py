"""The record every dataset of vlmtrain yields, and the checks applied to it.

Readers of real formats (COCO captions, VQA, DocVQA, preference pairs) and the synthetic shapes
world all produce :class:`Sample`; collators and metrics consume only this type, so a new format
needs a reader and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from vlmtrain.data.bad_records import BadRecord
from vlmtrain.data.images import ImageNotFoundError, decode_image

__all__ = ["IMAGE_PLACEHOLDER", "TASKS", "BadRecord", "ImageNotFoundError", "Sample",
           "check_sample", "images_of", "load_image"]

TASKS = ("caption", "vqa", "doc", "preference", "pair")
# Tasks whose prompt may be empty: the image alone is the input (captioning can still carry an
# instruction, but contrastive pairs never do).
_EMPTY_PROMPT_OK = ("caption", "pair")
#: marks where an image goes in the prompt of a sample with several images
IMAGE_PLACEHOLDER = "<image>"


@dataclass(frozen=True)
class Sample:
    """One or several images with their text, ready for a collator.

    Attributes:
        id: Unique within a split and stable across runs, e.g. ``"vqa-val-000123"``.
        image: RGB image, or a tuple of RGB images (several images per sample).
        prompt: User text, e.g. ``"What colour is the circle?"``. Without an ``<image>``
            placeholder every image comes before the text; with placeholders (one per image,
            e.g. ``"Is <image> the same scene as <image>?"``) each image goes where its
            placeholder is, for families that interleave (Qwen2.5-VL; PaliGemma puts all of
            them first, as its processor does).
        target: The training target (answer or caption).
        references: All references used by metrics: 5 captions, 10 VQA annotator answers, or the
            gold answers of a document question.
        task: One of ``"caption" | "vqa" | "doc" | "preference" | "pair"``.
        rejected: Preference pairs only: a plausible wrong answer.
        meta: Free-form extras, e.g. ``{"qtype": "colour"}``.
        followups: Further ``(question, answer)`` turns about the same image, after the first
            (a multi-turn conversation). Training learns every answer; generation and metrics
            use the first turn only.
    """

    id: str
    image: Image.Image | tuple[Image.Image, ...]
    prompt: str
    target: str
    references: tuple[str, ...]
    task: str
    rejected: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    followups: tuple[tuple[str, str], ...] = ()


def images_of(sample: Sample) -> list[Image.Image]:
    """The sample's images as a list (one image or several)."""
    return list(sample.image) if isinstance(sample.image, tuple) else [sample.image]


def _fail(sample_id: object, problem: str, fix: str, reason: str) -> None:
    raise BadRecord(reason, f"sample {sample_id} {problem}; {fix}")


def short(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: error messages name values, never dump them."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_sample(sample: Sample) -> None:
    """Validate one sample, raising an error that names it and says what to fix.

    Args:
        sample: The record to check.

    Raises:
        BadRecord: (a ``ValueError``) if the id, image, task, prompt, target, references or
            rejected answer is missing or malformed; ``reason`` says which kind of problem.
    """
    sid = sample.id
    if not isinstance(sid, str) or not sid.strip():
        raise BadRecord("missing_field", f"a sample has an empty or non-string id ({short(sid)}); "
                        "give every record a unique non-empty string id")
    if sample.task not in TASKS:
        _fail(sid, f"has unknown task {short(sample.task)}", f"use one of {', '.join(TASKS)}",
              "invalid_value")
    _check_images(sample)
    if not isinstance(sample.prompt, str):
        _fail(sid, f"has a prompt of type {type(sample.prompt).__name__}", "the prompt must be str",
              "wrong_type")
    if not sample.prompt.strip() and sample.task not in _EMPTY_PROMPT_OK:
        _fail(sid, "has an empty question", f"every {sample.task} sample needs a non-empty prompt",
              "empty_text")
    if not isinstance(sample.target, str) or not sample.target.strip():
        what = "caption" if sample.task in _EMPTY_PROMPT_OK else "answer"
        _fail(sid, f"has an empty {what}", "every sample needs a non-empty target",
              "empty_text" if isinstance(sample.target, str) else "wrong_type")
    refs = sample.references
    if not isinstance(refs, tuple) or not refs:
        _fail(sid, "has no references", "give at least one reference as a tuple of str",
              "missing_field")
    bad = [r for r in refs if not isinstance(r, str) or not r.strip()]
    if bad:
        _fail(sid, f"has {len(bad)} empty or non-string reference(s)",
              "every reference must be a non-empty str",
              "empty_text" if all(isinstance(r, str) for r in bad) else "wrong_type")
    _check_rejected(sample)
    _check_followups(sample)
    _check_placeholders(sample)


def _check_images(sample: Sample) -> None:
    sid = sample.id
    images = images_of(sample)
    if not images:
        _fail(sid, "has an empty tuple of images", "every sample needs at least one image",
              "missing_image")
    for n, image in enumerate(images, start=1):
        which = f"image {n}" if len(images) > 1 else "an image"
        if not isinstance(image, Image.Image):
            _fail(sid, f"has {which} of type {type(image).__name__}",
                  "every sample needs PIL.Image.Image images", "bad_image")
        if image.mode != "RGB":
            _fail(sid, f"has {which} in mode {image.mode!r}",
                  "convert it with vlmtrain.data.images.to_rgb in the reader", "bad_image")
        if min(image.size) < 1:
            _fail(sid, f"has {which} of empty size {image.size}", "check the image file",
                  "bad_image")


def _check_placeholders(sample: Sample) -> None:
    count = sample.prompt.count(IMAGE_PLACEHOLDER)
    images = len(images_of(sample))
    if count and count != images:
        _fail(sample.id, f"has {count} <image> placeholder(s) in its prompt for {images} "
              "image(s)", "mark each image once, or none (then all images come first)",
              "image_placeholders")

def _check_followups(sample: Sample) -> None:
    turns = sample.followups
    if not isinstance(turns, tuple):
        _fail(sample.id, f"has followups of type {type(turns).__name__}",
              "give follow-up turns as a tuple of (question, answer) pairs", "wrong_type")
    for n, turn in enumerate(turns, start=2):
        ok = (isinstance(turn, tuple) and len(turn) == 2
              and all(isinstance(t, str) and t.strip() for t in turn))
        if not ok:
            _fail(sample.id, f"has a malformed turn {n} ({short(turn)})",
                  "every follow-up turn must be a (question, answer) pair of non-empty str",
                  "empty_text")


def _check_rejected(sample: Sample) -> None:
    sid, rejected = sample.id, sample.rejected
    if sample.task != "preference":
        if rejected is not None:
            _fail(sid, f"is a {sample.task} sample with a rejected answer",
                  "only task='preference' samples carry `rejected`", "invalid_value")
        return
    if not isinstance(rejected, str) or not rejected.strip():
        _fail(sid, "is a preference pair without a rejected answer",
              "every preference sample needs a non-empty `rejected`",
              "missing_field" if rejected is None
              else "empty_text" if isinstance(rejected, str) else "wrong_type")
    if rejected.strip().lower() == sample.target.strip().lower():
        _fail(sid, f"has rejected == chosen ({short(rejected)})",
              "the rejected answer must differ from the target", "chosen_equals_rejected")


def load_image(path: str | Path, record_id: str, source: str | None = None) -> Image.Image:
    """Open an image file as RGB, with an error that names the record and the path.

    Args:
        path: Image file path.
        record_id: Id of the record that refers to it (for the error message).
        source: Annotation file the record came from, named in the error if given.

    Returns:
        The decoded image in mode ``"RGB"`` (fully loaded, so the file handle is closed).

    Raises:
        ImageNotFoundError: If ``path`` does not exist.
        BadRecord: (a ``ValueError``) if the file exists but cannot be decoded as an image.
    """
    return decode_image(path, record_id, source or "the annotation file")
