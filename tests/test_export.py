"""``python -m vlmtrain.export``: the exported folder loads with from_pretrained and answers as
the trained module does (adapter alone, merged, and a full fine-tune; both tiny families)."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf
from peft import PeftModel
from transformers import AutoModelForImageTextToText, AutoProcessor

from vlmtrain.__main__ import register_recipes
from vlmtrain.data.shapes import ShapesDataset
from vlmtrain.errors import VLMTrainError
from vlmtrain.export import export, main
from vlmtrain.paths import config_dir
from vlmtrain.train import build_module

LORA = "model.lora={r:4,alpha:16,dropout:0.0,target_modules:null}"
INPUTS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "token_type_ids",
          "mm_token_type_ids")


def _train_run(root, model: str, *overrides: str):
    """A run folder as ``python -m vlmtrain`` leaves it: .hydra/config.yaml + last.ckpt."""
    register_recipes()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[
            "+recipe=sft_vqa", f"model={model}", "data.train.datasets.0.size=0",
            "data.train.datasets.1.size=0", "data.train.datasets.2.size=32", "data.val.size=4",
            "data.batch_size=8", "optim.optimizer.lr=0.01", "optim.scheduler.num_warmup_steps=0",
            *overrides])
    (root / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, root / ".hydra" / "config.yaml")  # unresolved, as Hydra writes it
    L.seed_everything(0)
    vlm = instantiate(cfg.model)
    data = instantiate(cfg.data, processor=vlm.processor, family=vlm.family)
    module = build_module(cfg, vlm, data)
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0, num_sanity_val_steps=0,
                        default_root_dir=root)
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(root / "checkpoints" / "last.ckpt")
    return vlm


def _answers(model, processor, family) -> tuple[list[list[int]], torch.Tensor]:
    """Greedy answer ids for 3 validation samples, and the first prompt's logits."""
    model.eval()
    samples = [ShapesDataset(task="vqa", split="val", size=3, image_size=48)[i] for i in range(3)]
    answers, logits = [], None
    with torch.no_grad():
        for s in samples:
            enc = processor(text=[family.prompt_text(processor, s.prompt)], images=[s.image],
                            return_tensors="pt")
            enc = {k: v for k, v in enc.items() if k in INPUTS}
            if logits is None:
                logits = model(**enc).logits[0, -1]
            out = model.generate(**enc, max_new_tokens=6, do_sample=False)
            answers.append(out[0, enc["input_ids"].shape[1]:].tolist())
    return answers, logits


@pytest.fixture(scope="module", params=["tiny_qwen2_5_vl", "tiny_paligemma"])
def lora_run(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param) / "run"
    vlm = _train_run(root, request.param, LORA)
    return root, vlm, _answers(vlm.model, vlm.processor, vlm.family)


def test_adapter_alone_loads_with_from_pretrained(lora_run, tmp_path):
    root, vlm, (answers, logits) = lora_run
    out = export(root, tmp_path / "adapter")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == vlm.name_or_path
    assert (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()  # the adapter alone, not the whole model
    processor = AutoProcessor.from_pretrained(out)
    loaded = AutoModelForImageTextToText.from_pretrained(out)  # base + adapter (PEFT integration)
    got, got_logits = _answers(loaded, processor, vlm.family)
    assert got == answers
    torch.testing.assert_close(got_logits, logits, rtol=1e-5, atol=1e-5)
    base = AutoModelForImageTextToText.from_pretrained(vlm.name_or_path)
    peft = PeftModel.from_pretrained(base, out)
    torch.testing.assert_close(_answers(peft, processor, vlm.family)[1], logits, rtol=1e-5,
                               atol=1e-5)
    # the adapter matters: without it the logits differ (training moved the LoRA weights)
    plain = AutoModelForImageTextToText.from_pretrained(vlm.name_or_path)
    assert not torch.allclose(_answers(plain, processor, vlm.family)[1], logits, atol=1e-3)


def test_merged_model_answers_the_same(lora_run, tmp_path):
    root, vlm, (answers, logits) = lora_run
    out = export(root / "checkpoints" / "last.ckpt", tmp_path / "merged", merge=True)
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    loaded = AutoModelForImageTextToText.from_pretrained(out)
    assert not any("lora" in name for name, _ in loaded.named_parameters())
    got, got_logits = _answers(loaded, AutoProcessor.from_pretrained(out), vlm.family)
    assert got == answers
    torch.testing.assert_close(got_logits, logits, rtol=1e-4, atol=1e-4)  # W + BA folded


def test_full_fine_tune_and_cli(tmp_path, capsys):
    root = tmp_path / "run"
    vlm = _train_run(root, "tiny_qwen2_5_vl")
    answers, logits = _answers(vlm.model, vlm.processor, vlm.family)
    assert main([str(root), "--out", str(tmp_path / "full")]) == 0
    assert "AutoModelForImageTextToText.from_pretrained" in capsys.readouterr().out
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "full")
    got, got_logits = _answers(loaded, AutoProcessor.from_pretrained(tmp_path / "full"),
                               vlm.family)
    assert got == answers
    torch.testing.assert_close(got_logits, logits, rtol=1e-5, atol=1e-5)
    assert main([str(root), "--out", str(tmp_path / "full")]) == 1  # not empty: refuse
    assert "is not empty; choose a new folder or pass --overwrite" in capsys.readouterr().err


def test_errors_name_what_to_pass(tmp_path):
    with pytest.raises(VLMTrainError, match="does not exist; pass a run folder or a .ckpt"):
        export(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "step5.ckpt").write_bytes(b"")
    with pytest.raises(VLMTrainError, match=r"last.ckpt does not exist; pass one of the run's "
                                            r"checkpoints instead: checkpoints/step5.ckpt"):
        export(tmp_path / "run", tmp_path / "out")
    with pytest.raises(VLMTrainError, match="no .hydra/config.yaml in a folder above"):
        export(tmp_path / "run" / "checkpoints" / "step5.ckpt", tmp_path / "out")
