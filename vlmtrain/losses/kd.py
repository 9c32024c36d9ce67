"""Knowledge distillation from a frozen teacher on answer tokens (Hinton et al. 2015; GKD)."""

from __future__ import annotations

from typing import Any

from torch import nn

from vlmtrain.errors import VLMTrainError
from vlmtrain.losses import functional as LF
from vlmtrain.losses.base import LossOutput, Needs

# Image-processor settings that decide how a model reads the pixel tensors: the teacher is fed
# the student's batch, so any difference would feed it inputs it was not trained on.
_IMAGE_KEYS = ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std")


class DistillationLoss(nn.Module):
    """``alpha CE + (1 - alpha) T^2 D(teacher || student)`` on answer tokens.

    ``D`` is the forward KL (``beta=0``, Hinton's distillation), the reverse KL (``beta=1``) or
    the generalised JSD in between (GKD); see :func:`vlmtrain.losses.functional.generalized_jsd`.

    Args:
        alpha: weight of the cross-entropy on the true answer, in [0, 1].
        temperature: softmax temperature T > 0 of the divergence.
        beta: divergence interpolation in [0, 1].
    """

    needs = Needs(teacher=True, layout="sft")

    def __init__(self, alpha: float = 0.5, temperature: float = 2.0, beta: float = 0.0) -> None:
        super().__init__()
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not 0.0 <= value <= 1.0:
                raise VLMTrainError(f"loss.{name}={value} is outside [0, 1]: set it between 0 "
                                    "and 1 (see configs/loss/kd.yaml)")
        if temperature <= 0:
            raise VLMTrainError(f"loss.temperature={temperature} must be > 0: use 1 (the "
                                "models' own distributions) or more (softer targets)")
        self.alpha, self.temperature, self.beta = float(alpha), float(temperature), float(beta)
        self._checked_vocab = False

    def forward(self, policy: Any, batch: dict, frozen: Any = None) -> LossOutput:
        """Args:
            policy: student output, ``logits`` (N, K, V) aligned with ``batch["targets"]``.
            batch: collated batch with ``targets`` (N, K).
            frozen: teacher output, ``logits`` (N, K, V) at the same positions.
        """
        if frozen is None:
            raise VLMTrainError("loss=kd got no teacher output: choose a teacher (teacher=... "
                                "on the command line or +recipe=kd_vqa)")
        student, teacher, targets = policy.logits, frozen.logits, batch["targets"]
        if not self._checked_vocab:  # a mismatch is a set-up error: once is enough
            if student.shape[-1] != teacher.shape[-1]:
                raise VLMTrainError(
                    f"teacher vocabulary ({teacher.shape[-1]}) differs from the student's "
                    f"({student.shape[-1]}): distillation needs the same tokenizer"
                )
            self._checked_vocab = True
        loss, ce, divergence, n_tokens = LF.distillation_loss(
            student, teacher, targets, self.alpha, self.temperature, self.beta,
            divisor=batch.get("token_divisor"),
        )
        logs = {
            "ce": ce.detach(),
            "distill": divergence.detach(),
            "token_accuracy": LF.token_accuracy(student.detach(), targets),
            "teacher_token_accuracy": LF.token_accuracy(teacher.detach(), targets),
            "answer_tokens": n_tokens.float(),
        }
        return LossOutput(loss, logs)


def check_teacher_compatible(student: Any, teacher: Any) -> None:
    """Fail at start-up, in one line, when ``teacher`` cannot be distilled into ``student``.

    The teacher reads the student's batch (token ids, pixel tensors) and its distribution is
    compared with the student's entry by entry, so both need the same family, the same
    vocabulary (size and token-to-id map) and the same image pre-processing. Width and depth
    may differ.

    Args:
        student, teacher: :class:`vlmtrain.models.hf.VLM` bundles (model, processor, family).

    Raises:
        VLMTrainError: naming what differs and both values.
    """
    if type(student.family) is not type(teacher.family):
        raise VLMTrainError(
            f"teacher family {type(teacher.family).__name__} differs from the student's "
            f"{type(student.family).__name__}: use a teacher of the model's family "
            "(teacher.family)"
        )
    v_student, v_teacher = _vocab_size(student.model), _vocab_size(teacher.model)
    if v_student != v_teacher:
        raise VLMTrainError(
            f"teacher vocabulary size {v_teacher} ({teacher.name_or_path}) differs from the "
            f"student's {v_student} ({student.name_or_path}): use a teacher with the student's "
            "tokenizer"
        )
    if student.processor.tokenizer.get_vocab() != teacher.processor.tokenizer.get_vocab():
        raise VLMTrainError(
            f"teacher tokenizer ({teacher.name_or_path}) maps tokens to other ids than the "
            f"student's ({student.name_or_path}), though both have {v_student} entries: use a "
            "teacher with the student's tokenizer"
        )
    for key, a, b in _image_settings(student.processor, teacher.processor):
        if a != b:
            raise VLMTrainError(
                f"teacher image processor has {key}={b}, the student's {key}={a}: the teacher "
                "reads the student's pixels, so use a teacher with the same image settings"
            )


def _vocab_size(model: nn.Module) -> int:
    # the output layer, not the tokenizer: checkpoints often pad the embedding table
    return int(model.get_output_embeddings().weight.shape[0])


def _image_settings(student: Any, teacher: Any) -> list[tuple[str, Any, Any]]:
    pairs = [("image_seq_length", getattr(student, "image_seq_length", None),
              getattr(teacher, "image_seq_length", None))]
    s_img, t_img = getattr(student, "image_processor", None), getattr(teacher, "image_processor",
                                                                      None)
    for key in _IMAGE_KEYS:
        a, b = getattr(s_img, key, None), getattr(t_img, key, None)
        pairs.append((f"image_processor.{key}", _plain(a), _plain(b)))
    return pairs


def _plain(value: Any) -> Any:
    # processors store mean/std as lists or tuples of floats; compare them as lists
    return list(value) if isinstance(value, (list, tuple)) else value
