"""What every loss returns, and how a loss declares what it needs from the module and the data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch import Tensor

#: Batch layouts a collator can produce (``collator.layout``) and a loss can ask for.
LAYOUTS = ("sft", "pairs", "contrastive")


class LossOutput(NamedTuple):
    """What a loss module returns.

    Attributes:
        loss: scalar that ``backward()`` sees.
        logs: detached scalars, logged as ``<stage>/<key>``.
    """

    loss: Tensor
    logs: dict[str, Tensor]


@dataclass(frozen=True)
class Needs:
    """What a loss asks of the module and the data; read once, at start-up.

    A loss module carries it as the class attribute ``needs``. The module builds and owns the
    frozen models asked for (eval mode, no gradients, outside the optimizer and the trainable
    checkpoint state) and passes what they produce as the loss's third argument.

    Attributes:
        reference: a frozen reference policy; the loss receives its summed log-probs of the
            supervised tokens, a ``(N,)`` tensor (live or from the on-disk cache: the loss cannot
            tell which).
        teacher: a frozen teacher model; the loss receives its output, whose ``logits``
            ``(N, K, V)`` are aligned with ``batch["targets"]`` as the policy's are.
        layout: the batch layout the loss reads (one of :data:`LAYOUTS`): ``sft`` (one row per
            sample), ``pairs`` (``[chosen rows; rejected rows]``, ``N = 2B``) or
            ``contrastive`` (images and captions apart; the policy output is then pooled
            embeddings, :func:`~vlmtrain.models.embed.forward_embeddings`, not logits).

    Two optional hooks complete the contract: a loss with parameters sized by the model (e.g.
    projection heads) defines ``bind(vlm)``, called once before the optimizer is built (its
    parameters are then trained with the model's); a loss that scores a whole validation split
    (e.g. retrieval recall) defines ``epoch_metrics() -> dict[str, Tensor]``, logged as
    ``val/<key>`` at the end of each validation.
    """

    reference: bool = False
    teacher: bool = False
    layout: str = "sft"

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"Needs.layout={self.layout!r}: use one of {LAYOUTS}")
        if self.reference and self.teacher:
            raise ValueError("a loss needs a reference or a teacher, not both")


def needs_of(loss: object) -> Needs:
    """The :class:`Needs` a loss declares (a loss that declares nothing needs nothing)."""
    needs = getattr(loss, "needs", None)
    return needs if isinstance(needs, Needs) else Needs()
