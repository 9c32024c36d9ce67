"""Checkpoint files written atomically: a crash leaves the old ``last.ckpt`` or the new one.

Lightning's ``TorchCheckpointIO`` serialises to memory and writes through an fsspec
transaction. On a local disk that transaction writes a file made by ``tempfile.mkstemp()`` in
the *system* temporary folder and then ``shutil.move``s it over the checkpoint. When that
folder is on another filesystem (node-local ``/tmp`` against a shared checkpoint disk, the
usual cluster layout) the move is a copy into the destination, so a job killed mid-copy leaves a
truncated ``last.ckpt``; the whole checkpoint also has to fit in ``/tmp``, and nothing is
fsynced. This plugin writes next to the destination, fsyncs, and renames (``os.replace`` is
atomic within one filesystem). Remote filesystems (s3://, gs://) keep Lightning's path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are write-to-temporary, fsync, rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)  # the rename itself must survive a power loss


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform that cannot open folders: the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
