"""The Redis state backend on a real 3-master Redis Cluster (`CCPROXY_REDIS_CLUSTER=true`).

- Every Lua call of the limiter and the breaker keeps its keys on one slot (asked of the server with
  `CLUSTER KEYSLOT`), the calls run on the cluster, and different limiter and breaker keys spread over
  all three masters.
- Three proxy processes (`ccproxy-asgi serve`, i.e. `create_app(Settings())` under uvicorn) hold one
  request budget together: bursts from the `anthropic` SDK into all three at once are admitted exactly as
  with one Redis server (the reference run here), within +-5 %.
- One breaker state for all three: a dead upstream (connection refused, distinct requests) trips it through
  one process, the others answer 529 without calling the upstream, the shared state says open, and once
  the upstream is back every process serves again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import pytest

from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.app.wiring import build_breaker
from ccproxy_asgi.breaker import CircuitBreaker, Outcome, RedisBreakerStore, upstream_key
from ccproxy_asgi.ratelimit import (
    AdaptivePolicy,
    Budget,
    Cost,
    Observation,
    Settlement,
    StoreUnavailableError,
)
from ccproxy_asgi.ratelimit.keys import key_for
from ccproxy_asgi.ratelimit.redis_store import RedisStore
from ccproxy_asgi.redis_client import build_redis_client
from tests.support.mock_process import MockUpstreamProcess, mock_upstream_fixture, start_mock_upstream
from tests.support.proxy_server import free_port
from tests.support.redis_cluster import RedisClusterServers, redis_cluster_fixture
from tests.support.redis_server import RedisServer, redis_server_fixture
from tests.support.server_process import ServerProcess, start_server
from tests.support.stack import UPSTREAM_KEY

redis_cluster = redis_cluster_fixture(scope="module")
redis_server = redis_server_fixture(scope="module")
mock = mock_upstream_fixture(scope="module")

PROCESSES = 3
BUDGET = 60  # requests per WINDOW, shared by the three processes
WINDOW = 4.0
BURST_PER_PROCESS = 40  # 120 requests at once: twice the budget


@contextlib.contextmanager
def proxies(env: dict[str, str], count: int = PROCESSES) -> Iterator[list[ServerProcess]]:
    """`count` separate `ccproxy-asgi serve --server uvicorn` processes with `env`, started in parallel."""
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(start_server, "uvicorn", env=env) for _ in range(count)]
        servers = []
        for future in futures:
            try:
                server = future.result()
            except BaseException:
                for other in futures:
                    with contextlib.suppress(BaseException):
                        other.result().stop()
                raise
            stack.callback(server.stop)
            servers.append(server)
        yield servers


def assert_clean(servers: list[ServerProcess], *, forbidden: tuple[str, ...] = ()) -> None:
    for server in servers:
        server.stop()
        assert "Traceback" not in server.stderr, server.stderr
        for text in forbidden:
            assert text not in server.stderr, server.stderr


# ----- hash tags: one slot per Lua call, keys spread over the masters -----------------------------------


def _limiter_keys() -> list[str]:
    class Ctx:  # the parts of a RequestContext that `key_for` reads
        client_key_id = None
        upstream_model = None
        requested_model = None

    keys = {"global"}
    for i in range(12):
        ctx: Any = Ctx()
        ctx.upstream_model = f"model-{i}"
        keys.add(key_for("model", ctx, None))
        keys.add(key_for("client", ctx, f"sk-client-{i}"))
        keys.add(key_for("client_model", ctx, f"sk-client-{i}"))
    return sorted(keys)


async def test_limiter_keys_share_a_slot_per_call_and_spread_over_the_masters(
    redis_cluster: RedisClusterServers,
) -> None:
    prefix = redis_cluster.unique_prefix()
    store = RedisStore.from_url(redis_cluster.url, cluster=True, prefix=prefix)
    budget = Budget(requests=5, tokens=10_000, window=60.0)
    policy = AdaptivePolicy(enabled=True)
    owners = redis_cluster.slot_owners()
    expected: dict[int, set[str]] = {port: set() for port in redis_cluster.ports}
    try:
        assert await store.ping()
        for key in _limiter_keys():
            names = store.keys_for(key)
            slots = {redis_cluster.keyslot(name) for name in names}
            assert len(slots) == 1, (key, names, slots)
            expected[owners[slots.pop()]].update(names)
            # Each script (acquire, settle, observe) runs on the cluster against these keys.
            decision = await store.acquire(key, Cost(100, 50), budget, policy)
            assert decision.ticket is not None
            await store.settle(decision.ticket, Settlement(actual=Cost(80, 20), success=True), budget, policy)
            change = await store.observe(key, Observation(rate_limited=1, retry_after=0.01), budget, policy)
            assert change.changed
        assert store.available
    finally:
        await store.aclose()
    held = redis_cluster.keys_by_master("{" + prefix + ":*")
    for port in redis_cluster.ports:
        assert expected[port], f"no limiter key on the master at port {port}"
        assert set(held[port]) == expected[port]
    print(
        f"\n{len(_limiter_keys())} limiter keys: keys per master "
        + ", ".join(f"{port}={len(held[port])}" for port in redis_cluster.ports)
    )


def cluster_settings(cluster: RedisClusterServers, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "upstream_base_url": "http://127.0.0.1:9/v1",
        "state_backend": "redis",
        "redis_url": cluster.url,
        "redis_cluster": True,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def cluster_breaker(cluster: RedisClusterServers) -> tuple[CircuitBreaker, RedisBreakerStore]:
    breaker = build_breaker(cluster_settings(cluster))
    store = breaker.store
    assert isinstance(store, RedisBreakerStore)
    return breaker, store


async def test_breaker_keys_share_a_slot_per_call_and_spread_over_the_masters(
    redis_cluster: RedisClusterServers,
) -> None:
    breaker, store = cluster_breaker(redis_cluster)
    owners = redis_cluster.slot_owners()
    run = redis_cluster.unique_prefix().replace(":", "-")
    keys = [upstream_key(f"http://{run}-{i}.internal:8000/v1") for i in range(12)]
    keys += [upstream_key(f"http://{run}.internal:8000/v1", f"model-{i}") for i in range(12)]
    expected: dict[int, set[str]] = {port: set() for port in redis_cluster.ports}
    try:
        for key in keys:
            names = store.redis_keys(key)
            slots = {redis_cluster.keyslot(name) for name in names}
            assert len(slots) == 1, (key, names, slots)
            expected[owners[slots.pop()]].add(names[0])  # the hash always exists; the others may not
            ticket = await breaker.acquire(key)
            assert ticket.allowed
            await breaker.record(ticket, Outcome.FAILURE)
            snapshot = await breaker.snapshot(key)
            assert not snapshot.degraded
            assert snapshot.consecutive_failures >= 1 or snapshot.window_failures >= 1
        assert not store.degraded
    finally:
        await breaker.aclose()
    held = redis_cluster.keys_by_master("ccproxy:breaker:*")
    for port in redis_cluster.ports:
        assert expected[port], f"no breaker key on the master at port {port}"
        assert expected[port] <= set(held[port])


async def test_an_unreachable_cluster_degrades_both_stores(redis_cluster: RedisClusterServers) -> None:
    """No node answers (the client cannot even learn the cluster): each store reports it, none raises."""
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    store = RedisStore.from_url(nowhere, cluster=True, prefix=redis_cluster.unique_prefix())
    try:
        assert not await store.ping()
        with pytest.raises(StoreUnavailableError):
            await store.acquire("global", Cost(1, 1), Budget(requests=1, window=1.0), AdaptivePolicy())
        assert not store.available
    finally:
        await store.aclose()
    breaker = build_breaker(cluster_settings(redis_cluster, redis_url=nowhere))
    try:
        ticket = await breaker.acquire("http://upstream.internal/v1")
        assert ticket.allowed  # the in-process breaker decides meanwhile
        assert (await breaker.snapshot("http://upstream.internal/v1")).degraded
    finally:
        await breaker.aclose()


def test_a_cluster_has_only_database_0() -> None:
    with pytest.raises(ValueError, match="only database 0"):
        build_redis_client("redis://127.0.0.1:6379/2", cluster=True)


# ----- one request budget for three processes ---------------------------------------------------------


@dataclass
class Burst:
    statuses: Counter[int]
    seconds: float
    without_retry_after: int


async def burst(urls: list[str], tag: str) -> Burst:
    """BURST_PER_PROCESS concurrent Messages requests into each proxy (anthropic SDK, no retries)."""
    statuses: Counter[int] = Counter()
    without_retry_after = 0
    clients = [
        anthropic.AsyncAnthropic(base_url=url, api_key="client-key", max_retries=0, timeout=30)
        for url in urls
    ]

    async def one(client: anthropic.AsyncAnthropic, n: int) -> None:
        try:
            await client.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=16,
                messages=[{"role": "user", "content": f"{tag} request {n}"}],
            )
            statuses[200] += 1
        except anthropic.APIStatusError as exc:
            nonlocal without_retry_after
            statuses[exc.status_code] += 1
            if exc.status_code == 429 and not exc.response.headers.get("retry-after"):
                without_retry_after += 1

    started = time.monotonic()
    try:
        await asyncio.gather(
            *(one(client, p * 1000 + n) for p, client in enumerate(clients) for n in range(BURST_PER_PROCESS))
        )
    finally:
        for client in clients:
            await client.close()
    return Burst(statuses, time.monotonic() - started, without_retry_after)


async def shared_budget_run(
    mock: MockUpstreamProcess, url: str, *, cluster: RedisClusterServers | None, label: str
) -> list[int]:
    """Two bursts one window apart into three processes; returns the admitted count of each."""
    prefix = RedisClusterServers.unique_prefix()
    env = {
        "CCPROXY_UPSTREAM_BASE_URL": mock.openai_base_url,
        "CCPROXY_UPSTREAM_API_KEY": UPSTREAM_KEY,
        "CCPROXY_STATE_BACKEND": "redis",
        "CCPROXY_REDIS_URL": url,
        "CCPROXY_REDIS_CLUSTER": "false" if cluster is None else "true",
        "CCPROXY_RATE_LIMIT_REDIS_PREFIX": prefix,
        "CCPROXY_RATE_LIMIT_RPM": str(BUDGET),
        "CCPROXY_RATE_LIMIT_WINDOW_SECONDS": str(WINDOW),
        "CCPROXY_RATE_LIMIT_MAX_WAIT_SECONDS": "0",
        "CCPROXY_BREAKER_ENABLED": "false",
        "CCPROXY_LOG_LEVEL": "warning",
    }
    admitted: list[int] = []
    with proxies(env) as servers:
        urls = [server.base_url for server in servers]
        for round_ in range(2):
            await mock.areset()
            result = await burst(urls, f"{label}-{round_}")
            upstream = len(await mock.arequests())
            print(
                f"\n{label}: burst {round_ + 1}: admitted {result.statuses[200]}/{BUDGET} "
                f"(statuses {dict(result.statuses)}, upstream saw {upstream}, {result.seconds:.2f} s)"
            )
            assert result.seconds < WINDOW, "the burst outlasted the window: the figures would mean nothing"
            assert set(result.statuses) <= {200, 429}, result.statuses
            assert result.without_retry_after == 0
            assert upstream == result.statuses[200]
            admitted.append(result.statuses[200])
            if round_ == 0:
                await asyncio.sleep(WINDOW + 0.2)  # the whole window slides past: the budget is free again
        assert_clean(servers, forbidden=("rate-limit store unavailable",))
    if cluster is not None:
        # The budget's keys are on the master that owns their slot, and nowhere else.
        tag = "{" + prefix + ":global}"
        owner = cluster.master_of_slot(cluster.keyslot(tag))
        held = cluster.keys_by_master("{" + prefix + ":*")
        assert held == {
            port: [tag + ":cost", tag + ":log", tag + ":st"] if port == owner else [] for port in held
        }
    return admitted


async def test_three_processes_hold_one_budget_on_the_cluster(
    mock: MockUpstreamProcess, redis_cluster: RedisClusterServers, redis_server: RedisServer
) -> None:
    reference = await shared_budget_run(mock, redis_server.url, cluster=None, label="one Redis server")
    on_cluster = await shared_budget_run(
        mock, redis_cluster.url, cluster=redis_cluster, label="Redis Cluster"
    )
    for admitted in (*reference, *on_cluster):
        assert 0.95 * BUDGET <= admitted <= 1.05 * BUDGET
    for single, clustered in zip(reference, on_cluster, strict=True):
        assert abs(clustered - single) <= 0.05 * BUDGET


# ----- one breaker for three processes ----------------------------------------------------------------


def _message(text: str) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": text}]}


async def _breaker_entries(url: str) -> list[dict[str, Any]]:
    """The `breakers` list of a process's `/health/ready` (the keys it has used)."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url + "/health/ready")
    entries: list[dict[str, Any]] = response.json().get("breakers", [])
    return entries


async def test_three_processes_share_one_breaker_on_the_cluster(redis_cluster: RedisClusterServers) -> None:
    port = free_port()  # nothing listens here yet: connection refused, a dead upstream
    base_url = f"http://127.0.0.1:{port}/v1"
    key = upstream_key(base_url)
    recovery = 3.0
    env = {
        "CCPROXY_UPSTREAM_BASE_URL": base_url,
        "CCPROXY_UPSTREAM_API_KEY": UPSTREAM_KEY,
        "CCPROXY_STATE_BACKEND": "redis",
        "CCPROXY_REDIS_URL": redis_cluster.url,
        "CCPROXY_REDIS_CLUSTER": "true",
        "CCPROXY_BREAKER_ENABLED": "true",
        "CCPROXY_BREAKER_RECOVERY_SECONDS": str(recovery),
        "CCPROXY_RETRY_MAX_ATTEMPTS": "1",
        "CCPROXY_LOG_LEVEL": "warning",
    }
    watcher, store = cluster_breaker(redis_cluster)  # reads the shared state as a fourth party
    healed: MockUpstreamProcess | None = None
    with proxies(env) as servers:
        clients = [
            anthropic.AsyncAnthropic(base_url=server.base_url, api_key="k", max_retries=0, timeout=20)
            for server in servers
        ]
        try:
            # Trip it through the first process: distinct requests, each refused by the dead upstream.
            failures: Counter[int] = Counter()
            tripped = False
            for n in range(40):
                try:
                    await clients[0].messages.create(**_message(f"distinct request {n}"))
                except anthropic.APIStatusError as exc:
                    if exc.status_code == 529 and "circuit breaker" in exc.message:
                        tripped = True
                        break
                    failures[exc.status_code] += 1
            assert tripped, f"no 529 from the breaker after the failures {dict(failures)}"
            opened_at = time.monotonic()
            snapshot = await watcher.snapshot(key)
            assert str(snapshot.state) == "open"
            assert not snapshot.degraded
            print(f"\nbreaker open through one process after distinct failing requests {dict(failures)}")

            # The other processes never saw a failure, yet refuse: the state lives in the cluster. A
            # 529 saying "circuit breaker" never came from the upstream (a refused connection is not a 529).
            for server, client in zip(servers[1:], clients[1:], strict=True):
                with pytest.raises(anthropic.APIStatusError) as refused:
                    await client.messages.create(**_message(f"healthy request to {server.port}"))
                assert refused.value.status_code == 529, refused.value
                assert "circuit breaker" in refused.value.message
                assert refused.value.response.headers.get("retry-after")
                entries = await _breaker_entries(server.base_url)
                assert [(e["key"], e["state"]) for e in entries] == [(key, "open")]
            assert time.monotonic() - opened_at < recovery

            # The upstream comes back; after the recovery time a probe closes the breaker for everyone.
            healed = await asyncio.to_thread(start_mock_upstream, port=port)
            deadline = opened_at + recovery + 10.0
            served = False
            while not served and time.monotonic() < deadline:
                try:
                    await clients[-1].messages.create(**_message(f"probe at {time.monotonic():.3f}"))
                    served = True
                except anthropic.APIStatusError:
                    await asyncio.sleep(0.2)
            assert served, "the breaker did not close after the upstream came back"
            print(
                f"closed again {time.monotonic() - opened_at:.1f} s after it opened (recovery {recovery:g} s)"
            )
            for n, client in enumerate(clients):
                assert (await client.messages.create(**_message(f"after recovery {n}"))).content
            assert str((await watcher.snapshot(key)).state) == "closed"
            for server in servers:
                assert [(e["key"], e["state"]) for e in await _breaker_entries(server.base_url)] == [
                    (key, "closed")
                ]
            assert not store.degraded
        finally:
            for client in clients:
                await client.close()
            await watcher.aclose()
            if healed is not None:
                healed.stop()
        assert_clean(servers)
