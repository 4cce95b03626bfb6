"""Tracing helpers: W3C trace context in and out, and one client span per upstream attempt.

The server span of a request (started by `TracingMiddleware`) is kept on the request context as an
OpenTelemetry `Context` (`ctx.otel_context`), so the provider parents its attempt spans on it whatever
task it runs in, and its `traceparent` is put in `ctx.traceparent`, which the provider sends upstream even
when it has no tracer of its own.

With no SDK installed the API's tracer hands back the parent's span (or an invalid one) and nothing is
recorded; the client's `traceparent` then still reaches the upstream unchanged, so the trace stays whole
across the proxy. A streamed response is one span from the request to the end of the body, never a span
per chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ccproxy_asgi._version import __version__
from ccproxy_asgi.context import RequestContext
from ccproxy_asgi.observability import semconv as sc
from ccproxy_asgi.observability.record import upstream_address
from ccproxy_asgi.upstream.base import AsyncClosing, UpstreamClient, UpstreamResponse

TRACER_NAME = "ccproxy_asgi"

W3C_PROPAGATOR = TraceContextTextMapPropagator()


def get_tracer(tracer_provider: TracerProvider | None = None) -> Tracer:
    """This package's tracer, from `tracer_provider` or the global provider (no-op until one is set)."""
    return trace.get_tracer(TRACER_NAME, __version__, tracer_provider=tracer_provider)


def request_otel_context(ctx: RequestContext) -> Context | None:
    """The OpenTelemetry `Context` of the request's server span, None when no tracing layer started one."""
    return ctx.otel_context


def traceparent_of(context: Context) -> str | None:
    """The W3C `traceparent` value for the span in `context`, None when that span is invalid."""
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    W3C_PROPAGATOR.inject(carrier, context)
    return carrier.get("traceparent")


def attempt_span_name(model: str | None) -> str:
    """`{gen_ai.operation.name} {gen_ai.request.model}`, the GenAI conventions' span name."""
    return f"{sc.OPERATION_CHAT} {model}" if model else sc.OPERATION_CHAT


def _fail(span: Span, error_type: str, exc: BaseException | None = None) -> None:
    span.set_attribute(sc.ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR))
    if exc is not None:
        span.record_exception(exc)


def usage_attributes(ctx: RequestContext) -> dict[str, int]:
    usage = ctx.usage
    if usage is None:
        return {}
    return {
        sc.USAGE_INPUT: usage.input_tokens
        + usage.cache_read_input_tokens
        + usage.cache_creation_input_tokens,
        sc.USAGE_OUTPUT: usage.output_tokens,
        sc.USAGE_CACHE_READ: usage.cache_read_input_tokens,
        sc.USAGE_CACHE_CREATION: usage.cache_creation_input_tokens,
    }


class TracedResponse(AsyncClosing):
    """An `UpstreamResponse` whose attempt span ends when the response is closed: after the whole body
    was read or streamed, or when the request was abandoned."""

    __slots__ = ("_ctx", "_ended", "_response", "_span")

    def __init__(self, response: UpstreamResponse, span: Span, ctx: RequestContext) -> None:
        self._response = response
        self._span = span
        self._ctx = ctx
        self._ended = False

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except BaseException as exc:
            if self._span.is_recording():
                _fail(self._span, type(exc).__name__, exc)
            raise

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        return self._response.aiter_bytes()

    async def aclose(self) -> None:
        try:
            await self._response.aclose()
        finally:
            self._end()

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        span = self._span
        if span.is_recording():
            stream_error = self._ctx.stream_error
            if self._response.status < 400 and stream_error is not None:
                _fail(span, stream_error)
            span.set_attributes(usage_attributes(self._ctx))
        span.end()


async def traced_send(
    tracer: Tracer,
    client: UpstreamClient,
    ctx: RequestContext,
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    content: bytes | None,
    timeout: float | None,  # noqa: ASYNC109 - the client's per-request read timeout, passed through
    attempt: int,
    provider_name: str = "openai",
) -> UpstreamResponse:
    """`client.send(...)` inside a CLIENT span for one upstream attempt, with that span's `traceparent`
    in the request headers. The span ends with the returned response's `aclose()`, or here on failure."""
    parent = request_otel_context(ctx)
    address, port = upstream_address(url)
    model = ctx.upstream_model
    attributes: dict[str, Any] = {
        sc.OPERATION: sc.OPERATION_CHAT,
        sc.PROVIDER: provider_name,
        sc.SYSTEM: provider_name,
        sc.HTTP_METHOD: method,
        sc.SERVER_ADDRESS: address,
        sc.SERVER_PORT: int(port),
        sc.ATTEMPT: attempt,
        sc.REQUEST_STREAM: ctx.stream,
    }
    if model:
        attributes[sc.REQUEST_MODEL] = model
    if ctx.request_id:
        attributes[sc.REQUEST_ID] = ctx.request_id
    span = tracer.start_span(
        attempt_span_name(model), context=parent, kind=SpanKind.CLIENT, attributes=attributes
    )
    carrier = dict(headers)
    W3C_PROPAGATOR.inject(carrier, trace.set_span_in_context(span, parent))
    try:
        response = await client.send(method, url, headers=carrier, content=content, timeout=timeout)
    except BaseException as exc:
        if span.is_recording():
            _fail(span, type(exc).__name__, exc)
        span.end()
        raise
    if span.is_recording():
        span.set_attribute(sc.HTTP_STATUS, response.status)
        if response.status >= 400:
            _fail(span, str(response.status))
    return TracedResponse(response, span, ctx)


__all__ = [
    "TRACER_NAME",
    "W3C_PROPAGATOR",
    "TracedResponse",
    "attempt_span_name",
    "get_tracer",
    "request_otel_context",
    "traced_send",
    "traceparent_of",
    "usage_attributes",
]
