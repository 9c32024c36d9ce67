"""+recipe=dpo_vqa through the real entry point: start model made and cached, DPO trains."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import run_vlmtrain

STEPS = 30
# a 24-step start model on a few validation questions keeps the test short; the shipped recipe
# trains it for 1,200 steps
STAGE = ('model.name_or_path.overrides=["trainer.max_steps=24","trainer.val_check_interval=24",'
         '"data.val.size=8","data.eval_batch_size=8","seed=0"]')
SHORT = [STAGE, f"trainer.max_steps={STEPS}", f"trainer.val_check_interval={STEPS}",
         "trainer.log_every_n_steps=1", "logger=csv", "data.batch_size=8", "data.train.size=32",
         "data.val.size=32", "data.eval_batch_size=32", "optim.optimizer.lr=1e-3",
         "optim.scheduler.num_warmup_steps=2"]


def _column(run_dir: Path, key: str) -> list[float]:
    rows = list(csv.DictReader((run_dir / "csv" / "version_0" / "metrics.csv").open()))
    return [float(r[key]) for r in rows if r.get(key)]


@pytest.mark.slow
def test_dpo_recipe_trains_from_a_cached_start_model(tmp_path):
    from vlmtrain.models.stages import trained_by_recipe

    result = run_vlmtrain("+recipe=dpo_vqa", f"hydra.run.dir={tmp_path}", *SHORT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training it first" in result.stderr + result.stdout
    stages = [p for p in (Path(os.environ["VLMTRAIN_CACHE"]) / "stages").glob("sft_vqa-*")
              if p.is_dir()]
    assert len(stages) == 1 and (stages[0] / "hf_model" / "config.json").is_file()
    assert not list(stages[0].parent.glob("*.partial"))

    # DPO moved every weight of the start model (full fine-tuning, frozen-copy reference)
    start = load_file(stages[0] / "hf_model" / "model.safetensors")
    after = load_file(tmp_path / "hf_model" / "model.safetensors")
    assert start.keys() == after.keys()
    assert not [k for k in start if torch.equal(start[k], after[k])]

    # 32 training pairs seen ~7 times: the implicit reward learns to separate them (margin 0
    # at step 0, where policy == reference); validation pairs are logged with generation
    margins = _column(tmp_path, "train/rewards/margins")
    accuracies = _column(tmp_path, "train/rewards/accuracies")
    assert len(margins) == STEPS, margins
    assert sum(margins[-8:]) / 8 > 0.1, margins
    assert sum(accuracies[-8:]) / 8 > 0.75, accuracies
    for key in ("val/rewards/accuracies", "val/logps/chosen", "val/logits/rejected",
                "val/exact_match"):
        assert _column(tmp_path, key), key

    # a second run with the same stage settings loads the cached model instead of training it
    args = ["trainer.max_steps=24", "trainer.val_check_interval=24", "data.val.size=8",
            "data.eval_batch_size=8", "seed=0"]
    cached = trained_by_recipe("sft_vqa", "tiny_qwen2_5_vl", args, **_architecture())
    assert Path(cached) == stages[0] / "hf_model"


def _architecture() -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from vlmtrain.__main__ import register_recipes
    from vlmtrain.paths import config_dir

    register_recipes()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["+recipe=dpo_vqa"])
    node = OmegaConf.to_container(cfg.model.name_or_path, resolve=True)
    return {k: v for k, v in node.items()
            if k not in ("_target_", "recipe", "model", "overrides")}


@pytest.mark.parametrize("model", ["tiny_qwen2_5_vl", "tiny_paligemma"])
def test_dpo_recipe_smoke_on_both_families(model, tmp_path):
    # an untrained start (model=<tiny twin>, not the cached SFT stage) keeps this a smoke test
    result = run_vlmtrain("+recipe=dpo_vqa", f"model={model}", "trainer=fast_dev_run",
                          f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val/rewards/accuracies" in result.stdout and "val/exact_match" in result.stdout
