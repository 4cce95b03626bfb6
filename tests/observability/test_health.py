"""HealthMonitor (score, readiness) and the `/metrics`, `/health`, `/health/ready` routes, in process.

The breaker here is a fake `BreakerSource` whose state the test sets; the end-to-end suite drives the
readiness with the real breaker middleware.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from ccproxy_asgi.context import UpstreamAttempt
from ccproxy_asgi.headers import Headers
from ccproxy_asgi.middleware.observability import ObservabilityRoutes
from ccproxy_asgi.observability.collector import MetricsCollector
from ccproxy_asgi.observability.health import HealthMonitor, ping_check, tcp_check
from ccproxy_asgi.observability.record import RequestRecord
from ccproxy_asgi.testing import call_asgi
from ccproxy_asgi.types import ASGIApp, Message, Receive, Scope, Send
from tests.support.manual_clock import ManualClock


@dataclass
class FakeStats:
    state: str
    transitions: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    successes: int = 0
    failures: int = 0
    request_errors: int = 0
    neutral: int = 0


@dataclass
class FakeSnapshot:
    key: str
    state: str
    retry_after: float = 0.0
    degraded: bool = False


class FakeBreaker:
    def __init__(self) -> None:
        self.states = {"https://up.example/v1": "closed"}

    def stats(self) -> Mapping[str, FakeStats]:
        return {key: FakeStats(state) for key, state in self.states.items()}

    async def snapshots(self) -> Sequence[FakeSnapshot]:
        return [
            FakeSnapshot(key, state, retry_after=12.5 if state == "open" else 0.0)
            for key, state in self.states.items()
        ]


def record(status: int | None = 200, duration: float = 0.1) -> RequestRecord:
    attempt = UpstreamAttempt(url="http://up/v1/chat/completions", status=status or 502, duration_s=duration)
    return RequestRecord(
        method="POST", route="/v1/messages", status=status, duration_s=duration, chat=True, attempts=[attempt]
    )


async def test_readiness_follows_the_breaker_state() -> None:
    collector = MetricsCollector()
    breaker = FakeBreaker()
    collector.watch_breaker(breaker)
    health = HealthMonitor(collector)
    assert (await health.readiness()).ready
    breaker.states["https://up.example/v1"] = "open"
    readiness = await health.readiness()
    assert not readiness.ready
    assert readiness.as_dict()["breakers"] == [
        {"key": "https://up.example/v1", "state": "open", "retry_after_seconds": 12.5}
    ]
    breaker.states["https://up.example/v1"] = "half_open"  # probing: let the probe's traffic in
    assert (await health.readiness()).ready
    breaker.states["https://up.example/v1"] = "closed"
    assert (await health.readiness()).as_dict()["status"] == "ready"


async def test_checks_fail_time_out_raise_and_are_cached() -> None:
    clock = ManualClock()
    calls = {"ok": 0, "down": 0}
    answer = {"down": False}

    async def ok() -> bool:
        calls["ok"] += 1
        return True

    async def down() -> bool:
        calls["down"] += 1
        return answer["down"]

    async def slow() -> bool:
        await asyncio.sleep(10)
        return True

    async def broken() -> bool:
        raise ConnectionRefusedError

    health = HealthMonitor(
        MetricsCollector(),
        checks={"ok": ok, "down": down, "slow": slow, "broken": broken},
        check_timeout=0.05,
        cache_seconds=5,
        clock=clock,
    )
    readiness = await health.readiness()
    assert not readiness.ready
    assert readiness.checks == {
        "ok": {"ok": True},
        "down": {"ok": False},
        "slow": {"ok": False, "error": "no answer within 0.05 s"},
        "broken": {"ok": False, "error": "ConnectionRefusedError"},
    }
    answer["down"] = True
    await health.readiness()
    assert calls == {"ok": 1, "down": 1}  # cached verdicts
    clock.t += 6
    await health.readiness()
    assert calls == {"ok": 2, "down": 2}
    assert (await health.readiness()).checks["down"] == {"ok": True}


def test_score_from_success_rate_breakers_and_latency() -> None:
    collector = MetricsCollector()
    breaker = FakeBreaker()
    collector.watch_breaker(breaker)
    health = HealthMonitor(collector, latency_target_seconds=1.0, min_requests=10)
    assert health.score().score == 1.0
    for _ in range(5):
        collector.record(record(500))
    assert health.score().score == 1.0  # below min_requests: not judged yet
    for _ in range(5):
        collector.record(record(200))
    score = health.score()
    assert score.success_rate == 0.5
    assert score.score == pytest.approx(0.5 * 0.5 + 0.3 + 0.2)
    assert score.status == "degraded"
    breaker.states["https://up.example/v1"] = "open"
    assert health.score().score == pytest.approx(0.25 + 0.0 + 0.2)
    assert health.score().status == "unhealthy"
    slow = MetricsCollector()
    for _ in range(20):
        slow.record(record(200, duration=4.0))
    latency = HealthMonitor(slow, latency_target_seconds=1.0).score()
    assert latency.latency_p99 == pytest.approx(4.0)
    assert latency.score == pytest.approx(0.5 + 0.3 + 0.2 * 0.25)


# ----- the routes ---------------------------------------------------------------------------------------


async def call(app: ASGIApp, method: str, path: str, root_path: str = "") -> tuple[int, Headers, bytes]:
    result = await call_asgi(app, method, root_path + path, root_path=root_path)
    return result.status, result.headers, result.body


async def inner(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-inner", b"1")]})
    await send({"type": "http.response.body", "body": b"inner"})


async def test_routes_answer_their_paths_and_pass_the_rest() -> None:
    collector = MetricsCollector()
    breaker = FakeBreaker()
    collector.watch_breaker(breaker)
    collector.record(record())
    app = ObservabilityRoutes(inner, collector=collector, health=HealthMonitor(collector))
    status, headers, body = await call(app, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b"gen_ai_client_operation_duration_seconds_count" in body
    assert (
        b'ccproxy_breaker_state{ccproxy_breaker_key="https://up.example/v1",ccproxy_breaker_state="closed"} 1'
        in body
    )
    status, headers, body = await call(app, "GET", "/health")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["status"] == "ok"
    status, _, body = await call(app, "GET", "/health/ready")
    assert status == 200
    assert json.loads(body)["status"] == "ready"
    breaker.states["https://up.example/v1"] = "open"
    status, _, body = await call(app, "GET", "/health/ready")
    assert status == 503
    assert json.loads(body)["status"] == "unready"
    status, _, body = await call(app, "HEAD", "/health/ready")
    assert status == 503
    assert body == b""
    status, _, body = await call(app, "POST", "/metrics")
    assert status == 405
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    status, headers, body = await call(app, "GET", "/v1/models")
    assert (status, headers["x-inner"], body) == (200, "1", b"inner")


async def test_standalone_mounted_and_switched_off() -> None:
    collector = MetricsCollector()
    alone = ObservabilityRoutes(collector=collector, health=HealthMonitor(collector), health_path=None)
    status, _, _ = await call(alone, "GET", "/metrics", root_path="/ops")
    assert status == 200
    status, _, body = await call(alone, "GET", "/health", root_path="/ops")  # switched off: a 404
    assert status == 404
    assert json.loads(body)["error"]["type"] == "not_found_error"
    status, _, _ = await call(alone, "GET", "/health/ready", root_path="/ops")
    assert status == 200
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[Message] = []

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        sent.append(message)

    await alone({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    no_metrics = ObservabilityRoutes(inner, health=HealthMonitor(collector))
    status, _, body = await call(no_metrics, "GET", "/metrics")
    assert (status, body) == (200, b"inner")


async def test_tcp_and_ping_checks() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await tcp_check(f"http://127.0.0.1:{port}/v1")()
    finally:
        server.close()
        await server.wait_closed()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        await tcp_check(f"http://127.0.0.1:{closed_port}/v1")()

    class Store:
        def __init__(self, answer: bool) -> None:
            self.answer = answer

        async def ping(self) -> bool:
            return self.answer

    assert await ping_check(Store(True))()
    assert not await ping_check(Store(False))()
