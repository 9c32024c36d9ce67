"""Masked cross-entropy against hand-worked numbers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch.testing import assert_close

from vlmtrain.losses.ce import MaskedCrossEntropy
from vlmtrain.losses.functional import masked_cross_entropy, token_accuracy


def test_masked_cross_entropy_hand_worked():
    # Vocabulary of 2. Position t predicts label t+1; only labels at t=2 (id 1) and t=3 (id 0)
    # are supervised. Logits (0, 0) give -log(1/2); logits (log 3, 0) with target 0 give
    # -log(3/4).
    logits = torch.zeros(1, 4, 2)
    logits[0, 2] = torch.tensor([math.log(3.0), 0.0])
    labels = torch.tensor([[-100, -100, 1, 0]])
    loss, n = masked_cross_entropy(logits, labels)
    expected = (-math.log(1 / 2) - math.log(3 / 4)) / 2
    assert n.item() == 2
    assert_close(loss, torch.tensor(expected))


def test_mean_is_over_tokens_not_samples():
    # Sample 0 has 1 supervised token with loss log 2; sample 1 has 3 with loss log 2 except one
    # confident correct token. Token mean != mean of per-sample means.
    logits = torch.zeros(2, 5, 2)
    logits[1, 1] = torch.tensor([20.0, 0.0])
    labels = torch.tensor([[-100, -100, -100, -100, 1], [-100, -100, 0, 1, 1]])
    loss, n = masked_cross_entropy(logits, labels)
    per_token = torch.tensor([math.log(2), 0.0, math.log(2), math.log(2)])
    per_token[1] = torch.nn.functional.cross_entropy(torch.tensor([[20.0, 0.0]]),
                                                     torch.tensor([0]))
    assert n.item() == 4
    assert_close(loss, per_token.mean())


def test_no_supervised_token_gives_zero_not_nan():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    loss, n = masked_cross_entropy(logits, torch.full((2, 3), -100))
    assert n.item() == 0 and loss.item() == 0.0
    loss.backward()  # still differentiable
    assert torch.all(logits.grad == 0)


def test_module_matches_torch_reference_and_logs():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11)
    labels = torch.randint(0, 11, (3, 7))
    labels[:, :4] = -100
    out = MaskedCrossEntropy()(SimpleNamespace(logits=logits), {"labels": labels})
    ref = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    assert_close(out.loss, ref)
    assert out.logs["answer_tokens"].item() == 9
    assert_close(out.logs["token_accuracy"], token_accuracy(logits, labels))
