"""Losses: pure tensor maths in ``functional`` and one thin ``nn.Module`` per loss."""

from vlmtrain.losses.base import LossOutput, Needs, needs_of

__all__ = ["LossOutput", "Needs", "needs_of"]
