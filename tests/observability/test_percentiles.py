"""Sliding-window quantiles and success rate: exact when small, close when sampled, bounded, forgetting."""

from __future__ import annotations

import random

import pytest

from ccproxy_asgi.observability.percentiles import SlidingOutcomes, SlidingPercentiles
from tests.support.manual_clock import ManualClock


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def test_below_the_reservoir_size_quantiles_are_exact() -> None:
    clock = ManualClock()
    window = SlidingPercentiles(window_seconds=60, slices=6, reservoir_size=100, clock=clock)
    values = [random.Random(1).uniform(0, 10) for _ in range(50)]
    for i, value in enumerate(values):
        clock.t = 1000 + i * 0.5  # spread over three slices
        window.add(value)
    got = window.quantiles((0.5, 0.95, 0.99))
    for q in (0.5, 0.95, 0.99):
        assert got[q] == pytest.approx(exact(values, q))
    assert window.count() == 50


def test_memory_stays_bounded_and_sampled_quantiles_stay_close() -> None:
    clock = ManualClock()
    window = SlidingPercentiles(
        window_seconds=10, slices=5, reservoir_size=200, clock=clock, rng=random.Random(7)
    )
    rng = random.Random(3)
    values = []
    for i in range(50_000):
        clock.t = 1000 + i * 0.0001  # 5 s: every slice sees ~10 000 values
        value = rng.uniform(0, 100)
        values.append(value)
        window.add(value)
    kept = sum(len(s) for s in window._samples)
    assert kept <= window.capacity() == 1000
    assert window.count() == 50_000
    got = window.quantiles((0.5, 0.95, 0.99))
    assert got[0.5] == pytest.approx(50, abs=6)
    assert got[0.95] == pytest.approx(95, abs=3)
    assert got[0.99] == pytest.approx(99, abs=2)


def test_busy_slices_weigh_more_than_quiet_ones() -> None:
    clock = ManualClock()
    window = SlidingPercentiles(
        window_seconds=10, slices=2, reservoir_size=50, clock=clock, rng=random.Random(1)
    )
    for _ in range(10_000):  # slice 1: 10 000 fast requests
        window.add(1.0)
    clock.t += 5
    for _ in range(100):  # slice 2: 100 slow ones, 1 % of the traffic
        window.add(100.0)
    got = window.quantiles((0.5, 0.95, 0.999))
    # Unweighted, the two reservoirs (50 samples each) would put p50 and p95 at 100.
    assert got[0.5] == 1.0
    assert got[0.95] == 1.0
    assert got[0.999] == 100.0


def test_values_leave_the_window() -> None:
    clock = ManualClock()
    window = SlidingPercentiles(window_seconds=10, slices=5, clock=clock)
    window.add(5.0)
    clock.t += 4
    window.add(7.0)
    assert window.count() == 2
    clock.t += 7  # 11 s after the first value, 7 s after the second
    assert window.count() == 1
    assert window.quantile(0.5) == 7.0
    clock.t += 20
    assert window.count() == 0
    assert window.quantiles() == {}
    assert window.quantile(0.99) is None
    window.add(1.0)  # a reused slice starts empty
    assert window.quantiles((0.5,)) == {0.5: 1.0}


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="window_seconds"):
        SlidingPercentiles(window_seconds=0)
    with pytest.raises(ValueError, match="slices"):
        SlidingPercentiles(slices=0)
    with pytest.raises(ValueError, match="reservoir_size"):
        SlidingPercentiles(reservoir_size=0)
    window = SlidingPercentiles()
    window.add(1.0)
    with pytest.raises(ValueError, match="outside"):
        window.quantile(1.5)


def test_success_rate_over_the_window() -> None:
    clock = ManualClock()
    outcomes = SlidingOutcomes(window_seconds=10, slices=5, clock=clock)
    assert outcomes.success_rate() is None
    for ok in (True, True, True, False):
        outcomes.add(ok)
    assert outcomes.counts() == (4, 1)
    assert outcomes.success_rate() == 0.75
    clock.t += 6
    outcomes.add(False)
    assert outcomes.counts() == (5, 2)
    clock.t += 6  # the first four are out
    assert outcomes.counts() == (1, 1)
    assert outcomes.success_rate() == 0.0
