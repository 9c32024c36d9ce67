"""DPO: hand-worked loss values, the [chosen; rejected] layout, references live and cached."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from types import SimpleNamespace

from vlmtrain.data.datamodule import VLMDataModule
from vlmtrain.data.preference import PreferenceCollator
from vlmtrain.data.shapes import ShapesDataset
from vlmtrain.errors import VLMTrainError
from vlmtrain.losses import functional as LF
from vlmtrain.losses.base import Needs
from vlmtrain.losses.ce import MaskedCrossEntropy
from vlmtrain.losses.dpo import DPOLoss
from vlmtrain.models.forward import forward_supervised
from vlmtrain.reference import LiveReference
from vlmtrain.reference_cache import CachedReference


def _pairs(n=4, split="train", seed=0):
    data = ShapesDataset("preference", split, size=n, image_size=48, seed=seed)
    return [data[i] for i in range(n)]


def _one_pair(**kw):
    values = dict(chosen=-2.0, rejected=-3.0, ref_chosen=-2.5, ref_rejected=-2.5,
                  chosen_tokens=2, rejected_tokens=4) | kw
    return LF.PairLogps(*(torch.tensor([float(values[k])]) for k in LF.PairLogps._fields))


# delta = (-2 + 2.5) - (-3 + 2.5) = 1.0, beta = 0.5
@pytest.mark.parametrize(("term", "expected"), [
    (LF.dpo_sigmoid, math.log1p(math.exp(-0.5))),                 # -log sigmoid(0.5)
    (LF.dpo_hinge, 0.5),                                          # relu(1 - 0.5)
    (LF.dpo_ipo, (0.5 / 2 - (-0.5) / 4 - 1.0) ** 2),              # (0.375 - 1/(2*0.5))^2
    (LF.chosen_nll, 2.0 / 2),                                     # -(-2.0) / 2 tokens
])
def test_terms_equal_hand_worked_values(term, expected):
    torch.testing.assert_close(term(_one_pair(), 0.5), torch.tensor([expected]))


def test_robust_dpo_hand_worked_and_reduces_to_sigmoid():
    e = 0.1
    log_s = -math.log1p(math.exp(-0.5))          # log sigmoid(0.5)
    log_s_neg = -math.log1p(math.exp(0.5))       # log sigmoid(-0.5)
    expected = (-(1 - e) * log_s + e * log_s_neg) / (1 - 2 * e)   # 0.411577...
    torch.testing.assert_close(LF.dpo_robust(_one_pair(), 0.5, e), torch.tensor([expected]))
    torch.testing.assert_close(LF.dpo_robust(_one_pair(), 0.5, 0.0),
                               LF.dpo_sigmoid(_one_pair(), 0.5))


def test_rpo_nll_weighs_every_chosen_token_equally():
    pairs = LF.PairLogps(*(torch.tensor(v) for v in (
        [-2.0, -6.0], [-1.0, -1.0], [0.0, 0.0], [0.0, 0.0], [2.0, 4.0], [1.0, 1.0])))
    # 8 nats over 6 tokens, not the mean of per-answer means (1.0 + 1.5) / 2
    torch.testing.assert_close(LF.chosen_nll(pairs), torch.tensor([8 / 6, 8 / 6]))


def test_loss_module_combines_weighted_terms_and_logs_trl_keys():
    logits = torch.randn(4, 3, 11)
    targets = torch.tensor([[1, 2, -100], [3, -100, -100], [4, 5, 6], [7, 8, -100]])
    reference = torch.tensor([-5.0, -6.0, -7.0, -8.0])
    batch = {"targets": targets}
    policy = SimpleNamespace(logits=logits)
    rpo = DPOLoss(beta=0.2, loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5])
    out = rpo(policy, batch, reference)
    logps, tokens = LF.sequence_logps(logits, targets)
    pairs = LF.PairLogps(logps[:2], logps[2:], reference[:2], reference[2:], tokens[:2], tokens[2:])
    want = LF.dpo_sigmoid(pairs, 0.2).mean() + 0.5 * LF.chosen_nll(pairs).mean()
    torch.testing.assert_close(out.loss, want)
    assert set(out.logs) == {f"{a}/{b}" for a, b in [
        ("rewards", "chosen"), ("rewards", "rejected"), ("rewards", "accuracies"),
        ("rewards", "margins"), ("logps", "chosen"), ("logps", "rejected"),
        ("logits", "chosen"), ("logits", "rejected")]}
    chosen_r = 0.2 * (logps[:2] - reference[:2])
    rejected_r = 0.2 * (logps[2:] - reference[2:])
    torch.testing.assert_close(out.logs["rewards/margins"], (chosen_r - rejected_r).mean())
    torch.testing.assert_close(out.logs["logits/chosen"], logits[:2].mean(-1)[targets[:2] != -100].mean())


@pytest.mark.parametrize("kwargs, match", [
    ({"loss_type": "sigmod"}, "use names from"),
    ({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0]}, "one weight per type"),
    ({"beta": 0.0}, "beta=0.0 must be > 0"),
    ({"label_smoothing": 0.5}, r"in \[0, 0.5\)"),
])
def test_bad_settings_fail_in_one_line(kwargs, match):
    with pytest.raises(VLMTrainError, match=match):
        DPOLoss(**kwargs)


def test_pairs_share_prompt_and_image_and_learn_only_their_answer(tiny_vlm):
    samples = _pairs(4)
    batch = PreferenceCollator(tiny_vlm.processor, tiny_vlm.family, 256, with_generation=True)(
        samples)
    tok, inputs, labels = tiny_vlm.processor.tokenizer, batch["inputs"], batch["labels"]
    assert inputs["input_ids"].shape[0] == labels.shape[0] == 8
    pixels = inputs["pixel_values"]
    torch.testing.assert_close(pixels[: len(pixels) // 2], pixels[len(pixels) // 2:])
    for i, s in enumerate(samples):
        for row, answer in ((i, s.target), (i + 4, s.rejected)):
            learned = tok.decode(labels[row][labels[row] != -100])
            assert learned.startswith(answer) and learned[len(answer):] in ("<|im_end|>", "<eos>")
        # the prompt (image tokens included) is the same ids for both answers
        n = int((labels[i] == -100).sum() - (inputs["attention_mask"][i] == 0).sum())
        assert torch.equal(inputs["input_ids"][i][:n], inputs["input_ids"][i + 4][:n])
    assert batch["gen"]["input_ids"].shape[0] == 4 and len(batch["meta"]["ids"]) == 4


def test_pair_layout_rejects_samples_without_rejected_answer(tiny_qwen):
    vqa = ShapesDataset("vqa", "train", size=2, image_size=48)
    with pytest.raises(VLMTrainError, match="has no rejected answer"):
        PreferenceCollator(tiny_qwen.processor, tiny_qwen.family, 256)([vqa[0], vqa[1]])


def _datamodule(vlm, train, val, pairs=True):
    collator = PreferenceCollator if pairs else None
    return VLMDataModule(train, val, processor=vlm.processor, family=vlm.family, batch_size=4,
                         eval_batch_size=8, max_length=128, collator=collator)


def test_data_and_loss_must_fit(tiny_qwen):
    pref = ShapesDataset("preference", "train", size=4, image_size=48)
    vqa = ShapesDataset("vqa", "train", size=4, image_size=48)
    with pytest.raises(VLMTrainError, match="set data.collator._target_=.*PreferenceCollator"):
        _datamodule(tiny_qwen, vqa, None, pairs=False).check_fits(DPOLoss.needs, "DPOLoss")
    with pytest.raises(VLMTrainError, match="vqa-train-000000 has no rejected answer"):
        _datamodule(tiny_qwen, vqa, None).check_fits(DPOLoss.needs, "DPOLoss")
    with pytest.raises(VLMTrainError, match="preference pairs .* use loss=dpo"):
        _datamodule(tiny_qwen, pref, None, pairs=False).check_fits(Needs(), "MaskedCrossEntropy")
    _datamodule(tiny_qwen, pref, None).check_fits(DPOLoss.needs, "DPOLoss")  # fits


def _module(vlm, reference):
    from vlmtrain.module import VLMModule

    return VLMModule(vlm, DPOLoss(), optimizer=torch.optim.AdamW, reference=reference)


def test_frozen_reference_stays_out_of_optimizer_and_checkpoint(tiny_qwen):
    module = _module(tiny_qwen, LiveReference("frozen"))
    ref = module.reference.model
    assert ref is not tiny_qwen.model and not ref.training
    assert not any(p.requires_grad for p in ref.parameters())
    ids = {id(p) for p in module.parameters()}
    assert not ids & {id(p) for p in ref.parameters()}
    assert set(module.state_dict()) == {f"model.{k}" for k in tiny_qwen.model.state_dict()}
    with pytest.raises(VLMTrainError, match="needs reference log-probs"):
        _module(tiny_qwen, None)
    with pytest.raises(VLMTrainError, match="reference.mode=adapter needs a LoRA model"):
        _module(tiny_qwen, LiveReference("adapter"))


def test_cached_reference_equals_live_and_is_fingerprinted(tiny_qwen, tmp_path, caplog):
    dm = _datamodule(tiny_qwen, ShapesDataset("preference", "train", size=12, image_size=48),
                     ShapesDataset("preference", "val", size=8, image_size=48))
    module = _module(tiny_qwen, CachedReference("frozen", cache_dir=str(tmp_path)))
    live = LiveReference("frozen")
    live.attach(tiny_qwen.model)
    with caplog.at_level(logging.INFO, logger="vlmtrain.reference_cache"):
        module.reference.prepare(module, dm)
    assert "computing it" in caplog.text
    batch = dm.train_collator(_pairs(4))  # another batch composition than the cache's
    cached = module.reference.logps(batch, "train")
    torch.testing.assert_close(cached, live.logps(batch), rtol=0, atol=1e-6)
    loss = DPOLoss()
    policy = forward_supervised(tiny_qwen.model.eval(), batch)
    torch.testing.assert_close(loss(policy, batch, cached).loss,
                               loss(policy, batch, live.logps(batch)).loss, rtol=0, atol=1e-6)
    tiny_qwen.model.train()
    # the same data, weights and tokenisation reuse the file; changed data is recomputed, and
    # the log says what changed
    again = _module(tiny_qwen, CachedReference("frozen", cache_dir=str(tmp_path)))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vlmtrain.reference_cache"):
        again.reference.prepare(again, dm)
    assert "stale" not in caplog.text and "using" in caplog.text
    other = _datamodule(tiny_qwen, ShapesDataset("preference", "train", size=12, image_size=48,
                                                 seed=1), dm.val_set)
    fresh = _module(tiny_qwen, CachedReference("frozen", cache_dir=str(tmp_path)))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vlmtrain.reference_cache"):
        fresh.reference.prepare(fresh, other)
    assert "stale: the data changed" in caplog.text
    assert len(list(tmp_path.glob("*.pt"))) == 2
