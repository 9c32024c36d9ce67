"""What a run reports and keeps: the summary's reasons, interval checkpoints, the doc recipe."""

from __future__ import annotations

import random
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers.logger import DummyLogger

from tests.conftest import run_vlmtrain
from vlmtrain.__main__ import register_recipes
from vlmtrain.data.shapes import ShapesDataset
from vlmtrain.data.shapes_doc import DOC_QTYPES, make_doc_question, min_page_size
from vlmtrain.paths import config_dir
from vlmtrain.summary import checkpoint_report, is_count, logger_rows


def test_counts_are_not_metrics():
    assert is_count("val/answer_tokens") and is_count("train/num_samples")
    assert not is_count("val/exact_match") and not is_count("train/tokens_per_sec")
    # a per-group score whose group is named "count" (shapes question type) is a score
    assert not is_count("val/exact_match/count") and not is_count("val/f1/num")


def _trainer(callbacks, metrics, fast_dev_run=False):
    return SimpleNamespace(checkpoint_callbacks=callbacks, callback_metrics=metrics,
                           fast_dev_run=fast_dev_run)


def test_missing_best_checkpoint_says_why(tmp_path):
    cb = ModelCheckpoint(dirpath=tmp_path, monitor="val/cider", save_last=True)
    cb.last_model_path = str(tmp_path / "last.ckpt")
    logged = {"val/exact_match": torch.tensor(0.5), "val/answer_tokens": torch.tensor(3.0)}
    report = checkpoint_report(_trainer([cb], logged))
    assert report["last"] == str(tmp_path / "last.ckpt")
    assert report["best"] == ("none (val/cider was never logged; set objective= to one of "
                              "val/exact_match)")
    assert "no validation ran" in checkpoint_report(_trainer([cb], {}))["best"]
    assert "fast_dev_run" in checkpoint_report(_trainer([cb], {}, fast_dev_run=True))["best"]
    assert checkpoint_report(_trainer([], {}))["best"] == "none (checkpointing is off)"
    cb.best_model_path = str(tmp_path / "step4.ckpt")
    assert checkpoint_report(_trainer([cb], logged))["best"] == str(tmp_path / "step4.ckpt")


def test_dummy_logger_prints_no_method():
    assert logger_rows(DummyLogger()) == [("logs", "none (loggers are off under fast_dev_run)")]


def _callbacks_cfg(*overrides: str):
    register_recipes()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("train", overrides=["+recipe=sft_vqa", *overrides]).callbacks


def test_interval_checkpoint_is_written_without_validation(tmp_path):
    # Shipped config, Lightning's BoringModel, no validation at all: last.ckpt follows the step
    # interval (3 -> steps 3 and 6 of 7).
    cfg = _callbacks_cfg("callbacks.interval_checkpoint.every_n_train_steps=3")
    cfg.interval_checkpoint.dirpath = str(tmp_path / "checkpoints")
    interval = instantiate(cfg.interval_checkpoint)
    saved = []

    class Spy(L.Callback):
        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            saved.append(trainer.global_step)

    trainer = L.Trainer(max_steps=7, limit_val_batches=0, callbacks=[interval, Spy()],
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(BoringModel())
    assert saved == [3, 6]
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 6
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]


def test_time_interval_is_one_override(tmp_path):
    cfg = _callbacks_cfg("callbacks.interval_checkpoint.every_n_train_steps=null",
                         "callbacks.interval_checkpoint.train_time_interval="
                         "{_target_: datetime.timedelta, minutes: 30}")
    cfg.interval_checkpoint.dirpath = str(tmp_path)
    cb = instantiate(cfg.interval_checkpoint)
    assert cb._train_time_interval.total_seconds() == 1800 and cb._every_n_train_steps == 0


@pytest.mark.parametrize("max_words", [1, 4, 6, 8])
def test_doc_pages_fit_at_their_minimum_size(max_words):
    # At the smallest size the dataset accepts, every printed string lies whole inside the page
    # and no two lines overlap.
    size = min_page_size(max_words)
    rng = random.Random(max_words)
    for i in range(150):
        qtype = DOC_QTYPES[i % len(DOC_QTYPES)]
        if qtype == "below" and max_words == 1:
            continue
        doc = make_doc_question(rng, qtype, "train", size, max_words)
        for item in doc.items:
            x0, y0, x1, y1 = item.box
            assert 0 <= x0 and x1 <= size and 0 <= y0 and y1 <= size, (item, size)
        for upper, lower in zip(doc.items, doc.items[1:]):
            assert upper.box[3] <= lower.box[1], (doc.items, size)
    with pytest.raises(ValueError, match=f"doc_image_size >= {size}"):
        ShapesDataset("doc", doc_image_size=size - 1, doc_max_words=max_words)


def test_default_scene_size_holds_a_page():
    assert min_page_size(4) == 48 and min_page_size(8) == 96
    sample = ShapesDataset("doc", "val", size=1, doc_image_size=48)[0]
    assert sample.image.size == (48, 48) and sample.target


def test_doc_recipe_runs_as_shipped_and_logs_anls(tmp_path):
    result = run_vlmtrain("+recipe=sft_docvqa", "logger=csv", "trainer.max_steps=2",
                          "trainer.val_check_interval=2", "data.val.size=16",
                          "data.batch_size=8", "data.eval_batch_size=16",
                          f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    anls = [r.split(",")[header.index("val/anls")] for r in rows[1:]]
    assert any(v != "" and 0.0 <= float(v) <= 1.0 for v in anls), rows
    assert "val/anls" in result.stdout
