"""COCO captions: ``captions_<split>2017.json`` + the image folder, one sample per image.

The annotation file, as published (``annotations/captions_train2017.json``)::

    {"images": [{"id": 179765, "file_name": "000000179765.jpg", ...}, ...],
     "annotations": [{"id": 38, "image_id": 179765, "caption": "A black Honda ..."}, ...]}

Each image becomes one sample with id ``str(image_id)`` (the id COCO prediction files use), all
its captions as references (usually 5) and, as target, caption ``(i + epoch) % n`` of them, so
training sees every caption over the epochs. A bad caption (not text, empty, not UTF-8) is a bad
record at ``annotations[j]``; a bad image entry, or an image without any caption, at
``images[i]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from vlmtrain.data.bad_records import BadRecord, BadRecordPolicy
from vlmtrain.data.readers import (
    Record, RecordChecker, RecordDataset, check_task, image_path, read_json, record_id, text,
)
from vlmtrain.errors import VLMTrainError

CAPTION_PROMPT = "Describe the image."


def coco_captions(annotations: str, images: str, prompt: str = CAPTION_PROMPT,
                  on_bad_sample: str = "error", task: str = "caption") -> RecordDataset:
    """Read and check a COCO captions file (see module docstring).

    Args:
        annotations: the ``captions_*.json`` file.
        images: the folder holding the ``file_name`` s (e.g. ``train2017/``).
        prompt: the instruction before every caption (``""``: the image alone).
        on_bad_sample: ``error`` | ``skip``.
        task: ``caption``, or ``pair`` for image-caption contrastive data.
    """
    check_task(task)
    data = read_json(annotations, "COCO captions file")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                             for k in ("images", "annotations")):
        raise VLMTrainError(f"{annotations} is not a COCO captions file: it needs 'images' and "
                            "'annotations' lists (annotations/captions_<split>2017.json)")
    policy = BadRecordPolicy(on_bad_sample)
    source = str(Path(annotations).expanduser())
    captions = _captions(data["annotations"], RecordChecker(policy, source))
    checker = RecordChecker(policy, source)
    root = Path(images).expanduser()
    for i, entry in enumerate(data["images"]):
        with checker.at(f" images[{i}]"):
            checker.add(_record(entry, captions, root, prompt, task, f" images[{i}]"))
    return RecordDataset(checker.finish(), policy, source, rotate_targets=True)


def _captions(annotations: list, checker: RecordChecker) -> dict[str, list[str]]:
    """``{image id: [captions]}``; bad annotations go to the checker's policy."""
    out: dict[str, list[str]] = {}
    for j, ann in enumerate(annotations):
        with checker.at(f" annotations[{j}]"):
            if not isinstance(ann, Mapping):
                raise BadRecord("wrong_type", f"annotation {j} is a {type(ann).__name__}, not "
                                "an object")
            image_id = record_id(ann, "image_id")
            caption = text(ann, "caption", f"{image_id} (annotation {ann.get('id', j)})")
            if not caption.strip():
                raise BadRecord("empty_text", f"the caption of image {image_id} (annotation "
                                f"{ann.get('id', j)}) is empty; remove the annotation")
            out.setdefault(image_id, []).append(caption.strip())
    return out


def _record(entry: object, captions: dict[str, list[str]], root: Path, prompt: str, task: str,
            where: str) -> Record:
    if not isinstance(entry, Mapping):
        raise BadRecord("wrong_type", f"an image entry is a {type(entry).__name__}, not an object")
    rid = record_id(entry, "id")
    refs = captions.get(rid)
    if not refs:
        raise BadRecord("missing_field", f"image {rid} has no caption in the annotations; "
                        "drop it from 'images' or add its captions")
    image = image_path(text(entry, "file_name", rid), root, rid, "file_name")
    return Record(id=rid, image=image, prompt=prompt, target=refs[0], references=tuple(refs),
                  task=task, where=where, meta={"image_id": entry["id"]})
