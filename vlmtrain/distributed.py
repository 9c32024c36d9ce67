"""Helpers for Lightning's multi-GPU strategies that a YAML file cannot express by itself."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lightning.pytorch import strategies
from torch import Tensor, nn


class WrapLayers:
    """FSDP auto-wrap policy: each module whose class name is listed becomes one FSDP unit.

    Class *names* rather than classes: ``configs/trainer/fsdp.yaml`` then lists the blocks of
    every family without importing each family's modeling module or naming its import path
    (which moves between transformers releases). Same contract as torch's
    ``lambda_auto_wrap_policy``: keep descending, wrap where the name matches.

    Args:
        names: e.g. ``["Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock"]`` -- the model's
            ``_no_split_modules`` are the usual choice.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)
        if not self.names:
            raise ValueError("WrapLayers needs at least one module class name")

    def __call__(self, module: nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
        if recurse:
            return True
        return type(module).__name__ in self.names


def _counts_as_float(tensor: Any, reduce_op: Any) -> Any:
    """``tensor`` as float32 when it is an integer tensor about to be averaged over ranks.

    Lightning averages an integer tensor over ranks by copying ``sum / world`` back into the
    integer tensor, which truncates it. A value logged with ``sync_dist=True`` is reduced as
    ``mean(sum of value x batch size) / mean(samples)``, the sample count an int64 tensor: with
    7 validation samples on 2 ranks (4 + 3) the mean count 3.5 became 3, and ``val/loss`` came
    out 7/6 of its true value. Averaging the count as a float makes it the exact mean over all
    samples, however unevenly the ranks hold them. (FSDP keeps Lightning's class: Lightning
    recognises it by exact type to refuse a CPU accelerator; its reduce truncates alike.)
    """
    mean = isinstance(reduce_op, str) and reduce_op.lower() in ("mean", "avg")
    if mean and isinstance(tensor, Tensor) and not tensor.is_floating_point():
        return tensor.float()
    return tensor


class DDPStrategy(strategies.DDPStrategy):
    """Lightning's DDP, with means over ranks of integer counts kept exact (see above)."""

    def reduce(self, tensor: Any, group: Any = None, reduce_op: Any = "mean") -> Any:
        return super().reduce(_counts_as_float(tensor, reduce_op), group, reduce_op)


class DeepSpeedStrategy(strategies.DeepSpeedStrategy):
    """Lightning's DeepSpeed, with means over ranks of integer counts kept exact (see above)."""

    def reduce(self, tensor: Any, group: Any = None, reduce_op: Any = "mean") -> Any:
        return super().reduce(_counts_as_float(tensor, reduce_op), group, reduce_op)
