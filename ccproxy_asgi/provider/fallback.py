"""`FallbackProvider`: an ordered list of upstreams, each behind its own breaker key.

Where the breaker decides: with one upstream, `CircuitBreakerMiddleware` guards the whole request. With
fallbacks the decision must be made per upstream, at the moment one is picked, so it lives here: for each
upstream in order, `acquire` its key; skip it while its breaker is open; call it; `record` the outcome.
Both use the same `CircuitBreaker` core (and store), so an upstream's state is one state whichever
layer consults it.

A request moves on to the next upstream when its breaker is open, or when the call failed before the first
byte reached the client with an upstream fault (5xx, timeout, connection error, 429): a client error
(400, 404, 413) would fail anywhere and is answered as is. Once a stream started there is no moving on.
The upstream that answered is named in `ctx.upstream_name` (`x-ccproxy-upstream` on the response, added
by `UpstreamHeaderMiddleware`). When every breaker is open, the answer is 529 with the shortest wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ccproxy_asgi.breaker import CircuitBreaker, Outcome, Ticket, request_fingerprint, upstream_key
from ccproxy_asgi.context import RequestContext
from ccproxy_asgi.errors import OverloadedError, ProxyError
from ccproxy_asgi.provider.base import ChatProvider
from ccproxy_asgi.upstream.base import UpstreamResponse


@dataclass(frozen=True, slots=True)
class UpstreamEntry:
    """One upstream of a `FallbackProvider`.

    `resolve_model` maps the client's requested model to this upstream's model; None sends the model the
    endpoint already chose (right for the primary, whose mapping the endpoint applied).
    """

    name: str
    base_url: str
    provider: ChatProvider
    resolve_model: Callable[[str], str] | None = None


def _falls_back(error: ProxyError, outcome: Outcome) -> bool:
    return outcome is Outcome.FAILURE or error.status == 429 or error.status >= 500


class FallbackProvider:
    """Implements `ChatProvider` over several upstreams, first healthy one wins (see the module doc)."""

    def __init__(
        self,
        upstreams: Sequence[UpstreamEntry],
        *,
        breaker: CircuitBreaker,
        key_mode: Literal["upstream", "upstream_model"] = "upstream",
    ) -> None:
        if not upstreams:
            raise ValueError("FallbackProvider needs at least one upstream")
        self._entries = tuple(upstreams)
        self._breaker = breaker
        self._key_mode = key_mode

    @property
    def upstreams(self) -> tuple[UpstreamEntry, ...]:
        return self._entries

    def _payload_for(
        self, entry: UpstreamEntry, payload: dict[str, Any], ctx: RequestContext
    ) -> tuple[dict[str, Any], str | None]:
        model = payload.get("model")
        if entry.resolve_model is not None:
            requested = ctx.requested_model or model
            if isinstance(requested, str):
                model = entry.resolve_model(requested)
                payload = {**payload, "model": model}
        return payload, model if isinstance(model, str) else None

    def key_for(self, entry: UpstreamEntry, model: str | None) -> str:
        """The breaker key of `entry` (and `model`, with `key_mode="upstream_model"`)."""
        return upstream_key(entry.base_url, model if self._key_mode == "upstream_model" else None)

    async def _settle(
        self, ticket: Ticket, ctx: RequestContext, first: int, *, error: ProxyError | None = None
    ) -> Outcome:
        outcome = self._breaker.outcome_of(
            ctx.attempts[first:], error_status=error.status if error is not None else None
        )
        await self._breaker.record(ticket, outcome)
        return outcome

    async def _each_admitted(
        self, payload: dict[str, Any], ctx: RequestContext
    ) -> AsyncGenerator[tuple[UpstreamEntry, dict[str, Any], Ticket, bool], None]:
        """The upstreams whose breaker admits the request, in order, with the payload for each; raises
        `OverloadedError` when none did."""
        # The other layers' checks (the rate limiter's) once for the request, before any upstream is
        # picked: a refusal there is not a reason to try the next upstream.
        await ctx.admit()
        waits: list[float] = []
        admitted = False
        fingerprint = request_fingerprint(ctx.body)
        last = len(self._entries) - 1
        for index, entry in enumerate(self._entries):
            body, model = self._payload_for(entry, payload, ctx)
            # The last upstream is the only one left: an open breaker there keeps probing.
            ticket = await self._breaker.acquire(
                self.key_for(entry, model), fingerprint=fingerprint, alone=index == last
            )
            if not ticket.allowed:
                waits.append(ticket.retry_after)
                continue
            admitted = True
            ctx.probe = ticket.probe is not None
            ctx.upstream_name = entry.name
            if model is not None:
                ctx.upstream_model = model
            yield entry, body, ticket, index == last
        if not admitted:
            raise OverloadedError(
                "every upstream is unavailable (circuit breakers open); retry after the retry-after delay",
                retry_after=min(waits),
            )

    async def complete(
        self, payload: dict[str, Any], ctx: RequestContext, *, client_key: str | None = None
    ) -> dict[str, Any]:
        last_error: ProxyError | None = None
        async with contextlib.aclosing(self._each_admitted(payload, ctx)) as admitted:
            async for entry, body, ticket, is_last in admitted:
                first = len(ctx.attempts)
                try:
                    result = await entry.provider.complete(body, ctx, client_key=client_key)
                except ProxyError as exc:
                    outcome = await self._settle(ticket, ctx, first, error=exc)
                    if is_last or not _falls_back(exc, outcome):
                        raise
                    last_error = exc
                    continue
                except BaseException:
                    await self._settle(ticket, ctx, first)
                    raise
                await self._settle(ticket, ctx, first)
                return result
        assert last_error is not None  # the loop either returns, raises, or moved on after an error
        raise last_error

    @contextlib.asynccontextmanager
    async def stream(
        self, payload: dict[str, Any], ctx: RequestContext, *, client_key: str | None = None
    ) -> AsyncIterator[UpstreamResponse]:
        async with contextlib.AsyncExitStack() as stack:
            opened: tuple[UpstreamResponse, Ticket, int] | None = None
            last_error: ProxyError | None = None
            async with contextlib.aclosing(self._each_admitted(payload, ctx)) as admitted:
                async for entry, body, ticket, is_last in admitted:
                    first = len(ctx.attempts)
                    try:
                        response = await stack.enter_async_context(
                            entry.provider.stream(body, ctx, client_key=client_key)
                        )
                    except ProxyError as exc:
                        outcome = await self._settle(ticket, ctx, first, error=exc)
                        if is_last or not _falls_back(exc, outcome):
                            raise
                        last_error = exc
                        continue
                    except BaseException:
                        await self._settle(ticket, ctx, first)
                        raise
                    opened = (response, ticket, first)
                    break
            if opened is None:
                assert last_error is not None
                raise last_error
            response, ticket, first = opened
            completed = False
            try:
                yield response
                completed = True
            finally:
                outcome = self._breaker.outcome_of(
                    ctx.attempts[first:], stream_error=ctx.stream_error, completed=completed
                )
                await self._breaker.record(ticket, outcome)

    async def count_tokens(self, body: dict[str, Any], *, upstream_model: str) -> int:
        return await self._entries[0].provider.count_tokens(body, upstream_model=upstream_model)

    async def list_models(self) -> list[str]:
        return await self._entries[0].provider.list_models()

    async def aclose(self) -> None:
        # One upstream failing to close must not keep the others open.
        await asyncio.gather(*(entry.provider.aclose() for entry in self._entries), return_exceptions=True)


__all__ = ["FallbackProvider", "UpstreamEntry"]
