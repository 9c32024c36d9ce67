"""Distillation: the divergence equals TRL's, T^2 and alpha by hand, teacher compatibility."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch.testing import assert_close

from vlmtrain.errors import VLMTrainError
from vlmtrain.losses.functional import distillation_loss, generalized_jsd, masked_cross_entropy
from vlmtrain.losses.kd import DistillationLoss, check_teacher_compatible


def _logits(seed: int = 0, n: int = 3, k: int = 4, v: int = 17):
    torch.manual_seed(seed)
    student, teacher = 2 * torch.randn(n, k, v), 2 * torch.randn(n, k, v)
    targets = torch.randint(0, v, (n, k))
    targets[0, 2:] = -100  # answers of different lengths
    targets[2, 1:] = -100
    return student, teacher, targets


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.7])
def test_divergence_equals_trl_distillation_trainer(beta, temperature):
    # Oracle: TRL 1.16's DistillationTrainer divergence (trl/trainer/distillation_trainer.py),
    # called as the trainer calls it. It takes hidden states and lm_head weights: an identity
    # head makes its logits exactly ours. Same beta convention (0 forward KL, 1 reverse KL),
    # temperature and reduction (mean over the masked-in tokens).
    from trl.trainer.distillation_trainer import _chunked_divergence_loss

    student, teacher, targets = _logits()
    eye = torch.eye(student.shape[-1])
    ours_in = student.clone().requires_grad_()
    trl_in = student.clone().requires_grad_()
    ours, n = generalized_jsd(ours_in, teacher, targets, beta=beta, temperature=temperature)
    ref, _, n_ref = _chunked_divergence_loss(trl_in, teacher, eye, eye, (targets != -100).long(),
                                             beta, temperature=temperature)
    assert n.item() == n_ref.item() == 7
    assert_close(ours, ref, rtol=0, atol=1e-6)
    ours.backward()
    ref.backward()
    assert_close(ours_in.grad, trl_in.grad, rtol=0, atol=1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_divergence_equals_trl_gkd_loss(beta):
    # second oracle: TRL's logits-level GKD loss (experimental/gkd), batchmean over labels
    from trl.experimental.gkd.gkd_trainer import GKDTrainer

    student, teacher, targets = _logits(seed=1)
    ours, _ = generalized_jsd(student, teacher, targets, beta=beta, temperature=1.5)
    ref = GKDTrainer.generalized_jsd_loss(student, teacher, labels=targets, beta=beta,
                                          temperature=1.5)
    assert_close(ours, ref, rtol=0, atol=1e-6)


def test_hand_worked_divergences_and_t_squared():
    # One answer token, vocabulary of 2, target 0, T = 2. Student logits (0, 0) -> p_S = (1/2,
    # 1/2) at any T. Teacher logits (2 log 3, 0) / T = (log 3, 0) -> p_T = (3/4, 1/4).
    student = torch.tensor([[[0.0, 0.0]]])
    teacher = torch.tensor([[[2 * math.log(3.0), 0.0]]])
    targets = torch.tensor([[0]])
    forward_kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    reverse_kl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    # beta = 1/2: mixture m = (5/8, 3/8)
    jsd = 0.5 * (0.75 * math.log(0.75 / 0.625) + 0.25 * math.log(0.25 / 0.375)) + 0.5 * (
        0.5 * math.log(0.5 / 0.625) + 0.5 * math.log(0.5 / 0.375))
    for beta, expected in ((0.0, forward_kl), (1.0, reverse_kl), (0.5, jsd)):
        got, _ = generalized_jsd(student, teacher, targets, beta=beta, temperature=2.0)
        assert_close(got, torch.tensor(expected))
    # loss = alpha CE + (1 - alpha) T^2 KL with CE at T = 1: -log p_S(0) = log 2
    loss, ce, div, n = distillation_loss(student, teacher, targets, alpha=0.25, temperature=2.0)
    assert n.item() == 1
    assert_close(ce, torch.tensor(math.log(2)))
    assert_close(div, torch.tensor(forward_kl))
    assert_close(loss, torch.tensor(0.25 * math.log(2) + 0.75 * 4 * forward_kl))


def test_t_squared_keeps_the_soft_gradient_scale():
    # Hinton et al. 2015, sec. 2: d KL / d z_S = (p_S - p_T) / T, which for zero-mean logits and
    # large T is about (z_S - z_T) / (V T^2); times T^2 it is (z_S - z_T) / V whatever T is.
    student = torch.tensor([[[1.0, -2.0, 0.5, 0.0, 0.5]]])
    teacher = torch.tensor([[[-1.0, 1.0, 2.0, -1.5, -0.5]]])
    targets = torch.tensor([[2]])
    z = student.clone().requires_grad_()
    for temperature in (50.0, 200.0):
        z.grad = None
        loss, *_ = distillation_loss(z, teacher, targets, alpha=0.0, temperature=temperature)
        loss.backward()
        assert_close(z.grad, (student - teacher) / 5, rtol=0, atol=1 / temperature)  # O(1/T) remainder


def test_alpha_one_is_ce_and_identical_models_diverge_by_zero():
    student, _, targets = _logits(seed=3)
    loss, *_ = distillation_loss(student, student.clone(), targets, alpha=1.0, temperature=3.0)
    assert torch.equal(loss, masked_cross_entropy(student, targets)[0])
    for beta in (0.0, 0.3, 1.0):
        div, _ = generalized_jsd(student, student.clone(), targets, beta=beta, temperature=2.0)
        assert_close(div, torch.tensor(0.0), atol=1e-6, rtol=0)


def test_no_gradient_reaches_the_teacher_and_no_token_gives_zero():
    student, teacher, targets = _logits(seed=4)
    student.requires_grad_()
    teacher.requires_grad_()
    loss, *_ = distillation_loss(student, teacher, targets, alpha=0.5, temperature=2.0)
    loss.backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
    empty, *_ = distillation_loss(student, teacher, torch.full_like(targets, -100))
    assert empty.item() == 0.0


def test_module_logs_and_checks():
    student, teacher, targets = _logits(seed=5)
    loss_fn = DistillationLoss(alpha=0.3, temperature=2.0, beta=0.5)
    assert loss_fn.needs.teacher and not loss_fn.needs.reference
    out = loss_fn(SimpleNamespace(logits=student), {"targets": targets},
                  SimpleNamespace(logits=teacher))
    expected, ce, div, _ = distillation_loss(student, teacher, targets, 0.3, 2.0, 0.5)
    assert_close(out.loss, expected)
    assert_close(out.logs["ce"], ce)
    assert_close(out.logs["distill"], div)
    assert {"token_accuracy", "teacher_token_accuracy", "answer_tokens"} <= set(out.logs)
    with pytest.raises(VLMTrainError, match="no teacher output"):
        loss_fn(SimpleNamespace(logits=student), {"targets": targets})


def test_vocabulary_mismatch_on_first_call_names_both_sizes():
    student, teacher, targets = _logits()
    with pytest.raises(VLMTrainError, match=r"teacher vocabulary \(20\) differs from the "
                                            r"student's \(17\)") as err:
        DistillationLoss()(SimpleNamespace(logits=student), {"targets": targets},
                           SimpleNamespace(logits=torch.randn(3, 4, 20)))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("kwargs", "key"), [({"alpha": 1.5}, "loss.alpha=1.5"),
                                             ({"beta": -0.1}, "loss.beta=-0.1"),
                                             ({"temperature": 0.0}, "loss.temperature=0.0")])
def test_bad_settings_fail_at_construction(kwargs, key):
    with pytest.raises(VLMTrainError, match=key):
        DistillationLoss(**kwargs)


def test_check_teacher_compatible_on_tiny_models(tiny_qwen):
    from vlmtrain.models.families import PaliGemma, Qwen2_5_VL
    from vlmtrain.models.hf import load_vlm
    from vlmtrain.models.tiny import build_tiny_paligemma, build_tiny_qwen2_5_vl

    # wider and deeper, same tokenizer and image settings: accepted
    wide = load_vlm(build_tiny_qwen2_5_vl(image_size=48, hidden_size=192, num_layers=3, seed=1),
                    Qwen2_5_VL())
    check_teacher_compatible(tiny_qwen, wide)
    # another vocabulary: one line naming both sizes
    other = load_vlm(build_tiny_qwen2_5_vl(image_size=48, vocab_size=600), Qwen2_5_VL())
    n_student = tiny_qwen.model.get_output_embeddings().weight.shape[0]
    n_teacher = other.model.get_output_embeddings().weight.shape[0]
    assert n_student != n_teacher
    with pytest.raises(VLMTrainError, match=f"size {n_teacher} .* student's {n_student}") as err:
        check_teacher_compatible(tiny_qwen, other)
    assert "\n" not in str(err.value)
    # another family
    pali = load_vlm(build_tiny_paligemma(image_size=48), PaliGemma())
    with pytest.raises(VLMTrainError, match="teacher family PaliGemma"):
        check_teacher_compatible(tiny_qwen, pali)
    # other pixel statistics: the teacher would read the student's pixels wrongly
    grey = load_vlm(build_tiny_qwen2_5_vl(image_size=48, image_mean=[0.5] * 3,
                                          image_std=[0.5] * 3), Qwen2_5_VL())
    with pytest.raises(VLMTrainError, match="image_processor.image_mean"):
        check_teacher_compatible(tiny_qwen, grey)
