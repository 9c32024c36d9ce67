"""Training really trains: weights change and validation metrics move."""

from __future__ import annotations

import copy

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import open_dict

from vlmtrain.__main__ import register_recipes
from vlmtrain.callbacks.generation_eval import GenerationEval
from vlmtrain.paths import config_dir
from vlmtrain.train import build_module


def _cfg(*overrides: str):
    register_recipes()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["+recipe=sft_vqa", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = "unused"
    return cfg


def test_weights_change_and_val_loss_drops(tmp_path):
    cfg = _cfg("data.train.datasets.0.size=0", "data.train.datasets.1.size=0",
               "data.train.datasets.2.size=1024", "data.val.size=32", "data.batch_size=16",
               "data.eval_batch_size=32", "optim.scheduler.num_warmup_steps=5")
    L.seed_everything(0)
    vlm = instantiate(cfg.model)
    data = instantiate(cfg.data, processor=vlm.processor, family=vlm.family)
    module = build_module(cfg, vlm, data)
    metrics = instantiate(cfg.metrics)
    evaluator = GenerationEval(metrics=metrics)
    before = copy.deepcopy(vlm.model.state_dict())
    trainer = L.Trainer(max_steps=40, val_check_interval=40, check_val_every_n_epoch=None,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        callbacks=[evaluator], default_root_dir=tmp_path,
                        num_sanity_val_steps=0)
    initial = trainer.validate(module, datamodule=data, verbose=False)[0]
    trainer.fit(module, datamodule=data)
    final = trainer.callback_metrics
    after = vlm.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    # every trained tensor moved: vision tower, projector and language model alike
    assert {k for k in before if "visual" in k} & set(changed)
    assert {k for k in before if "language_model" in k} & set(changed)
    assert len(changed) == len([p for p in vlm.model.parameters() if p.requires_grad])
    assert final["val/loss"] < initial["val/loss"] - 1.0, (initial, final)
    # generation metrics were computed and logged on the whole val split
    assert "val/exact_match" in final and 0.0 <= float(final["val/exact_match"]) <= 1.0
    # 40 steps teach the answer format (end-of-turn, answer vocabulary) before answers are
    # right, so the teacher-forced token accuracy is the metric that must have moved
    assert final["val/token_accuracy"] > initial["val/token_accuracy"] + 0.2, (initial, final)


def test_secrets_are_redacted_from_logged_config_and_argv():
    from vlmtrain.tracking.wandb import redact, redact_argv

    cfg = {"logger": {"wandb": {"api_key": "k1", "project": "p"}}, "hf_token": "t", "lr": 1e-3,
           "nested": [{"password": "x"}]}
    assert redact(cfg) == {"logger": {"wandb": {"api_key": "***", "project": "p"}},
                           "hf_token": "***", "lr": 1e-3, "nested": [{"password": "***"}]}
    assert redact_argv(["prog", "+wandb_api_key=abc", "lr=1", "+x.secret=s"]) == [
        "prog", "+wandb_api_key=***", "lr=1", "+x.secret=***"]


def test_epoch_reaches_the_training_dataset():
    from types import SimpleNamespace

    from vlmtrain.data.datamodule import VLMDataModule
    from vlmtrain.data.shapes import ShapesDataset
    from vlmtrain.module import VLMModule

    data = ShapesDataset("caption", "train", size=4, image_size=48)
    first = data[0].target
    dm = VLMDataModule(train=data, processor=SimpleNamespace(tokenizer=SimpleNamespace(
        pad_token_id=0, eos_token_id=0)), family=object())
    VLMModule.on_train_epoch_start(SimpleNamespace(trainer=SimpleNamespace(datamodule=dm),
                                                   current_epoch=1))
    assert data.epoch == 1 and data[0].target != first
