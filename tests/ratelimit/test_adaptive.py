"""The adaptive policy: decrease on 429 (once per round), pause, growth after successes, header debt;
and what the limiter learns from the provider's attempts (retries included)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ccproxy_asgi.context import UpstreamAttempt
from ccproxy_asgi.headers import Headers
from ccproxy_asgi.ratelimit import (
    AdaptivePolicy,
    AdaptiveState,
    Budget,
    Cost,
    MemoryStore,
    Observation,
    RateLimiter,
    Settlement,
    observation_from_attempts,
)
from tests.support.manual_clock import ManualClock


def test_decrease_with_floor_and_pause() -> None:
    policy = AdaptivePolicy(decrease=0.5, min_factor=0.2, default_pause=3.0)
    state = AdaptiveState()
    assert policy.on_rate_limited(state, now=10.0, retry_after=None, admitted_at=None)
    assert state.factor == 0.5
    assert state.pause_until == 13.0
    assert policy.on_rate_limited(state, now=11.0, retry_after=7.0, admitted_at=None)
    assert state.factor == 0.25
    assert state.pause_until == 18.0
    assert policy.on_rate_limited(state, now=12.0, retry_after=1.0, admitted_at=None)
    assert state.factor == 0.2  # floor
    assert state.pause_until == 18.0  # a shorter pause never shortens a longer one


def test_one_decrease_per_round_of_requests() -> None:
    policy = AdaptivePolicy()
    state = AdaptiveState()
    # A burst of 20 requests admitted at t=0..1 all come back 429 at t=2..3.
    decreases = sum(
        policy.on_rate_limited(state, now=2.0 + i / 20, retry_after=1.0, admitted_at=i / 20)
        for i in range(20)
    )
    assert decreases == 1
    assert state.factor == pytest.approx(0.8)
    # A request admitted after that decrease that is refused again cuts again.
    assert policy.on_rate_limited(state, now=5.0, retry_after=1.0, admitted_at=3.5)
    assert state.factor == pytest.approx(0.64)


def test_growth_after_consecutive_successes_up_to_configured() -> None:
    policy = AdaptivePolicy(successes_to_increase=3, increase=1.1)
    state = AdaptiveState(factor=0.95)
    grown = [policy.on_success(state) for _ in range(3)]
    assert grown == [False, False, True]
    assert state.factor == pytest.approx(1.0)
    assert not any(policy.on_success(state) for _ in range(6))  # already at the configured limits
    # A 429 resets the run.
    state.factor = 0.5
    policy.on_success(state)
    policy.on_success(state)
    policy.on_rate_limited(state, now=1.0, retry_after=0.0, admitted_at=None)
    assert not policy.on_success(state)
    assert not policy.on_success(state)
    assert policy.on_success(state)
    assert state.factor == pytest.approx(0.4 * 1.1)


def test_disabled_policy_learns_nothing() -> None:
    policy = AdaptivePolicy(enabled=False)
    state = AdaptiveState()
    assert not policy.on_rate_limited(state, now=1.0, retry_after=5.0, admitted_at=None)
    assert state.factor == 1.0
    assert state.pause_until == -math.inf
    policy.on_remaining(
        state, 1.0, window=60, limit_requests=10, used_requests=0, remaining_requests=0,
        reset_requests=5.0, limit_tokens=None, used_tokens=0, remaining_tokens=None, reset_tokens=None,
    )  # fmt: skip
    assert state.debt_requests == 0


def test_remaining_only_tightens() -> None:
    policy = AdaptivePolicy()
    state = AdaptiveState()
    kwargs: dict[str, Any] = dict(
        window=60.0, limit_requests=None, used_requests=0, remaining_requests=None, reset_requests=None
    )
    policy.on_remaining(
        state, 0.0, limit_tokens=1000, used_tokens=200, remaining_tokens=900, reset_tokens=1.0, **kwargs
    )  # we think 800 are left; the upstream says more: nothing changes
    assert state.debt_tokens == 0
    policy.on_remaining(
        state, 0.0, limit_tokens=1000, used_tokens=200, remaining_tokens=300, reset_tokens=4.0, **kwargs
    )
    assert state.debt_tokens == 500
    assert state.debt_tokens_until == 4.0
    policy.on_remaining(
        state, 1.0, limit_tokens=1000, used_tokens=200, remaining_tokens=400, reset_tokens=9.0, **kwargs
    )  # looser than the current debt: kept as is
    assert state.debt_tokens == 500
    assert state.debt_tokens_until == 4.0
    policy.on_remaining(
        state, 1.0, limit_tokens=1000, used_tokens=200, remaining_tokens=100, reset_tokens=500.0, **kwargs
    )  # tighter; the reset is capped at one window
    assert state.debt_tokens == 700
    assert state.debt_tokens_until == 61.0


def _attempt(status: int | None, **headers: str) -> UpstreamAttempt:
    return UpstreamAttempt(
        url="u", status=status, headers=Headers({k.replace("_", "-"): v for k, v in headers.items()})
    )


def test_observation_counts_every_attempt_and_reads_headers_case_insensitively() -> None:
    attempts = [
        _attempt(429, Retry_After="2", X_Ratelimit_Remaining_Requests="0"),
        _attempt(None),  # connect error
        _attempt(429, retry_after_ms="3500"),
        _attempt(
            200,
            x_ratelimit_remaining_requests="7",
            x_ratelimit_remaining_tokens="1200",
            x_ratelimit_reset_requests="1s",
            x_ratelimit_reset_tokens="6m0s",
        ),
    ]
    observation = observation_from_attempts(attempts)
    assert observation.rate_limited == 2
    assert observation.retry_after == pytest.approx(3.5)
    assert observation.remaining_requests == 7
    assert observation.remaining_tokens == 1200
    assert observation.reset_requests == 1.0
    assert observation.reset_tokens == 360.0


def test_observation_429_without_retry_after_uses_the_exhausted_reset() -> None:
    observation = observation_from_attempts(
        [
            _attempt(
                429,
                x_ratelimit_remaining_requests="5",
                x_ratelimit_remaining_tokens="0",
                x_ratelimit_reset_requests="1s",
                x_ratelimit_reset_tokens="12.5s",
            )
        ]
    )
    assert observation.retry_after == 12.5
    assert observation.remaining_tokens == 0
    assert observation_from_attempts([_attempt(200, x_ratelimit_remaining_tokens="-1")]).empty


async def test_limiter_learns_from_429s_and_grows_back() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    policy = AdaptivePolicy(successes_to_increase=2, increase=1.25)
    limiter = RateLimiter(
        budget=Budget(requests=100, window=60), store=store, clock=clock, policy=policy, window_margin=0
    )
    burst = [await limiter.acquire("k", Cost(1, 1)) for _ in range(5)]
    for reservation in burst:  # all refused by the upstream, after retries
        await limiter.observe(reservation, Observation(rate_limited=2, retry_after=1.0))
        await limiter.settle(reservation, Settlement(actual=Cost(0, 0), extra_requests=1))
    snap = limiter.snapshot()
    assert snap.limit_decreases == 1
    assert snap.upstream_rate_limited == 10
    clock.t += 1.0
    reservation = await limiter.acquire("k", Cost(1, 1))
    assert reservation.view is not None
    assert reservation.view.factor == pytest.approx(0.8)
    assert reservation.view.limit_requests == 80
    await limiter.settle(reservation, Settlement(actual=Cost(1, 1), success=True))
    for _ in range(1):
        r = await limiter.acquire("k", Cost(1, 1))
        await limiter.settle(r, Settlement(actual=Cost(1, 1), success=True))
    snap = limiter.snapshot()
    assert snap.limit_increases == 1
    assert snap.effective["k"].factor == pytest.approx(0.8)
    r = await limiter.acquire("k", Cost(1, 1))
    assert r.view is not None
    assert r.view.factor == pytest.approx(1.0)
