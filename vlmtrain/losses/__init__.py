"""Losses: pure tensor maths in ``functional`` and one thin ``nn.Module`` per loss."""

from vlmtrain.losses.base import LossOutput

__all__ = ["LossOutput"]
