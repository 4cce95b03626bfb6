"""Fault matrix (issue 11): Redis killed with SIGKILL under load and restarted on the same port.

`ccproxy-asgi serve` (a real process, the way a user runs it) with the Redis state backend, a rate
limit and the breaker on, in front of the mock upstream, with clients sending requests back to back.
Mid-load Redis is killed (-9), left down for a few seconds, and started again on the same port. With
the default failure modes (the limiter admits without limits, the breaker falls back to one per process)
every request must still get a 200 and none may wait long; `/health/ready` must answer 503 naming the
store while Redis is down and 200 again once it is back; the log must say that the store went away and
that it came back; and the proxy's open fds must be back where they were once the load stops. (Tasks
are not counted: the `serve` process has no test route; test_e2e_fault_matrix.py counts them.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field

import httpx

from tests.support.e2e import ProxyPool
from tests.support.redis_server import RedisServer, redis_server_fixture
from tests.support.server_process import running_server

redis_server = redis_server_fixture(scope="module")

CLIENTS = 4
OUTAGE_SECONDS = 3.0
#: No request may take longer than this, outage or not (the Redis clients give up after 0.5 s).
SLOWEST_ALLOWED = 3.0


@dataclass
class Load:
    """Clients sending requests back to back until `stop`, each outcome with its time."""

    base_url: str
    outcomes: list[tuple[float, int, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, index: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            turn = 0
            while not self.stop.is_set():
                turn += 1
                self.one(client, index, turn)

    def one(self, client: httpx.Client, index: int, turn: int) -> None:
        body = {
            "model": "claude-3-5-haiku-latest",
            "max_tokens": 16,
            "stream": (index + turn) % 2 == 0,
            "messages": [{"role": "user", "content": f"client {index} turn {turn}"}],
        }
        started = time.monotonic()
        try:
            response = client.post("/v1/messages", json=body, headers={"x-api-key": "client"})
            status = response.status_code
            if status != 200:
                self.errors.append(f"{status}: {response.text[:200]}")
        except httpx.HTTPError as exc:
            status = -1
            self.errors.append(f"{type(exc).__name__}: {exc}")
        with self._lock:
            self.outcomes.append((started, status, time.monotonic() - started))

    def between(self, start: float, end: float) -> list[tuple[float, int, float]]:
        with self._lock:
            return [o for o in self.outcomes if start <= o[0] < end]


def ready(base_url: str) -> tuple[int, dict[str, object]]:
    response = httpx.get(base_url + "/health/ready", timeout=10)
    return response.status_code, response.json()


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def peers(pid: int) -> dict[str, int]:
    """The process's TCP sockets by remote port (for a readable failure), from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    counts: dict[str, int] = {}
    for line in open(f"/proc/{pid}/net/tcp").read().splitlines()[1:]:  # noqa: SIM115
        parts = line.split()
        if parts[9] in inodes:
            remote = str(int(parts[2].split(":")[1], 16))
            counts[remote] = counts.get(remote, 0) + 1
    return counts


def test_redis_killed_and_restarted_under_load(e2e_pool: ProxyPool, redis_server: RedisServer) -> None:
    if redis_server.external:
        import pytest

        pytest.skip("needs a redis-server this test can kill (REDIS_URL points at an external one)")
    env = {
        "CCPROXY_UPSTREAM_BASE_URL": e2e_pool.mock.openai_base_url,
        "CCPROXY_UPSTREAM_API_KEY": "sk-fault-matrix-upstream-key",
        "CCPROXY_STATE_BACKEND": "redis",
        "CCPROXY_REDIS_URL": redis_server.url,
        "CCPROXY_RATE_LIMIT_RPM": "1000000",
        "CCPROXY_BREAKER_ENABLED": "true",
        "CCPROXY_RETRY_MAX_BACKOFF_SECONDS": "0.05",
        "CCPROXY_ACCESS_LOG": "false",
    }
    with running_server("uvicorn", env=env) as server:
        load = Load(server.base_url)
        # Warm up, then the baseline: every pool (upstream, Redis) holds what one request needs.
        # Warm up with the same load, so the pools (upstream connections, Redis connections) have the
        # size the load needs before the baseline is taken.
        threads = [threading.Thread(target=load.run, args=(i,), daemon=True) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        load.stop.set()
        for thread in threads:
            thread.join(30)
        assert load.outcomes
        assert load.errors == [], load.errors[:5]
        load.outcomes.clear()
        load.stop.clear()
        assert ready(server.base_url)[0] == 200
        time.sleep(0.5)
        baseline = fds(server.pid)
        baseline_peers = peers(server.pid)

        threads = [threading.Thread(target=load.run, args=(i,), daemon=True) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.0)
            process = redis_server._process
            assert process is not None
            killed = time.monotonic()
            os.kill(process.pid, signal.SIGKILL)
            redis_server.stop()  # reaps the killed process; start() below brings it back on the same port

            # Down: readiness says so, within the stores' retry pause.
            down_status: list[tuple[int, dict[str, object]]] = []
            while time.monotonic() - killed < OUTAGE_SECONDS:
                down_status.append(ready(server.base_url))
                time.sleep(0.25)
            restarted = time.monotonic()
            redis_server.start()

            # Back: readiness recovers by itself.
            recovered: float | None = None
            while time.monotonic() - restarted < 15:
                status, _ = ready(server.base_url)
                if status == 200:
                    recovered = time.monotonic()
                    break
                time.sleep(0.1)
            assert recovered is not None, "readiness did not recover within 15 s of Redis' restart"
            time.sleep(2.0)  # and serving goes on with the shared state back
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(30)
        ended = time.monotonic()

        during = load.between(killed, restarted)
        after = load.between(restarted, ended)
        everything = load.outcomes
        assert during, "no request ran during the outage"
        assert after, "no request ran after the restart"
        assert load.errors == [], load.errors[:5]
        assert {status for _, status, _ in everything} == {200}
        slowest = max(elapsed for _, _, elapsed in everything)
        assert slowest < SLOWEST_ALLOWED

        unready = [body for status, body in down_status if status == 503]
        assert unready, f"/health/ready never said 503 while Redis was down: {down_status}"
        assert "store" in json.dumps(unready[-1]).lower() or "redis" in json.dumps(unready[-1]).lower()

        # Pools: redis-py keeps every connection it ever opened (no idle timeout), so the burst of calls
        # when Redis comes back may leave a few more than the load needed before, bounded by the
        # concurrency (two stores; each client and the readiness probe at once); the upstream pool
        # keeps up to one idle connection per concurrent client for its keep-alive time. Those are
        # bounded; every other descriptor (client connections, files, the dead Redis connections)
        # must be back at its count.
        pools = {str(redis_server.port), str(e2e_pool.mock.port)}

        def others(pid: int) -> int:
            return fds(pid) - sum(n for port, n in peers(pid).items() if port in pools)

        baseline_others = baseline - sum(n for port, n in baseline_peers.items() if port in pools)
        deadline = time.monotonic() + 10
        while others(server.pid) > baseline_others and time.monotonic() < deadline:
            time.sleep(0.1)
        fds_after = fds(server.pid)
        peers_after = peers(server.pid)
        assert others(server.pid) <= baseline_others, (baseline_peers, peers_after)
        redis_port = str(redis_server.port)
        redis_growth = peers_after.get(redis_port, 0) - baseline_peers.get(redis_port, 0)
        assert redis_growth <= 2 * (CLIENTS + 1), (baseline_peers, peers_after)
        assert peers_after.get(str(e2e_pool.mock.port), 0) <= CLIENTS, (baseline_peers, peers_after)
    log = server.stderr
    assert "Traceback" not in log
    assert re.search(r"(unavailable|unreachable)", log), log[-2000:]
    assert re.search(r"reachable again", log), log[-2000:]
    print(
        f"\n| Redis SIGKILL {OUTAGE_SECONDS:g} s under load ({CLIENTS} clients) | "
        f"{len(everything)}/{len(everything)} requests 200 ({len(during)} during the outage); "
        f"/health/ready 503 while down | "
        f"the mock: every request | slowest request {slowest * 1000:.0f} ms; readiness 200 again "
        f"{recovered - restarted:.2f} s after the restart; fds {baseline}->{fds_after} "
        f"(pooled: Redis {baseline_peers.get(redis_port, 0)}->{peers_after.get(redis_port, 0)}, upstream "
        f"{baseline_peers.get(str(e2e_pool.mock.port), 0)}->{peers_after.get(str(e2e_pool.mock.port), 0)}; "
        f"all others back) |"
    )
