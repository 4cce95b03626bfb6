"""Tracing in process: the server span (TracingMiddleware), the attempt spans (the provider with a tracer),
W3C propagation with and without an SDK, and the adaptive read timeout the provider hands its client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

from ccproxy_asgi.context import RequestContext, Usage, get_context
from ccproxy_asgi.errors import UpstreamTimeoutError
from ccproxy_asgi.middleware.metrics import MetricsMiddleware
from ccproxy_asgi.middleware.tracing import TracingMiddleware
from ccproxy_asgi.observability.tracing import get_tracer
from ccproxy_asgi.provider.openai import OpenAIProvider
from ccproxy_asgi.provider.retry import RetryPolicy
from ccproxy_asgi.testing import MockResponse, MockUpstreamClient, UpstreamRequest, call_asgi, scripted
from ccproxy_asgi.tokens.counter import TokenCounter
from ccproxy_asgi.types import Receive, Scope, Send

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
PAYLOAD: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def response(status: int) -> MockResponse:
    return MockResponse(status, content=b"{}")


async def no_sleep(seconds: float) -> None:
    pass


def provider(client: MockUpstreamClient, **kwargs: Any) -> OpenAIProvider:
    return OpenAIProvider(
        base_url="http://upstream.test:8080/v1",
        api_key=None,
        client=client,
        token_counter=TokenCounter(),
        retry=RetryPolicy(max_attempts=3, max_delay=0.01),
        sleep=no_sleep,
        **kwargs,
    )


def request_scope(headers: list[tuple[bytes, bytes]] | None = None, path: str = "/v1/messages") -> Scope:
    return {"type": "http", "method": "POST", "path": path, "scheme": "https", "headers": headers or []}


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in spans if span.kind is kind]


async def test_server_span_continues_the_client_trace_and_parents_the_attempt_spans(
    exporter: InMemorySpanExporter, tracer_provider: TracerProvider
) -> None:
    client = MockUpstreamClient(scripted(response(500), response(200)))
    upstream = provider(client, tracer=get_tracer(tracer_provider))

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope)
        ctx.requested_model, ctx.upstream_model = "claude-sonnet-4-6", "gpt-4o"
        await upstream.complete(PAYLOAD, ctx)
        ctx.usage = Usage(input_tokens=11, output_tokens=4, cache_read_input_tokens=2)
        ctx.stop_reason = "end_turn"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    scope = request_scope([(b"traceparent", TRACEPARENT.encode()), (b"tracestate", b"vendor=1")])
    get_context(scope).request_id = "req_abc"
    await call_asgi(TracingMiddleware(endpoint, tracer_provider=tracer_provider), scope=scope)

    spans = exporter.get_finished_spans()
    [server] = by_kind(spans, SpanKind.SERVER)
    attempts = by_kind(spans, SpanKind.CLIENT)
    assert len(attempts) == 2
    assert server.context is not None
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None
    assert server.parent.is_remote
    assert server.context.trace_state.get("vendor") == "1"
    assert server.name == "POST /v1/messages"
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST",
        "url.path": "/v1/messages",
        "url.scheme": "https",
        "http.route": "/v1/messages",
        "ccproxy.request_id": "req_abc",
        "http.response.status_code": 200,
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.stream": False,
        "ccproxy.upstream.attempts": 2,
        "gen_ai.request.model": "claude-sonnet-4-6",
        "gen_ai.response.model": "gpt-4o",
        "gen_ai.response.finish_reasons": ("end_turn",),
        "gen_ai.usage.input_tokens": 13,
        "gen_ai.usage.output_tokens": 4,
        "gen_ai.usage.cache_read.input_tokens": 2,
        "gen_ai.usage.cache_creation.input_tokens": 0,
    }
    failed, served = sorted(attempts, key=lambda s: s.start_time or 0)
    for index, span in enumerate((failed, served)):
        assert span.parent is not None
        assert span.parent.span_id == server.context.span_id
        assert span.name == "chat gpt-4o"
        attributes = span.attributes or {}
        assert attributes["ccproxy.upstream.attempt"] == index
        assert attributes["server.address"] == "upstream.test"
        assert attributes["server.port"] == 8080
        assert attributes["ccproxy.request_id"] == "req_abc"
    assert (failed.attributes or {})["error.type"] == "500"
    assert failed.status.status_code is StatusCode.ERROR
    assert (served.attributes or {})["http.response.status_code"] == 200
    assert served.status.status_code is StatusCode.UNSET
    # Each attempt carried its own span's traceparent to the upstream.
    for request, span in zip(client.requests, (failed, served), strict=True):
        assert span.context is not None
        assert request.headers["traceparent"] == f"00-{TRACE_ID}-{span.context.span_id:016x}-01"
        assert request.headers["tracestate"] == "vendor=1"


async def test_without_an_sdk_the_clients_traceparent_reaches_the_upstream_unchanged() -> None:
    client = MockUpstreamClient(scripted(response(200)))
    upstream = provider(client, tracer=get_tracer(NoOpTracerProvider()))

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await upstream.complete(PAYLOAD, get_context(scope))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    scope = request_scope([(b"traceparent", TRACEPARENT.encode())])
    await call_asgi(TracingMiddleware(endpoint, tracer_provider=NoOpTracerProvider()), scope=scope)
    assert client.requests[0].headers["traceparent"] == TRACEPARENT
    assert get_context(scope).traceparent == TRACEPARENT

    # A provider with no tracer at all still sends what the tracing layer left on the context.
    untraced = MockUpstreamClient(scripted(response(200)))
    ctx = RequestContext(traceparent=TRACEPARENT)
    await provider(untraced).complete(PAYLOAD, ctx)
    assert untraced.requests[0].headers["traceparent"] == TRACEPARENT


async def test_no_incoming_trace_starts_a_new_one(
    exporter: InMemorySpanExporter, tracer_provider: TracerProvider
) -> None:
    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    scope = request_scope(path="/v1/models")
    scope["method"] = "GET"
    await call_asgi(TracingMiddleware(endpoint, tracer_provider=tracer_provider), scope=scope)
    [span] = exporter.get_finished_spans()
    assert span.parent is None
    assert span.name == "GET /v1/models"
    assert span.context is not None
    sent_upstream = get_context(scope).traceparent
    assert sent_upstream is not None
    assert sent_upstream.startswith(f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-")
    assert "gen_ai.operation.name" not in (span.attributes or {})


async def test_a_stream_is_one_span_and_failures_mark_it(
    exporter: InMemorySpanExporter, tracer_provider: TracerProvider
) -> None:
    chunks = [b"event: content_block_delta\ndata: {}\n\n"] * 50

    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope)
        ctx.requested_model, ctx.upstream_model = "claude-sonnet-4-6", "gpt-4o"
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send(
            {
                "type": "http.response.body",
                "body": b'event: error\ndata: {"type":"error","error":{"type":"api_error"}}\n\n',
            }
        )

    app = TracingMiddleware(MetricsMiddleware(streaming, otel=False), tracer_provider=tracer_provider)
    await call_asgi(app, scope=request_scope())
    [span] = exporter.get_finished_spans()
    assert (span.attributes or {})["error.type"] == "api_error"  # derived by the metrics layer
    assert span.status.status_code is StatusCode.ERROR

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        await call_asgi(TracingMiddleware(broken, tracer_provider=tracer_provider), scope=request_scope())
    failed = exporter.get_finished_spans()[-1]
    assert (failed.attributes or {})["error.type"] == "RuntimeError"
    assert failed.status.status_code is StatusCode.ERROR
    assert [event.name for event in failed.events] == ["exception"]


async def test_an_attempt_span_ends_on_a_transport_error_and_on_close(
    exporter: InMemorySpanExporter, tracer_provider: TracerProvider
) -> None:
    client = MockUpstreamClient(
        scripted(
            UpstreamTimeoutError("read timeout"), MockResponse(200, content=(b"data: a\n\n", b"data: b\n\n"))
        )
    )
    upstream = provider(client, tracer=get_tracer(tracer_provider))
    ctx = RequestContext(upstream_model="gpt-4o", stream=True)
    async with upstream.stream(PAYLOAD, ctx) as response:
        assert len(exporter.get_finished_spans()) == 1  # the timed-out attempt; the stream's is open
        chunks = [chunk async for chunk in response.aiter_bytes()]
        ctx.usage = Usage(input_tokens=3, output_tokens=2)
        ctx.stream_error = "api_error"
    assert chunks == [b"data: a\n\n", b"data: b\n\n"]
    timed_out, streamed = exporter.get_finished_spans()
    assert (timed_out.attributes or {})["error.type"] == "UpstreamTimeoutError"
    assert [event.name for event in timed_out.events] == ["exception"]
    assert (streamed.attributes or {})["gen_ai.usage.output_tokens"] == 2
    assert (streamed.attributes or {})["error.type"] == "api_error"  # cut mid-stream
    assert ctx.otel_context is None  # no server span here: the attempts are roots


async def test_the_adaptive_read_timeout_is_passed_to_each_attempt() -> None:
    timeouts = iter([None, 0.75])
    client = MockUpstreamClient(scripted(response(503), response(200)))
    upstream = provider(client, read_timeout=lambda: next(timeouts))
    await upstream.complete(PAYLOAD, RequestContext())
    assert [request.timeout for request in client.requests] == [None, 0.75]

    static = MockUpstreamClient(scripted(response(200)))
    await provider(static).complete(PAYLOAD, RequestContext())
    assert static.requests[0].timeout is None


async def test_a_cancelled_attempt_still_ends_its_span(
    exporter: InMemorySpanExporter, tracer_provider: TracerProvider
) -> None:
    async def hang(request: UpstreamRequest) -> MockResponse:
        await asyncio.sleep(10)
        raise AssertionError("unreachable")

    upstream = provider(MockUpstreamClient(hang), tracer=get_tracer(tracer_provider))
    task = asyncio.create_task(upstream.complete(PAYLOAD, RequestContext()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [span] = exporter.get_finished_spans()
    assert (span.attributes or {})["error.type"] == "CancelledError"
