"""Hugging Face ``datasets`` saved to disk, or local parquet files, with an ``Image`` column.

Which column holds what is configuration (``columns``), e.g. for an RLAIF-V style preference
set ``{image: image, prompt: question, target: chosen, rejected: rejected}`` with
``task: preference``, or for VQA ``{image: image, prompt: question, references: answers}``
(``target`` left out: the most common reference, ties to the first).

The image column may be an ``Image`` feature (encoded bytes, or a path), raw image bytes, a
string path resolved against ``image_root``, or a list of any of these (``Sequence(Image)`` /
``List(Image)``). A list of several images makes one multi-image sample, with the rules of the
JSONL and LLaVA readers: the prompt marks each image once with ``<image>`` (placed there for
Qwen2.5-VL; PaliGemma reads them all first) or not at all (all images first); any other count
is an ``image_placeholders`` bad record. With one image the prompt may hold one placeholder
(removed); no image, or an empty item in the list, is a ``missing_image`` bad record.

Text columns are read and checked for every row when the dataset is built (they are small; the
image count comes from Arrow list lengths, no image bytes are read); images are decoded when a
sample is read, from the memory-mapped Arrow data -- not by ``datasets`` (whose decoder raises
deep inside indexing), but by vlmtrain's, so an unreadable image is a bad record naming its row
like in every format.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from vlmtrain.data.bad_records import BadRecord, BadRecordPolicy
from vlmtrain.data.readers import (
    Record, RecordChecker, RecordDataset, check_task, image_path, record_id, strip_placeholders,
    text, texts,
)
from vlmtrain.errors import VLMTrainError

COLUMNS = {"id": None, "image": "image", "prompt": "question", "target": "answer",
           "references": None, "rejected": None}
_BATCH = 4096


def hf_dataset(path: str | None = None, data_files: str | list[str] | None = None,
               split: str = "train", columns: Mapping[str, str | None] | None = None,
               task: str = "vqa", image_root: str | None = None,
               on_bad_sample: str = "error") -> RecordDataset:
    """Read and check a ``datasets`` folder or parquet files (see module docstring).

    Args:
        path: a folder written by ``save_to_disk`` (a ``Dataset`` or a ``DatasetDict``).
        data_files: parquet file(s) or glob(s), instead of ``path``.
        split: the split of a ``DatasetDict`` (parquet files are one split).
        columns: ``{field: column}`` for ``id``, ``image``, ``prompt``, ``target``,
            ``references``, ``rejected``; missing fields keep :data:`COLUMNS`' defaults, a
            ``null`` column is not read (``id``: ``<split>-<row>``; ``references``:
            ``[target]``).
        task: ``vqa`` | ``caption`` | ``doc`` | ``preference`` | ``pair``.
        image_root: folder for string image paths (default: ``path`` or the first file's).
        on_bad_sample: ``error`` | ``skip``.
    """
    check_task(task)
    ds, source, folder = _load(path, data_files, split)
    cols = _columns(ds, columns, task)
    root = Path(image_root).expanduser() if image_root else folder
    ds = _undecoded(ds, cols["image"])
    images = ArrowImages(ds, cols["image"], str(root))
    policy = BadRecordPolicy(on_bad_sample)
    checker = RecordChecker(policy, source)
    # string paths are checked (file exists) at start-up like every format's; Image bytes are not
    paths = _holds_paths(ds.features[cols["image"]])
    text_cols = [c for f, c in cols.items() if c and (f != "image" or paths)]
    for start in range(0, len(ds), _BATCH):
        batch = ds.select_columns(text_cols)[start:start + _BATCH]
        counts = _image_counts(ds, cols["image"], start, start + _BATCH)
        for k, (n_images, n_empty) in enumerate(counts):
            row = start + k
            with checker.at(f"[{row}]"):
                raw = {c: batch[c][k] for c in text_cols}
                record = _record(raw, cols, task, split, row, n_images, n_empty)
                if paths:
                    value = raw[cols["image"]]
                    value = value if isinstance(value, list) else [value]
                    found = tuple(image_path(v, root, record.id) for v in value)
                    record = replace(record, image=found if n_images > 1 else found[0])
                checker.add(record)
    return RecordDataset(checker.finish(), policy, source, images=images)


class ArrowImages:
    """``images(ref)``: the encoded bytes or the path of an image (picklable).

    ``ref`` is a row (its only image) or ``(row, k)``: the ``k``-th image of a row that holds
    several (see :class:`~vlmtrain.data.readers.Record`).
    """

    def __init__(self, ds: Any, column: str, root: str) -> None:
        # only the image column: reading a row then touches no text column
        self.ds, self.column, self.root = ds.select_columns([column]), column, root

    def __call__(self, ref: int | tuple[int, int]) -> bytes | str | None:
        row, k = (ref, 0) if isinstance(ref, int) else ref
        value = self.ds[int(row)][self.column]
        return _bytes_or_path(value[k] if isinstance(value, list) else value, self.root)


def _holds_paths(feature: Any) -> bool:
    """Whether an image column holds path strings (itself or as a list of them)."""
    inner = getattr(feature, "feature", feature)  # List(Value("string")) / Value("string")
    return getattr(inner, "dtype", None) in ("string", "large_string")


def _image_counts(ds: Any, column: str, start: int, stop: int) -> list[tuple[int, int]]:
    """``(images, of which empty)`` for rows ``start:stop``, from Arrow lengths alone: the
    image bytes are never read here, so checking a large dataset costs no image I/O."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    values = ds.with_format("arrow").select_columns([column])[start:stop].column(0)
    values = values.combine_chunks()  # parent indices below are per chunk
    kind = values.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        lengths = pc.fill_null(pc.list_value_length(values), 0).to_pylist()
        items = pc.list_flatten(values)  # a null list contributes no item
        parents = np.asarray(pc.list_parent_indices(values), dtype=np.int64)
        empty = ~np.asarray(_present(items), dtype=bool)
        missing = np.bincount(parents[empty], minlength=len(values)).tolist()
        return list(zip(lengths, missing))
    return [(int(x), 0) for x in _present(values).to_pylist()]


def _present(values: Any) -> Any:
    """Per value: whether it names an image (non-empty bytes or path), as a boolean array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_struct(values.type):  # Image(decode=False): {"bytes", "path"}
        has_bytes = pc.greater(pc.binary_length(pc.struct_field(values, "bytes")), 0)
        has_path = pc.greater(pc.binary_length(pc.struct_field(values, "path")), 0)
        found = pc.or_kleene(has_bytes, has_path)
    else:  # a path string or raw bytes
        found = pc.greater(pc.binary_length(values), 0)
    return pc.fill_null(found, False)


def _bytes_or_path(value: Any, root: str) -> bytes | str | None:
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return value["bytes"]
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)) and value:
        return bytes(value)
    if isinstance(value, str) and value:
        return str(Path(root) / value)
    return None


def _load(path: str | None, data_files: Any, split: str) -> tuple[Any, str, Path]:
    """``(dataset, name for messages, default image folder)``."""
    import datasets

    if (path is None) == (data_files is None):
        raise VLMTrainError("hf_dataset needs exactly one of path (a save_to_disk folder) and "
                            "data_files (parquet files)")
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise VLMTrainError(f"datasets folder '{folder}' does not exist; fix data.*.path")
        ds = datasets.load_from_disk(str(folder))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise VLMTrainError(f"{folder} has no split {split!r}; splits: {', '.join(ds)}")
            ds = ds[split]
        return ds, str(folder), folder
    files = [data_files] if isinstance(data_files, str) else list(data_files)
    try:
        ds = datasets.load_dataset("parquet", data_files=files, split="train")
    except FileNotFoundError as exc:
        raise VLMTrainError(f"parquet files {files} not found ({exc}); fix data.*.data_files") \
            from None
    first = Path(files[0]).expanduser()
    return ds, str(first) if len(files) == 1 else f"{first} (+{len(files) - 1})", first.parent


def _columns(ds: Any, columns: Mapping[str, str | None] | None, task: str) -> dict[str, Any]:
    unknown = set(columns or {}) - set(COLUMNS)
    if unknown:
        raise VLMTrainError(f"data.*.columns has unknown fields {sorted(unknown)}; fields: "
                            f"{', '.join(COLUMNS)}")
    cols = {**COLUMNS, **(columns or {})}
    if task == "preference" and not cols["rejected"]:
        raise VLMTrainError("task=preference needs data.*.columns.rejected (and target: the "
                            "chosen column)")
    missing = [c for c in cols.values() if c and c not in ds.column_names]
    if missing:
        raise VLMTrainError(f"columns {missing} are not in the dataset (columns: "
                            f"{', '.join(ds.column_names)}); fix data.*.columns")
    if not cols["image"]:
        raise VLMTrainError("data.*.columns.image is required: every sample needs an image")
    if not cols["target"] and not cols["references"]:
        raise VLMTrainError("data.*.columns needs a target or a references column")
    return cols


def _undecoded(ds: Any, column: str) -> Any:
    """The dataset with its Image column(s) left encoded (``{"bytes", "path"}``)."""
    import datasets

    feature = ds.features[column]
    if isinstance(feature, datasets.Image):
        return ds.cast_column(column, datasets.Image(decode=False))
    inner = getattr(feature, "feature", None)  # Sequence(Image) / List(Image)
    if isinstance(inner, datasets.Image):
        return ds.cast_column(column, type(feature)(datasets.Image(decode=False)))
    return ds


def _record(raw: dict, cols: dict, task: str, split: str, row: int, n_images: int,
            n_empty: int = 0) -> Record:
    rid = record_id(raw, cols["id"]) if cols["id"] else f"{split}-{row}"
    if n_images == 0 or n_empty:
        what = "no image" if n_images == 0 else f"{n_empty} empty image(s) of {n_images}"
        raise BadRecord("missing_image", f"record {rid} has {what}; give every image of the "
                        "record (bytes or a path), or drop the record")
    prompt = text(raw, cols["prompt"], rid) if cols["prompt"] else ""
    if n_images > 1:  # placeholders kept: the collator places each image at its own
        marks = prompt.count("<image>")
        if marks not in (0, n_images):
            raise BadRecord("image_placeholders", f"record {rid}: the prompt has {marks} <image> "
                            f"placeholders for {n_images} images; mark each image once (or "
                            "none: all images first)")
        image: int | tuple[tuple[int, int], ...] = tuple((row, k) for k in range(n_images))
    else:
        prompt, placeholders = strip_placeholders(prompt)
        if placeholders > 1:
            raise BadRecord("image_placeholders", f"record {rid}: the prompt has {placeholders} "
                            "<image> placeholders for one image; keep one (or none)")
        image = row
    refs = _references(raw, cols["references"], rid)
    target = text(raw, cols["target"], rid) if cols["target"] else _most_common(refs)
    return Record(id=rid, image=image, prompt=prompt, target=target,
                  references=refs or (target,), task=task, where=f"[{row}]",
                  rejected=text(raw, cols["rejected"], rid) if cols["rejected"] else None)


def _references(raw: dict, column: str | None, rid: str) -> tuple[str, ...]:
    if not column:
        return ()
    return (text(raw, column, rid),) if isinstance(raw[column], str) else texts(raw, column, rid)


def _most_common(refs: tuple[str, ...]) -> str:
    return Counter(refs).most_common(1)[0][0] if refs else ""
