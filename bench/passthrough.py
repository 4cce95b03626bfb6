"""A bare pass-through proxy: the baseline the end-to-end benchmarks compare the real proxy against.

A minimal pure-ASGI app that reads the request body, forwards it to `--upstream` + the request path, and
streams the response back chunk by chunk; nothing else (no translation, no middleware, no disconnect
watcher). Served by uvicorn with uvloop and httptools, like the real proxy.

By default the upstream call goes through the project's own `UpstreamClient` implementations, so a
comparison with the real proxy measures our pipeline, not the choice of HTTP library. `--direct` calls
the library itself instead, which shows what the `UpstreamClient` wrapper costs.

    python bench/passthrough.py --client aiohttp|httpx|httpx2 --upstream http://127.0.0.1:PORT --port N

With `--port 0` a free port is chosen; the line `passthrough listening on http://127.0.0.1:PORT` is
printed (and flushed) once the socket accepts connections.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ccproxy_asgi.errors import ProxyError
from ccproxy_asgi.types import Receive, Scope, Send
from ccproxy_asgi.upstream import HTTPClientConfig, UpstreamClient
from ccproxy_asgi.upstream.aiohttp_client import AiohttpUpstreamClient
from ccproxy_asgi.upstream.httpx_client import HttpxUpstreamClient

ClientName = Literal["aiohttp", "httpx", "httpx2"]

# Hop-by-hop headers and the ones the HTTP library or the server recomputes (uvicorn adds its own
# `date` and `server`).
_DROP_REQUEST = frozenset({b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding"})
_DROP_RESPONSE = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-encoding", "date", "server"}
)

# What a forwarder yields: status, response headers, the body chunks, and a close function.
Forwarded = tuple[int, list[tuple[bytes, bytes]], AsyncIterator[bytes], Callable[[], Awaitable[None]]]
Forwarder = Callable[[str, str, dict[str, str], bytes], Awaitable[Forwarded]]


def _response_headers(items: Any) -> list[tuple[bytes, bytes]]:
    headers = []
    encoded = False
    for name, value in items:
        lower = name.lower()
        if lower == "content-encoding":
            encoded = True
        if lower not in _DROP_RESPONSE:
            headers.append((lower.encode("latin-1"), value.encode("latin-1")))
    if encoded:
        # The library decoded the body, so the upstream's length no longer matches it.
        headers = [(n, v) for n, v in headers if n != b"content-length"]
    return headers


class Backend:
    """Owns the HTTP client for the app's lifetime and forwards one request at a time."""

    def __init__(self, name: ClientName, direct: bool, config: HTTPClientConfig) -> None:
        self.name = name
        self.direct = direct
        self.config = config
        self._client: UpstreamClient | None = None
        self._raw: Any = None

    async def open(self) -> None:
        if not self.direct:
            if self.name == "aiohttp":
                self._client = AiohttpUpstreamClient(self.config)
            else:
                self._client = HttpxUpstreamClient(self.config, library=self.name)
        elif self.name == "aiohttp":
            import aiohttp

            self._raw = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.config.max_connections),
                timeout=aiohttp.ClientTimeout(total=None, sock_read=self.config.read_timeout),
            )
        else:
            from ccproxy_asgi.upstream.httpx_client import load_httpx

            lib = load_httpx(self.name)
            limits = lib.Limits(max_connections=self.config.max_connections, max_keepalive_connections=None)
            self._raw = lib.AsyncClient(limits=limits, timeout=lib.Timeout(10.0, read=600.0))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._raw is not None:
            await self._raw.close() if self.name == "aiohttp" else await self._raw.aclose()

    async def forward(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Forwarded:
        if self._client is not None:
            response = await self._client.send(method, url, headers=headers, content=body)
            return (
                response.status,
                _response_headers(response.headers.items()),
                response.aiter_bytes(),
                response.aclose,
            )
        if self.name == "aiohttp":
            raw = await self._raw.request(method, url, headers=headers, data=body, allow_redirects=False)
            return raw.status, _response_headers(raw.headers.items()), raw.content.iter_any(), raw.release
        request = self._raw.build_request(method, url, headers=headers, content=body)
        raw = await self._raw.send(request, stream=True)
        return raw.status_code, _response_headers(raw.headers.items()), raw.aiter_bytes(), raw.aclose


def build_app(backend: Backend, upstream: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The pass-through ASGI app forwarding to `upstream` (a base URL without trailing slash)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await backend.open()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await backend.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return

        chunks = []
        more_body = True
        while more_body:
            message = await receive()
            chunks.append(message.get("body", b""))
            more_body = message.get("more_body", False)
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name not in _DROP_REQUEST
        }
        url = upstream + scope["path"]
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")

        try:
            status, response_headers, body, close = await backend.forward(
                scope["method"], url, headers, b"".join(chunks)
            )
        except (ProxyError, OSError) as exc:
            message_body = f"bad gateway: {exc}".encode()
            await send({"type": "http.response.start", "status": 502, "headers": []})
            await send({"type": "http.response.body", "body": message_body})
            return
        try:
            await send({"type": "http.response.start", "status": status, "headers": response_headers})
            async for chunk in body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await close()

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--client", choices=["aiohttp", "httpx", "httpx2"], default="aiohttp")
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8001")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--direct", action="store_true", help="call the library, not our UpstreamClient")
    args = parser.parse_args(argv)

    backend = Backend(args.client, args.direct, HTTPClientConfig(trust_env=False))
    app = build_app(backend, args.upstream.rstrip("/"))
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    # Listening before uvicorn starts: connections made right after the line below wait in the backlog.
    sock.listen(2048)
    port = sock.getsockname()[1]
    print(f"passthrough listening on http://{args.host}:{port}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
