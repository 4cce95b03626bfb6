"""How a reservation ends: `settlement_for` from the request context, and its effect on the window."""

from __future__ import annotations

import pytest

from ccproxy_asgi.context import RequestContext, UpstreamAttempt, Usage
from ccproxy_asgi.ratelimit import (
    Budget,
    Cost,
    MemoryStore,
    RateLimiter,
    Settlement,
    settlement_for,
)
from tests.support.manual_clock import ManualClock


def _ctx(*statuses: int | None, usage: Usage | None = None) -> RequestContext:
    ctx = RequestContext()
    ctx.attempts = [UpstreamAttempt(url="u", status=s) for s in statuses]
    ctx.usage = usage
    return ctx


def test_real_usage_replaces_the_estimate_cache_tokens_included() -> None:
    usage = Usage(
        input_tokens=100, output_tokens=40, cache_read_input_tokens=900, cache_creation_input_tokens=5
    )
    settlement = settlement_for(_ctx(200, usage=usage), 200)
    assert settlement == Settlement(actual=Cost(1005, 40), success=True)


def test_retries_that_reached_the_upstream_are_extra_requests() -> None:
    settlement = settlement_for(_ctx(429, None, 503, 200, usage=Usage(10, 5)), 200)
    assert settlement.extra_requests == 2
    assert settlement.success


def test_cut_stream_keeps_the_estimate() -> None:
    # 200 from the upstream, but the stream broke before the final usage chunk.
    assert settlement_for(_ctx(200), 200) == Settlement()


def test_never_reached_the_upstream_cancels() -> None:
    assert settlement_for(_ctx(None, None), 502) == Settlement(cancel=True)


def test_refused_by_the_upstream_keeps_the_request_without_tokens() -> None:
    assert settlement_for(_ctx(429, 429, 429), 429) == Settlement(actual=Cost(0, 0), extra_requests=2)


def test_inner_app_without_attempts() -> None:
    assert settlement_for(_ctx(), 200) == Settlement(success=True)  # estimate stands
    assert settlement_for(_ctx(), 429) == Settlement(actual=Cost(0, 0))
    assert settlement_for(_ctx(), 400) == Settlement(cancel=True)  # refused locally: never sent
    assert settlement_for(_ctx(), None) == Settlement()  # no answer: we cannot know, keep it


@pytest.mark.parametrize(
    ("settlement", "remaining"),
    [
        (Settlement(actual=Cost(300, 50), success=True), 1000 - 350),
        (Settlement(), 1000 - 800),  # the estimate (prompt 300 + max_tokens 500) stands
        (Settlement(cancel=True), 1000),
        (Settlement(actual=Cost(0, 0)), 1000),
    ],
)
async def test_each_ending_on_the_window(settlement: Settlement, remaining: int) -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    limiter = RateLimiter(budget=Budget(tokens=1000, window=60), store=store, clock=clock, window_margin=0)
    reservation = await limiter.acquire("k", Cost(300, 500))
    await limiter.settle(reservation, settlement)
    view = store.decide("k", Cost(0, 0), Budget(tokens=1000, window=60), reserve=False).view
    assert view.remaining_tokens == remaining
    snap = limiter.snapshot()
    assert snap.settled == 1
    if settlement.actual is not None:
        assert snap.reconciled_token_delta == settlement.actual.tokens - 800
