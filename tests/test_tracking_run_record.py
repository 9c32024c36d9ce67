"""run.json: one machine-readable record per run folder, written atomically."""

from __future__ import annotations

import json
from types import SimpleNamespace

import torch

from tests.conftest import run_vlmtrain
from vlmtrain.callbacks.run_record import (
    RunRecord,
    config_hash,
    mark_ended,
    read_record,
    write_json_atomic,
)
from vlmtrain.tracking.offline import read_offline_run

SMALL = ["data.train.datasets.0.size=16", "data.train.datasets.1.size=16",
         "data.train.datasets.2.size=48", "data.val.size=16", "data.batch_size=8",
         "data.eval_batch_size=16"]


def test_record_of_a_finished_run(tmp_path):
    result = run_vlmtrain("+recipe=sft_vqa", "logger=default", "seed=3", "trainer.max_steps=6",
                          "trainer.val_check_interval=4", f"hydra.run.dir={tmp_path}", *SMALL)
    assert result.returncode == 0, result.stderr[-3000:]
    record = read_record(tmp_path)
    assert record["status"] == "finished" and record["error"] is None
    assert record["recipe"] == "sft_vqa" and "seed=3" in record["overrides"]
    assert record["global_step"] == 6
    assert record["started_at"] <= record["updated_at"] == record["ended_at"]
    # W&B: the id of the offline run in this folder
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    assert record["wandb"]["mode"] == "offline" and record["wandb"]["dir"] == str(run_dir)
    assert read_offline_run(run_dir).run_id == record["wandb"]["id"]
    # final = the last validation (step 6); best of the objective with its step, and the
    # same values as the CSV log
    final, best = record["metrics"]["final"], record["metrics"]["best"]
    assert final["val/exact_match"]["step"] == 6 and "val/answer_tokens" not in final
    rows = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    logged = [float(r.split(",")[header.index("val/loss")]) for r in rows[1:]
              if r.split(",")[header.index("val/loss")]]
    assert len(logged) == 2
    assert abs(final["val/loss"]["value"] - logged[-1]) < 1e-6
    assert abs(best["val/loss"]["value"] - min(logged)) < 1e-6
    assert record["objective"]["name"] == "val/exact_match"
    assert record["objective"]["value"] == best["val/exact_match"]["value"]
    assert record["checkpoints"]["last"] == str(tmp_path / "checkpoints" / "last.ckpt")
    assert record["checkpoints"]["best"] == str(tmp_path / "checkpoints" / "step4.ckpt")
    for path in record["checkpoints"]["files"]:
        assert torch.load(path, map_location="cpu", weights_only=False)["global_step"] in (4, 6)
    assert record["skipped"]["total"] == 0
    assert not list(tmp_path.glob(".run.json.tmp-*"))


def test_config_hash_ignores_run_folder_and_checkpoint_only():
    a = {"seed": 0, "ckpt_path": None, "callbacks": {"dirpath": "/runs/a/checkpoints"}}
    b = {"seed": 0, "ckpt_path": "/runs/b/checkpoints/last.ckpt",
         "callbacks": {"dirpath": "/runs/b/checkpoints"}}
    assert config_hash(a, "/runs/a") == config_hash(b, "/runs/b")
    assert config_hash({**a, "seed": 1}, "/runs/a") != config_hash(a, "/runs/a")


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "run.json"
    write_json_atomic(path, {"status": "running", "pad": "x" * 10000})
    write_json_atomic(path, {"status": "finished"})
    assert json.loads(path.read_text()) == {"status": "finished"}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def _trainer(metrics):
    return SimpleNamespace(global_step=7, callback_metrics=metrics, checkpoint_callbacks=[],
                           datamodule=SimpleNamespace(skipped=2), loggers=[])


def test_exception_marks_failed_with_message_and_best_follows_direction(tmp_path):
    record = RunRecord(str(tmp_path / "run.json"), objective="val/cider", objective_mode="max")
    record.data = {"status": "running", "metrics": {"final": {}, "best": {}}}
    for loss, cider in ((2.0, 0.3), (1.5, 0.2)):
        record._collect(_trainer({"val/loss": torch.tensor(loss), "val/cider": torch.tensor(cider),
                                  "train/loss": torch.tensor(9.0)}))
    assert record.data["metrics"]["best"]["val/loss"]["value"] == 1.5
    assert abs(record.data["metrics"]["best"]["val/cider"]["value"] - 0.3) < 1e-6
    assert "train/loss" not in record.data["metrics"]["final"]
    record.on_exception(_trainer({}), None, ValueError("bad batch 3"))
    saved = read_record(tmp_path)
    assert saved["status"] == "failed" and saved["error"] == "ValueError: bad batch 3"
    assert saved["skipped"] == {"total": 2} and saved["ended_at"]


def test_mark_ended_only_touches_running_records(tmp_path):
    write_json_atomic(tmp_path / "run.json", {"status": "running"})
    mark_ended(tmp_path, "failed", "RuntimeError: x")
    assert read_record(tmp_path)["status"] == "failed"
    mark_ended(tmp_path, "finished")
    assert read_record(tmp_path)["status"] == "failed"
