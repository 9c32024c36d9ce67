"""VQAv2: questions JSON + annotations JSON + the COCO image folder, one sample per question.

The files, as published (``v2_OpenEnded_mscoco_train2014_questions.json``,
``v2_mscoco_train2014_annotations.json``)::

    {"data_subtype": "train2014",
     "questions": [{"image_id": 458752, "question": "What is this man doing?",
                    "question_id": 458752000}, ...]}
    {"annotations": [{"question_id": 458752000, "image_id": 458752, "question_type": "what is",
                      "answer_type": "other", "multiple_choice_answer": "skateboarding",
                      "answers": [{"answer": "skateboarding", "answer_confidence": "yes",
                                   "answer_id": 1}, ... 10 answers]}, ...]}

Sample id: ``str(question_id)`` (the id VQA result files use); references: the 10 annotator
answers as written (VQA accuracy normalises them itself); target: the most common of them,
ties to the one listed first. Image file: ``image_pattern`` formatted with the questions file's
``data_subtype`` and the ``image_id`` (``COCO_train2014_000000458752.jpg``). A bad question or
annotation is a bad record at ``questions[i]``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from vlmtrain.data.bad_records import BadRecord, BadRecordPolicy
from vlmtrain.data.readers import (
    Record, RecordChecker, RecordDataset, image_path, read_json, record_id, text,
)
from vlmtrain.errors import VLMTrainError

IMAGE_PATTERN = "COCO_{subtype}_{image_id:012d}.jpg"


def vqav2(questions: str, annotations: str, images: str, image_pattern: str = IMAGE_PATTERN,
          on_bad_sample: str = "error") -> RecordDataset:
    """Read and check VQAv2 questions with their annotations (see module docstring).

    Args:
        questions: ``v2_OpenEnded_mscoco_<subtype>_questions.json``.
        annotations: ``v2_mscoco_<subtype>_annotations.json``.
        images: the COCO image folder (e.g. ``train2014/``).
        image_pattern: file name of an image, from ``{subtype}`` and ``{image_id}``.
        on_bad_sample: ``error`` | ``skip``.
    """
    qdata = _load(questions, "questions", "VQAv2 questions file")
    adata = _load(annotations, "annotations", "VQAv2 annotations file")
    subtype = qdata.get("data_subtype", "")
    if "{subtype}" in image_pattern and (not isinstance(subtype, str) or not subtype):
        raise VLMTrainError(f"{questions} has no 'data_subtype' (e.g. 'train2014') for "
                            f"image_pattern={image_pattern!r}; write the subtype into the pattern")
    try:
        image_pattern.format(subtype=subtype, image_id=0)
    except (KeyError, IndexError, ValueError) as exc:
        raise VLMTrainError(f"image_pattern={image_pattern!r} is not a format string of "
                            f"{{subtype}} and {{image_id}} ({exc!r})") from None
    answers = {}
    for ann in adata["annotations"]:  # indexed leniently: a bad one only hurts its question
        if isinstance(ann, Mapping) and not isinstance(ann.get("question_id"), (bool, type(None))):
            answers[str(ann["question_id"])] = ann
    policy = BadRecordPolicy(on_bad_sample)
    source = str(Path(questions).expanduser())
    checker = RecordChecker(policy, source)
    root = Path(images).expanduser()
    for i, question in enumerate(qdata["questions"]):
        with checker.at(f" questions[{i}]"):
            checker.add(_record(question, answers, root, image_pattern, subtype,
                                f" questions[{i}]"))
    return RecordDataset(checker.finish(), policy, source)


def _load(path: str, key: str, what: str) -> dict:
    data = read_json(path, what)
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise VLMTrainError(f"{path} is not a {what}: it needs a {key!r} list")
    return data


def _record(question: object, answers: dict[str, Mapping], root: Path, pattern: str,
            subtype: str, where: str) -> Record:
    if not isinstance(question, Mapping):
        raise BadRecord("wrong_type", f"a question is a {type(question).__name__}, not an object")
    rid = record_id(question, "question_id")
    prompt = text(question, "question", rid)
    image_id = question.get("image_id")
    if isinstance(image_id, bool) or not isinstance(image_id, int):
        raise BadRecord("wrong_type" if "image_id" in question else "missing_field",
                        f"question {rid}: 'image_id' must be an integer, got {image_id!r}")
    ann = answers.get(rid)
    if ann is None:
        raise BadRecord("missing_field", f"question {rid} has no annotation in the annotations "
                        "file; use the annotations of the same split")
    refs = _answers(ann, rid)
    image = image_path(pattern.format(subtype=subtype, image_id=image_id), root, rid)
    meta = {"image_id": image_id, **{k: ann[k] for k in ("question_type", "answer_type")
                                     if isinstance(ann.get(k), str)}}
    return Record(id=rid, image=image, prompt=prompt, target=Counter(refs).most_common(1)[0][0],
                  references=refs, task="vqa", where=where, meta=meta)


def _answers(ann: Mapping, rid: str) -> tuple[str, ...]:
    raw = ann.get("answers")
    if not isinstance(raw, list) or not raw:
        raise BadRecord("missing_field" if not raw else "wrong_type",
                        f"question {rid}: its annotation needs a non-empty 'answers' list")
    return tuple(text(a, "answer", rid) if isinstance(a, Mapping) else _not_answer(a, rid)
                 for a in raw)


def _not_answer(value: object, rid: str) -> str:
    raise BadRecord("wrong_type", f"question {rid}: an answer is {type(value).__name__}, not an "
                    "{'answer': ...} object")
