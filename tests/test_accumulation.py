"""Masked CE under gradient accumulation: one token mean over the whole optimizer step."""

from __future__ import annotations

import copy
import dataclasses

import lightning as L
import torch

from vlmtrain.data.datamodule import VLMDataModule
from vlmtrain.data.shapes import ShapesDataset
from vlmtrain.data.window import AccumulationWindowLoader
from vlmtrain.losses.ce import MaskedCrossEntropy
from vlmtrain.module import VLMModule


def _samples():
    data = ShapesDataset("vqa", "train", size=8, image_size=48)
    # answers of 1 to 15 words: per-micro-batch token counts differ a lot
    return [dataclasses.replace(data[i], target=" ".join(["circle"] * (1 + 2 * i)))
            for i in range(8)]


def _sgd(params):
    return torch.optim.SGD(params, lr=0.0)


class _Grads(L.Callback):
    def on_before_optimizer_step(self, trainer, module, optimizer):
        self.grads = {n: p.grad.detach().clone() for n, p in module.named_parameters()
                      if p.grad is not None}


def _step_gradient(vlm, batch_size, accumulate, window=None):
    model = copy.deepcopy(vlm.model)
    bundle = dataclasses.replace(vlm, model=model)
    data = VLMDataModule(_samples(), None, processor=vlm.processor, family=vlm.family,
                         batch_size=batch_size, max_length=256, shuffle=False)
    if window is not None:  # the loader without look-ahead: one mean per micro-batch
        def plain():
            return AccumulationWindowLoader(data.train_set, batch_size=batch_size,
                                            collate_fn=data.train_collator, window=window)
        data.train_dataloader = plain
    module = VLMModule(bundle, MaskedCrossEntropy(), optimizer=_sgd)
    grads = _Grads()
    trainer = L.Trainer(max_steps=1, accumulate_grad_batches=accumulate, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[grads], limit_val_batches=0,
                        num_sanity_val_steps=0, accelerator="cpu")
    model.eval()  # no dropout: the two runs must see the same function
    trainer.fit(module, datamodule=data)
    return grads.grads


def test_accumulated_step_equals_one_big_batch(tiny_qwen):
    whole = _step_gradient(tiny_qwen, 8, 1)
    accumulated = _step_gradient(tiny_qwen, 2, 4)
    assert whole.keys() == accumulated.keys()
    for name in whole:
        torch.testing.assert_close(accumulated[name], whole[name], rtol=1e-5, atol=1e-6)
    # a mean per micro-batch (what dividing by accumulate_grad_batches alone gives) differs
    naive = _step_gradient(tiny_qwen, 2, 4, window=1)
    worst = max(float((naive[n] - whole[n]).abs().max()) for n in whole)
    assert worst > 1e-3, worst
