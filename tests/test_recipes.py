"""Every recipe composes and instantiates what it names; misspelt names fail loudly."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from vlmtrain.__main__ import register_recipes
from vlmtrain.paths import config_dir, recipe_dir
from vlmtrain.train import build_module

RECIPES = sorted(p.stem for p in recipe_dir().glob("*.yaml"))


def _compose(*overrides: str):
    register_recipes()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = "/tmp/vlmtrain-compose-test"
    return cfg


def test_recipes_exist():
    assert {"sft_vqa", "sft_caption"} <= set(RECIPES)


def _untrained_start(cfg) -> None:
    """A start model or teacher made by another recipe (minutes of training on first use) is
    replaced by its untrained architecture; tests/test_dpo_recipe.py runs such a stage for real."""
    for part in ("model", "teacher"):
        node = (cfg.get(part) or {}).get("name_or_path")
        if node is None or not str(node.get("_target_", "")).endswith("stages.trained_by_recipe"):
            continue
        with open_dict(cfg):
            node._target_ = f"vlmtrain.models.tiny.build_{node.model}"
            for key in ("recipe", "model", "overrides"):
                del node[key]


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_composes_and_instantiates(recipe):
    cfg = _compose(f"+recipe={recipe}", "logger=csv")
    assert cfg.run_name == recipe
    OmegaConf.resolve(cfg)
    _untrained_start(cfg)
    vlm = instantiate(cfg.model)
    data = instantiate(cfg.data, processor=vlm.processor, family=vlm.family)
    module = build_module(cfg, vlm, data)
    callbacks = instantiate(cfg.callbacks)
    loggers = instantiate(cfg.logger)
    trainer = instantiate(cfg.trainer, callbacks=list(callbacks.values()),
                          logger=list(loggers.values()))
    assert trainer.max_steps == cfg.trainer.max_steps
    assert len(data.train_set) > 0 and data.val_set is not None
    assert module.loss_fn.__class__.__name__ == cfg.loss._target_.rsplit(".", 1)[1]
    # the module's optimizer is a partial that builds on the module's own param groups
    module.trainer = trainer  # noqa: not attached; estimated steps come from max_steps
    groups = module._param_groups()
    # every trainable tensor of the model, and of the loss (InfoNCE's heads), exactly once
    trainable = [p for p in (*vlm.model.parameters(), *module.loss_fn.parameters())
                 if p.requires_grad]
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in trainable)


def test_recipe_yaml_lists_only_overrides():
    for path in recipe_dir().glob("*.yaml"):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert lines[0].startswith("# python -m vlmtrain +recipe="), path
        assert len(lines) <= 25, f"{path} is a config, not a recipe: list overrides only"


@pytest.mark.parametrize("model", ["qwen2_5_vl_3b", "qwen2_5_vl_7b", "paligemma_3b_224",
                                   "tiny_paligemma"])
def test_model_configs_compose(model):
    cfg = _compose("+recipe=sft_vqa", f"model={model}")
    assert cfg.model._target_ == "vlmtrain.models.hf.load_vlm"
    if not model.startswith("tiny"):
        assert "/" in cfg.model.name_or_path and cfg.model.lora.r > 0
        assert cfg.model.dtype == "bfloat16"


@pytest.mark.parametrize(("model", "image_size", "readout_max_shapes"), [
    ("tiny_qwen2_5_vl", 48, 1), ("tiny_paligemma", 48, 3), ("qwen2_5_vl_3b", 48, 3)])
def test_schedule_sets_scene_size_and_readout_stage(model, image_size, readout_max_shapes):
    # Each model config picks a schedule; the schedule's scene size and read-out stage must reach
    # every shapes dataset (a stage left at another size would feed the model mismatched images).
    cfg = _compose("+recipe=sft_vqa", f"model={model}")
    OmegaConf.resolve(cfg)
    assert cfg.image_size == image_size
    captions, readout, mix = cfg.data.train.datasets
    assert {captions.image_size, readout.image_size, mix.image_size,
            cfg.data.val.image_size} == {image_size}
    assert readout.max_shapes == readout_max_shapes and mix.max_shapes == cfg.data.val.max_shapes
    if model.startswith("tiny"):
        merge = 2 if model == "tiny_qwen2_5_vl" else 1  # Qwen merges 2x2 patches into one token
        assert image_size // (cfg.model.name_or_path.patch_size * merge) == 3  # 3x3 image tokens


@pytest.mark.parametrize(("model", "peak_until"), [
    ("tiny_paligemma", 0.75),   # optim=from_scratch_wsd: the peak holds for the first 3/4
    ("tiny_qwen2_5_vl", 100),   # optim=from_scratch: cosine from the end of the warm-up
])
def test_model_config_picks_its_learning_rate_schedule(model, peak_until):
    cfg = _compose("+recipe=sft_vqa", f"model={model}")
    steps = int(cfg.trainer.max_steps)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = instantiate(cfg.optim.scheduler)(optimizer, num_training_steps=steps)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    last_peak = max(i for i, lr in enumerate(lrs) if lr > 1 - 1e-9)
    expected = int(peak_until * steps) if peak_until < 1 else peak_until
    assert abs(last_peak - expected) <= 1 and lrs[-1] < 1e-3
