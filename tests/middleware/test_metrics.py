"""MetricsMiddleware in process, in front of small ASGI apps that play the endpoint's part."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from ccproxy_asgi.context import UpstreamAttempt, Usage, get_context
from ccproxy_asgi.errors import RateLimitError, error_response_parts, sse_error_event
from ccproxy_asgi.middleware.metrics import MetricsMiddleware
from ccproxy_asgi.observability import semconv as sc
from ccproxy_asgi.observability.collector import MetricsCollector
from ccproxy_asgi.observability.record import Measurement, RequestRecord
from ccproxy_asgi.testing import call_asgi
from ccproxy_asgi.types import ASGIApp, Message, Receive, Scope, Send
from tests.support.manual_clock import ManualClock

GENAI = ("chat", "openai", "claude-sonnet-4-6", "gpt-4o")
SSE = [(b"content-type", b"text/event-stream; charset=utf-8")]


def ticks() -> ManualClock:
    """A clock that moves 0.1 s each time it is read, so durations are exact."""
    return ManualClock(0.0, tick=0.1)


def scope(method: str = "POST", path: str = "/v1/messages") -> Scope:
    return {"type": "http", "method": method, "path": path, "headers": []}


async def run(app: ASGIApp, request: Scope | None = None) -> list[Message]:
    return (await call_asgi(app, body=b"{}", scope=request or scope())).messages


def endpoint(
    *,
    status: int = 200,
    chunks: tuple[bytes, ...] = (b"{}",),
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope)
        ctx.requested_model = "claude-sonnet-4-6"
        ctx.upstream_model = "gpt-4o"
        ctx.attempts.append(
            UpstreamAttempt(url="http://up:9/v1/chat/completions", status=200, duration_s=0.05)
        )
        await send({"type": "http.response.start", "status": status, "headers": headers or []})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})
        if status < 400:
            ctx.usage = Usage(input_tokens=7, output_tokens=3)

    return app


def otel_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope_metrics in resource.scope_metrics
        for metric in scope_metrics.metrics
    }


async def test_a_chat_request_is_recorded_in_both_exporters() -> None:
    reader = InMemoryMetricReader()
    layer = MetricsMiddleware(
        endpoint(), meter_provider=MeterProvider(metric_readers=[reader]), clock=ticks()
    )
    sent = await run(layer)
    assert sent[0]["status"] == 200  # forwarded untouched
    collector = layer.collector
    assert collector.value(sc.GENAI_DURATION, (*GENAI, "")) == 1
    assert collector.value(sc.HTTP_SERVER_DURATION, ("POST", "/v1/messages", "200")) == 1
    assert collector.value(sc.TOKENS, ("claude-sonnet-4-6", "gpt-4o", "input")) == 7
    assert collector.value(sc.UPSTREAM_ATTEMPTS, ("up", "200", "", "false")) == 1
    assert collector.value(sc.TTFB, GENAI) is None  # not a stream
    points = otel_points(reader)
    [duration] = points["gen_ai.client.operation.duration"]
    assert isinstance(duration, HistogramDataPoint)
    assert duration.sum == pytest.approx(0.2)  # clock reads: start 0.1, first byte 0.2, end 0.3
    assert dict(duration.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "claude-sonnet-4-6",
        "gen_ai.response.model": "gpt-4o",
    }
    assert list(duration.explicit_bounds) == list(sc.GENAI_DURATION_BUCKETS)
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in points["gen_ai.client.token.usage"]}
    assert tokens == {"input": 7, "output": 3}
    [server] = points["http.server.request.duration"]
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/v1/messages",
        "http.response.status_code": 200,
    }
    [attempt] = points["ccproxy.upstream.attempts"]
    assert dict(attempt.attributes or {}) == {
        "server.address": "up",
        "http.response.status_code": 200,
        "ccproxy.upstream.retry": False,
    }


async def test_stream_time_to_first_byte_and_first_delta() -> None:
    chunks = (
        b"event: message_start\ndata: {}\n\n",
        b"event: ping\ndata: {}\n\n",
        b"event: content_block_delta\ndata: {}\n\n",
        b"event: message_stop\ndata: {}\n\n",
    )
    layer = MetricsMiddleware(endpoint(chunks=chunks, headers=SSE), otel=False, clock=ticks())
    await run(layer)
    # Clock reads: start 0.1, first byte (message_start) 0.2, first content delta 0.3, end 0.4.
    family = layer.collector._families
    ttfb = family[sc.TTFB].series[GENAI]
    ttft = family[sc.GENAI_TTFT].series[GENAI]
    assert not isinstance(ttfb, list)
    assert not isinstance(ttft, list)
    assert ttfb.sum == pytest.approx(0.1)
    assert ttft.sum == pytest.approx(0.2)
    assert layer.collector.ttft.count() == 1


async def test_an_error_event_in_a_stream_is_the_error_type() -> None:
    chunks = (b"event: message_start\ndata: {}\n\n", sse_error_event("overloaded_error", "gone", "req_1"))
    layer = MetricsMiddleware(endpoint(chunks=chunks, headers=SSE), otel=False)
    request = scope()
    await run(layer, request)
    assert layer.collector.value(sc.GENAI_DURATION, (*GENAI, "overloaded_error")) == 1
    assert layer.collector.outcomes.counts() == (1, 1)
    assert layer.collector.ttft.count() == 0
    assert get_context(request).error_type == "overloaded_error"  # for the server span


async def test_an_error_envelope_names_the_error_type() -> None:
    status, headers, body = error_response_parts(RateLimitError("slow down"), "req_1")

    async def limited(scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope)
        ctx.requested_model, ctx.upstream_model = "claude-sonnet-4-6", "gpt-4o"
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    layer = MetricsMiddleware(limited, otel=False)
    await run(layer)
    assert layer.collector.value(sc.GENAI_DURATION, (*GENAI, "rate_limit_error")) == 1
    assert layer.collector.outcomes.counts() == (1, 0)


async def test_an_exception_is_recorded_and_re_raised() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("bug")

    layer = MetricsMiddleware(broken, otel=False)
    with pytest.raises(RuntimeError):
        await run(layer)
    collector = layer.collector
    assert collector.value(sc.GENAI_DURATION, ("chat", "openai", "", "", "RuntimeError")) == 1
    assert collector.value(sc.HTTP_SERVER_DURATION, ("POST", "/v1/messages", "")) == 1
    assert collector.in_flight == 0
    assert collector.outcomes.counts() == (1, 1)


async def test_in_flight_while_serving() -> None:
    release = asyncio.Event()
    seen: list[int] = []
    collector = MetricsCollector()

    async def waiting(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(collector.in_flight)
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    layer = MetricsMiddleware(waiting, collector=collector, otel=False)
    tasks = [asyncio.create_task(run(layer, scope("GET", "/v1/models"))) for _ in range(3)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert collector.in_flight == 3
    release.set()
    await asyncio.gather(*tasks)
    assert collector.in_flight == 0
    assert sorted(seen) == [1, 2, 3]
    assert "http_server_active_requests 0" in collector.render_prometheus()
    assert collector.value(sc.HTTP_SERVER_DURATION, ("GET", "/v1/models", "200")) == 3
    assert collector.value(sc.GENAI_DURATION, (*GENAI, "")) is None  # not a chat operation


async def test_other_scopes_and_unknown_paths() -> None:
    lifespans: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            lifespans.append("seen")
            return
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"no"})

    async def startup() -> Message:
        return {"type": "lifespan.startup"}

    async def discard(message: Message) -> None:
        pass

    layer = MetricsMiddleware(app, otel=False)
    await layer({"type": "lifespan"}, startup, discard)
    assert lifespans == ["seen"]
    await run(layer, scope("GET", "/.env"))
    assert layer.collector.value(sc.HTTP_SERVER_DURATION, ("GET", "", "404")) == 1
    await run(layer, scope("BREW", "/coffee"))  # client-chosen methods do not become label values
    assert layer.collector.value(sc.HTTP_SERVER_DURATION, ("_OTHER", "", "404")) == 1


async def test_a_broken_collector_never_breaks_the_request(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(MetricsCollector):
        def record(self, record: RequestRecord, items: Sequence[Measurement] | None = None) -> None:
            raise ValueError("collector bug")

    layer = MetricsMiddleware(endpoint(), collector=Broken(), otel=False)
    sent = await run(layer)
    assert sent[0]["status"] == 200
    assert "recording request metrics failed" in caplog.text
