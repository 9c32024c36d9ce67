"""Learning-rate schedules that are sized by the run's length.

``module.scheduler`` is a ``partial`` that :class:`vlmtrain.module.VLMModule` calls as
``scheduler(optimizer, num_training_steps=...)`` once Lightning knows the number of steps.
transformers' schedules cover the shapes; this module only adapts the warmup-stable-decay one,
whose decay length transformers takes in steps, to a *fraction* of the run, so that overriding
``trainer.max_steps`` (or the schedule's ``max_steps``) keeps the decay in proportion instead of
leaving a fixed step count that may no longer fit.
"""

from __future__ import annotations

import logging

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_wsd_schedule

log = logging.getLogger(__name__)


def warmup_stable_decay(
    optimizer: Optimizer,
    num_training_steps: int,
    num_warmup_steps: int = 100,
    decay_fraction: float = 0.25,
    decay_type: str = "cosine",
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warm-up, a constant peak rate, then a decay over the last ``decay_fraction``.

    A run too short for the warm-up and the decay (a smoke test, ``trainer.max_steps=20``)
    gets a shorter warm-up, with a warning, rather than an error.

    Args:
        optimizer: The optimizer whose parameter groups' ``lr`` are the peak rates.
        num_training_steps: Optimizer steps in the whole run.
        num_warmup_steps: Steps of linear warm-up from 0 to the peak.
        decay_fraction: Share of ``num_training_steps`` spent decaying (0 < f <= 1); the
            decay steps are rounded to a whole number and the stable phase takes the rest.
        decay_type: ``"cosine" | "linear" | "1-sqrt"`` (transformers' names).
        min_lr_ratio: Rate at the end of the decay, as a fraction of the peak.

    Returns:
        A per-step ``LambdaLR`` (transformers' ``get_wsd_schedule``).

    Raises:
        ValueError: If the fraction is outside (0, 1].
    """
    if not 0.0 < decay_fraction <= 1.0:
        raise ValueError(f"decay_fraction must be in (0, 1], got {decay_fraction}")
    num_decay_steps = max(1, round(decay_fraction * num_training_steps))  # <= the run: f <= 1
    if num_warmup_steps + num_decay_steps > num_training_steps:
        shorter = num_training_steps - num_decay_steps
        log.warning("LR warm-up shortened from %d to %d steps: with a %d-step decay it would not "
                    "fit the %d-step run (optim.scheduler.num_warmup_steps)", num_warmup_steps,
                    shorter, num_decay_steps, num_training_steps)
        num_warmup_steps = shorter
    return get_wsd_schedule(
        optimizer, num_warmup_steps=num_warmup_steps, num_decay_steps=num_decay_steps,
        num_training_steps=num_training_steps, decay_type=decay_type, min_lr_ratio=min_lr_ratio)
