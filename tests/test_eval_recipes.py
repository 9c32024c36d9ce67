"""Evaluation without training: ``+recipe=eval_*`` validates a trained model given as a run
folder, a Hugging Face folder or a Lightning checkpoint, and prints what training logged."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_vlmtrain
from vlmtrain.callbacks.run_record import read_record
from vlmtrain.eval_source import resolve_eval_source
from vlmtrain.errors import VLMTrainError

DATA = ["data.val.size=16", "data.eval_batch_size=16"]
TRAIN = ["+recipe=sft_vqa", "data.train.datasets.0.size=16", "data.train.datasets.1.size=16",
         "data.train.datasets.2.size=48", "data.batch_size=8", "trainer.max_steps=8",
         "trainer.val_check_interval=100000", "logger=csv", *DATA]


def _printed_metrics(stdout: str) -> dict[str, float]:
    line = next(x for x in stdout.splitlines() if x.startswith("metrics: "))
    return json.loads(line.removeprefix("metrics: "))


@pytest.mark.slow
def test_eval_recipe_prints_what_the_training_run_logged(tmp_path):
    run = tmp_path / "train"
    trained = run_vlmtrain(*TRAIN, f"hydra.run.dir={run}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    logged = {k: v["value"] for k, v in read_record(run)["metrics"]["final"].items()}
    assert {"val/loss", "val/exact_match", "val/f1", "val/vqa_accuracy"} <= set(logged)

    sources = {"run folder": [f"eval_from={run}"],
               "Hugging Face folder": [f"model.name_or_path={run}/hf_model"],
               "Lightning checkpoint": [f"eval_from={run}/checkpoints/last.ckpt"]}
    for name, args in sources.items():
        out = run_vlmtrain("+recipe=eval_vqa", *args, *DATA, "logger=csv",
                           f"hydra.run.dir={tmp_path / name.replace(' ', '_')}")
        assert out.returncode == 0, (name, out.stderr[-3000:])
        assert "evaluation finished" in out.stdout
        printed = _printed_metrics(out.stdout)
        for key in ("val/exact_match", "val/f1", "val/vqa_accuracy"):
            assert printed[key] == logged[key], (name, key)
        assert printed["val/loss"] == pytest.approx(logged["val/loss"], rel=1e-6), name
        # per question type, as the recipe asks
        assert any(k.startswith("val/exact_match/") for k in printed), name
        assert not (tmp_path / name.replace(" ", "_") / "hf_model").exists()  # nothing trained

    # no model given: the embedded default as shipped (untrained), so another loss
    shipped = run_vlmtrain("+recipe=eval_vqa", *DATA, "logger=csv",
                           f"hydra.run.dir={tmp_path / 'shipped'}")
    assert shipped.returncode == 0, shipped.stderr[-3000:]
    assert _printed_metrics(shipped.stdout)["val/loss"] > logged["val/loss"] + 0.1


def test_eval_from_a_path_that_is_no_model_fails_in_one_line(tmp_path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"eval_from": str(tmp_path), "model": {"name_or_path": "x"}})
    with pytest.raises(VLMTrainError, match="not a Lightning checkpoint file, a run folder"):
        resolve_eval_source(cfg)
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("model: {name_or_path: x}\n")
    with pytest.raises(VLMTrainError, match="neither hf_model/"):
        resolve_eval_source(cfg)
    (tmp_path / "hf_model").mkdir()
    (tmp_path / "hf_model" / "config.json").write_text("{}")
    resolved, ckpt = resolve_eval_source(cfg)
    assert resolved.model.name_or_path == str(tmp_path / "hf_model") and ckpt is None
