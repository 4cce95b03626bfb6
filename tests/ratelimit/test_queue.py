"""RateLimiter: the fair queue, its deadline, cancellation, refusals and failure modes (injected clock)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ccproxy_asgi.errors import RateLimitError, RequestTooLargeError
from ccproxy_asgi.ratelimit import (
    AdaptivePolicy,
    Budget,
    Cost,
    Decision,
    FactorChange,
    MemoryStore,
    Observation,
    RateLimiter,
    Reservation,
    Settlement,
    StoreUnavailableError,
    Ticket,
)
from tests.support.manual_clock import ManualClock


def make(
    budget: Budget, *, max_wait: float = 30.0, **kwargs: Any
) -> tuple[RateLimiter, MemoryStore, ManualClock]:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    kwargs.setdefault("window_margin", 0.0)
    limiter = RateLimiter(budget=budget, store=store, clock=clock, max_wait=max_wait, **kwargs)
    return limiter, store, clock


async def test_admits_at_once_while_the_budget_lasts() -> None:
    limiter, _, _ = make(Budget(requests=2, tokens=100, window=60))
    first = await limiter.acquire("k", Cost(10, 10))
    assert first.ticket is not None
    assert first.waited == 0.0
    assert first.view is not None
    assert first.view.remaining_requests == 1
    snap = limiter.snapshot()
    assert snap.checked == 1
    assert snap.admitted == 1
    assert snap.waits == 0
    assert snap.effective["k"].requests == 2
    assert snap.effective["k"].remaining_tokens == 80


async def test_waits_then_gets_in_when_the_window_slides() -> None:
    limiter, _, clock = make(Budget(requests=1, window=10))
    await limiter.acquire("k", Cost(1, 1))
    clock.t += 4
    task = asyncio.ensure_future(limiter.acquire("k", Cost(1, 1)))
    await clock.settle()
    assert not task.done()
    assert limiter.queued("k") == 1
    await clock.run_for(5.9)
    assert not task.done()
    await clock.run_for(0.2)
    reservation = task.result()
    assert reservation.waited == pytest.approx(6.0, abs=0.01)
    snap = limiter.snapshot()
    assert snap.admitted_after_wait == 1
    assert snap.waits == 1
    assert snap.wait_seconds_max == pytest.approx(6.0, abs=0.01)
    assert snap.queued == 0


async def test_fifo_a_big_request_is_not_starved_by_small_ones() -> None:
    limiter, _, clock = make(Budget(tokens=1000, window=10), max_wait=100)
    await limiter.acquire("k", Cost(900, 0))  # t=1000
    order: list[str] = []

    async def go(name: str, cost: Cost) -> None:
        await limiter.acquire("k", cost)
        order.append(name)

    big = asyncio.ensure_future(go("big", Cost(800, 0)))
    await clock.settle()
    smalls = [asyncio.ensure_future(go(f"small{i}", Cost(50, 0))) for i in range(3)]
    await clock.settle()
    # 100 tokens are free: small0 would fit, but the big request came first and leads the line.
    assert order == []
    assert limiter.queued("k") == 4
    await clock.run_for(10.1)
    await asyncio.gather(big, *smalls)
    assert order == ["big", "small0", "small1", "small2"]


async def test_fifo_order_among_equal_requests() -> None:
    limiter, _, clock = make(Budget(requests=1, window=1), max_wait=100)
    await limiter.acquire("k", Cost(1, 1))
    order: list[int] = []

    async def go(i: int) -> None:
        await limiter.acquire("k", Cost(1, 1))
        order.append(i)

    tasks = []
    for i in range(5):
        tasks.append(asyncio.ensure_future(go(i)))
        await clock.settle()
    for _ in range(6):
        await clock.run_for(1.01)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


async def test_rejected_at_once_when_nothing_can_free_budget_before_the_deadline() -> None:
    limiter, _, _ = make(Budget(requests=1, window=60), max_wait=5)
    first = await limiter.acquire("k", Cost(1, 1))
    await limiter.settle(first, Settlement(actual=Cost(1, 1)))  # nothing in flight any more
    with pytest.raises(RateLimitError) as info:
        await limiter.acquire("k", Cost(1, 1))
    error = info.value
    assert error.status == 429
    assert error.error_type == "rate_limit_error"
    assert error.retry_after == pytest.approx(60.0)  # honest: that is when it would fit
    assert error.extra_headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert "1 requests" in error.message
    assert limiter.snapshot().rejected_rate_limited == 1
    assert limiter.queued() == 0


async def test_waits_for_in_flight_reservations_until_the_deadline() -> None:
    # The window frees only in 60 s, but the reservation in flight may be settled below its reserve.
    limiter, _, clock = make(Budget(tokens=1000, window=60), max_wait=5)
    await limiter.acquire("k", Cost(100, 800))
    waiter = asyncio.ensure_future(limiter.acquire("k", Cost(100, 400)))
    await clock.run_for(4.9)
    assert not waiter.done()
    await clock.run_for(0.2)
    with pytest.raises(RateLimitError) as info:
        waiter.result()
    assert info.value.retry_after == pytest.approx(55.0, abs=0.01)  # honest: 60 s after the first
    snap = limiter.snapshot()
    assert snap.rejected_rate_limited == 1
    assert snap.waits == 1
    assert snap.wait_seconds_total == pytest.approx(5.0, abs=0.01)


async def test_queued_behind_a_head_that_takes_the_freed_budget() -> None:
    limiter, _, clock = make(Budget(requests=1, window=10), max_wait=12)
    await limiter.acquire("k", Cost(1, 1))  # t=1000, frees at 1010
    head = asyncio.ensure_future(limiter.acquire("k", Cost(1, 1)))  # admitted at 1010
    await clock.settle()
    second = asyncio.ensure_future(limiter.acquire("k", Cost(1, 1)))  # would need 1020 > deadline 1012
    await clock.settle()
    await clock.run_for(10.01)
    assert head.done()
    assert head.result().ticket is not None
    assert not second.done()
    await clock.run_for(2.0)
    with pytest.raises(RateLimitError) as info:
        second.result()
    assert info.value.retry_after == pytest.approx(8.0, abs=0.05)
    assert limiter.queued() == 0


async def test_deadline_passes_while_queued_behind_others() -> None:
    limiter, _, clock = make(Budget(tokens=1000, window=10), max_wait=100)
    await limiter.acquire("k", Cost(900, 0))  # t=1000
    head = asyncio.ensure_future(limiter.acquire("k", Cost(800, 0)))  # leads until t=1010
    await clock.settle()
    impatient = asyncio.ensure_future(limiter.acquire("k", Cost(50, 0), max_wait=3))
    await clock.settle()
    await clock.run_for(2.9)
    assert not impatient.done()
    await clock.run_for(0.2)
    with pytest.raises(RateLimitError) as info:
        impatient.result()
    # Its own cost fits the window now (100 tokens are free); only the line ahead held it back.
    assert info.value.retry_after is not None
    assert info.value.retry_after <= 0.01
    assert not head.done()
    assert limiter.queued("k") == 1
    await clock.run_for(8)
    assert head.result().ticket is not None


async def test_budget_freed_by_a_settlement_wakes_the_head_early() -> None:
    limiter, _, clock = make(Budget(tokens=1000, window=60))
    first = await limiter.acquire("k", Cost(100, 800))
    waiter = asyncio.ensure_future(limiter.acquire("k", Cost(100, 400)))
    await clock.settle()
    assert not waiter.done()
    await limiter.settle(first, Settlement(actual=Cost(100, 20)))
    await clock.settle()
    assert waiter.done()
    assert waiter.result().waited == 0.0


async def test_cancelled_waiter_leaves_and_takes_nothing() -> None:
    limiter, store, clock = make(Budget(requests=1, window=10))
    await limiter.acquire("k", Cost(1, 1))
    leaving = asyncio.ensure_future(limiter.acquire("k", Cost(1, 1)))
    await clock.settle()
    staying = asyncio.ensure_future(limiter.acquire("k", Cost(1, 1)))
    await clock.settle()
    leaving.cancel()
    await clock.settle()
    assert leaving.cancelled()
    assert limiter.queued("k") == 1
    await clock.run_for(10.01)
    assert staying.result().ticket is not None
    # The first request has left the window; only the one that stayed is in it.
    view = store.decide("k", Cost(1, 1), Budget(requests=3, window=10), reserve=False).view
    assert view.remaining_requests == 2
    snap = limiter.snapshot()
    assert snap.left_queue_cancelled == 1
    assert snap.admitted == 2


async def test_never_fits_is_refused_at_once_with_413() -> None:
    limiter, _, _ = make(Budget(tokens=1000, window=60))
    with pytest.raises(RequestTooLargeError) as info:
        await limiter.acquire("k", Cost(900, 200))
    assert info.value.status == 413
    assert info.value.should_retry is False
    assert "1100 tokens" in info.value.message
    assert limiter.snapshot().rejected_too_large == 1


async def test_zero_max_wait_never_queues() -> None:
    limiter, _, _ = make(Budget(requests=1, window=60), max_wait=0)
    await limiter.acquire("k", Cost(1, 1))
    with pytest.raises(RateLimitError):
        await limiter.acquire("k", Cost(1, 1))


async def test_unlimited_budget_records_nothing() -> None:
    limiter, store, _ = make(Budget())
    reservation = await limiter.acquire("k", Cost(10**9, 10**9))
    assert reservation.ticket is None
    assert len(store) == 0


async def test_per_key_budgets() -> None:
    limiter, _, _ = make(Budget(requests=1, window=60), budgets={"vip": Budget(requests=3, window=60)})
    for _ in range(3):
        await limiter.acquire("vip", Cost(1, 1), max_wait=0)
    await limiter.acquire("other", Cost(1, 1), max_wait=0)
    with pytest.raises(RateLimitError):
        await limiter.acquire("other", Cost(1, 1), max_wait=0)


async def test_paused_admission_rejects_with_the_pause_as_retry_after() -> None:
    limiter, _, clock = make(Budget(requests=100, window=60), max_wait=5)
    first = await limiter.acquire("k", Cost(1, 1))
    await limiter.observe(first, Observation(rate_limited=1, retry_after=20.0))
    with pytest.raises(RateLimitError) as info:
        await limiter.acquire("k", Cost(1, 1))
    assert info.value.retry_after == pytest.approx(20.0)
    assert "pause" in info.value.message
    # A short pause is waited out.
    await clock.run_for(20.0)
    await limiter.observe(first, Observation(rate_limited=1, retry_after=2.0))
    waiter = asyncio.ensure_future(limiter.acquire("k", Cost(1, 1)))
    await clock.run_for(2.01)
    assert waiter.result().waited == pytest.approx(2.0, abs=0.01)


class _DownStore:
    """A store whose backend is unreachable."""

    shared = True

    def __init__(self) -> None:
        self.calls = 0

    async def acquire(self, *args: Any, **kwargs: Any) -> Decision:
        self.calls += 1
        raise StoreUnavailableError("down")

    async def settle(self, *args: Any, **kwargs: Any) -> FactorChange:
        raise StoreUnavailableError("down")

    async def observe(self, *args: Any, **kwargs: Any) -> FactorChange:
        raise StoreUnavailableError("down")

    async def ping(self) -> bool:
        return False

    async def aclose(self) -> None:
        return None


async def test_store_down_fails_open() -> None:
    limiter = RateLimiter(budget=Budget(requests=1, window=60), store=_DownStore(), failure_mode="open")
    for _ in range(3):
        reservation = await limiter.acquire("k", Cost(1, 1))
        assert reservation.ticket is None
        await limiter.observe(reservation, Observation(rate_limited=1))
        await limiter.settle(reservation, Settlement(success=True))
    snap = limiter.snapshot()
    assert snap.failed_open == 3
    assert snap.admitted == 3
    assert snap.store_errors == 6


async def test_store_down_fails_closed() -> None:
    limiter = RateLimiter(budget=Budget(requests=1, window=60), store=_DownStore(), failure_mode="closed")
    with pytest.raises(RateLimitError) as info:
        await limiter.acquire("k", Cost(1, 1))
    assert "unavailable" in info.value.message
    assert info.value.retry_after == 1.0
    assert limiter.snapshot().rejected_store_unavailable == 1


async def test_settle_is_idempotent() -> None:
    limiter, store, _ = make(Budget(requests=2, window=60))
    reservation = await limiter.acquire("k", Cost(1, 1))
    await limiter.settle(reservation, Settlement(cancel=True))
    await limiter.settle(reservation, Settlement(cancel=True))
    assert limiter.snapshot().settled == 1
    view = store.decide("k", Cost(1, 1), Budget(requests=2, window=60), reserve=False).view
    assert view.remaining_requests == 2


async def test_try_acquire_then_wait() -> None:
    limiter, _, clock = make(Budget(requests=1, window=5))
    assert isinstance(await limiter.try_acquire("k", Cost(1, 1)), Reservation)
    waiting = await limiter.try_acquire("k", Cost(1, 1))
    assert not isinstance(waiting, Reservation)
    task = asyncio.ensure_future(limiter.wait(waiting))
    await clock.run_for(5.01)
    assert isinstance(task.result().ticket, Ticket)


async def test_window_margin_lengthens_the_window_as_the_store_sees_it() -> None:
    limiter, _, clock = make(Budget(requests=1, window=10), window_margin=0.25, max_wait=0)
    first = await limiter.acquire("k", Cost(1, 1))
    assert first.budget.window == 10.25
    await limiter.settle(first, Settlement(actual=Cost(1, 1)))
    clock.t += 10.1
    with pytest.raises(RateLimitError, match="per 10 s") as info:
        await limiter.acquire("k", Cost(1, 1))
    assert info.value.retry_after == pytest.approx(0.15)
    clock.t += 0.15
    assert (await limiter.acquire("k", Cost(1, 1))).ticket is not None


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="decrease"):
        AdaptivePolicy(decrease=1.0)
    with pytest.raises(ValueError, match="max_wait"):
        RateLimiter(budget=Budget(requests=1), max_wait=-1)
    with pytest.raises(ValueError, match="failure_mode"):
        RateLimiter(budget=Budget(requests=1), failure_mode="maybe")  # type: ignore[arg-type]
