"""Focal loss against masked CE, hand-worked numbers and the softmax formula written out."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch.testing import assert_close

from vlmtrain.errors import VLMTrainError
from vlmtrain.losses.focal import FocalLoss
from vlmtrain.losses.functional import focal_loss, masked_cross_entropy


def _batch(seed: int = 0, n: int = 3, k: int = 5, v: int = 13):
    torch.manual_seed(seed)
    logits = 3 * torch.randn(n, k, v)
    targets = torch.randint(0, v, (n, k))
    targets[0, 3:] = -100  # answers of different lengths, one sample fully padded past k=1
    targets[2, 1:] = -100
    return logits, targets


def test_gamma_zero_without_alpha_is_masked_cross_entropy_exactly():
    logits, targets = _batch()
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    focal, n_focal = focal_loss(a, targets, gamma=0.0)
    ce, n_ce = masked_cross_entropy(b, targets)
    assert n_focal == n_ce
    assert torch.equal(focal, ce)
    focal.backward()
    ce.backward()
    assert torch.equal(a.grad, b.grad)


def test_hand_worked_two_tokens():
    # Vocabulary of 2. Token 1: logits (0, 0), target 1 -> p_t = 1/2, (1 - p_t)^2 = 1/4,
    # loss = -(1/4) log(1/2) = log(2) / 4. Token 2: logits (log 3, 0), target 0 -> p_t = 3/4,
    # (1/4)^2 = 1/16, loss = -(1/16) log(3/4) = log(4/3) / 16. The third slot is ignored.
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [9.0, -9.0]]])
    targets = torch.tensor([[1, 0, -100]])
    loss, n = focal_loss(logits, targets, gamma=2.0)
    assert n.item() == 2
    assert_close(loss, torch.tensor((math.log(2) / 4 + math.log(4 / 3) / 16) / 2))
    # per-class alpha: alpha_t = alpha[target] = 1.0 for token 1, 0.25 for token 2; the mean
    # still divides by the 2 tokens, not by the 1.25 of summed weights
    loss, _ = focal_loss(logits, targets, gamma=2.0, alpha=torch.tensor([0.25, 1.0]))
    assert_close(loss, torch.tensor((math.log(2) / 4 + 0.25 * math.log(4 / 3) / 16) / 2))
    # a scalar alpha scales every token
    loss, _ = focal_loss(logits, targets, gamma=2.0, alpha=0.5)
    assert_close(loss, torch.tensor(0.5 * (math.log(2) / 4 + math.log(4 / 3) / 16) / 2))


def _softmax_formula(logits, targets, gamma, alpha):
    # Lin et al. 2017 eq. 5 with the softmax written out: p = exp(z_y) / sum_j exp(z_j).
    mask = targets != -100
    z = logits[mask].double()
    y = targets[mask]
    p = torch.exp(z)[torch.arange(len(y)), y] / torch.exp(z).sum(-1)
    if alpha is None:
        alpha_t = torch.ones_like(p)
    elif isinstance(alpha, float):
        alpha_t = torch.full_like(p, alpha)
    else:
        alpha_t = alpha.double()[y]
    return (-alpha_t * (1 - p) ** gamma * torch.log(p)).sum() / len(y)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [None, 0.25, "per-class"])
def test_matches_softmax_formula_values_and_gradients(gamma, alpha):
    logits, targets = _batch(seed=1)
    if alpha == "per-class":
        alpha = torch.rand(logits.shape[-1], generator=torch.Generator().manual_seed(2))
    ours_in = logits.clone().requires_grad_()
    ref_in = logits.clone().double().requires_grad_()
    ours, _ = focal_loss(ours_in, targets, gamma=gamma, alpha=alpha)
    ref = _softmax_formula(ref_in, targets, gamma, alpha)
    assert_close(ours.double(), ref, rtol=1e-5, atol=1e-7)
    ours.backward()
    ref.backward()
    assert_close(ours_in.grad.double(), ref_in.grad, rtol=1e-4, atol=1e-7)


def test_focusing_down_weights_easy_tokens():
    # an easy token (p_t ~ 0.99) and a hard one (p_t ~ 0.01): with gamma=2 the easy token's
    # share of the loss falls from ~0.2% (CE) to ~1e-6 %
    logits = torch.tensor([[[math.log(99.0), 0.0], [0.0, math.log(99.0)]]])
    easy, hard = torch.tensor([[0, -100]]), torch.tensor([[-100, 0]])
    ce_ratio = masked_cross_entropy(logits, easy)[0] / masked_cross_entropy(logits, hard)[0]
    fl_ratio = focal_loss(logits, easy, 2.0)[0] / focal_loss(logits, hard, 2.0)[0]
    assert_close(fl_ratio, ce_ratio * (0.01 / 0.99) ** 2)


def test_certain_token_has_finite_gradient_for_small_gamma():
    # p_t rounds to exactly 1 in float32: d(1 - p)^0.5 / dp is infinite there
    logits = torch.tensor([[[200.0, 0.0], [0.0, 0.0]]], requires_grad=True)
    loss, _ = focal_loss(logits, torch.tensor([[0, 1]]), gamma=0.5)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_no_supervised_token_gives_zero_not_nan():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    loss, n = focal_loss(logits, torch.full((2, 3), -100))
    assert n.item() == 0 and loss.item() == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_negative_gamma_fails_at_construction_in_one_line():
    with pytest.raises(VLMTrainError) as err:
        FocalLoss(gamma=-1.0)
    message = str(err.value)
    assert "loss.gamma=-1.0" in message and "loss.gamma to 0" in message
    assert "\n" not in message


def test_module_with_per_class_alpha_and_logs():
    logits, targets = _batch(seed=3)
    logits.requires_grad_()
    alpha = [0.5] * logits.shape[-1]
    out = FocalLoss(gamma=2.0, alpha=alpha)(SimpleNamespace(logits=logits), {"targets": targets})
    assert_close(out.loss, 0.5 * focal_loss(logits, targets, 2.0)[0])
    assert_close(out.logs["ce"], masked_cross_entropy(logits, targets)[0])
    assert out.logs["answer_tokens"].item() == int((targets != -100).sum())
    assert out.loss.requires_grad and not any(v.requires_grad for v in out.logs.values())


def test_alpha_with_wrong_length_names_both_sizes():
    logits, targets = _batch()
    with pytest.raises(VLMTrainError, match="3 weights but the model's vocabulary has 13"):
        FocalLoss(alpha=[1.0, 1.0, 1.0])(SimpleNamespace(logits=logits), {"targets": targets})
    with pytest.raises(VLMTrainError, match="loss.alpha"):
        FocalLoss(alpha=-0.5)
