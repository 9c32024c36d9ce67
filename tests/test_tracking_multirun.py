"""A Hydra multirun with the W&B logger on: one W&B run per job, named by what differs, grouped
by sweep; vlmtrain.compare lists the jobs with the key they differ in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import run_vlmtrain
from vlmtrain.callbacks.run_record import read_record
from vlmtrain.tracking.offline import read_offline_run

SMALL = ["data.train.datasets.0.size=16", "data.train.datasets.1.size=16",
         "data.train.datasets.2.size=48", "data.val.size=16", "data.batch_size=8",
         "data.eval_batch_size=16"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("sweep")
    result = run_vlmtrain("-m", "+recipe=sft_vqa", "logger=default", "trainer.max_steps=3",
                          "trainer.val_check_interval=3", "trainer.log_every_n_steps=1",
                          "seed=0,1,2", f"hydra.sweep.dir={root}", *SMALL,
                          env={"WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result.stdout + result.stderr


@pytest.mark.slow
def test_each_job_has_its_own_wandb_run(sweep):
    root, output = sweep
    assert "already in progress" not in output
    runs = []
    for job in range(3):
        (segment,) = (root / str(job) / "wandb").glob("offline-run-*")
        run = read_offline_run(segment)
        runs.append(run)
        assert run.name == f"sft_vqa seed={job}"
        assert run.config["seed"] == job
        assert [r["trainer/global_step"] for r in run.history if "train/loss" in r] == [0, 1, 2]
        record = read_record(root / str(job))
        assert record["status"] == "finished"
        assert record["wandb"]["id"] == run.run_id and record["wandb"]["dir"] == str(segment)
    assert len({r.run_id for r in runs}) == 3
    assert {r.group for r in runs} == {"/".join(root.parts[-2:])}


@pytest.mark.slow
def test_compare_lists_every_job_with_its_differing_key(sweep, tmp_path):
    root, _ = sweep
    result = subprocess.run([sys.executable, "-m", "vlmtrain.compare", str(root), "--out",
                             str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 runs" in result.stdout and "sft_vqa seed=2" in result.stdout
    table = [[c.strip() for c in line.strip("|").split("|")]
             for line in (tmp_path / "table.md").read_text().splitlines()]
    header, rows = table[0], table[2:]
    assert header[:3] == ["run", "status", "seed"]  # seed is the one key that differs
    assert [row[:3] for row in rows] == [[f"sft_vqa seed={j}", "finished", str(j)]
                                         for j in range(3)]
    final = header.index("val/exact_match final")
    assert all(row[final].endswith("@3") for row in rows)
    with Image.open(tmp_path / "train_loss.png") as image:
        assert image.format == "PNG" and image.size == (1200, 675)
