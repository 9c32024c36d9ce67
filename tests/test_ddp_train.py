"""Training under DDP on 2 CPU ranks (gloo), launched with torchrun through the Hydra entry, is
the training of one process with the same global batch: the same samples per step, the same
loss per step, the same validation metrics gathered over the ranks.

The loss of a step is the mean over ranks of each rank's loss: the module divides every rank's
summed token loss by ``N / W`` (``N`` answer tokens of the whole step on all ranks), so that mean
is the token mean over the global batch. Tiny models have no dropout, so ranks draw nothing
random. Validation holds an odd number of samples: the ranks hold 4 and 3, none repeated.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import REPO, run_vlmtrain

RUN = [
    "trainer.max_steps=3", "logger=csv", "threads=1", "~callbacks.checkpoint",
    "~callbacks.interval_checkpoint", "~callbacks.export", "~callbacks.progress",
    "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
    "data.train.datasets.0.size=8", "data.train.datasets.1.size=8",
    "data.train.datasets.2.size=16", "data.val.size=7", "data.eval_batch_size=1",
    # shuffled and length-grouped: the order both runs must agree on is not the dataset's
    "data.shuffle=true", "data.group_by_length=true", "module.generation.max_new_tokens=4",
    "+metrics.seen._target_=tests.ddp_trace.SeenSamples",
    "+callbacks.trace._target_=tests.ddp_trace.LossTrace",
]
GLOBAL_BATCH, WORLD = 8, 2


def _run(tmp: Path, *extra: str, launcher: tuple[str, ...] = ()) -> list[dict]:
    args = [*RUN, f"+callbacks.trace.folder={tmp}/trace", f"hydra.run.dir={tmp}", *extra]
    if launcher:  # torchrun: one process per rank, every rank composes the same config
        result = subprocess.run([sys.executable, *launcher, "-m", "vlmtrain", *args], cwd=REPO,
                                capture_output=True, text=True, timeout=300)
    else:
        result = run_vlmtrain(*args, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(p.read_text()) for p in sorted((tmp / "trace").glob("rank*.json"))]


@pytest.mark.slow
def test_ddp_two_ranks_train_and_validate_as_one_process(tmp_path):
    # one process first: it also builds the tiny model into the cache the ranks then read
    (single,) = _run(tmp_path / "one", f"data.batch_size={GLOBAL_BATCH}")
    ranks = _run(tmp_path / "ddp", f"data.batch_size={GLOBAL_BATCH // WORLD}", "trainer=ddp",
                 "trainer.accelerator=cpu", f"trainer.devices={WORLD}",
                 launcher=("-m", "torch.distributed.run", f"--nproc_per_node={WORLD}"))
    assert len(ranks) == WORLD and len(single["loss"]) == 3

    for step, ids in enumerate(single["ids"]):  # the global batch of each step: same samples
        assert Counter(ids) == Counter(ranks[0]["ids"][step] + ranks[1]["ids"][step]), step
    global_loss = [sum(r["loss"][s] for r in ranks) / WORLD for s in range(3)]
    assert global_loss == pytest.approx(single["loss"], abs=1e-5)
    assert ranks[0]["loss"] != ranks[1]["loss"]  # the ranks did train on different halves

    assert [r["val_ids"] for r in ranks] == [4, 3]  # split without repeats
    for rank in ranks:
        assert rank["val"].keys() == single["val"].keys()
        for key, value in single["val"].items():
            assert rank["val"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert single["val"]["val/seen"] == 7 and single["val"]["val/chars"] > 0
