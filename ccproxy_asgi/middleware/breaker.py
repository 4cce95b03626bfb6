"""`CircuitBreakerMiddleware`: stop sending traffic to a failing upstream, and say so honestly.

While the breaker is open, `POST …/v1/messages` is answered at once with 529 `overloaded_error` and a
`retry-after` of the time until the next probe (Claude Code gives up after three 529s rather than
retrying for minutes). Everything else (other routes, lifespan, websockets) passes straight through.

After the inner app returns, the request's outcome is read from what the provider and the endpoint
recorded on the request context (`ctx.attempts`, `ctx.extras["stream_error"]`) and from whether the
response reached its end, and reported to the breaker: exactly once per admitted request, so a probe that
proved nothing still gives its half-open slot back.

With fallback upstreams the breaker decisions live in `FallbackProvider` (one key per upstream); mount
`UpstreamHeaderMiddleware` instead of this layer then, for the `x-ccproxy-upstream` header alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from ccproxy_asgi.asgi_io import (
    ClientDisconnected,
    parse_json_body,
    read_body,
    replay_receive,
    route_path,
    send_error,
)
from ccproxy_asgi.breaker import CircuitBreaker, Outcome, upstream_key
from ccproxy_asgi.context import RequestContext, ensure_request_id, get_context
from ccproxy_asgi.errors import InvalidRequestError, OverloadedError, RequestTooLargeError
from ccproxy_asgi.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("ccproxy_asgi.breaker")

BreakerKeyMode = Literal["upstream", "upstream_model"]
UPSTREAM_HEADER = "x-ccproxy-upstream"
#: Set on the request context to the breaker key the request was admitted under.
BREAKER_KEY = "breaker_key"


def is_messages_call(scope: Scope) -> bool:
    """`POST …/v1/messages`: the only calls that reach the upstream's completions endpoint."""
    return (
        scope["type"] == "http"
        and scope.get("method") == "POST"
        and route_path(scope).rstrip("/").endswith("/v1/messages")
    )


def upstream_header_send(send: Send, ctx: RequestContext, header: bytes) -> Send:
    """A `send` that names the upstream that served the request (`ctx.upstream_name`) on the response."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start" and ctx.upstream_name:
            headers = list(message.get("headers", ()))
            if all(bytes(name).lower() != header for name, _ in headers):
                headers.append((header, ctx.upstream_name.encode("latin-1", "replace")))
                message = {**message, "headers": headers}
        await send(message)

    return wrapped


class UpstreamHeaderMiddleware:
    """Adds `x-ccproxy-upstream: <name>` to Messages responses once an upstream served them."""

    def __init__(self, app: ASGIApp, *, header: str = UPSTREAM_HEADER) -> None:
        self.app = app
        self._header = header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_messages_call(scope):
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        await self.app(scope, receive, upstream_header_send(send, ctx, self._header))


class CircuitBreakerMiddleware:
    """Guards one upstream with `breaker`.

    `upstream` is its base URL (the breaker key; credentials are stripped), `name` what the response's
    `x-ccproxy-upstream` header calls it (None: no header). With `key_mode="upstream_model"` each
    upstream model gets its own breaker: the request body is read here to find the model, mapped with
    `resolve_model` (the endpoint's `ModelMapper.resolve`) when given.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        breaker: CircuitBreaker,
        upstream: str,
        name: str | None = None,
        key_mode: BreakerKeyMode = "upstream",
        resolve_model: Callable[[str], str] | None = None,
        max_request_bytes: int = 32 * 1024 * 1024,
        header: str = UPSTREAM_HEADER,
    ) -> None:
        self.app = app
        self.breaker = breaker
        self._upstream = upstream
        self._key = upstream_key(upstream)
        self._name = name
        self._key_mode = key_mode
        self._resolve_model = resolve_model
        self._max_request_bytes = max_request_bytes
        self._header = header.lower().encode("latin-1")

    async def _model_key(self, receive: Receive, ctx: RequestContext) -> str:
        await read_body(receive, ctx, limit=self._max_request_bytes)
        try:
            body = parse_json_body(ctx)
        except InvalidRequestError:
            return self._key  # the endpoint rejects it without calling the upstream
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or not model:
            return self._key
        resolved = self._resolve_model(model) if self._resolve_model is not None else model
        return upstream_key(self._upstream, resolved)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_messages_call(scope):
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        key = self._key
        if self._key_mode == "upstream_model":
            try:
                key = await self._model_key(receive, ctx)
            except ClientDisconnected:
                return
            except RequestTooLargeError as exc:
                await send_error(send, exc, ensure_request_id(ctx))
                return
            receive = replay_receive(ctx.body or b"", receive)
        ticket = await self.breaker.acquire(key)
        if not ticket.allowed:
            error = OverloadedError(
                "the upstream is unavailable (circuit breaker open); retry after the retry-after delay",
                retry_after=ticket.retry_after,
            )
            await send_error(send, error, ensure_request_id(ctx))
            return
        ctx.extras[BREAKER_KEY] = key
        if self._name is not None and ctx.upstream_name is None:
            ctx.upstream_name = self._name
        first_attempt = len(ctx.attempts)
        status: int | None = None
        completed = False
        inner_send = upstream_header_send(send, ctx, self._header)

        async def watching_send(message: Message) -> None:
            nonlocal status, completed
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await inner_send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                completed = True

        outcome = Outcome.NEUTRAL
        try:
            await self.app(scope, receive, watching_send)
        finally:
            try:
                outcome = self.breaker.outcome_of(
                    ctx.attempts[first_attempt:],
                    stream_error=ctx.extras.get("stream_error"),
                    error_status=status if status is not None and status >= 400 else None,
                    completed=completed,
                )
            finally:
                await self.breaker.record(ticket, outcome)


__all__ = [
    "BREAKER_KEY",
    "UPSTREAM_HEADER",
    "BreakerKeyMode",
    "CircuitBreakerMiddleware",
    "UpstreamHeaderMiddleware",
    "is_messages_call",
    "upstream_header_send",
]
