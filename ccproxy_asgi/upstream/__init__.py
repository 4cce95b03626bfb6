"""Upstream HTTP: one small protocol, two library implementations (aiohttp, httpx/httpx2).

`create_upstream_client("aiohttp" | "httpx", config)` is the way in; the implementation classes are
exported too for callers that need a library-specific option (`HttpxUpstreamClient(library=...)`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ccproxy_asgi.upstream.base import (
    DEFAULT_USER_AGENT,
    FirstByteTimeoutClient,
    HTTPClientConfig,
    UpstreamClient,
    UpstreamResponse,
)

if TYPE_CHECKING:
    from ccproxy_asgi.upstream.aiohttp_client import AiohttpUpstreamClient, AiohttpUpstreamResponse
    from ccproxy_asgi.upstream.httpx_client import HttpxUpstreamClient, HttpxUpstreamResponse

UpstreamClientKind = Literal["aiohttp", "httpx"]


def create_upstream_client(
    kind: UpstreamClientKind = "aiohttp", config: HTTPClientConfig | None = None
) -> UpstreamClient:
    """A new, unopened client of the given kind; close it with `aclose()` or `async with`.

    The library is imported only here, so a deployment that uses one never imports the other.
    """
    if kind == "aiohttp":
        from ccproxy_asgi.upstream.aiohttp_client import AiohttpUpstreamClient

        return AiohttpUpstreamClient(config)
    if kind == "httpx":
        from ccproxy_asgi.upstream.httpx_client import HttpxUpstreamClient

        return HttpxUpstreamClient(config)
    raise ValueError(f"unknown upstream client kind: {kind!r} (expected 'aiohttp' or 'httpx')")


def __getattr__(name: str) -> object:
    # The implementation classes are importable from here without importing both libraries up front.
    if name in ("AiohttpUpstreamClient", "AiohttpUpstreamResponse"):
        from ccproxy_asgi.upstream import aiohttp_client

        return getattr(aiohttp_client, name)
    if name in ("HttpxUpstreamClient", "HttpxUpstreamResponse"):
        from ccproxy_asgi.upstream import httpx_client

        return getattr(httpx_client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_USER_AGENT",
    "AiohttpUpstreamClient",
    "AiohttpUpstreamResponse",
    "FirstByteTimeoutClient",
    "HTTPClientConfig",
    "HttpxUpstreamClient",
    "HttpxUpstreamResponse",
    "UpstreamClient",
    "UpstreamClientKind",
    "UpstreamResponse",
    "create_upstream_client",
]
