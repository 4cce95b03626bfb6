"""Upstream HTTP: one small protocol, two library implementations (aiohttp, httpx/httpx2).

`create_upstream_client("aiohttp" | "httpx", config)` is the way in; the implementation classes are
exported too for callers that need a library-specific option (`HttpxUpstreamClient(library=...)`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ccproxy_asgi._lazy import lazy_exports
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

# The implementation classes are importable from here without importing both libraries up front.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AiohttpUpstreamClient": "ccproxy_asgi.upstream.aiohttp_client",
        "AiohttpUpstreamResponse": "ccproxy_asgi.upstream.aiohttp_client",
        "HttpxUpstreamClient": "ccproxy_asgi.upstream.httpx_client",
        "HttpxUpstreamResponse": "ccproxy_asgi.upstream.httpx_client",
    },
)

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
