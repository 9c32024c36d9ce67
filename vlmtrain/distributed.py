"""Helpers for Lightning's multi-GPU strategies that a YAML file cannot express by itself."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn


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
