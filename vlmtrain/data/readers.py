"""What every reader of a published format shares: records, their checks, one Dataset class.

A reader (``jsonl``, ``coco``, ``vqav2``, ``docvqa``, ``llava``, ``hf_datasets``) turns its
format into :class:`Record` s -- text and an image *reference*, no pixels -- and checks each one
when the dataset is built: fields and types, UTF-8 text, unique ids, that the image file
exists, and :func:`~vlmtrain.data.records.check_sample`. Bad records go to the
:class:`~vlmtrain.data.bad_records.BadRecordPolicy` (``error`` stops before training with file,
line or index; ``skip`` counts them). Pixels are decoded later, in DataLoader workers, by
:class:`RecordDataset`; an image that turns out unreadable only then yields ``None`` under
``skip`` (the collator drops it; the skip is already counted here).
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from vlmtrain.data.bad_records import BadRecord, BadRecordPolicy, SkipCounts
from vlmtrain.data.images import ImageNotFoundError, decode_image
from vlmtrain.data.records import TASKS, Sample, check_sample, short
from vlmtrain.errors import VLMTrainError

# A JSON file read with errors="surrogateescape" keeps each non-UTF-8 byte as one lone
# surrogate U+DC80..U+DCFF, so the file still parses and only the records holding such bytes are
# bad (a JSON "\udcxx" escape is caught too: it is not text either).
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
_PLACEHOLDER = re.compile(r"\s*<image>\s*")
_BLANK = Image.new("RGB", (1, 1))  # stands in for pixels when records are checked at start-up


@dataclass(frozen=True)
class Record:
    """A checked record: a :class:`Sample` without its pixels.

    Attributes:
        image: path of the image file, or the row of the dataset's image column (``int``); a
            tuple of paths, or of ``(row, k)`` (the row's ``k``-th image), for a sample with
            several images.
        where: where the record is, appended to the source file's name in messages:
            ``":12"`` (line 12) or ``"[12]"`` (item 12).
        Others: as :class:`~vlmtrain.data.records.Sample`.
    """

    id: str
    image: str | int | tuple[str, ...] | tuple[tuple[int, int], ...]
    prompt: str
    target: str
    references: tuple[str, ...]
    task: str
    where: str
    rejected: str | None = None
    followups: tuple[tuple[str, str], ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    def sample(self, image: Image.Image | tuple[Image.Image, ...], target: str | None = None,
               where: str | None = None) -> Sample:
        """The sample; ``where`` (file and line) goes into ``meta["where"]`` for collators'
        messages about it (a prompt too long for ``max_length`` ...)."""
        meta = {**self.meta, "where": where} if where else self.meta
        return Sample(id=self.id, image=image, prompt=self.prompt,
                      target=self.target if target is None else target,
                      references=self.references, task=self.task, rejected=self.rejected,
                      meta=meta, followups=self.followups)


class RecordChecker:
    """Collect records, applying the start-up checks and the bad-record policy.

    Use: ``with checker.at(where): checker.add(make_record(...))`` -- a :class:`BadRecord`
    raised inside the block is handed to the policy (raised as one line, or counted).
    """

    def __init__(self, policy: BadRecordPolicy, source: str) -> None:
        self.policy = policy
        self.source = source
        self.records: list[Record] = []
        self._seen: dict[str, str] = {}

    @contextmanager
    def at(self, where: str) -> Iterator[None]:
        try:
            yield
        except BadRecord as exc:
            self.policy.handle(exc, f"{self.source}{where}")

    def add(self, record: Record) -> None:
        first = self._seen.get(record.id)
        if first is not None:
            raise BadRecord("duplicate_id", f"record {record.id}: this id is already used at "
                            f"{self.source}{first}; give every record a unique id")
        several = isinstance(record.image, tuple)
        check_sample(record.sample((_BLANK,) * len(record.image) if several else _BLANK))
        for path in record.image if several else (record.image,):
            if isinstance(path, str) and not Path(path).is_file():
                raise ImageNotFoundError(
                    "missing_image", f"record {record.id}: image file '{path}' does not "
                    "exist; fix the path in the record or the image folder of the data config")
        self._seen[record.id] = record.where
        self.records.append(record)

    def finish(self) -> list[Record]:
        if not self.records:
            why = " (all were skipped as bad)" if self.policy.counts.total else ""
            raise VLMTrainError(f"{self.source} holds no usable record{why}")
        return self.records


class RecordDataset(Dataset):
    """Samples from checked records; images decoded when a sample is read.

    Args:
        records: from :meth:`RecordChecker.finish`.
        policy: the bad-record policy the records were checked under (it holds the counts).
        source: the annotation file or dataset folder, for messages.
        images: for records whose ``image`` is a row number (or ``(row, k)``):
            ``images(row)`` returns the image's encoded bytes or its path. Must be picklable
            (DataLoader workers).
        rotate_targets: captions: the target of sample ``i`` in epoch ``e`` is
            ``references[(i + e) % len(references)]``, so every reference is learned.
    """

    def __init__(self, records: Sequence[Record], policy: BadRecordPolicy, source: str,
                 images: Callable[[Any], bytes | str | None] | None = None,
                 rotate_targets: bool = False) -> None:
        self._blob, self._ends = _serialise(records)
        self.policy = policy
        self.source = source
        self.images = images
        self.rotate_targets = rotate_targets
        self.epoch = 0
        policy.counts.mark_startup()

    @property
    def skip_counts(self) -> SkipCounts:
        return self.policy.counts

    @property
    def skipped(self) -> int:
        """Records skipped so far: at start-up and, from every worker, at read time."""
        return self.policy.counts.total

    def set_epoch(self, epoch: int) -> None:
        """Rotate caption targets (see ``rotate_targets``); workers must be re-created after."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._ends)

    def record(self, index: int) -> Record:
        """Record ``index`` (``IndexError`` past the end, as a list)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} of {len(self)}")
        index %= len(self)
        start = int(self._ends[index - 1]) if index else 0
        return pickle.loads(self._blob[start:int(self._ends[index])])

    def __getitem__(self, index: int) -> Sample | None:
        """The sample, or ``None`` under ``skip`` when its image no longer decodes (counted)."""
        rec = self.record(index)
        several = isinstance(rec.image, tuple)
        try:
            images = tuple(decode_image(ref if isinstance(ref, str) else self.images(ref), rec.id,
                                        self.source)
                           for ref in (rec.image if several else (rec.image,)))
            image = images if several else images[0]
        except BadRecord as exc:
            self.policy.handle(exc, f"{self.source}{rec.where}")
            return None
        target = None
        if self.rotate_targets:
            target = rec.references[(index + self.epoch) % len(rec.references)]
        return rec.sample(image, target, where=f"{self.source}{rec.where}")


def _serialise(records: Sequence[Record]) -> tuple[np.ndarray, np.ndarray]:
    """All records pickled into one byte array, and where each ends.

    A list of Python objects in a forked DataLoader worker is copied page by page as the worker
    reads it (every read writes a reference count), so each worker's memory grows to the size
    of the whole list; one numpy buffer is never written and stays shared. (detectron2's
    ``DatasetFromList(serialize=True)`` does the same, for the same reason.)
    """
    blobs = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in records]
    ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), ends


# -- field access with one-line errors ------------------------------------------------------
def check_task(task: str) -> str:
    """``task`` if it is one of :data:`~vlmtrain.data.records.TASKS` (a config error otherwise)."""
    if task not in TASKS:
        raise VLMTrainError(f"data.*.task={task!r} is not one of {', '.join(TASKS)}")
    return task


def read_json(path: str | Path, what: str) -> Any:
    """Parse a whole JSON file; non-UTF-8 bytes are kept for :func:`text` to reject per record.

    Raises:
        VLMTrainError: the file is missing or is not JSON (position given, content never shown).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise VLMTrainError(f"{what} '{path}' does not exist; fix the path in the data config")
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as fh:  # -sig: tolerate a BOM
        try:
            return json.load(fh)
        except json.JSONDecodeError as exc:
            raise VLMTrainError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}); "
                                f"fix the file (is it the {what}?)") from None


def record_id(raw: Mapping, key: str, default: str | None = None) -> str:
    """The record's id as a string (JSON ints are common ids); ``default`` if absent."""
    if key not in raw:
        if default is not None:
            return default
        raise BadRecord("missing_field", f"a record has no {key!r} field; give every record an id")
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRecord("wrong_type", f"a record has {key!r} = {short(value)}; "
                        "ids must be strings or integers")
    if isinstance(value, str) and _NOT_UTF8.search(value):
        raise BadRecord("not_utf8", f"a record's {key!r} is not UTF-8 text; re-save the file "
                        "as UTF-8")
    return str(value)


def text(raw: Mapping, key: str, rid: str) -> str:
    """``raw[key]``, which must be a string of UTF-8 text."""
    if key not in raw:
        raise BadRecord("missing_field", f"record {rid} has no {key!r} field; add it")
    value = raw[key]
    if not isinstance(value, str):
        raise BadRecord("wrong_type", f"record {rid}: {key!r} must be a string, got "
                        f"{type(value).__name__} {short(value)}")
    return _utf8(value, key, rid)


def texts(raw: Mapping, key: str, rid: str) -> tuple[str, ...]:
    """``raw[key]``, which must be a list of strings of UTF-8 text."""
    if key not in raw:
        raise BadRecord("missing_field", f"record {rid} has no {key!r} field; add it")
    values = raw[key]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise BadRecord("wrong_type", f"record {rid}: {key!r} must be a list of strings, got "
                        f"{short(values)}")
    return tuple(_utf8(v, key, rid) for v in values)


def _utf8(value: str, key: str, rid: str) -> str:
    bad = _NOT_UTF8.search(value)
    if bad:
        byte = ord(bad.group()) - 0xDC00
        raise BadRecord("not_utf8", f"record {rid}: {key!r} is not UTF-8 text (byte "
                        f"0x{byte:02x} at character {bad.start()}); re-save the file as UTF-8")
    return value


def strip_placeholders(value: str) -> tuple[str, int]:
    """Text without ``<image>`` placeholders, and how many there were."""
    count = value.count("<image>")
    return (_PLACEHOLDER.sub(" ", value).strip() if count else value), count


def one_image(raw: Mapping, rid: str, keys: Sequence[str] = ("image", "images")) -> Any:
    """The record's only image reference, from ``image`` or a one-item ``images`` list."""
    key = next((k for k in keys if k in raw), None)
    if key is None:
        raise BadRecord("missing_field", f"record {rid} has no {' or '.join(map(repr, keys))} "
                        "field; add the image path")
    value = raw[key]
    if isinstance(value, list):
        if len(value) != 1:
            raise BadRecord("several_images" if value else "missing_field",
                            f"record {rid} has {len(value)} images in {key!r}; a sample holds "
                            "exactly one image (split the record or drop it)")
        value = value[0]
    return value


def image_path(value: Any, root: Path, rid: str, key: str = "image") -> str:
    """The image file of a record: ``root / value``."""
    if not isinstance(value, str) or not value.strip():
        raise BadRecord("wrong_type", f"record {rid}: {key!r} must be an image path, got "
                        f"{short(value)}")
    return str(root / _utf8(value, key, rid))
