"""RedisStore against a real redis-server: parity with MemoryStore, atomicity across connections, the
data layout (per-request entries, one hash tag), cancellation, and outages (fail open/closed, recovery)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from ccproxy_asgi.ratelimit import (
    AdaptivePolicy,
    Budget,
    Cost,
    Decision,
    MemoryStore,
    Observation,
    RateLimiter,
    Settlement,
    StoreUnavailableError,
)
from ccproxy_asgi.ratelimit.redis_store import RedisStore
from tests.support.manual_clock import ManualClock
from tests.support.redis_server import RedisServer, redis_server_fixture

redis_server = redis_server_fixture()
POLICY = AdaptivePolicy(successes_to_increase=2)


@pytest.fixture
async def store_factory(redis_server: RedisServer) -> AsyncIterator[Callable[..., RedisStore]]:
    stores: list[RedisStore] = []

    def make(**kwargs: Any) -> RedisStore:
        kwargs.setdefault("prefix", redis_server.unique_prefix())
        store = RedisStore.from_url(redis_server.url, **kwargs)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.aclose()


def _summary(decision: Decision) -> tuple[Any, ...]:
    view = decision.view
    return (
        decision.ticket is not None,
        round(decision.wait, 3),
        view.remaining_requests,
        view.remaining_tokens,
        view.remaining_input_tokens,
        view.remaining_output_tokens,
        view.limit_requests,
        view.limit_tokens,
        round(view.factor, 4),
        round(view.paused_for, 3),
        round(view.reset_after, 3),
    )


async def _scenario(store: Any, clock: ManualClock) -> list[tuple[Any, ...]]:
    """One sequence of decisions, settlements and observations; the trace of what the store said."""
    budget = Budget(requests=5, tokens=1000, input_tokens=700, output_tokens=600, window=10)
    trace: list[tuple[Any, ...]] = []
    tickets = []

    async def acquire(cost: Cost, reserve: bool = True) -> Decision:
        decision: Decision = await store.acquire("k", cost, budget, POLICY, reserve=reserve)
        trace.append(_summary(decision))
        if decision.ticket is not None:
            tickets.append(decision.ticket)
        return decision

    await acquire(Cost(200, 300))
    clock.t += 1
    await acquire(Cost(300, 200))
    await acquire(Cost(300, 200))  # input 800 > 700: waits for the first to expire
    await store.settle(tickets[0], Settlement(actual=Cost(200, 20), success=True), budget, POLICY)
    await acquire(Cost(100, 100))
    clock.t += 2
    await store.settle(tickets[1], Settlement(cancel=True), budget, POLICY)
    await store.settle(tickets[2], Settlement(actual=Cost(120, 30), extra_requests=2), budget, POLICY)
    await acquire(Cost(10, 10), reserve=False)
    change = await store.observe("k", Observation(rate_limited=1, retry_after=2.5), budget, POLICY,
                                 admitted_at=tickets[0].admitted_at)  # fmt: skip
    trace.append((change.factor, change.changed))
    change = await store.observe(
        "k", Observation(rate_limited=1), budget, POLICY, admitted_at=tickets[0].admitted_at
    )
    trace.append((change.factor, change.changed))  # same round: no second cut
    await acquire(Cost(10, 10))  # paused
    clock.t += 2.5
    await acquire(Cost(10, 10))
    await store.observe("k", Observation(remaining_tokens=100, reset_tokens=3.0), budget, POLICY)
    await acquire(Cost(100, 100))  # the debt leaves too little
    await acquire(Cost(40, 40))
    clock.t += 3.0
    await acquire(Cost(100, 100))
    for ticket in tickets[-3:]:
        change = await store.settle(ticket, Settlement(actual=Cost(1, 1), success=True), budget, POLICY)
        trace.append((round(change.factor, 4), change.changed))
    clock.t += 20
    await acquire(Cost(500, 500), reserve=False)
    await acquire(Cost(600, 100))  # above the scaled input limit (560) but within 700: alone, it fits
    return trace


async def test_parity_with_the_memory_store(store_factory: Callable[..., RedisStore]) -> None:
    memory_clock, redis_clock = ManualClock(), ManualClock()
    expected = await _scenario(MemoryStore(clock=memory_clock), memory_clock)
    got = await _scenario(store_factory(clock=redis_clock), redis_clock)
    assert got == expected
    assert any(row[0] is False for row in expected if len(row) > 2)  # the scenario does refuse


async def test_server_time_and_the_data_layout(store_factory: Callable[..., RedisStore]) -> None:
    store = store_factory()
    budget = Budget(requests=100, tokens=1_000_000, window=30)
    for _ in range(20):
        decision = await store.acquire("model:gpt-4o", Cost(5000, 4000), budget, POLICY)
        assert decision.ticket is not None
    log, cost, state = store.keys_for("model:gpt-4o")
    client = store.client
    # One member per request, never per token; every key under one hash tag (one cluster slot).
    assert await client.zcard(log) == 20
    assert await client.hlen(cost) == 20
    assert int(await client.hget(state, "tok") or 0) == 20 * 9000
    assert len({key_slot(k.encode()) for k in (log, cost, state)}) == 1
    assert log.startswith("{" + store.prefix + ":model:gpt-4o}")
    for key in (log, cost, state):
        ttl = await client.pttl(key)
        assert 0 < ttl <= (2 * 30 + 60 + 60) * 1000
    refused = await store.acquire("model:gpt-4o", Cost(10, 10), Budget(requests=20, window=30), POLICY)
    assert refused.ticket is None
    assert 29.0 < refused.wait <= 30.0


def test_braces_in_keys_cannot_break_the_hash_tag() -> None:
    store = RedisStore(Redis(), prefix="p")
    log, cost, state = store.keys_for("client:a}b{c")
    assert log == "{p:client:a)b(c}:log"
    assert len({key_slot(k.encode()) for k in (log, cost, state)}) == 1


async def test_concurrent_processes_never_overspend(
    store_factory: Callable[..., RedisStore], redis_server: RedisServer
) -> None:
    prefix = redis_server.unique_prefix()
    # Three clients, three connection pools. What is tested is that concurrent decisions never overspend,
    # not how fast 190 connections open: on a loaded machine the default 0.5 s connect timeout is too
    # short for that burst, so these stores get generous timeouts.
    stores = [store_factory(prefix=prefix, connect_timeout=10.0, socket_timeout=10.0) for _ in range(3)]
    budget = Budget(requests=50, tokens=10_000, window=60)

    async def one(i: int) -> bool:
        decision = await stores[i % 3].acquire("global", Cost(60, 40), budget, POLICY)
        return decision.ticket is not None

    admitted = await asyncio.gather(*(one(i) for i in range(300)))
    assert sum(admitted) == 50
    assert await stores[0].client.zcard(stores[0].keys_for("global")[0]) == 50


async def test_cancelled_acquire_leaves_no_reservation(store_factory: Callable[..., RedisStore]) -> None:
    store = store_factory()
    budget = Budget(requests=1000, window=60)
    for _ in range(30):
        task = asyncio.ensure_future(store.acquire("k", Cost(1, 1), budget, POLICY))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.3)
    assert store._background == set()
    assert await store.client.zcard(store.keys_for("k")[0]) == 0


async def test_limiter_over_redis_waits_and_admits(store_factory: Callable[..., RedisStore]) -> None:
    limiter = RateLimiter(budget=Budget(requests=2, window=0.5), store=store_factory(), poll_interval=0.05)
    for _ in range(2):
        await limiter.acquire("k", Cost(1, 1))
    reservation = await limiter.acquire("k", Cost(1, 1))
    assert 0.3 < reservation.waited < 2.0
    await limiter.settle(reservation, Settlement(actual=Cost(1, 1), success=True))
    await limiter.aclose()


@pytest.fixture
def own_server() -> Any:
    from tests.support.redis_server import require_redis_server

    require_redis_server()
    import os

    if os.environ.get("REDIS_URL"):
        pytest.skip("outage tests need a redis-server of their own (REDIS_URL is set)")
    server = RedisServer()
    server.start()
    yield server
    server.close()


async def test_outage_fails_open_logs_and_recovers(
    own_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore.from_url(own_server.url, prefix="outage", retry_interval=0.2)
    limiter = RateLimiter(budget=Budget(requests=1, window=60), store=store, failure_mode="open")
    first = await limiter.acquire("k", Cost(1, 1))
    assert first.ticket is not None
    own_server.stop()
    caplog.set_level(logging.WARNING, logger="ccproxy_asgi.ratelimit.redis")
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(5):
        reservation = await limiter.acquire("k", Cost(1, 1))  # over budget, but nobody can tell
        assert reservation.ticket is None
        await limiter.settle(reservation, Settlement(success=True))
    assert loop.time() - started < 2.0  # an outage costs milliseconds, not timeouts per request
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "unavailable" in errors[0].getMessage()
    assert limiter.snapshot().failed_open == 5
    own_server.start()
    await asyncio.sleep(0.25)
    # Back: the budget is enforced again (the server restarted empty: one request fits, the next not).
    assert (await limiter.acquire("k", Cost(1, 1), max_wait=0)).ticket is not None
    with pytest.raises(Exception, match="rate limited"):
        await limiter.acquire("k", Cost(1, 1), max_wait=0)
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    await limiter.aclose()


async def test_outage_fails_closed(own_server: RedisServer) -> None:
    store = RedisStore.from_url(own_server.url, prefix="closed", retry_interval=0.2)
    limiter = RateLimiter(budget=Budget(requests=10, window=60), store=store, failure_mode="closed")
    own_server.stop()
    assert not await store.ping()
    with pytest.raises(Exception, match="unavailable") as info:
        await limiter.acquire("k", Cost(1, 1))
    assert getattr(info.value, "status", None) == 429
    with pytest.raises(StoreUnavailableError):
        await store.acquire("k", Cost(1, 1), Budget(requests=1), POLICY)
    await limiter.aclose()
