"""Read a W&B offline run (``<run>/wandb/offline-run-*/run-<id>.wandb``) without syncing it.

wandb >= 0.19 reads and writes these files in its Go core only; the Python package no longer
ships a reader. The format is wandb's "transaction log": a 7-byte header (``:W&B``, magic
0xBEE1, version 0) followed by LevelDB-log blocks of 32 KiB, each record a 7-byte header
(CRC-32, little-endian uint16 length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4) and a chunk of a
serialised ``wandb.proto.wandb_internal_pb2.Record``. Hand-written here (a few lines) because
nothing else reads an offline run back: tests and ``vlmtrain.compare`` need its config, history
and run id.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HEADER = struct.Struct("<4sHB")
_CHUNK = struct.Struct("<IHB")
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: str | Path) -> Iterator[Any]:
    """The ``Record`` protos of one ``.wandb`` file, in write order.

    Raises:
        ValueError: the file is not a W&B transaction log, or a chunk is corrupt.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    ident, magic, version = _HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1 or version != 0:
        raise ValueError(f"{path} is not a W&B offline run file (header {data[:7]!r})")
    pos, pending = _HEADER.size, b""
    while pos + _CHUNK.size <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _CHUNK.size:  # a block's tail too short for a chunk header is padding
            pos += room
            continue
        crc, length, kind = _CHUNK.unpack_from(data, pos)
        chunk = data[pos + _CHUNK.size:pos + _CHUNK.size + length]
        if length == 0 and kind == 0:  # zero padding at the end of a file still being written
            break
        if zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF != crc:
            raise ValueError(f"{path}: corrupt chunk at byte {pos}")
        pos += _CHUNK.size + length
        pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


@dataclass
class OfflineRun:
    """What an offline run holds: id, names, config, history rows, summary."""

    run_id: str = ""
    project: str = ""
    name: str = ""
    group: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_offline_run(run_dir: str | Path) -> OfflineRun:
    """Parse ``offline-run-<time>-<id>/run-<id>.wandb`` (``run_dir`` is that folder).

    Config values are the (redacted) values vlmtrain logged; ``history`` holds one dict per
    ``wandb.log`` call (``trainer/global_step`` is the training step Lightning logged with).
    """
    files = sorted(Path(run_dir).glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}: not a W&B offline run folder")
    run = OfflineRun()
    for record in records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.project, run.name, run.group = (r.run_id, r.project, r.display_name,
                                                             r.run_group)
            for item in r.config.update:
                run.config[_key(item)] = _value(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[_key(item)] = _value(item.value_json)
        elif kind == "history":
            run.history.append({_key(i): _value(i.value_json) for i in record.history.item})
        elif kind == "summary":
            run.summary.update({_key(i): _value(i.value_json) for i in record.summary.update})
        elif kind == "environment" and record.environment.args:
            run.args = list(record.environment.args)  # the command line W&B recorded
    return run


def _value(text: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    # wandb wraps each config value as {"value": ...}
    if isinstance(value, dict) and set(value) == {"value"}:
        return value["value"]
    return value


def offline_segments(run_dir: str | Path) -> list[Path]:
    """The W&B offline-run folders of a vlmtrain run folder, oldest first.

    A resumed run adds one folder per launch, all with the run's W&B id.
    """
    folder = Path(run_dir) / "wandb"
    return sorted(folder.glob("offline-run-*"), key=lambda p: p.name) if folder.is_dir() else []


def run_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """History of a vlmtrain run across all its W&B offline segments, each step once.

    When a run is resumed from a checkpoint at step ``c`` the steps after ``c`` that the
    interrupted launch had already logged are trained and logged again; the earlier segment's
    rows after ``c`` are dropped. ``c`` is the first step the next segment logged, less one
    (rows are keyed by ``trainer/global_step``, the step Lightning logs with).
    """
    rows: list[dict[str, Any]] = []
    for segment in offline_segments(run_dir):
        new = read_offline_run(segment).history
        steps = [r["trainer/global_step"] for r in new if "trainer/global_step" in r]
        if steps:
            first = min(steps)
            rows = [r for r in rows if r.get("trainer/global_step", -1) < first]
        rows += new
    return rows
