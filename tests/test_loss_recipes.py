"""focal_vqa and kd_vqa through the real entry point on the embedded default: they train."""

from __future__ import annotations

import csv

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import run_vlmtrain

STEPS = 30
SHORT = [f"trainer.max_steps={STEPS}", f"trainer.val_check_interval={STEPS}",
         "trainer.log_every_n_steps=1", "logger=csv", "data.batch_size=8", "data.val.size=16",
         "data.eval_batch_size=16"]


def _train_column(run_dir, key: str) -> list[float]:
    rows = list(csv.DictReader((run_dir / "csv" / "version_0" / "metrics.csv").open()))
    return [float(r[key]) for r in rows if r.get(key)]


@pytest.mark.parametrize(("recipe", "own_log"), [("focal_vqa", "train/ce"),
                                                 ("kd_vqa", "train/distill")])
def test_recipe_trains_end_to_end(recipe, own_log, tmp_path):
    from vlmtrain.models.tiny import build_tiny_qwen2_5_vl

    result = run_vlmtrain(f"+recipe={recipe}", f"hydra.run.dir={tmp_path}", *SHORT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "run finished" in result.stdout and "val/exact_match" in result.stdout

    # the student's weights moved (the default student: tiny Qwen2.5-VL at 48 px, seed 0); the
    # export holds the student alone, not the teacher (which is wider)
    before = load_file(f"{build_tiny_qwen2_5_vl(image_size=48)}/model.safetensors")
    after = load_file(tmp_path / "hf_model" / "model.safetensors")
    assert before.keys() == after.keys()
    assert all(before[k].shape == after[k].shape for k in before)
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert not unchanged, unchanged  # vision tower, projector and language model all trained

    # the loss and the CE it contains fell: mean of the last 5 logged steps at least 20% under
    # the first 5 (the first steps teach the answer format, worth nats on a random model)
    for key in ["train/loss", "train/ce"]:
        values = _train_column(tmp_path, key)
        assert len(values) == STEPS, (key, len(values))
        first, last = sum(values[:5]) / 5, sum(values[-5:]) / 5
        assert last < 0.8 * first, (key, first, last)
    # the shipped teacher is random, so its divergence need not fall; it is logged every step
    assert len(_train_column(tmp_path, own_log)) == STEPS
