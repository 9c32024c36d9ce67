"""Preemption and resume: SIGTERM ends in a checkpoint and a non-zero status; checkpoint files
are replaced atomically; resume=<run dir> continues the run from its own record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from vlmtrain.callbacks.run_record import read_record
from vlmtrain.tracking.checkpoint_io import AtomicCheckpointIO

TINY = ["+recipe=sft_vqa", "data.train.datasets.0.size=16", "data.train.datasets.1.size=16",
        "data.train.datasets.2.size=48", "data.val.size=16", "data.batch_size=8",
        "data.eval_batch_size=16"]


def _start(*overrides: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vlmtrain", *overrides], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_training(proc: subprocess.Popen, run_dir: Path, timeout: float = 240) -> None:
    # run.json gets "global_step" at on_train_start, after Lightning installed its handler
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.communicate()[1][-3000:]}")
        try:
            if "global_step" in read_record(run_dir):
                return
        except json.JSONDecodeError as exc:  # a torn read would mean the write is not atomic
            raise AssertionError("run.json read half-written") from exc
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("training did not start in time")


def test_sigterm_saves_checkpoint_records_interrupted_and_exits_nonzero(tmp_path):
    proc = _start(*TINY, "logger=csv", "trainer.max_steps=100000",
                  "trainer.val_check_interval=100000", f"hydra.run.dir={tmp_path}")
    _wait_for_training(proc, tmp_path)
    time.sleep(2.0)  # a few steps in
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 60
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    record = read_record(tmp_path)
    assert record["status"] == "interrupted" and record["ended_at"], record
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert record["checkpoints"]["last"] == str(last)
    step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert step == record["global_step"] and step >= 1
    assert f"resume={tmp_path}" in out + err and f"saved {last}" in out + err


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, path)

    def torn_save(obj, f, *args, **kwargs):  # a crash halfway through writing
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    io.save_checkpoint({"global_step": 3}, path)
    assert torch.load(path, weights_only=False) == {"global_step": 3}
    assert os.stat(path).st_size > 0
