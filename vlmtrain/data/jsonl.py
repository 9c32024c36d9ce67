"""A JSON-lines dataset: one record per line with an image path, a prompt and answers.

Record fields (one JSON object per line)::

    {"id": "q1", "image": "imgs/1.png", "prompt": "What colour is the car?",
     "answers": ["red", "red", "dark red"]}        # or "answer": "red"
    {"id": "p1", "image": "imgs/2.png", "prompt": "How many cats?",
     "chosen": "two", "rejected": "three"}         # task=preference (RLAIF-V style)

``image`` (or an ``images`` list) is resolved against ``image_root`` (default: the file's
folder); several ``images`` make one sample, placed where the prompt's ``<image>``
placeholders are (one per image) or, without placeholders, all before the text. ``question``
is accepted for ``prompt``; a preference record may name its chosen answer ``answer``. The
target is ``answer``, else the most common of ``answers`` (first listed on a tie);
``answers`` are the references. With one image the prompt may hold one ``<image>``
placeholder (removed: the image always comes first).

The whole file is checked when the dataset is built -- UTF-8, JSON, fields and types, unique
ids, that every image file exists -- so under ``on_bad_sample=error`` a bad record stops the
run before training with ``file:line``, the problem and the fix; under ``skip`` it is counted
(``data/skipped/<reason>``). Images are decoded when a sample is read (see
:class:`~vlmtrain.data.readers.RecordDataset`).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from vlmtrain.data.bad_records import BadRecord, BadRecordPolicy
from vlmtrain.data.readers import (
    Record, RecordChecker, RecordDataset, check_task, image_path, one_image, record_id,
    strip_placeholders, text, texts,
)
from vlmtrain.errors import VLMTrainError

_PROMPT_OPTIONAL = ("caption", "pair")


def jsonl_dataset(path: str, task: str = "vqa", image_root: str | None = None,
                  on_bad_sample: str = "error") -> RecordDataset:
    """Read and check a ``.jsonl`` file (see module docstring).

    Args:
        path: the ``.jsonl`` file.
        task: ``vqa`` | ``caption`` | ``doc`` | ``preference`` | ``pair``.
        image_root: folder image paths are relative to (default: the file's folder).
        on_bad_sample: ``error`` stops at the first bad record; ``skip`` drops bad records,
            counting them per reason and logging the first ones.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise VLMTrainError(f"data file '{file}' does not exist; fix data.*.path")
    check_task(task)
    policy = BadRecordPolicy(on_bad_sample)
    root = Path(image_root).expanduser() if image_root else file.parent
    checker = RecordChecker(policy, str(file))
    with file.open("rb") as fh:  # bytes: one bad byte spoils its line, not the file
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            with checker.at(f":{lineno}"):
                checker.add(_record(_parse(line, lineno), task, root, f":{lineno}"))
    return RecordDataset(checker.finish(), policy, str(file))


def _parse(line: bytes, lineno: int) -> dict:
    try:
        decoded = line.decode("utf-8-sig" if lineno == 1 else "utf-8")  # -sig: tolerate a BOM
        bad = None
    except UnicodeDecodeError as exc:
        bad = exc.start  # raised outside the except: the decode error holds the whole line
    if bad is not None:
        raise BadRecord("not_utf8", f"the line is not UTF-8 text (byte 0x{line[bad]:02x} at "
                        f"column {bad + 1}); re-save the file as UTF-8")
    try:
        raw = json.loads(decoded.rstrip("\r\n"))
    except json.JSONDecodeError as exc:
        raise BadRecord("not_json", f"the line is not valid JSON ({exc.msg} at column "
                        f"{exc.pos + 1}); write one JSON object per line") from None
    if not isinstance(raw, dict):
        raise BadRecord("not_json", f"the line holds a JSON {type(raw).__name__}, not an object; "
                        "write one JSON object per line")
    return raw


def _record(raw: dict, task: str, root: Path, where: str) -> Record:
    rid = record_id(raw, "id", default=f"line{where[1:]}")
    prompt_key = "prompt" if "prompt" in raw or "question" not in raw else "question"
    prompt = "" if prompt_key not in raw and task in _PROMPT_OPTIONAL else text(raw, prompt_key,
                                                                                 rid)
    several = raw.get("images") if isinstance(raw.get("images"), list) else []
    if len(several) > 1 and "image" not in raw:
        image = tuple(image_path(v, root, rid, "images") for v in several)
        marks = prompt.count("<image>")
        if marks not in (0, len(image)):
            raise BadRecord("image_placeholders", f"record {rid}: the prompt has {marks} <image> "
                            f"placeholders for {len(image)} images; mark each image once (or "
                            "none: all images first)")
    else:
        image = image_path(one_image(raw, rid), root, rid)
        prompt, placeholders = strip_placeholders(prompt)
        if placeholders > 1:
            raise BadRecord("image_placeholders", f"record {rid}: the prompt has {placeholders} "
                            "<image> placeholders for one image; keep one (or none)")
    rejected = text(raw, "rejected", rid) if "rejected" in raw or task == "preference" else None
    if task == "preference":
        target = text(raw, "chosen" if "chosen" in raw or "answer" not in raw else "answer", rid)
        references = (target,)
    elif "answers" in raw:
        references = texts(raw, "answers", rid)
        target = text(raw, "answer", rid) if "answer" in raw else _most_common(references)
    else:
        if "answer" not in raw:
            raise BadRecord("missing_field", f"record {rid} has no 'answer' or 'answers' field; "
                            "add the answer")
        target = text(raw, "answer", rid)
        references = (target,)
    return Record(id=rid, image=image, prompt=prompt, target=target, references=references,
                  task=task, where=where, rejected=rejected)


def _most_common(answers: tuple[str, ...]) -> str:
    """Most frequent answer; ties go to the one listed first (Counter keeps insertion order)."""
    return Counter(answers).most_common(1)[0][0] if answers else ""
