"""The Redis store beyond the shared transition suite: several processes, key layout, degradation."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.app.wiring import build_breaker
from ccproxy_asgi.breaker import BreakerPolicy, CircuitBreaker, Outcome, State
from ccproxy_asgi.breaker.memory_store import MemoryBreakerStore
from ccproxy_asgi.breaker.redis_store import RedisBreakerStore
from tests.support.manual_clock import ManualClock
from tests.support.proxy_server import free_port
from tests.support.redis_server import RedisServer, redis_server_fixture, require_redis_server

redis_server = redis_server_fixture()

KEY = "http://upstream.test/v1"
POLICY = BreakerPolicy(failure_threshold=2, recovery_seconds=5, half_open_max_probes=1)


def fast_client(url: str) -> Redis:
    return Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


@pytest.fixture
async def two_processes(
    redis_server: RedisServer,
) -> AsyncIterator[tuple[CircuitBreaker, CircuitBreaker, ManualClock]]:
    """Two breakers with their own Redis connections on one prefix, as two proxy processes would be."""
    redis_url = redis_server.url
    prefix = redis_server.unique_prefix() + ":"
    clock = ManualClock(time.time())
    first, second = (
        CircuitBreaker(policy=POLICY, store=RedisBreakerStore(fast_client(redis_url), prefix=prefix), clock=clock)
        for _ in range(2)
    )
    yield first, second, clock
    await first.aclose()
    await second.aclose()


async def test_one_process_trips_and_the_other_refuses(
    two_processes: tuple[CircuitBreaker, CircuitBreaker, ManualClock],
) -> None:
    first, second, clock = two_processes
    for _ in range(2):
        ticket = await first.acquire(KEY)
        await first.record(ticket, Outcome.FAILURE)
    refused = await second.acquire(KEY)
    assert (refused.allowed, refused.state) == (False, State.OPEN)
    assert refused.retry_after == pytest.approx(5)
    assert second.stats()[KEY].rejected == 1
    clock.advance(5)
    # Both race for the single probe slot: exactly one wins.
    tickets = await asyncio.gather(*(b.acquire(KEY) for b in (first, second) for _ in range(5)))
    probes = [t for t in tickets if t.allowed]
    assert len(probes) == 1
    winner = first if tickets.index(probes[0]) < 5 else second
    await winner.record(probes[0], Outcome.SUCCESS)
    assert (await first.snapshot(KEY)).state is State.CLOSED
    assert (await second.acquire(KEY)).allowed


async def test_failures_from_several_processes_add_up(
    two_processes: tuple[CircuitBreaker, CircuitBreaker, ManualClock],
) -> None:
    first, second, _ = two_processes
    await first.record(await first.acquire(KEY), Outcome.FAILURE)
    await second.record(await second.acquire(KEY), Outcome.FAILURE)
    assert (await first.snapshot(KEY)).state is State.OPEN


async def test_keys_share_one_hash_tag_and_expire(redis_server: RedisServer) -> None:
    redis_url = redis_server.url
    prefix = redis_server.unique_prefix() + ":"
    store = RedisBreakerStore(fast_client(redis_url), prefix=prefix)
    breaker = CircuitBreaker(policy=POLICY, store=store, clock=ManualClock(time.time()))
    state_key, probes_key, failed_key = store.redis_keys(KEY)
    tag = state_key[state_key.index("{") : state_key.index("}") + 1]
    for other in (probes_key, failed_key):
        assert other.startswith(state_key)
        assert tag in other
    assert len(tag) > 2
    for _ in range(2):
        await breaker.record(await breaker.acquire(KEY), Outcome.FAILURE)
    raw = fast_client(redis_url)
    try:
        fields = await raw.hgetall(state_key)
        assert fields[b"state"] == b"open"
        assert fields[b"key"] == KEY.encode()
        ttl = await raw.pttl(state_key)
        assert 0 < ttl <= (2 * 300 + 60) * 1000
    finally:
        await raw.aclose()
        await breaker.aclose()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone, to stop and restart (never the shared one)."""
    require_redis_server()
    if shutil.which("redis-server") is None:
        message = "this test stops and restarts its own redis-server, and none is installed"
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


async def test_redis_outage_degrades_to_the_local_breaker_and_recovers(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ccproxy_asgi.breaker")
    clock = ManualClock(time.time())
    local = MemoryBreakerStore()
    store = RedisBreakerStore(
        fast_client(own_redis.url), prefix=own_redis.unique_prefix() + ":", retry_interval=10, local=local
    )
    breaker = CircuitBreaker(policy=POLICY, store=store, clock=clock)
    held = await breaker.acquire(KEY)
    assert held.allowed
    assert not held.local
    own_redis.stop()
    # Redis is gone: every decision is local, and the outage is logged once, without the URL.
    tickets = [await breaker.acquire(KEY) for _ in range(3)]
    assert all(t.allowed and t.local for t in tickets)
    assert store.degraded
    await breaker.record(held, Outcome.FAILURE)  # a shared ticket whose outcome cannot be stored: dropped
    for ticket in tickets[:2]:
        await breaker.record(ticket, Outcome.FAILURE)
    assert (await local.snapshot(KEY, POLICY, clock())).state is State.OPEN
    snap = await breaker.snapshot(KEY)
    assert (snap.state, snap.degraded) == (State.OPEN, True)
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1
    assert str(own_redis.port) not in warnings[0]
    own_redis.start()
    clock.advance(4)  # still within retry_interval: stays local without asking Redis
    refused = await breaker.acquire(KEY)
    assert refused.local
    assert not refused.allowed
    clock.advance(6)
    shared = await breaker.acquire(KEY)  # Redis is asked again; it never saw the failures: closed
    assert shared.allowed
    assert not shared.local
    assert not store.degraded
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    await breaker.record(tickets[2], Outcome.FAILURE)  # a local ticket still goes to the local store
    await breaker.record(shared, Outcome.SUCCESS)
    snap = await breaker.snapshot(KEY)
    assert (snap.state, snap.degraded, snap.consecutive_failures) == (State.CLOSED, False, 0)
    await breaker.aclose()


async def test_allow_mode_lets_everything_through_while_redis_is_down() -> None:
    store = RedisBreakerStore(fast_client(f"redis://127.0.0.1:{free_port()}/0"), failure_mode="allow")
    breaker = CircuitBreaker(policy=POLICY, store=store, clock=ManualClock(time.time()))
    for _ in range(5):
        ticket = await breaker.acquire(KEY)
        assert ticket.allowed
        assert ticket.local
        await breaker.record(ticket, Outcome.FAILURE)
    assert (await breaker.acquire(KEY)).allowed
    await breaker.aclose()


async def test_build_breaker_from_settings(redis_server: RedisServer) -> None:
    redis_url = redis_server.url
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        state_backend="redis",
        redis_url=SecretStr(redis_url),
        breaker_failure_threshold=1,
        breaker_recovery_seconds=60,
        breaker_half_open_probes=2,
        breaker_count_429=True,
    )
    breaker = build_breaker(settings)
    assert isinstance(breaker.store, RedisBreakerStore)
    assert breaker.policy.half_open_max_probes == 2
    assert breaker.policy.count_429
    key = f"http://{uuid.uuid4().hex}.test/v1"
    await breaker.record(await breaker.acquire(key), Outcome.FAILURE)
    snap = await breaker.snapshot(key)
    assert snap.state is State.OPEN
    assert 59 < snap.retry_after <= 60
    await breaker.aclose()
    memory = build_breaker(Settings(_env_file=None))  # type: ignore[call-arg]
    assert isinstance(memory.store, MemoryBreakerStore)
    assert memory.policy == BreakerPolicy()
