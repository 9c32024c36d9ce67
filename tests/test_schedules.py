"""The warmup-stable-decay schedule: phases where they belong, decay sized by the run."""

from __future__ import annotations

import math

import pytest
import torch

from vlmtrain.schedules import warmup_stable_decay


def _factors(total: int, **kwargs) -> list[float]:
    """LR / peak after each of ``total`` optimizer steps (index 0 = the first step's rate)."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=2.0)
    schedule = warmup_stable_decay(optimizer, num_training_steps=total, **kwargs)
    factors = []
    for _ in range(total):
        factors.append(optimizer.param_groups[0]["lr"] / 2.0)
        optimizer.step()
        schedule.step()
    return factors


def test_phases_follow_warmup_then_constant_then_cosine_over_the_last_quarter():
    f = _factors(1000, num_warmup_steps=100, decay_fraction=0.25)
    assert f[0] == 0.0 and f[50] == pytest.approx(0.5)             # linear warm-up
    assert all(x == pytest.approx(1.0) for x in f[100:751])       # stable: the peak, unchanged
    # Decay over steps 750..1000: cosine from 1 to 0; half-way (step 875) it is at 0.5.
    assert f[875] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)), abs=1e-6)
    assert f[800] == pytest.approx(0.5 * (1 + math.cos(math.pi * 50 / 250)), abs=1e-6)
    assert f[999] < 1e-3 and all(a >= b for a, b in zip(f[750:], f[751:]))


def test_decay_length_scales_with_the_run():
    short, long = _factors(400, num_warmup_steps=10), _factors(4000, num_warmup_steps=10)
    assert short[299] == pytest.approx(1.0) and short[301] < 1.0     # 25% of 400 = 100 steps
    assert long[2999] == pytest.approx(1.0) and long[3010] < 1.0     # 25% of 4,000 = 1,000


def test_min_lr_ratio_and_linear_decay():
    f = _factors(200, num_warmup_steps=0, decay_fraction=0.5, decay_type="linear",
                 min_lr_ratio=0.1)
    assert f[150] == pytest.approx(0.1 + 0.9 * 0.5)
    assert f[199] == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize("kwargs, match", [
    ({"decay_fraction": 0.0}, "decay_fraction must be in"),
    ({"decay_fraction": 1.5}, "decay_fraction must be in"),
])
def test_bad_settings_say_what_to_change(kwargs, match):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=match):
        warmup_stable_decay(optimizer, num_training_steps=100, **kwargs)


def test_a_run_too_short_for_the_warmup_gets_a_shorter_one_and_a_warning(caplog):
    with caplog.at_level("WARNING"):
        f = _factors(40, num_warmup_steps=100, decay_fraction=0.25)  # 100 + 10 > 40
    assert "warm-up shortened from 100 to 30 steps" in caplog.text
    assert f[15] == pytest.approx(0.5) and f[30] == pytest.approx(1.0) and f[39] < 0.1
    assert _factors(1, num_warmup_steps=100) == [1.0]  # fast_dev_run: one step, at the peak
