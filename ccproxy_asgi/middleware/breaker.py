"""`CircuitBreakerMiddleware`: stop sending traffic to a failing upstream, and say so honestly.

While the breaker is open, a `POST /v1/messages` that would go upstream is answered at once with 529
`overloaded_error` and a `retry-after` of the time until the next probe (Claude Code gives up after three
529s rather than retrying for minutes). A request that is the client's mistake is never refused by the
breaker: it gets its own 4xx (see `admission`). Everything else (other routes, lifespan, websockets)
passes straight through.

After the inner app returns, the request's outcome is read from what the provider and the endpoint
recorded on the request context (`ctx.attempts`, `ctx.stream_error`) and from whether the
response reached its end, and reported to the breaker: exactly once per admitted request, so a probe that
proved nothing still gives its half-open slot back.

With fallback upstreams the breaker decisions live in `FallbackProvider` (one key per upstream); mount
`UpstreamHeaderMiddleware` instead of this layer then, for the `x-ccproxy-upstream` header alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar, Literal

from ccproxy_asgi.breaker import CircuitBreaker, Outcome, Ticket, request_fingerprint, upstream_key
from ccproxy_asgi.context import AdmissionMode, RequestContext, ensure_request_id, get_context
from ccproxy_asgi.errors import InvalidRequestError, OverloadedError, ProxyError
from ccproxy_asgi.headers import has_raw_header
from ccproxy_asgi.plumbing.body import (
    BODY_READ_TIMEOUT_SECONDS,
    ClientDisconnected,
    parse_json_body,
    read_body,
    replay_receive,
)
from ccproxy_asgi.plumbing.pipeline import LayerKind
from ccproxy_asgi.plumbing.responses import send_error
from ccproxy_asgi.plumbing.routes import is_messages_call
from ccproxy_asgi.translate import fields
from ccproxy_asgi.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("ccproxy_asgi.breaker")

BreakerKeyMode = Literal["upstream", "upstream_model"]
UPSTREAM_HEADER = "x-ccproxy-upstream"


def upstream_header_send(send: Send, ctx: RequestContext, header: bytes) -> Send:
    """A `send` that names the upstream that served the request (`ctx.upstream_name`) on the response."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start" and ctx.upstream_name:
            headers = list(message.get("headers", ()))
            if not has_raw_header(headers, header):
                headers.append((header, ctx.upstream_name.encode("latin-1", "replace")))
                message = {**message, "headers": headers}
        await send(message)

    return wrapped


class UpstreamHeaderMiddleware:
    """Adds `x-ccproxy-upstream: <name>` to Messages responses once an upstream served them."""

    kind: ClassVar[LayerKind] = LayerKind.UPSTREAM_HEADER

    def __init__(self, app: ASGIApp, *, header: str = UPSTREAM_HEADER) -> None:
        self.app = app
        self._header = header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_messages_call(scope):
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        await self.app(scope, receive, upstream_header_send(send, ctx, self._header))


def _goes_upstream(body: object) -> bool:
    """Whether a Messages body has what the endpoint needs before it could call an upstream.

    Used only when admission is decided on arrival: a request that is bound to be rejected as a client
    error is passed on unguarded, so it gets its 4xx whatever the breaker's state, and proves nothing.
    The same readers as the endpoint's, so the two never disagree on what is a client error.
    """
    if not isinstance(body, dict):
        return False
    try:
        fields.read_model(body)
        fields.read_messages(body)
        fields.read_max_tokens(body)
    except InvalidRequestError:
        return False
    return True


class CircuitBreakerMiddleware:
    """Guards one upstream with `breaker`.

    `upstream` is its base URL (the breaker key; credentials are stripped), `name` what the response's
    `x-ccproxy-upstream` header calls it (None: no header). With `key_mode="upstream_model"` each
    upstream model gets its own breaker, the model mapped with `resolve_model` (the endpoint's
    `ModelMapper.resolve`) when given.

    `admission` says when the breaker decides. "deferred" (what `create_app` uses): at the moment the
    provider calls the upstream (`RequestContext.admit`), so a request the endpoint rejects by itself is
    answered with its own 4xx and never reaches the breaker; only this package's endpoint (or an inner app
    that calls `admit` before it calls out) supports it. "on_arrival" (the default, right for any inner
    app): before the inner app runs, after a minimal check that the body is a Messages request at all.

    `body_read_timeout`: seconds a client may take to send its body when the layer reads it (on arrival).

    `alone` (default True) says this upstream is the only one: an open breaker then keeps letting a probe
    through every `BreakerPolicy.open_probe_interval_seconds` instead of refusing everything until its
    recovery time ends (see `BreakerPolicy`).
    """

    kind: ClassVar[LayerKind] = LayerKind.BREAKER

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
        admission: AdmissionMode = "on_arrival",
        alone: bool = True,
        body_read_timeout: float | None = BODY_READ_TIMEOUT_SECONDS,
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
        self._admission = admission
        self._alone = alone
        self._body_read_timeout = body_read_timeout

    def _key_for(self, model: object) -> str:
        if self._key_mode != "upstream_model" or not isinstance(model, str) or not model:
            return self._key
        resolved = self._resolve_model(model) if self._resolve_model is not None else model
        return upstream_key(self._upstream, resolved)

    async def _acquire(self, ctx: RequestContext, key: str) -> Ticket:
        """Ask the breaker; raise the 529 it refuses with."""
        ticket = await self.breaker.acquire(key, fingerprint=request_fingerprint(ctx.body), alone=self._alone)
        if not ticket.allowed:
            raise OverloadedError(
                "the upstream is unavailable (circuit breaker open); retry after the retry-after delay",
                retry_after=ticket.retry_after,
            )
        ctx.probe = ticket.probe is not None
        ctx.breaker_key = key
        return ticket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_messages_call(scope):
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        ticket: Ticket | None = None
        if self._admission == "deferred":

            async def check() -> None:
                nonlocal ticket
                # The endpoint has validated the request and noted the model the client asked for.
                ticket = await self._acquire(ctx, self._key_for(ctx.requested_model))

            ctx.admission_checks.append(check)
        else:
            try:
                await read_body(
                    receive, ctx, limit=self._max_request_bytes, time_limit=self._body_read_timeout
                )
            except ClientDisconnected:
                return
            except ProxyError as exc:  # too large (413), too slow (408)
                await send_error(send, exc, ensure_request_id(ctx))
                return
            receive = replay_receive(ctx.body or b"", receive)
            try:
                body = parse_json_body(ctx)
            except InvalidRequestError:
                body = None
            if _goes_upstream(body):
                assert isinstance(body, dict)
                try:
                    ticket = await self._acquire(ctx, self._key_for(body.get("model")))
                except OverloadedError as exc:
                    await send_error(send, exc, ensure_request_id(ctx))
                    return
        await self._serve(scope, receive, send, ctx, lambda: ticket)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ctx: RequestContext,
        admitted: Callable[[], Ticket | None],
    ) -> None:
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

        try:
            await self.app(scope, receive, watching_send)
        finally:
            ticket = admitted()
            if ticket is not None:
                outcome = Outcome.NEUTRAL
                try:
                    outcome = self.breaker.outcome_of(
                        ctx.attempts[first_attempt:],
                        stream_error=ctx.stream_error,
                        error_status=status if status is not None and status >= 400 else None,
                        completed=completed,
                    )
                finally:
                    await self.breaker.record(ticket, outcome)


__all__ = [
    "UPSTREAM_HEADER",
    "BreakerKeyMode",
    "CircuitBreakerMiddleware",
    "UpstreamHeaderMiddleware",
    "upstream_header_send",
]
