"""The learning-rate schedule's shape: warmup, cosine decay, the floor."""

import math

import pytest

from core.schedule import LRSchedule


def test_constant_is_the_learning_rate_at_every_step():
    schedule = LRSchedule("constant", 4e-4, total_steps=90)
    assert [schedule(step) for step in (1, 45, 90, 500)] == [4e-4] * 4  # exactly: the default run is unchanged


@pytest.mark.parametrize("kind", ["constant", "cosine"])
def test_warmup_rises_linearly_from_0_to_the_peak(kind):
    schedule = LRSchedule(kind, 1e-3, warmup_steps=100, min_lr=1e-4, total_steps=2000)
    assert schedule(1) == pytest.approx(1e-5)  # the first step already moves, a hundredth of the way up
    assert schedule(50) == pytest.approx(5e-4)
    assert schedule(100) == 1e-3  # the peak at the end of warmup
    rates = [schedule(step) for step in range(1, 101)]
    assert rates == sorted(rates)


def test_cosine_decays_from_the_peak_through_the_midpoint_to_the_floor_at_the_last_step():
    schedule = LRSchedule("cosine", 1e-3, warmup_steps=100, min_lr=1e-4, total_steps=2100)
    assert schedule(101) < 1e-3
    assert schedule(1100) == pytest.approx((1e-3 + 1e-4) / 2)  # halfway through the decay: halfway down
    assert schedule(2100) == pytest.approx(1e-4)
    assert schedule(2101) == schedule(5000) == 1e-4  # a run extended past its schedule stays at the floor
    rates = [schedule(step) for step in range(100, 2101)]
    assert rates == sorted(rates, reverse=True)
    assert schedule(600) == pytest.approx(1e-4 + 0.5 * (1 + math.cos(math.pi / 4)) * 9e-4)


def test_cosine_without_warmup_starts_at_the_peak():
    schedule = LRSchedule("cosine", 6e-4, min_lr=6e-5, total_steps=10)
    assert schedule(0) == 6e-4 and schedule(10) == pytest.approx(6e-5)
