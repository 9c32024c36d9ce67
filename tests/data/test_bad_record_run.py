"""A bad image found late in an epoch under on_bad_sample=skip: counted, logged, run goes on."""

from __future__ import annotations

import json

import lightning as L
import torch
from PIL import Image

from vlmtrain.data.datamodule import VLMDataModule
from vlmtrain.data.jsonl import jsonl_dataset
from vlmtrain.losses.ce import MaskedCrossEntropy
from vlmtrain.module import VLMModule


def _adamw(params):
    return torch.optim.AdamW(params, lr=1e-3)


def test_corrupt_image_mid_epoch_is_skipped_and_counted(tiny_qwen, tmp_path):
    lines = []
    for i in range(12):
        Image.new("RGB", (48, 48), (20 * i, 100, 200)).save(tmp_path / f"{i}.png")
        lines.append(json.dumps({"id": f"q{i}", "image": f"{i}.png", "prompt": "What colour?",
                                 "answer": "blue"}))
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    train = jsonl_dataset(str(tmp_path / "train.jsonl"), on_bad_sample="skip")
    # files that break after the start-up check: found only when the batch is read
    (tmp_path / "9.png").write_bytes(b"not a png at all")
    for i in (4, 5, 6, 7):  # a whole batch of them: its step is skipped, the run goes on
        (tmp_path / f"{i}.png").write_bytes(b"\x89PNG truncated")
    data = VLMDataModule(train, None, processor=tiny_qwen.processor, family=tiny_qwen.family,
                         batch_size=4, max_length=128, shuffle=False, on_bad_sample="skip")
    module = VLMModule(tiny_qwen, MaskedCrossEntropy(), optimizer=_adamw)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, accelerator="cpu")
    trainer.fit(module, datamodule=data)
    # 3 batches: one whole, one skipped, one with 3 of 4 samples
    assert trainer.global_step == 2
    assert data.skipped_by_reason() == {"data/skipped/unreadable_image": 5}
    assert data.skipped == 5
