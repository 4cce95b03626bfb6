"""The seam between the provider and an HTTP library: two protocols and one config value object.

The provider talks to `UpstreamClient` / `UpstreamResponse` only, so swapping aiohttp for httpx (or a
test double) changes nothing above this package. Both implementations raise only
`ccproxy_asgi.errors.UpstreamError` (bad gateway) and `UpstreamTimeoutError` for transport failures, so
the provider maps nothing itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from ccproxy_asgi._version import __version__

DEFAULT_USER_AGENT = f"ccproxy-asgi/{__version__}"


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPClientConfig:
    """Pool limits and timeouts of an upstream HTTP client (all times in seconds).

    The defaults avoid the two classic traps (docs/protocol.md#upstream-http-client-defaults): httpx's 5 s
    timeouts / 20 keep-alive connections
    that fail under load or mid-generation, and aiohttp's 300 s *total* timeout that kills long streams.
    There is deliberately no total timeout: a stream may last as long as it keeps producing bytes.

    - `max_connections`: open connections at most, busy or idle.
    - `max_keepalive_connections`: idle connections kept for reuse; None means `max_connections`.
      Only httpx has this knob; aiohttp keeps every idle connection until `keepalive_expiry`.
    - `keepalive_expiry`: an idle connection is closed after this long.
    - `connect_timeout`: TCP (and TLS) connect, kept short so a dead host fails fast and can be retried.
    - `read_timeout`: the longest silence between two reads, not a cap on the whole response; a slow
      model may think for minutes before its first token. `send(timeout=...)` overrides it per request.
    - `first_byte_timeout`: the longest wait for the response head (pool wait, connect, send and the
      upstream's silence before its status line, together) of a request that asks for it with
      `send(first_byte_timeout=...)`. The clients never apply it on their own: only the caller knows
      whether the head should come early. A streaming server sends its head before (or with) the first
      token, so a silent one is hung or stuck loading; a non-streaming one usually sends nothing until the
      whole completion is ready, so there only the read timeout can apply. The proxy's provider passes
      it for streams, because until the head arrives its client has received nothing at all, not even a
      ping, and the reverse proxies in front give up after 60-100 s of that. It is a bound on the head,
      never on the body, and it cannot lengthen the wait: the read timeout still bounds every silence.
      None: no such bound.
    - `write_timeout`: the longest a single write of the request may block (httpx only; aiohttp has none).
    - `pool_timeout`: the longest wait for a free connection when all `max_connections` are busy;
      None waits forever. aiohttp cannot bound the two apart: there the pool wait plus the connect
      together are bounded by `pool_timeout + connect_timeout`.
    - `http2`: negotiate HTTP/2 (httpx only, needs `h2`); aiohttp speaks HTTP/1.1.
    - `trust_env`: honour `HTTP(S)_PROXY`, `NO_PROXY` and `SSL_CERT_FILE`, like the official SDKs do.
    - `user_agent`: sent when the request carries no `user-agent` of its own, instead of the library's.
    """

    max_connections: int = 200
    max_keepalive_connections: int | None = None
    keepalive_expiry: float = 15.0
    connect_timeout: float = 10.0
    read_timeout: float = 600.0
    first_byte_timeout: float | None = 45.0
    write_timeout: float = 60.0
    pool_timeout: float | None = 30.0
    http2: bool = False
    trust_env: bool = True
    user_agent: str = DEFAULT_USER_AGENT

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.max_keepalive_connections is not None and self.max_keepalive_connections < 0:
            raise ValueError("max_keepalive_connections must not be negative")
        for name in ("keepalive_expiry", "connect_timeout", "read_timeout", "write_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.pool_timeout is not None and self.pool_timeout <= 0:
            raise ValueError("pool_timeout must be positive or None")
        if self.first_byte_timeout is not None and self.first_byte_timeout <= 0:
            raise ValueError("first_byte_timeout must be positive or None")

    @property
    def keepalive_connections(self) -> int:
        """The effective idle-connection cap."""
        if self.max_keepalive_connections is None:
            return self.max_connections
        return self.max_keepalive_connections


class AsyncClosing:
    """`async with obj:` returns `obj` and calls its `aclose()` on the way out (responses, clients)."""

    __slots__ = ()

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@runtime_checkable
class UpstreamResponse(Protocol):
    """An upstream response whose head has arrived and whose body has not been read yet.

    Always close it (`async with response:` or `aclose()`): a fully read body returns the connection to
    the pool, an unread or half-read one closes the connection so it is never reused mid-message.
    """

    @property
    def status(self) -> int:
        """The HTTP status code."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Response headers as received, with case-insensitive lookup. The body itself is always
        delivered decoded (gzip/deflate removed), whatever `content-encoding` says."""
        ...

    async def read(self) -> bytes:
        """The whole body. Raises `UpstreamError` if the connection breaks before the body is complete,
        `UpstreamTimeoutError` if the upstream stays silent longer than the read timeout."""
        ...

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive from the network, with no buffering beyond the library's own.

        Ends cleanly only at the real end of the body; a cut connection raises `UpstreamError` and a
        silence longer than the read timeout `UpstreamTimeoutError`, so a truncated stream is never
        mistaken for a complete one. If the iteration fails or is cancelled, the connection is closed.
        """
        ...

    async def aclose(self) -> None:
        """Release the connection to the pool if the body was fully read, close it otherwise.
        Idempotent."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class UpstreamClient(Protocol):
    """A pooled HTTP client for one or more upstream hosts.

    `send` returns once the response head has arrived. If the calling task is cancelled while `send` is
    waiting (the client of the proxy disconnected), the upstream request is aborted and its connection
    closed, so the upstream stops generating (and billing).
    """

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None = None,
        # A per-request *read* timeout (silence between reads), which a caller's asyncio.timeout()
        # around the whole call cannot express; hence the parameter ASYNC109 warns about.
        timeout: float | None = None,  # noqa: ASYNC109
        first_byte_timeout: float | None = None,
    ) -> UpstreamResponse:
        """Send one request; `timeout` overrides the config's read timeout for this request only.

        `first_byte_timeout` bounds the wait for the response head of this request (see
        `HTTPClientConfig.first_byte_timeout`); None leaves the head to the read timeout alone. A
        first-byte timeout is enforced by the client rather than by the caller's own `asyncio.timeout()`
        so that its expiry is reported as what it is (an `UpstreamTimeoutError` naming it) and never
        confused with the caller being cancelled.

        Raises `UpstreamError` ("upstream connection error: <reason>") when the request cannot be
        delivered or the response head is invalid, and `UpstreamTimeoutError` on a connect, write, pool,
        first-byte or read timeout. Messages never contain headers or URL credentials.
        """
        ...

    async def aclose(self) -> None:
        """Close every pooled connection. Idempotent; the client cannot send afterwards."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class FirstByteTimeoutClient(AsyncClosing):
    """A view of `client` whose every `send` carries a first-byte timeout.

    For handing a client to code that calls `send` without knowing about first-byte timeouts (the
    tracing wrapper): the provider decides the timeout, the view passes it on. The view owns nothing:
    closing it leaves the client open.
    """

    __slots__ = ("_client", "_first_byte_timeout")

    def __init__(self, client: UpstreamClient, first_byte_timeout: float | None) -> None:
        self._client = client
        self._first_byte_timeout = first_byte_timeout

    def __repr__(self) -> str:
        return f"FirstByteTimeoutClient({self._client!r}, first_byte_timeout={self._first_byte_timeout!r})"

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the read timeout, passed through
        first_byte_timeout: float | None = None,
    ) -> UpstreamResponse:
        """`client.send(...)` with the view's first-byte timeout unless this call names its own."""
        if first_byte_timeout is None:
            first_byte_timeout = self._first_byte_timeout
        return await self._client.send(
            method,
            url,
            headers=headers,
            content=content,
            timeout=timeout,
            first_byte_timeout=first_byte_timeout,
        )

    async def aclose(self) -> None:
        """Nothing: the client belongs to whoever made the view."""


__all__ = [
    "DEFAULT_USER_AGENT",
    "FirstByteTimeoutClient",
    "HTTPClientConfig",
    "UpstreamClient",
    "UpstreamResponse",
]
