"""The return type every loss shares."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class LossOutput(NamedTuple):
    """What a loss module returns.

    Attributes:
        loss: scalar that ``backward()`` sees.
        logs: detached scalars, logged as ``<stage>/<key>``.
    """

    loss: Tensor
    logs: dict[str, Tensor]
