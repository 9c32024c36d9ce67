"""A JSON-lines dataset: one record per line with an image path, a prompt and answers.

Record fields (one JSON object per line)::

    {"id": "q1", "image": "imgs/1.png", "prompt": "What colour is the car?",
     "answers": ["red", "red", "dark red"]}        # or "answer": "red"
    {"id": "p1", "image": "...", "prompt": "...", "answer": "2", "rejected": "3"}   # preference

``image`` is resolved against ``image_root`` (default: the file's folder). The whole file is
checked when the dataset is built -- ids, required fields, that every image file exists -- so a
bad record stops the run before training starts, with its line number and the fix.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from torch.utils.data import Dataset

from vlmtrain.data.records import Sample, check_sample, load_image
from vlmtrain.errors import VLMTrainError

log = logging.getLogger(__name__)


class JsonlDataset(Dataset):
    """Records from a ``.jsonl`` file (see module docstring).

    Args:
        path: the ``.jsonl`` file.
        task: ``vqa`` | ``caption`` | ``doc`` | ``preference`` | ``pair``.
        image_root: folder image paths are relative to (default: the file's folder).
        on_bad_sample: ``error`` stops at the first bad record; ``skip`` drops bad records,
            counting and logging each.
    """

    def __init__(self, path: str, task: str = "vqa", image_root: str | None = None,
                 on_bad_sample: str = "error") -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise VLMTrainError(f"data file '{self.path}' does not exist; fix data.*.path")
        self.task = task
        self.image_root = Path(image_root).expanduser() if image_root else self.path.parent
        self.on_bad_sample = on_bad_sample
        self.skipped = 0
        self.records = self._read()

    def _read(self) -> list[dict]:
        records, seen = [], Counter()
        with self.path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = self._parse(line, lineno)
                    if seen[rec["id"]]:
                        raise VLMTrainError(f"id {rec['id']!r} appears twice; ids must be unique")
                    seen[rec["id"]] += 1
                    check_sample(self._sample(rec, image=None))
                except (VLMTrainError, ValueError) as exc:
                    msg = f"{self.path}:{lineno}: {exc}"
                    if self.on_bad_sample == "error":
                        raise VLMTrainError(msg) from exc
                    self.skipped += 1
                    log.warning("skipping record (%d so far): %s", self.skipped, msg)
                    continue
                records.append(rec)
        if not records:
            raise VLMTrainError(f"{self.path} holds no usable record")
        return records

    def _parse(self, line: str, lineno: int) -> dict:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise VLMTrainError(f"not valid JSON ({exc.msg}); one object per line") from exc
        rec.setdefault("id", f"line{lineno}")
        rec["id"] = str(rec["id"])
        if "image" not in rec:
            raise VLMTrainError(f"record {rec['id']} has no 'image' field; add the image path")
        image = self.image_root / rec["image"]
        if not image.is_file():
            raise VLMTrainError(
                f"record {rec['id']}: image file '{image}' does not exist; fix the path or set "
                "data.*.image_root to the folder the paths are relative to"
            )
        rec["_image_path"] = str(image)
        answers = rec.get("answers") or ([rec["answer"]] if "answer" in rec else [])
        if not isinstance(answers, list):
            raise VLMTrainError(f"record {rec['id']}: 'answers' must be a list of strings")
        rec["answers"] = [a for a in answers]
        return rec

    def _sample(self, rec: dict, image: object) -> Sample:
        answers = rec["answers"]
        target = rec.get("answer") or (Counter(answers).most_common(1)[0][0] if answers else "")
        from PIL import Image

        return Sample(
            id=rec["id"], image=image if image is not None else Image.new("RGB", (1, 1)),
            prompt=rec.get("prompt", rec.get("question", "")), target=target,
            references=tuple(answers), task=self.task, rejected=rec.get("rejected"),
        )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        rec = self.records[index]
        return self._sample(rec, load_image(rec["_image_path"], rec["id"], str(self.path)))
