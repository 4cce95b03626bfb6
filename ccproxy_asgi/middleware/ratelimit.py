"""`TokenRateLimitMiddleware`: keeps the upstream account within its RPM/TPM budget before it says no.

For `POST /v1/messages` below the mount point only (`ccproxy_asgi.plumbing.routes`; count_tokens,
models and everything else pass straight through, and so does lifespan): it reads and parses the body
once into the request context (the endpoint reuses both), prices the request (prompt tokens with tiktoken
+ `max_tokens` reserved), waits in line for budget or answers a 429 `rate_limit_error` with `retry-after`
by itself, replays the body to the inner app, adds `anthropic-ratelimit-*` headers to the response start
it forwards (never a second start), learns from every upstream attempt when the response starts, and
reconciles the reservation with real usage when the response ends (streams included).

Works in front of any app that serves Anthropic Messages requests at `/v1/messages` below its mount. An
inner app that is not this package's endpoint can report real usage by setting
`get_context(scope).usage` before it returns; without it the estimate stands for a 2xx answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from ccproxy_asgi.context import AdmissionMode, RequestContext, ensure_request_id, get_context
from ccproxy_asgi.errors import ProxyError
from ccproxy_asgi.headers import Headers, client_key_from, drop_raw_headers
from ccproxy_asgi.plumbing.body import (
    BODY_READ_TIMEOUT_SECONDS,
    ClientDisconnected,
    parse_json_body,
    read_body,
)
from ccproxy_asgi.plumbing.pipeline import LayerKind
from ccproxy_asgi.plumbing.responses import send_error
from ccproxy_asgi.plumbing.routes import is_messages_call
from ccproxy_asgi.ratelimit.budget import Cost
from ccproxy_asgi.ratelimit.cost import CostEstimator
from ccproxy_asgi.ratelimit.feedback import (
    observation_from_attempts,
    observation_from_response,
    settlement_for,
)
from ccproxy_asgi.ratelimit.keys import KeyFunction, KeyMode, key_function
from ccproxy_asgi.ratelimit.limiter import RateLimiter, Reservation
from ccproxy_asgi.ratelimit.response_headers import ratelimit_headers
from ccproxy_asgi.ratelimit.store import Settlement
from ccproxy_asgi.translate.models import ModelMapper
from ccproxy_asgi.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("ccproxy_asgi.ratelimit")

_HEADER_PREFIX = b"anthropic-ratelimit-"
_CANCEL = Settlement(cancel=True)


def _replay(body: bytes, pending: list[Message], receive: Receive) -> Receive:
    """The body once, then any message taken while queued, then the real `receive`."""
    queue: list[Message] = [{"type": "http.request", "body": body, "more_body": False}, *pending]

    async def replayed() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed


class TokenRateLimitMiddleware:
    """Rate-limits Anthropic Messages requests with a `RateLimiter`; see the module docstring.

    `limiter`: budgets, store, queue and adaptive policy. `estimator`: prices a request (default: a
    fresh `TokenCounter`; pass one sharing the endpoint's counter for its cache). `models`: maps the
    requested model to the upstream one (tokenizer and `model` keys); default: no mapping. `key`: a
    `KeyMode` or a function `(context, presented key) -> limiter key`. `max_request_bytes`: the body
    limit (413 above); `body_read_timeout`: seconds to receive it (408 after). `close_limiter`: close
    the limiter's store at lifespan shutdown.
    """

    kind: ClassVar[LayerKind] = LayerKind.RATE_LIMIT

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        estimator: CostEstimator | None = None,
        models: ModelMapper | None = None,
        key: KeyMode | KeyFunction = "global",
        max_request_bytes: int = 32 * 1024 * 1024,
        close_limiter: bool = True,
        admission: AdmissionMode = "on_arrival",
        body_read_timeout: float | None = BODY_READ_TIMEOUT_SECONDS,
    ) -> None:
        self.app = app
        self._admission = admission
        self._body_read_timeout = body_read_timeout
        self.limiter = limiter
        self.estimator = estimator if estimator is not None else CostEstimator()
        self._models = models
        self._key: KeyFunction = key_function(key) if isinstance(key, str) else key
        self._max_request_bytes = max_request_bytes
        self._close_limiter = close_limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if not is_messages_call(scope):
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        if self._admission == "deferred":
            await self._serve_deferred(scope, receive, send, ctx)
            return
        request_id = ensure_request_id(ctx)
        try:
            body = await read_body(
                receive, ctx, limit=self._max_request_bytes, time_limit=self._body_read_timeout
            )
            data = parse_json_body(ctx)
            assert isinstance(data, dict)
            key, cost = await self._price_and_key(scope, ctx, data, len(body))
            reservation, pending = await self._admit(key, cost, receive)
        except ClientDisconnected:
            return
        except ProxyError as exc:
            await send_error(send, exc, request_id)
            return
        if reservation is None:
            return
        ctx.rate_limit = reservation
        await self._serve(scope, _replay(body, pending, receive), send, ctx, lambda: reservation)

    async def _serve_deferred(self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext) -> None:
        """Reserve budget only when the provider is about to call the upstream (`RequestContext.admit`):
        the endpoint has parsed and validated the body by then, and waiting in line happens inside the
        endpoint's own watch for a client disconnect, which cancels the wait and takes nothing."""
        reservation: Reservation | None = None

        async def check() -> None:
            nonlocal reservation
            data = ctx.json
            assert isinstance(data, dict)  # the endpoint admits only a parsed JSON object
            key, cost = await self._price_and_key(scope, ctx, data, len(ctx.body or b""))
            first = await self.limiter.try_acquire(key, cost)
            taken = first if isinstance(first, Reservation) else await self.limiter.wait(first)
            reservation = taken
            ctx.rate_limit = taken

        # First in line, ahead of the checks of layers further out (the breaker's): a request queued
        # for budget must not hold a breaker probe slot while it waits.
        ctx.admission_checks.insert(0, check)
        await self._serve(scope, receive, send, ctx, lambda: reservation)

    async def _price_and_key(
        self, scope: Scope, ctx: RequestContext, data: dict[str, Any], body_bytes: int
    ) -> tuple[str, Cost]:
        model = data.get("model")
        upstream = ""
        if isinstance(model, str) and model:
            upstream = self._models.resolve(model) if self._models is not None else model
            ctx.requested_model = ctx.requested_model or model
            ctx.upstream_model = ctx.upstream_model or upstream
        cost = await self.estimator.estimate(data, model=upstream, body_bytes=body_bytes)
        if ctx.estimated_input_tokens is None:
            ctx.estimated_input_tokens = cost.input_tokens
        return self._key(ctx, client_key_from(scope)), cost

    async def _admit(
        self, key: str, cost: Cost, receive: Receive
    ) -> tuple[Reservation | None, list[Message]]:
        """The reservation (None if the client left while queued) and any message read meanwhile."""
        first = await self.limiter.try_acquire(key, cost)
        if isinstance(first, Reservation):
            return first, []
        waiting = asyncio.ensure_future(self.limiter.wait(first))
        pending: list[Message] = []
        listener: asyncio.Future[Message] | None = asyncio.ensure_future(receive())
        try:
            while listener is not None and not waiting.done():
                await asyncio.wait((waiting, listener), return_when=asyncio.FIRST_COMPLETED)
                if listener.done():
                    message = listener.result()
                    listener = None
                    if message["type"] == "http.disconnect":
                        if waiting.done() and not waiting.cancelled() and waiting.exception() is None:
                            await self.limiter.settle(waiting.result(), _CANCEL)
                        waiting.cancel()
                        with contextlib.suppress(asyncio.CancelledError, ProxyError):
                            await waiting
                        logger.info("client left while queued for rate-limit budget")
                        return None, []
                    pending.append(message)  # not expected after a whole body; handed on in order
            return await waiting, pending
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            if not waiting.done():
                waiting.cancel()
                with contextlib.suppress(asyncio.CancelledError, ProxyError):
                    await waiting

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ctx: RequestContext,
        reservation_of: Callable[[], Reservation | None],
    ) -> None:
        """Run the inner app, then learn from and settle the reservation (if one was taken)."""
        limiter = self.limiter
        status: int | None = None
        learned = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status, learned
            if message["type"] != "http.response.start":
                await send(message)
                return
            status = int(message["status"])
            reservation = reservation_of()
            if reservation is not None:  # None: answered before admission (a client error)
                headers = list(message.get("headers", ()))
                learned = len(ctx.attempts)
                if learned:
                    observation = observation_from_attempts(ctx.attempts)
                else:
                    observation = observation_from_response(status, Headers(headers))
                await limiter.observe(reservation, observation)
                message = {**message, "headers": self._with_headers(headers, status, reservation)}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            reservation = reservation_of()
            if reservation is not None:
                finish = asyncio.ensure_future(self._finish(reservation, ctx, status, learned))
                await asyncio.shield(finish)

    async def _finish(
        self, reservation: Reservation, ctx: RequestContext, status: int | None, learned: int
    ) -> None:
        if len(ctx.attempts) > learned:
            await self.limiter.observe(reservation, observation_from_attempts(ctx.attempts[learned:]))
        await self.limiter.settle(reservation, settlement_for(ctx, status))

    @staticmethod
    def _with_headers(
        headers: list[tuple[bytes, bytes]], status: int, reservation: Reservation
    ) -> list[tuple[bytes, bytes]]:
        if reservation.view is None:
            return headers
        kept = drop_raw_headers(headers, prefix=_HEADER_PREFIX)
        if status == 429 and len(kept) < len(headers):
            return headers  # the upstream's own figures say why it refused
        kept.extend(
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in ratelimit_headers(reservation.view).items()
        )
        return kept

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_closing(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                await self.limiter.ping()  # an unreachable shared store is logged at start-up
            if message["type"] == "lifespan.shutdown.complete" and self._close_limiter:
                try:
                    await self.limiter.aclose()
                except Exception:
                    logger.exception("closing the rate limiter failed")
            await send(message)

        await self.app(scope, receive, send_closing)


__all__ = ["TokenRateLimitMiddleware"]
