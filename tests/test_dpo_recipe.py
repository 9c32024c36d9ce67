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
         "trainer.log_every_n_steps=1", "logger=csv", "data.batch_size=8", "data.train.size=240",
         "data.val.size=32", "data.eval_batch_size=32", "optim.optimizer.lr=1e-3"]


def _column(run_dir: Path, key: str) -> list[float]:
    rows = list(csv.DictReader((run_dir / "csv" / "version_0" / "metrics.csv").open()))
    return [float(r[key]) for r in rows if r.get(key)]


@pytest.mark.slow
def test_dpo_recipe_trains_from_a_cached_start_model(tmp_path):
    from vlmtrain.models.stages import trained_by_recipe

    result = run_vlmtrain("+recipe=dpo_vqa", f"hydra.run.dir={tmp_path}", *SHORT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training it first" in result.stderr + result.stdout
    stages = list((Path(os.environ["VLMTRAIN_CACHE"]) / "stages").glob("sft_vqa-*"))
    assert len(stages) == 1 and (stages[0] / "hf_model" / "config.json").is_file()
    assert not list(stages[0].parent.glob("*.partial"))

    # DPO moved every weight of the start model (full fine-tuning, frozen-copy reference)
    start = load_file(stages[0] / "hf_model" / "model.safetensors")
    after = load_file(tmp_path / "hf_model" / "model.safetensors")
    assert start.keys() == after.keys()
    assert not [k for k in start if torch.equal(start[k], after[k])]

    # the implicit reward separates chosen from rejected on the training pairs and the
    # validation pairs (0 margin at step 0: policy == reference)
    margins = _column(tmp_path, "train/rewards/margins")
    assert len(margins) == STEPS and sum(margins[-5:]) / 5 > 0.05, margins
    assert _column(tmp_path, "val/rewards/accuracies")[-1] > 0.5
    for key in ("val/logps/chosen", "val/logits/rejected", "val/exact_match"):
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
