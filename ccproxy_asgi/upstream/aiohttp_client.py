"""`UpstreamClient` on aiohttp: the default for serving (lowest CPU per proxied request)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Self

import aiohttp
import yarl
from aiohttp.helpers import get_env_proxy_for_url

from ccproxy_asgi.errors import UpstreamError
from ccproxy_asgi.upstream.base import AsyncClosing, HTTPClientConfig
from ccproxy_asgi.upstream.transport_errors import connection_error, first_byte_timeout_error, timeout_error

# Upstream hosts are few and stable; a minute of DNS caching saves a lookup per new connection without
# pinning a moved endpoint for long.
_DNS_CACHE_TTL = 60


def _client_error_reason(exc: aiohttp.ClientError) -> str:
    """A fixed description of an aiohttp failure (its own messages may quote the URL)."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response body incomplete"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid upstream URL"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "invalid response"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "cannot connect"
    return "connection failed"


class AiohttpUpstreamResponse(AsyncClosing):
    """An aiohttp response behind the `UpstreamResponse` protocol."""

    __slots__ = ("_read_timeout", "_response")

    def __init__(self, response: aiohttp.ClientResponse, read_timeout: float) -> None:
        self._response = response
        self._read_timeout = read_timeout

    def __repr__(self) -> str:
        # Status only: headers may carry cookies or tokens.
        return f"<AiohttpUpstreamResponse status={self._response.status}>"

    @property
    def status(self) -> int:
        """The HTTP status code."""
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        """Response headers (aiohttp's case-insensitive multidict, not copied)."""
        return self._response.headers

    def _failure(self, exc: BaseException) -> Exception:
        if isinstance(exc, TimeoutError):
            return timeout_error("read", self._read_timeout)
        assert isinstance(exc, aiohttp.ClientError)
        return connection_error(exc, _client_error_reason(exc))

    async def read(self) -> bytes:
        """The whole (decoded) body."""
        try:
            return await self._response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._response.close()
            raise self._failure(exc) from exc
        except BaseException:
            self._response.close()
            raise

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """Chunks as aiohttp's protocol hands them over (`iter_any`: no re-chunking)."""
        content = self._response.content
        try:
            while True:
                try:
                    chunk = await content.readany()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise self._failure(exc) from exc
                if not chunk:
                    return
                yield chunk
        finally:
            # Failed, cancelled, or the consumer stopped early: never leave a half-read connection
            # waiting for a close that a careless caller might forget.
            if not content.at_eof():
                self._response.close()

    async def aclose(self) -> None:
        """Return the connection to the pool if the body is complete, else close it."""
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpUpstreamClient(AsyncClosing):
    """A pooled aiohttp `ClientSession`, created lazily inside the running loop (or by `open()`)."""

    __slots__ = ("_closed", "_config", "_proxies", "_session", "_timeout")

    def __init__(self, config: HTTPClientConfig | None = None) -> None:
        self._config = config or HTTPClientConfig()
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}
        self._closed = False
        self._timeout = self._client_timeout(self._config.read_timeout)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._session is not None else "idle")
        return f"AiohttpUpstreamClient({self._config!r}, state={state})"

    @property
    def config(self) -> HTTPClientConfig:
        """The limits and timeouts this client was built with."""
        return self._config

    def _client_timeout(self, read_timeout: float) -> aiohttp.ClientTimeout:
        config = self._config
        # aiohttp's `connect` covers the wait for a pooled connection plus the connect itself; the
        # socket connect alone is `sock_connect`. No `total`: a stream lives as long as it talks.
        connect = None if config.pool_timeout is None else config.pool_timeout + config.connect_timeout
        return aiohttp.ClientTimeout(
            total=None, connect=connect, sock_connect=config.connect_timeout, sock_read=read_timeout
        )

    async def open(self) -> None:
        """Create the session now rather than on the first request. Must run inside the event loop."""
        self._ensure_session()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the upstream client is closed")
        if self._session is None:
            config = self._config
            connector = aiohttp.TCPConnector(
                limit=config.max_connections,
                limit_per_host=0,
                keepalive_timeout=config.keepalive_expiry,
                ttl_dns_cache=_DNS_CACHE_TTL,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"User-Agent": config.user_agent},
                # A proxy serves many users: upstream cookies must not leak from one request to the next.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
                raise_for_status=False,
                # aiohttp's own trust_env re-reads the proxy variables and ~/.netrc in a thread on
                # every request (two thread hops, ~0.25 ms of CPU each time); the proxy for a host is
                # resolved once instead (`_proxy_for`), and credentials come from our own headers.
                trust_env=False,
            )
        return self._session

    def _proxy_for(self, url: str) -> str | None:
        """The HTTP(S)_PROXY for `url`'s origin per the environment (NO_PROXY honoured), cached."""
        if not self._config.trust_env:
            return None
        origin = yarl.URL(url).origin()
        key = str(origin)
        if key not in self._proxies:
            try:
                proxy, _ = get_env_proxy_for_url(origin)
                self._proxies[key] = str(proxy)
            except LookupError:
                self._proxies[key] = None
        return self._proxies[key]

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
    ) -> AiohttpUpstreamResponse:
        """Send a request and return once the response head arrived (see `UpstreamClient.send`)."""
        session = self._ensure_session()
        read_timeout = self._config.read_timeout if timeout is None else timeout
        client_timeout = self._timeout if timeout is None else self._client_timeout(timeout)
        # aiohttp has no timeout for the head alone (its sock_read restarts with every read, head and
        # body alike), so the head gets a deadline of its own; None sets none.
        head = asyncio.timeout(first_byte_timeout)
        try:
            # Cancellation here is safe: aiohttp closes the connection if the task is cancelled while
            # it writes the request or waits for the head, which aborts the upstream generation. The
            # head deadline cancels the same way.
            async with head:
                response = await session.request(
                    method,
                    url,
                    headers=headers,
                    data=content,
                    timeout=client_timeout,
                    # Redirects would replay the request (and its credentials) somewhere else.
                    allow_redirects=False,
                    proxy=self._proxy_for(url),
                )
        except TimeoutError as exc:
            if first_byte_timeout is not None and head.expired():
                raise first_byte_timeout_error(first_byte_timeout) from exc
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise timeout_error("connect", self._config.connect_timeout) from exc
            raise timeout_error("read", read_timeout) from exc
        except aiohttp.ClientError as exc:
            raise connection_error(exc, _client_error_reason(exc)) from exc
        except ValueError as exc:
            # yarl rejects some malformed URLs, and aiohttp header values with CR/LF, with a plain
            # ValueError; neither message is safe to repeat (it may quote the value).
            raise UpstreamError("upstream connection error: invalid URL or header") from exc
        return AiohttpUpstreamResponse(response, read_timeout)

    async def aclose(self) -> None:
        """Close the session and every pooled connection."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self


__all__ = ["AiohttpUpstreamClient", "AiohttpUpstreamResponse"]
