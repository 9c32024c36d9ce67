"""Masked cross-entropy against hand-worked numbers and torch's full-sequence reference."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch.testing import assert_close

from vlmtrain.losses.ce import MaskedCrossEntropy
from vlmtrain.losses.functional import masked_cross_entropy, supervised_positions, token_accuracy


def test_masked_cross_entropy_hand_worked():
    # Vocabulary of 2, two supervised tokens. Logits (0, 0) with target 1 cost -log(1/2);
    # logits (log 3, 0) with target 0 cost -log(3/4); the ignored slot costs nothing.
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]]])
    targets = torch.tensor([[1, 0, -100]])
    loss, n = masked_cross_entropy(logits, targets)
    assert n.item() == 2
    assert_close(loss, torch.tensor((math.log(2) - math.log(3 / 4)) / 2))


def test_mean_is_over_tokens_not_samples():
    # sample 0: one token costing log 2; sample 1: three tokens, one nearly free. The token mean
    # (3 log 2 + ~0) / 4 differs from the mean of per-sample means.
    logits = torch.zeros(2, 3, 2)
    logits[1, 0] = torch.tensor([20.0, 0.0])
    targets = torch.tensor([[1, -100, -100], [0, 1, 1]])
    loss, n = masked_cross_entropy(logits, targets)
    free = F.cross_entropy(torch.tensor([[20.0, 0.0]]), torch.tensor([0]))
    assert n.item() == 4
    assert_close(loss, (3 * math.log(2) + free) / 4)


def test_supervised_positions_shift_and_pad():
    labels = torch.tensor([[-100, -100, 7, 8, -100], [-100, 5, -100, -100, -100]])
    positions, targets = supervised_positions(labels)
    assert positions.tolist() == [[1, 2], [0, 0]]
    assert targets.tolist() == [[7, 8], [5, -100]]


def test_gathered_loss_equals_full_sequence_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(3, 9, 11)
    labels = torch.randint(0, 11, (3, 9))
    labels[0, :6] = -100
    labels[1, :3] = -100
    labels[1, 5:] = -100
    labels[2, :] = -100
    positions, targets = supervised_positions(labels)
    kept = logits.gather(1, positions[..., None].expand(-1, -1, 11))  # what logits_to_keep does
    loss, n = masked_cross_entropy(kept, targets)
    reference = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1),
                                ignore_index=-100)
    assert n.item() == int((labels[:, 1:] != -100).sum())
    assert_close(loss, reference)


def test_no_supervised_token_gives_zero_not_nan():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    loss, n = masked_cross_entropy(logits, torch.full((2, 3), -100))
    assert n.item() == 0 and loss.item() == 0.0
    loss.backward()  # still differentiable, zero gradient
    assert torch.all(logits.grad == 0)


def test_module_logs():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 11)
    targets = torch.randint(0, 11, (3, 4))
    targets[0, 2:] = -100
    out = MaskedCrossEntropy()(SimpleNamespace(logits=logits), {"targets": targets})
    assert out.logs["answer_tokens"].item() == 10
    assert_close(out.logs["token_accuracy"], token_accuracy(logits, targets))
    assert_close(out.loss, F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1)))
