"""`RetryBudget`: retries bounded by a fraction of recent requests plus a minimum rate, over a sliding window."""

from __future__ import annotations

import pytest

from ccproxy_asgi.provider.retry_budget import RetryBudget
from tests.support.manual_clock import ManualClock


def spend_all(budget: RetryBudget, limit: int = 10_000) -> int:
    spent = 0
    while spent < limit and budget.try_spend():
        spent += 1
    return spent


def test_minimum_rate_applies_without_traffic() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=0.5, window=10.0, clock=ManualClock())
    assert budget.available() == 5.0
    assert spend_all(budget) == 5
    assert budget.try_spend() is False


def test_ratio_of_recent_requests() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, window=10.0, clock=ManualClock())
    for _ in range(50):
        budget.record_request()
    assert spend_all(budget) == 10


def test_a_refused_retry_counts_nothing() -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0, clock=ManualClock())
    assert budget.try_spend() is True
    assert budget.try_spend() is False
    assert budget.try_spend() is False
    assert budget.available() == 0.0


def test_the_window_slides_bucket_by_bucket() -> None:
    clock = ManualClock(0.0)
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, window=10.0, buckets=10, clock=clock)
    for _ in range(4):
        budget.record_request()  # in the bucket [0, 1)
    clock.t = 5.0
    for _ in range(6):
        budget.record_request()  # in the bucket [5, 6)
    assert spend_all(budget) == 10
    clock.t = 10.5  # the first bucket has left the window: 6 requests, 10 retries
    assert budget.available() == -4.0
    clock.t = 15.5  # everything has left
    assert budget.available() == 0.0
    assert budget.try_spend() is False


def test_old_buckets_are_reset_when_reused() -> None:
    clock = ManualClock(0.0)
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, window=2.0, buckets=2, clock=clock)
    for _ in range(100):
        budget.record_request()
    clock.t = 1000.0  # the same ring slot, many windows later
    budget.record_request()
    assert budget.available() == 1.0


def test_a_failing_upstream_sees_a_bounded_amplification() -> None:
    """100 requests a second against an upstream that always fails: retries stay near 20 % plus the minimum,
    where per-call attempts alone would double or triple the load."""
    clock = ManualClock(0.0)
    budget = RetryBudget(ratio=0.2, min_per_second=1.0, window=10.0, clock=clock)
    requests = retries = 0
    for step in range(3000):  # 30 s at 100 requests per second, each wanting 2 retries
        clock.t = step / 100
        budget.record_request()
        requests += 1
        for _ in range(2):
            retries += budget.try_spend()
    assert retries / requests == pytest.approx(0.2 + 1.0 / 100, abs=0.03)


@pytest.mark.parametrize(
    "kwargs",
    [{"ratio": -0.1}, {"min_per_second": -1.0}, {"window": 0.0}, {"buckets": 0}],
)
def test_invalid_configuration(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RetryBudget(**kwargs)  # type: ignore[arg-type]
