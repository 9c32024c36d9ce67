"""LLaVA / ShareGPT conversations: one JSON list of multi-turn records + the image folder.

A record, as in LLaVA's ``llava_v1_5_mix665k.json`` or ShareGPT4V::

    {"id": "000000033471", "image": "coco/train2017/000000033471.jpg",
     "conversations": [{"from": "human", "value": "<image>\\nWhat are the colors of the bus?"},
                       {"from": "gpt", "value": "The bus is white and red."},
                       {"from": "human", "value": "What feature can be seen on the back?"},
                       {"from": "gpt", "value": "An advertisement."}]}

The first question and answer become ``prompt`` / ``target`` (what generation and metrics
see), later pairs ``Sample.followups`` (trained on, as the collator lays them out). Roles:
``human`` / ``user`` ask, ``gpt`` / ``assistant`` answer, strictly alternating, question first.
With one image the ``<image>`` placeholder is removed: vlmtrain puts the image before the first
question, as LLaVA's own preprocessing moves it. Several images (LLaVA-Interleave, M4-Instruct:
``"image": ["a.jpg", "b.jpg"]``) are placed where the first question's placeholders are, one
placeholder per image, in order (Qwen2.5-VL interleaves them with the text; PaliGemma reads
them all first).

Bad records (counted under ``skip``): no image (text-only conversations: a sample needs one),
placeholders that do not match the images (``image_placeholders``: one image marked other than
once; several images not each marked once in the first question -- an image the questions
never point at, or one a later turn would introduce, would be trained on in the wrong place),
turns that do not alternate or a system turn (``bad_conversation``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from vlmtrain.data.bad_records import BadRecord, BadRecordPolicy
from vlmtrain.data.readers import (
    Record, RecordChecker, RecordDataset, check_task, image_path, read_json, record_id,
    strip_placeholders, text,
)
from vlmtrain.errors import VLMTrainError

ASK = ("human", "user")
ANSWER = ("gpt", "assistant")


def llava_conversations(annotations: str, images: str, task: str = "vqa",
                        on_bad_sample: str = "error") -> RecordDataset:
    """Read and check a LLaVA / ShareGPT conversation file (see module docstring).

    Args:
        annotations: the JSON file (a list of records).
        images: folder the ``image`` paths are relative to.
        task: what metrics treat the first turn as (``vqa`` | ``caption`` | ``doc``).
        on_bad_sample: ``error`` | ``skip``.
    """
    check_task(task)
    data = read_json(annotations, "LLaVA conversation file")
    if not isinstance(data, list):
        raise VLMTrainError(f"{annotations} is not a LLaVA conversation file: it must be a JSON "
                            "list of {'id', 'image', 'conversations'} records")
    policy = BadRecordPolicy(on_bad_sample)
    source = str(Path(annotations).expanduser())
    root = Path(images).expanduser()
    checker = RecordChecker(policy, source)
    for i, entry in enumerate(data):
        with checker.at(f"[{i}]"):
            checker.add(_record(entry, root, task, f"[{i}]"))
    return RecordDataset(checker.finish(), policy, source)


def _record(entry: object, root: Path, task: str, where: str) -> Record:
    if not isinstance(entry, Mapping):
        raise BadRecord("wrong_type", f"a record is a {type(entry).__name__}, not an object")
    rid = record_id(entry, "id")
    images = _images(entry, rid)
    turns = _turns(entry, rid)
    texts = [t for t, _ in turns]
    followups = tuple(zip(texts[2::2], texts[3::2]))
    counts = [n for _, n in turns]
    if len(images) == 1:
        if sum(counts) != 1:
            raise BadRecord("image_placeholders", f"record {rid} has {sum(counts)} <image> "
                            "placeholders for its one image; mark the image once, in a question")
        return Record(id=rid, image=image_path(images[0], root, rid), prompt=texts[0],
                      target=texts[1], references=(texts[1],), task=task, where=where,
                      followups=followups)
    if counts[0] != len(images) or sum(counts[1:]):
        raise BadRecord("image_placeholders", f"record {rid} has {len(images)} images and "
                        f"{counts[0]} <image> placeholder(s) in its first question "
                        f"({sum(counts[1:])} in later turns); mark each image once, in order, "
                        "in the first question")
    prompt = text(entry["conversations"][0], "value", rid).strip()  # placeholders kept
    return Record(id=rid, image=tuple(image_path(i, root, rid) for i in images), prompt=prompt,
                  target=texts[1], references=(texts[1],), task=task, where=where,
                  followups=followups)


def _images(entry: Mapping, rid: str) -> list:
    if "image" not in entry:
        raise BadRecord("missing_field", f"record {rid} has no 'image' (a text-only "
                        "conversation); a sample needs one image: drop text-only records")
    image = entry["image"]
    images = image if isinstance(image, list) else [image]
    if not images:
        raise BadRecord("missing_field", f"record {rid} has an empty 'image' list; give at "
                        "least one image path")
    return images


def _turns(entry: Mapping, rid: str) -> list[tuple[str, int]]:
    """``[(text without placeholders, placeholder count)]`` of alternating question/answer."""
    turns = entry.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise BadRecord("missing_field" if not turns else "wrong_type",
                        f"record {rid} needs a non-empty 'conversations' list")
    out = []
    for n, turn in enumerate(turns):
        role = turn.get("from") if isinstance(turn, Mapping) else None
        expected = ASK if n % 2 == 0 else ANSWER
        if role not in expected:
            raise BadRecord("bad_conversation", f"record {rid}: turn {n + 1} is from {role!r}, "
                            f"expected {' or '.join(expected)}; questions and answers must "
                            "alternate, question first, no system turn")
        out.append(strip_placeholders(text(turn, "value", rid)))
    if len(out) % 2:
        raise BadRecord("bad_conversation", f"record {rid} ends with an unanswered question; "
                        "drop the last turn")
    return out
