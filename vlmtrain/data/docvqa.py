"""DocVQA (single-page, RRC task 1): ``train_v1.0.json`` / ``val_v1.0.json`` + the page images.

The file, as published::

    {"dataset_name": "docvqa", "dataset_split": "val",
     "data": [{"questionId": 49153, "question": "What is the ‘actual’ value per 1000, ...?",
               "question_types": ["figure/diagram"], "image": "documents/pybv0228_81.png",
               "docId": 14465, "answers": ["0.28"], ...}, ...]}

Sample id: ``str(questionId)`` (the id of DocVQA result files); references: every gold answer
(ANLS takes the best match); target: the first. ``image`` is resolved against ``images``
(default: the JSON file's folder, where the published ``documents/`` folder sits). The test
split has no answers: it is not training data.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from vlmtrain.data.bad_records import BadRecord, BadRecordPolicy
from vlmtrain.data.readers import (
    Record, RecordChecker, RecordDataset, image_path, read_json, record_id, text, texts,
)
from vlmtrain.errors import VLMTrainError


def docvqa(annotations: str, images: str | None = None,
           on_bad_sample: str = "error") -> RecordDataset:
    """Read and check a DocVQA file (see module docstring).

    Args:
        annotations: ``train_v1.0.json`` or ``val_v1.0.json``.
        images: folder the ``image`` paths are relative to (default: the JSON file's folder).
        on_bad_sample: ``error`` | ``skip``.
    """
    data = read_json(annotations, "DocVQA file")
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise VLMTrainError(f"{annotations} is not a DocVQA file: it needs a 'data' list "
                            "(train_v1.0.json / val_v1.0.json)")
    policy = BadRecordPolicy(on_bad_sample)
    source = str(Path(annotations).expanduser())
    root = Path(images).expanduser() if images else Path(source).parent
    checker = RecordChecker(policy, source)
    for i, entry in enumerate(data["data"]):
        with checker.at(f" data[{i}]"):
            checker.add(_record(entry, root, f" data[{i}]"))
    return RecordDataset(checker.finish(), policy, source)


def _record(entry: object, root: Path, where: str) -> Record:
    if not isinstance(entry, Mapping):
        raise BadRecord("wrong_type", f"a question is a {type(entry).__name__}, not an object")
    rid = record_id(entry, "questionId")
    answers = tuple(a.strip() for a in texts(entry, "answers", rid))
    meta = {k: entry[k] for k in ("docId", "question_types") if k in entry}
    return Record(id=rid, image=image_path(text(entry, "image", rid), root, rid),
                  prompt=text(entry, "question", rid), target=answers[0] if answers else "",
                  references=answers, task="doc", where=where, meta=meta)
