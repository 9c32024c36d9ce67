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


# kd_vqa's shipped teacher is the full sft_vqa model, trained on first use (~8 min): here the
# random wider twin stands in; test_kd_default_teacher_is_the_sft_stage checks the default.
@pytest.mark.parametrize(("recipe", "own_log", "extra"), [
    ("focal_vqa", "train/ce", []),
    ("kd_vqa", "train/distill", ["teacher=tiny_qwen2_5_vl"]),
])
def test_recipe_trains_end_to_end(recipe, own_log, extra, tmp_path):
    from vlmtrain.models.tiny import build_tiny_qwen2_5_vl

    result = run_vlmtrain(f"+recipe={recipe}", f"hydra.run.dir={tmp_path}", *SHORT, *extra)
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
    # the stand-in teacher is random, so its divergence need not fall; it is logged every step
    assert len(_train_column(tmp_path, own_log)) == STEPS


@pytest.mark.parametrize(("model", "family"), [("tiny_qwen2_5_vl", "Qwen2_5_VL"),
                                               ("tiny_paligemma", "PaliGemma")])
def test_kd_default_teacher_is_the_sft_stage(model, family):
    """As shipped, kd_vqa distils the same tiny model after the full sft_vqa (a cached stage)."""
    from hydra import compose, initialize_config_dir

    from vlmtrain.__main__ import register_recipes
    from vlmtrain.paths import config_dir

    from omegaconf import OmegaConf

    register_recipes()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["+recipe=kd_vqa", f"model={model}", "seed=3"])
        dpo = compose("train", overrides=["+recipe=dpo_vqa", f"model={model}_sft", "seed=3"])
    stage = cfg.teacher.name_or_path
    # one cached stage serves both: the teacher is the student's architecture after full SFT,
    # exactly the start model of the preference recipe
    assert (OmegaConf.to_container(stage, resolve=True)
            == OmegaConf.to_container(dpo.model.name_or_path, resolve=True))
    assert stage._target_ == "vlmtrain.models.stages.trained_by_recipe"
    assert (stage.recipe, stage.model, list(stage.overrides)) == ("sft_vqa", model, ["seed=3"])
    assert cfg.teacher.family._target_.endswith(family)
    assert cfg.trainer.max_steps == 1100 and cfg.loss._target_.endswith("DistillationLoss")


def test_logged_rows_follow_log_every_n_steps(tmp_path):
    """Statistics of steps the loggers do not write are not computed into Lightning's results
    (a per-value cost on every step); the rows that are written hold all of them."""
    result = run_vlmtrain("+recipe=focal_vqa", f"hydra.run.dir={tmp_path}", "logger=csv",
                          "trainer.max_steps=12", "trainer.val_check_interval=12",
                          "trainer.log_every_n_steps=5", "data.batch_size=8", "data.val.size=8")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "csv" / "version_0" / "metrics.csv").open()))
    train = [r for r in rows if r.get("train/loss")]
    assert [int(r["step"]) for r in train] == [4, 9]
    for row in train:
        for key in ("train/ce", "train/token_accuracy", "train/lr", "train/tokens_per_sec"):
            assert row.get(key), (key, row)
