"""A Redis outage seen through readiness probes: reported, not flooded, and its end logged once.

`ccproxy-asgi serve` runs with the Redis state backend against a real `redis-server` this test owns.
Redis is stopped; a load balancer's probes hit `/health/ready` 50 times (and requests keep coming):
readiness says not ready every time, the log says so a couple of times at most (not once per probe),
and it does not claim the store was unavailable "at start-up" (it was up then). Redis comes back:
readiness turns ready again, and the recovery is logged once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.mock_process import MockUpstreamProcess, mock_upstream_fixture
from tests.support.redis_server import RedisServer, running_redis_server
from tests.support.server_process import ServerProcess, running_server

mock_upstream = mock_upstream_fixture(scope="module")
PROBES = 50
#: Loggers whose lines are about the shared store or readiness.
STORE_LOGGERS = ("ccproxy_asgi.ratelimit.redis", "ccproxy_asgi.health", "ccproxy_asgi.breaker")


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis_server() as server:
        if server.external:
            pytest.skip("the test stops and restarts Redis: it needs a redis-server of its own")
        yield server


@pytest.fixture
def proxy(redis: RedisServer, mock_upstream: MockUpstreamProcess) -> Iterator[ServerProcess]:
    env = {
        "CCPROXY_UPSTREAM_BASE_URL": mock_upstream.openai_base_url,
        "CCPROXY_UPSTREAM_API_KEY": "sk-upstream-outage",
        "CCPROXY_STATE_BACKEND": "redis",
        "CCPROXY_REDIS_URL": redis.url,
        "CCPROXY_RATE_LIMIT_REDIS_PREFIX": redis.unique_prefix(),
        "CCPROXY_RATE_LIMIT_RPM": "100000",
        "CCPROXY_ACCESS_LOG": "false",
    }
    with running_server("uvicorn", env=env) as server:
        yield server


def store_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(name in line for name in STORE_LOGGERS)]


def ask(client: httpx.Client) -> int:
    body = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    return client.post("/v1/messages", json=body, headers={"x-api-key": "k"}).status_code


def test_probes_during_a_redis_outage_log_a_couple_of_lines_and_the_recovery_once(
    proxy: ServerProcess, redis: RedisServer
) -> None:
    with httpx.Client(base_url=proxy.base_url, timeout=10.0) as client:
        assert client.get("/health/ready").status_code == 200
        assert ask(client) == 200
        before = len(proxy.stderr.splitlines())

        redis.stop()
        time.sleep(1.2)  # readiness verdicts are reused for a second
        statuses = []
        for i in range(PROBES):
            ready = client.get("/health/ready")
            statuses.append(ready.status_code)
            if i % 10 == 0:
                assert ask(client) == 200  # the limiter fails open (the default)
            time.sleep(0.1)
        # One probe a second past the checks' cache, so most probes reach Redis themselves.
        for _ in range(5):
            time.sleep(1.1)
            ready = client.get("/health/ready")
            statuses.append(ready.status_code)
        assert set(statuses) == {503}, statuses
        assert ready.json()["checks"]["ratelimit_store"]["ok"] is False
        outage = store_lines("\n".join(proxy.stderr.splitlines()[before:]))
        assert 1 <= len(outage) <= 3, "\n".join(outage)
        assert not any("at start-up" in line for line in outage), "\n".join(outage)
        assert sum("rate-limit store" in line for line in outage) == 1, "\n".join(outage)

        redis.start()
        deadline = time.monotonic() + 10
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "readiness did not recover after Redis came back"
            time.sleep(0.2)
        for _ in range(10):
            assert client.get("/health/ready").status_code == 200
            assert ask(client) == 200
        after = store_lines("\n".join(proxy.stderr.splitlines()[before:]))
    recovered = [line for line in after if "rate-limit store" in line and "reachable again" in line]
    assert len(recovered) == 1, "\n".join(after)
    assert len(after) <= 6, "\n".join(after)


def test_a_store_down_at_start_up_says_so_once(
    redis: RedisServer, mock_upstream: MockUpstreamProcess
) -> None:
    redis.stop()
    env = {
        "CCPROXY_UPSTREAM_BASE_URL": mock_upstream.openai_base_url,
        "CCPROXY_UPSTREAM_API_KEY": "sk-upstream-outage",
        "CCPROXY_STATE_BACKEND": "redis",
        "CCPROXY_REDIS_URL": redis.url,
        "CCPROXY_RATE_LIMIT_RPM": "100000",
        "CCPROXY_ACCESS_LOG": "false",
    }
    with running_server("uvicorn", env=env) as server, httpx.Client(base_url=server.base_url) as client:
        for _ in range(20):
            assert client.get("/health/ready").status_code == 503
            time.sleep(0.15)
        lines = [line for line in store_lines(server.stderr) if "rate-limit store" in line]
    assert len(lines) == 1, "\n".join(lines)
    assert "at start-up" in lines[0]
