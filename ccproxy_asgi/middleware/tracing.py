"""`TracingMiddleware`: one OpenTelemetry SERVER span per HTTP request, continuing the client's trace.

The W3C `traceparent` / `tracestate` the client sent become the span's parent. The span carries the HTTP
attributes, the request id (`ccproxy.request_id`) and, for chat requests, the GenAI ones (models, token
usage, finish reason, `error.type`). It is kept on the request context for the provider's attempt spans
(see `ccproxy_asgi.observability.tracing`), and its `traceparent` goes upstream.

Mount it inside the correlation layer (so the request id is known) and outside the metrics layer (so the
`error.type` the metrics derived is on the span). A stream is one span to the end of the body; chunks
pass through with one type check each. With no SDK installed the cost is a few microseconds.
"""

from __future__ import annotations

from typing import Any, ClassVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from ccproxy_asgi.context import RequestContext, get_context
from ccproxy_asgi.headers import raw_headers_of
from ccproxy_asgi.observability import semconv as sc
from ccproxy_asgi.observability.tracing import (
    W3C_PROPAGATOR,
    get_tracer,
    traceparent_of,
    usage_attributes,
)
from ccproxy_asgi.plumbing.pipeline import LayerKind
from ccproxy_asgi.plumbing.routes import Route, match_route, route_path
from ccproxy_asgi.types import ASGIApp, Message, Receive, Scope, Send

_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})


def _trace_headers(scope: Scope) -> dict[str, str]:
    found = raw_headers_of(scope.get("headers", ()), _TRACE_HEADERS)
    return {name.decode("latin-1"): value for name, value in found.items()}


class TracingMiddleware:
    """See the module docstring.

    - `tracer_provider`: where spans go; None uses the global provider (no-op until an SDK is set).
    - `propagator`: reads the incoming trace context; W3C trace context by default.
    - `provider_name`: `gen_ai.provider.name` of the upstream.
    """

    kind: ClassVar[LayerKind] = LayerKind.TRACING

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        provider_name: str = "openai",
    ) -> None:
        self.app = app
        self._tracer = get_tracer(tracer_provider)
        self._propagator = propagator or W3C_PROPAGATOR
        self._provider_name = provider_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        carrier = _trace_headers(scope)
        parent = self._propagator.extract(carrier) if carrier else None
        method: str = scope.get("method", "GET")
        path = route_path(scope)
        matched = match_route(path)
        route = matched.value if matched is not None else ""
        attributes: dict[str, Any] = {
            sc.HTTP_METHOD: method,
            sc.URL_PATH: scope.get("path", path),
            sc.URL_SCHEME: scope.get("scheme", "http"),
        }
        if route:
            attributes[sc.HTTP_ROUTE] = route
        if ctx.request_id:
            attributes[sc.REQUEST_ID] = ctx.request_id
        span = self._tracer.start_span(
            f"{method} {route}" if route else method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        span_context = trace.set_span_in_context(span, parent)
        ctx.otel_context = span_context
        traceparent = traceparent_of(span_context)
        if traceparent is not None:
            ctx.traceparent = traceparent
        status: int | None = None

        async def traced_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        token = otel_context.attach(span_context)
        try:
            await self.app(scope, receive, traced_send)
        except BaseException as exc:
            if span.is_recording():
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute(sc.ERROR_TYPE, type(exc).__name__)
            raise
        finally:
            otel_context.detach(token)
            if span.is_recording():
                self._finish(span, ctx, chat=method == "POST" and matched is Route.MESSAGES, status=status)
            span.end()

    def _finish(self, span: Span, ctx: RequestContext, *, chat: bool, status: int | None) -> None:
        attributes: dict[str, Any] = {}
        if status is not None:
            attributes[sc.HTTP_STATUS] = status
        if chat:
            attributes[sc.OPERATION] = sc.OPERATION_CHAT
            attributes[sc.PROVIDER] = self._provider_name
            attributes[sc.SYSTEM] = self._provider_name
            attributes[sc.REQUEST_STREAM] = ctx.stream
            attributes[sc.ATTEMPTS] = len(ctx.attempts)
            if ctx.requested_model:
                attributes[sc.REQUEST_MODEL] = ctx.requested_model
            if ctx.upstream_model:
                attributes[sc.RESPONSE_MODEL] = ctx.upstream_model
            if ctx.stop_reason:
                attributes[sc.FINISH_REASONS] = [ctx.stop_reason]
            attributes.update(usage_attributes(ctx))
        error_type = ctx.error_type if ctx.error_type is not None else ctx.stream_error
        if error_type is None and status is not None and status >= 500:
            error_type = str(status)
        if error_type is not None:
            attributes[sc.ERROR_TYPE] = error_type
            # A server span is an error for a 5xx or a failed stream, not for a client's 4xx.
            if status is None or status >= 500 or status < 400:
                span.set_status(Status(StatusCode.ERROR))
        span.set_attributes(attributes)


__all__ = ["TracingMiddleware"]
