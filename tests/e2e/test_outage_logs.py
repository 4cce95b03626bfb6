"""What a repeating outage writes to the log: the readiness monitor and the Redis store's ping.

Readiness probes meet a down dependency every few seconds for as long as it is down; each probe used to
write an ERROR saying the store was "unavailable at start-up". Here: one line when it starts (worded
for start-up or for a later outage), throttled reminders with a count, one line when it ends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from ccproxy_asgi.observability.collector import MetricsCollector
from ccproxy_asgi.observability.health import HealthMonitor, ping_check
from ccproxy_asgi.ratelimit.redis_store import RedisStore
from tests.support.manual_clock import ManualClock
from tests.support.redis_server import RedisServer, require_redis_server

HEALTH = "ccproxy_asgi.health"
STORE = "ccproxy_asgi.ratelimit.redis"


class Switch:
    """A readiness check whose answer the test sets."""

    def __init__(self) -> None:
        self.ok: bool | None = True  # None: the check raises

    async def __call__(self) -> bool:
        if self.ok is None:
            raise ConnectionRefusedError
        return self.ok


def messages(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name]


@pytest.fixture
def health(caplog: pytest.LogCaptureFixture) -> tuple[HealthMonitor, Switch, Switch, ManualClock]:
    caplog.set_level(logging.DEBUG, HEALTH)
    clock = ManualClock()
    upstream, store = Switch(), Switch()
    monitor = HealthMonitor(
        MetricsCollector(),
        breakers=(),
        checks={"upstream": upstream, "ratelimit_store": store},
        cache_seconds=0.0,
        clock=clock,
    )
    return monitor, upstream, store, clock


async def test_a_failing_check_is_logged_once_not_per_probe(
    health: tuple[HealthMonitor, Switch, Switch, ManualClock], caplog: pytest.LogCaptureFixture
) -> None:
    monitor, _, store, clock = health
    assert (await monitor.readiness()).ready
    store.ok = False
    for _ in range(50):
        clock.advance(1.0)
        assert not (await monitor.readiness()).ready
    lines = messages(caplog, HEALTH)
    assert lines == ["not ready: readiness check failing: ratelimit_store"]
    store.ok = True
    for _ in range(10):
        clock.advance(1.0)
        assert (await monitor.readiness()).ready
    assert messages(caplog, HEALTH)[1:] == ["readiness checks all passing again"]


async def test_the_line_names_what_fails_and_why(
    health: tuple[HealthMonitor, Switch, Switch, ManualClock], caplog: pytest.LogCaptureFixture
) -> None:
    monitor, upstream, store, _ = health
    upstream.ok = None  # raises
    store.ok = False
    await monitor.readiness()
    assert messages(caplog, HEALTH) == [
        "not ready: readiness check failing: upstream (ConnectionRefusedError), ratelimit_store"
    ]


async def test_a_flapping_check_is_throttled_with_a_count(
    health: tuple[HealthMonitor, Switch, Switch, ManualClock], caplog: pytest.LogCaptureFixture
) -> None:
    monitor, _, store, clock = health
    for _ in range(100):  # fails and passes on alternate probes, one a second
        store.ok = not store.ok
        clock.advance(1.0)
        await monitor.readiness()
    lines = messages(caplog, HEALTH)
    # In 100 s at most one line per direction per minute: the first two, then one more of each.
    assert len(lines) <= 4, lines
    assert any("more in the last" in line for line in lines[2:]), lines


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    require_redis_server()
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


async def test_ping_during_a_later_outage_logs_it_once_then_the_recovery(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, STORE)
    store = RedisStore.from_url(redis_server.url, prefix=redis_server.unique_prefix())
    try:
        assert await store.ping()
        redis_server.stop()
        for _ in range(50):
            assert not await store.ping()
        assert not store.available  # requests skip Redis for a while too
        lines = messages(caplog, STORE)
        assert len(lines) == 1, lines
        assert "unavailable" in lines[0]
        assert "at start-up" not in lines[0]
        redis_server.start()
        for _ in range(5):
            assert await store.ping()
        assert store.available
        lines = messages(caplog, STORE)
        assert len(lines) == 2, lines
        assert "reachable again" in lines[1]
    finally:
        await store.aclose()


async def test_a_flapping_redis_does_not_write_a_pair_of_lines_per_flap(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, STORE)
    store = RedisStore.from_url(redis_server.url, prefix=redis_server.unique_prefix())
    try:
        assert await store.ping()
        for _ in range(5):
            redis_server.stop()
            assert not await store.ping()
            redis_server.start()
            assert await store.ping()
        lines = messages(caplog, STORE)
        # The first outage and the first recovery; the next flaps are counted for the next lines.
        assert len(lines) == 2, lines
        assert "unavailable" in lines[0]
        assert "reachable again" in lines[1]
    finally:
        await store.aclose()


async def test_ping_before_redis_ever_answered_says_start_up_once(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, STORE)
    redis_server.stop()
    store = RedisStore.from_url(redis_server.url, prefix=redis_server.unique_prefix())
    try:
        check = ping_check(store)
        for _ in range(30):
            assert not await check()
        lines = messages(caplog, STORE)
        assert len(lines) == 1, lines
        assert "unavailable at start-up" in lines[0]
    finally:
        await store.aclose()
