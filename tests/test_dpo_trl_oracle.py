"""The TRL oracle is checked by hand: a plain forward and the DPO formula give TRL's numbers.

If the oracle fed TRL something other than what it returns (tensors, reference, mode), the
parity tests built on it would compare against the wrong numbers; this recomputes TRL's sigmoid
loss, its logged values and its gradients from the returned tensors without TRL's code.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from dpo_trl_oracle import (LOGGED_KEYS, lora_tiny_qwen, synthetic_examples, trl_dpo_step,
                            vlmtrain_batch)

BETA = 0.1


@pytest.fixture(scope="module")
def lora_qwen():
    return lora_tiny_qwen()


@pytest.fixture(scope="module")
def examples():
    return synthetic_examples(n=3, image_size=48, seed=0)


@pytest.fixture(scope="module")
def sigmoid_step(lora_qwen, examples):
    return trl_dpo_step(lora_qwen.model, lora_qwen.processor, examples, beta=BETA)


def _hand_logps(model, batch, adapter: bool):
    """Summed completion log-probs (2B,), full logits (2B, T-1, V), completion mask (2B, T-1)."""
    ctx = torch.enable_grad() if adapter else model.disable_adapter()
    with ctx:
        logits = model(**batch["inputs"], use_cache=False).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    mask = targets != -100
    per_token = logits.log_softmax(-1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    return (per_token * mask).sum(1), logits, mask


def test_sigmoid_step_matches_hand_computation(lora_qwen, examples, sigmoid_step):
    model, step = lora_qwen.model, sigmoid_step
    batch = vlmtrain_batch(step)
    model.train()  # TRL's training_step mode (dropout is 0 in both)
    model.zero_grad(set_to_none=True)
    logps, logits, mask = _hand_logps(model, batch, adapter=True)
    with torch.no_grad():
        ref, _, _ = _hand_logps(model, batch, adapter=False)
    b = len(examples)
    ratio_c, ratio_r = logps[:b] - ref[:b], logps[b:] - ref[b:]
    loss = -F.logsigmoid(BETA * (ratio_c - ratio_r)).mean()
    loss.backward()

    assert_close(step.loss, loss.detach(), rtol=0, atol=1e-6)
    r_c, r_r = BETA * ratio_c.detach(), BETA * ratio_r.detach()
    vocab_mean = logits.detach().mean(-1)
    expected = {
        "rewards/chosen": r_c.mean(), "rewards/rejected": r_r.mean(),
        "rewards/accuracies": (r_c > r_r).float().mean(), "rewards/margins": (r_c - r_r).mean(),
        "logps/chosen": logps[:b].mean(), "logps/rejected": logps[b:].mean(),
        # token-weighted over the batch: mean over the vocabulary, then over completion tokens
        "logits/chosen": vocab_mean[:b][mask[:b]].mean(),
        "logits/rejected": vocab_mean[b:][mask[b:]].mean(),
    }
    for key in LOGGED_KEYS:
        assert step.metrics[key] == pytest.approx(expected[key].item(), abs=1e-5), key
    # the perturbed adapter must make the comparison meaningful, not sit at log 2
    assert abs(step.loss.item() - 0.6931) > 1e-3
    assert 0 < step.metrics["rewards/accuracies"] < 1 or abs(step.metrics["rewards/margins"]) > 0.01

    trained = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert set(trained) == set(step.grads) and trained
    # fp32 noise of two log-softmax implementations (TRL's chunked head, torch's) back through
    # the layers: ~1e-5 of a tensor's largest entry at most, |grad| up to ~0.1 here
    for name, grad in trained.items():
        assert_close(step.grads[name], grad, rtol=1e-4, atol=1e-6)
    model.zero_grad(set_to_none=True)


def test_trl_batch_layout(lora_qwen, examples, sigmoid_step):
    # vlmtrain's preference layout is TRL's: rows [chosen; rejected], pair i = rows i and B+i
    # with the same prompt, completion = the answer and the chat template's "<|im_end|>\n".
    tok = lora_qwen.processor.tokenizer
    batch, b = sigmoid_step.batch, len(examples)
    ids, comp, att = batch["input_ids"], batch["completion_mask"].bool(), batch["attention_mask"]
    assert ids.shape[0] == 2 * b and batch["image_grid_thw"].shape[0] == 2 * b
    for i, ex in enumerate(examples):
        for row, answer in ((i, ex.chosen), (b + i, ex.rejected)):
            expected = tok(answer + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
            assert ids[row][comp[row]].tolist() == expected
            n_prompt = int(comp[row].nonzero()[0])
            assert att[row][:n_prompt].all() and not comp[row][:n_prompt].any()
        prompt = ids[i][: int(comp[i].nonzero()[0])]
        assert torch.equal(ids[b + i][: len(prompt)], prompt)
    # each image is encoded twice, once for its chosen row and once for its rejected row
    half = batch["pixel_values"].shape[0] // 2
    assert torch.equal(batch["pixel_values"][:half], batch["pixel_values"][half:])


def test_oracle_leaves_model_as_found(lora_qwen, sigmoid_step):
    model = lora_qwen.model
    assert list(model.peft_config) == ["default"]
    assert "forward" not in model.get_base_model().__dict__
