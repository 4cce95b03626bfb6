"""The per-request context shared by the layers.

One mutable object per request, stored in the ASGI scope under `scope["ccproxy"]` and created by whichever
layer sees the request first. Inner layers write it; outer layers read it after `await self.app(...)`.
Contextvars are for logging only: a contextvar set inside does not reach the layers outside.

What one module writes and another reads is a typed field of `RequestContext`, so a misspelt name fails
`mypy` instead of reading None. `extras` is the users' own: this package never reads nor writes it, so an
application's layers and endpoints can pass their data along there without clashing with ours.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ccproxy_asgi.headers import Headers
from ccproxy_asgi.ids import random_base62
from ccproxy_asgi.types import Scope

if TYPE_CHECKING:
    from opentelemetry.context import Context

SCOPE_KEY = "ccproxy"


def new_request_id() -> str:
    """An Anthropic-style request id: `req_` + 24 random base62 characters."""
    return "req_" + random_base62(24)


@dataclass(slots=True)
class UpstreamAttempt:
    """One call to the upstream, retries included: what the limiter, breaker and metrics learn from."""

    url: str
    status: int | None = None
    headers: Headers = field(default_factory=Headers)
    duration_s: float = 0.0
    error: str | None = None


#: A check a layer defers until the request is about to go upstream (the breaker's, the limiter's): it
#: returns when the request may go, or raises the `ProxyError` to answer with instead.
AdmissionCheck = Callable[[], Awaitable[None]]
#: When a guarding layer decides: "on_arrival", before the inner app runs (works with any inner app), or
#: "deferred", as an admission check run when the provider calls out (this package's endpoint).
AdmissionMode = Literal["on_arrival", "deferred"]


class RateLimitReservation(Protocol):
    """What the request context shows of the rate limiter's reservation (a `ratelimit.Reservation`)."""

    @property
    def key(self) -> str:
        """The limiter key the budget was taken from."""

    @property
    def waited(self) -> float:
        """Seconds the request waited in line for budget."""


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


@dataclass(slots=True)
class RequestContext:
    """What several layers need to know about one request."""

    request_id: str | None = None
    body: bytes | None = None
    # The parsed JSON body, parsed once by whichever layer needed it first. `json_error` holds why it
    # could not be parsed, so later layers do not parse it again to find out.
    json: Any = None
    json_error: str | None = None
    requested_model: str | None = None
    upstream_model: str | None = None
    upstream_name: str | None = None
    stream: bool = False
    estimated_input_tokens: int | None = None
    usage: Usage | None = None
    stop_reason: str | None = None
    attempts: list[UpstreamAttempt] = field(default_factory=list)
    # Set once the first byte of the response body went to the client: no retry, no second response start.
    response_started: bool = False
    client_key_id: str | None = None
    # Admission is decided when the provider calls out, not when the request arrives: a request the
    # endpoint rejects by itself (bad JSON, a missing field, an unknown route) is answered with its 4xx
    # whatever state the breaker or the limiter is in, and never counts against them. Outer layers
    # append first; `admit` runs the checks once, in that order.
    admission_checks: list[AdmissionCheck] = field(default_factory=list)
    admitted: bool = False
    # Set by the breaker for a request it admits as a probe of a suspect upstream: the provider makes one
    # attempt only, so a probe is quick and a failing client's retries do not pile up on it.
    probe: bool = False
    # The retry count the client announced (`x-stainless-retry-count`, sent by the official SDKs and
    # Claude Code, 0 on a first attempt); None when it announced none. A client that announces it
    # retries by itself gets retryable upstream statuses back at once (see `ccproxy_asgi.provider.retry`).
    client_retry_count: int | None = None
    # The Anthropic error type of an error that ended the response after it started (an SSE `error`
    # event), set by the endpoint; the breaker, the fallback provider, metrics, tracing and the access log
    # read it, since the status (200) cannot say the request failed.
    stream_error: str | None = None
    # The request's `error.type` as the metrics layer derived it (an error type, a status, an exception
    # name), for the tracing layer's server span.
    error_type: str | None = None
    # The breaker key the breaker layer admitted the request under.
    breaker_key: str | None = None
    # The rate limiter's reservation for the request, once it was admitted.
    rate_limit: RateLimitReservation | None = None
    # The tracing layer's server span, as an OpenTelemetry `Context` the provider parents its attempt spans
    # on, and that span's W3C `traceparent`, which the provider sends upstream even with no tracer.
    otel_context: Context | None = None
    traceparent: str | None = None
    # When a stream's first-byte budget ends (the provider's clock): set by its first attempt, so retries
    # share the budget instead of each getting a new one.
    first_byte_deadline: float | None = None
    # The application's own data: never read nor written by this package.
    extras: dict[str, Any] = field(default_factory=dict)

    async def admit(self) -> None:
        """Run the deferred admission checks (once per request); raises what a check refused with."""
        if self.admitted:
            return
        self.admitted = True
        for check in self.admission_checks:
            await check()


def get_context(scope: Scope) -> RequestContext:
    """The request's context, created on first use."""
    ctx = scope.get(SCOPE_KEY)
    if ctx is None:
        ctx = RequestContext()
        scope[SCOPE_KEY] = ctx
    assert isinstance(ctx, RequestContext)
    return ctx


def ensure_request_id(ctx: RequestContext) -> str:
    """The request id, generated here when no correlation layer set one."""
    if ctx.request_id is None:
        ctx.request_id = new_request_id()
    return ctx.request_id


__all__ = [
    "SCOPE_KEY",
    "AdmissionCheck",
    "AdmissionMode",
    "new_request_id",
    "RateLimitReservation",
    "RequestContext",
    "UpstreamAttempt",
    "Usage",
    "ensure_request_id",
    "get_context",
]
