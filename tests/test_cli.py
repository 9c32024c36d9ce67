"""The real entry point, as a user runs it: `python -m vlmtrain ...` in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import run_vlmtrain

SIZES = ["data.val.size=16", "data.batch_size=8", "data.eval_batch_size=16"]
SMALL = ["data.train.datasets.0.size=16", "data.train.datasets.1.size=16",
         "data.train.datasets.2.size=48", *SIZES]  # sft_vqa: the three stages
SMALL_CAPTION = ["data.train.size=64", *SIZES]


def _assert_one_line_error(result, *needles: str) -> str:
    assert result.returncode != 0
    err = result.stderr
    assert "Traceback" not in err, err[-3000:]
    for needle in needles:
        assert needle in err, err[-3000:]
    return err


@pytest.mark.parametrize("model", ["tiny_qwen2_5_vl", "tiny_paligemma"])
def test_fast_dev_run_both_families(model, tmp_path):
    result = run_vlmtrain("+recipe=sft_vqa", f"model={model}", "trainer=fast_dev_run",
                          "logger=csv", f"hydra.run.dir={tmp_path}", *SMALL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "run finished" in result.stdout
    assert "val/exact_match" in result.stdout


def test_short_run_writes_config_logs_checkpoint_and_hf_model(tmp_path):
    result = run_vlmtrain("+recipe=sft_caption", "logger=default", "trainer.max_steps=4",
                          "trainer.val_check_interval=4", "trainer.log_every_n_steps=1",
                          f"hydra.run.dir={tmp_path}",
                          "+secret_api_key=abc123-do-not-log", *SMALL_CAPTION)
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = (tmp_path / ".hydra" / "config.yaml").read_text()
    assert "shapes_caption" not in resolved or "task: caption" in resolved
    assert list((tmp_path / "checkpoints").glob("*.ckpt"))
    assert (tmp_path / "hf_model" / "config.json").exists()
    metrics = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "val/loss" in metrics and "train/tokens_per_sec" in metrics
    wandb_files = [p for p in (tmp_path / "wandb").rglob("*") if p.is_file()]
    assert wandb_files, "W&B offline run expected"
    for path in wandb_files + list((tmp_path / "csv").rglob("*.yaml")):
        assert b"abc123-do-not-log" not in path.read_bytes(), path


def test_final_weights_are_validated_when_steps_do_not_align(tmp_path):
    # Validation every 4 steps, 6 steps in all: the summary must describe the step-6 weights.
    result = run_vlmtrain("+recipe=sft_vqa", "logger=csv", "trainer.max_steps=6",
                          "trainer.val_check_interval=4", f"hydra.run.dir={tmp_path}", *SMALL)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    col, step = header.index("val/exact_match"), header.index("step")
    val_steps = [int(r.split(",")[step]) for r in rows[1:] if r.split(",")[col]]
    assert len(val_steps) == 2 and val_steps[0] < val_steps[1], rows
    assert "final validation at step 6" in result.stderr + result.stdout
    # last.ckpt holds the final weights too (resume continues from step 6, not step 4)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)
    assert last["global_step"] == 6


def test_cfg_job_prints_resolved_recipe():
    result = run_vlmtrain("+recipe=sft_vqa", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert "run_name: sft_vqa" in result.stdout and "task: vqa" in result.stdout


def test_multirun_creates_one_folder_per_job(tmp_path):
    result = run_vlmtrain("-m", "+recipe=sft_vqa", "trainer=fast_dev_run", "logger=csv",
                          "seed=0,1", f"hydra.sweep.dir={tmp_path}", *SMALL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "0" / ".hydra" / "config.yaml").exists()
    assert (tmp_path / "1" / ".hydra" / "config.yaml").exists()


def test_unknown_recipe_lists_available_ones():
    result = run_vlmtrain("+recipe=sft_vqq", "--cfg", "job")
    err = _assert_one_line_error(result, "sft_vqq")
    assert "sft_vqa" in err and "sft_caption" in err


def test_missing_model_config_names_options():
    result = run_vlmtrain("+recipe=sft_vqa", "model=qwen9_vl", "--cfg", "job")
    err = _assert_one_line_error(result, "qwen9_vl")
    assert "tiny_qwen2_5_vl" in err


def _jsonl(tmp_path: Path, records: list[dict]) -> Path:
    Image.new("RGB", (48, 48), "red").save(tmp_path / "ok.png")
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_missing_image_path_is_one_line_error(tmp_path):
    path = _jsonl(tmp_path, [
        {"id": "q1", "image": "ok.png", "prompt": "What colour?", "answer": "red"},
        {"id": "q2", "image": "missing.png", "prompt": "What colour?", "answer": "red"},
    ])
    result = run_vlmtrain("+recipe=sft_vqa", "data=jsonl", f"data.train.path={path}",
                          f"data.val.path={path}", "logger=csv", f"hydra.run.dir={tmp_path}/run")
    err = _assert_one_line_error(result, "error:", "record q2", "missing.png", "does not exist")
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1


def test_empty_answer_is_one_line_error(tmp_path):
    path = _jsonl(tmp_path, [
        {"id": "q1", "image": "ok.png", "prompt": "What colour?", "answer": ""},
    ])
    result = run_vlmtrain("+recipe=sft_vqa", "data=jsonl", f"data.train.path={path}",
                          f"data.val.path={path}", "logger=csv", f"hydra.run.dir={tmp_path}/run")
    _assert_one_line_error(result, "error:", "sample q1 has an empty answer")


def test_unset_data_path_is_one_line_error(tmp_path):
    result = run_vlmtrain("+recipe=sft_vqa", "data=jsonl", "logger=csv",
                          f"hydra.run.dir={tmp_path}/run")
    _assert_one_line_error(result, "error:", "data.train.path")
