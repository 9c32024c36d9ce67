"""vlmtrain's DPO equals TRL 1.16 ``DPOTrainer`` on the same tiny Qwen2.5-VL + LoRA and batch.

TRL runs its own training step (``dpo_trl_oracle``); vlmtrain runs its own path on exactly the
tokens TRL fed the model: ``forward_supervised`` (logits only at supervised positions), the live
reference (the policy with its LoRA adapter disabled, TRL's reference for a new adapter) and
``DPOLoss``. Loss and the eight logged values must agree within 1e-5 for every loss type users
pick from TRL, gradients too for ``sigmoid``.

The adapter is randomised first so that policy and reference differ (a fresh LoRA has B = 0),
and each loss type gets a beta that puts its non-linearity to work: hinge with pairs on both
sides of its kink, robust with real label smoothing, RPO with unequal weights.
"""

from __future__ import annotations

import pytest
from torch.testing import assert_close

from dpo_trl_oracle import (LOGGED_KEYS, lora_tiny_qwen, synthetic_examples, trl_dpo_step,
                            vlmtrain_batch)
from vlmtrain.losses.dpo import DPOLoss
from vlmtrain.models.forward import forward_supervised
from vlmtrain.reference import LiveReference

CASES = {
    "sigmoid": dict(beta=0.1, loss_type=["sigmoid"]),
    "ipo": dict(beta=0.1, loss_type=["ipo"]),
    "hinge": dict(beta=5.0, loss_type=["hinge"]),
    "robust": dict(beta=1.0, loss_type=["robust"], label_smoothing=0.2),
    "rpo": dict(beta=0.1, loss_type=["sigmoid", "sft"], loss_weights=[0.7, 1.3]),
}


@pytest.fixture(scope="module")
def lora_qwen():
    return lora_tiny_qwen()


@pytest.fixture(scope="module")
def examples():
    # three pairs whose chosen and rejected answers differ in token length
    return synthetic_examples(n=3, image_size=48, seed=0)


@pytest.fixture(scope="module")
def trl_steps(lora_qwen, examples):
    """TRL's step per case, computed once (a trainer is built per case: each is a config)."""
    cache = {}

    def get(case: str):
        if case not in cache:
            cache[case] = trl_dpo_step(lora_qwen.model, lora_qwen.processor, examples,
                                       **CASES[case])
        return cache[case]

    return get


def _vlmtrain_step(model, step, config: dict):
    """vlmtrain's loss, logs and LoRA gradients on the batch TRL used."""
    batch = vlmtrain_batch(step)
    reference = LiveReference(mode="adapter")
    reference.attach(model)
    model.train()  # as in a training step; dropout is 0 here, as TRL sets it
    model.zero_grad(set_to_none=True)
    ref_logps = reference.logps(batch)
    out = DPOLoss(**config)(forward_supervised(model, batch), batch, ref_logps)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
             if p.requires_grad and p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out, grads


@pytest.mark.parametrize("case", list(CASES))
def test_loss_and_logs_equal_trl(lora_qwen, trl_steps, case):
    trl = trl_steps(case)
    ours, _ = _vlmtrain_step(lora_qwen.model, trl, CASES[case])

    assert abs(ours.loss.item() - trl.loss.item()) <= 1e-5, (ours.loss.item(), trl.loss.item())
    diffs = {k: (ours.logs[k].item(), trl.metrics[k]) for k in LOGGED_KEYS}
    bad = {k: v for k, v in diffs.items() if abs(v[0] - v[1]) > 1e-5}
    assert not bad, f"(vlmtrain, TRL) differ for {bad}"
    # a meaningful comparison: the policy is not its own reference
    assert abs(trl.metrics["rewards/margins"]) > 1e-3


def test_sigmoid_gradients_equal_trl(lora_qwen, trl_steps):
    trl = trl_steps("sigmoid")
    _, grads = _vlmtrain_step(lora_qwen.model, trl, CASES["sigmoid"])

    assert grads and set(grads) == set(trl.grads)
    assert all(".lora_" in name for name in grads)  # only the adapter trains
    # fp32 noise of two log-softmax implementations (TRL's chunked head, torch's), carried
    # back through the layers: ~1e-5 of a tensor's largest entry (|grad| up to ~0.1 here)
    for name, grad in grads.items():
        assert_close(grad, trl.grads[name], rtol=1e-4, atol=1e-6)
    assert max(g.abs().max().item() for g in grads.values()) > 1e-3
