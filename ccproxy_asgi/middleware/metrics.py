"""`MetricsMiddleware`: per-request metrics, into a `MetricsCollector` and OpenTelemetry instruments.

For every HTTP request: duration, status and route, and the in-flight gauge. For chat requests
(`POST /v1/messages`) also the GenAI metrics: operation duration with `error.type`, requested and
upstream model, token usage (from `ctx.usage`), time to first byte and to first content delta of
streams, and one measurement per upstream attempt (`ctx.attempts`), retries included.

Mount it outside the error layer so it sees the status that really went out. It reads, never changes,
what passes through: the response messages are forwarded as they are, and a stream costs one type
check per chunk (plus a substring search until the first content delta, and for an `event: error`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import ClassVar

from opentelemetry.metrics import MeterProvider

from ccproxy_asgi import jsonutil
from ccproxy_asgi.context import RequestContext, get_context
from ccproxy_asgi.headers import raw_header
from ccproxy_asgi.observability.collector import MetricsCollector
from ccproxy_asgi.observability.otel import OTelMetrics
from ccproxy_asgi.observability.record import RequestRecord, http_method, measurements
from ccproxy_asgi.plumbing.pipeline import LayerKind
from ccproxy_asgi.plumbing.routes import Route, match_route, route_path
from ccproxy_asgi.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("ccproxy_asgi.metrics")

_FIRST_DELTA = b"content_block_delta"
_ERROR_EVENT = b"event: error"
_MAX_ERROR_BODY = 8192


def _event_stream(message: Message) -> bool:
    content_type = raw_header(message.get("headers", ()), b"content-type")
    return content_type is not None and content_type.lower().startswith("text/event-stream")


def _envelope_type(body: bytes) -> str | None:
    """The `error.type` of an Anthropic error envelope (or of an SSE `error` event's data)."""
    start = body.find(b"{")
    if start < 0:
        return None
    end = body.rfind(b"}")
    try:
        data = jsonutil.loads(body[start : end + 1])
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else None


def _starlette_route(scope: Scope) -> str:
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else ""


class MetricsMiddleware:
    """Records every HTTP request; see the module docstring.

    - `collector`: the in-process metrics (Prometheus text, windows, health, adaptive timeout); a new
      one when not given (read it back as `.collector`).
    - `meter_provider`: where the OpenTelemetry instruments come from; None uses the global provider
      (a no-op until an SDK is installed). `otel=False` skips OpenTelemetry entirely.
    - `provider_name`: `gen_ai.provider.name` (default: the collector's, "openai").
    - `clock`: the duration clock (injected in tests).
    """

    kind: ClassVar[LayerKind] = LayerKind.METRICS

    def __init__(
        self,
        app: ASGIApp,
        *,
        collector: MetricsCollector | None = None,
        meter_provider: MeterProvider | None = None,
        otel: bool = True,
        provider_name: str | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.collector = collector if collector is not None else MetricsCollector()
        if provider_name is not None:
            self.collector.provider_name = provider_name
        self.otel = (
            OTelMetrics(meter_provider, collector=self.collector, provider_name=self.collector.provider_name)
            if otel
            else None
        )
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        clock = self._clock
        collector = self.collector
        otel = self.otel
        ctx = get_context(scope)
        method: str = scope.get("method", "GET")
        route = match_route(route_path(scope))
        chat = method == "POST" and route is Route.MESSAGES
        status: int | None = None
        stream = False
        first_byte: float | None = None
        first_delta: float | None = None
        error_body: bytes | None = None
        started = clock()

        async def watching_send(message: Message) -> None:
            nonlocal status, stream, first_byte, first_delta, error_body
            kind = message["type"]
            if kind == "http.response.body":
                body = message.get("body", b"")
                if body:
                    if first_byte is None:
                        first_byte = clock()
                    if stream:
                        if first_delta is None and _FIRST_DELTA in body:
                            first_delta = clock()
                        if error_body is None and _ERROR_EVENT in body:
                            error_body = body[body.index(_ERROR_EVENT) :][:_MAX_ERROR_BODY]
                    elif error_body is None and status is not None and status >= 400:
                        error_body = body[:_MAX_ERROR_BODY]
            elif kind == "http.response.start":
                status = int(message["status"])
                stream = chat and status < 400 and _event_stream(message)
            await send(message)

        collector.in_flight += 1
        if otel is not None:
            otel.active_requests.add(1)
        failure: str | None = None
        try:
            await self.app(scope, receive, watching_send)
        except BaseException as exc:
            failure = type(exc).__name__
            raise
        finally:
            ended = clock()
            collector.in_flight -= 1
            try:
                if otel is not None:
                    otel.active_requests.add(-1)
                record = RequestRecord(
                    method=http_method(method),
                    route=route.value if route is not None else _starlette_route(scope),
                    status=status,
                    duration_s=ended - started,
                )
                if chat:
                    self._chat_facts(
                        record, ctx, stream, started, first_byte, first_delta, error_body, failure
                    )
                items = measurements(record, collector.provider_name)
                collector.record(record, items)
                if otel is not None:
                    otel.record(record, items)
            except Exception:  # metrics never break a request
                logger.exception("recording request metrics failed")

    @staticmethod
    def _chat_facts(
        record: RequestRecord,
        ctx: RequestContext,
        stream: bool,
        started: float,
        first_byte: float | None,
        first_delta: float | None,
        error_body: bytes | None,
        failure: str | None,
    ) -> None:
        record.chat = True
        record.stream = stream
        record.request_model = ctx.requested_model
        record.response_model = ctx.upstream_model
        record.usage = ctx.usage
        record.attempts = ctx.attempts
        if stream:
            record.ttfb_s = None if first_byte is None else first_byte - started
            record.ttft_s = None if first_delta is None else first_delta - started
        error_type: str | None = None
        status = record.status
        if error_body is not None:
            error_type = _envelope_type(error_body)
        if error_type is None:
            if ctx.stream_error is not None:
                error_type = ctx.stream_error
            elif status is not None and status >= 400:
                error_type = str(status)
            elif failure is not None:
                error_type = failure
            elif status is None:
                error_type = "no_response"
        record.error_type = error_type
        if error_type is not None:
            ctx.error_type = error_type  # for the server span


__all__ = ["MetricsMiddleware"]
