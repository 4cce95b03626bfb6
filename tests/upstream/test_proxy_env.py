"""The aiohttp client honours HTTP(S)_PROXY / NO_PROXY, resolved once per origin."""

from __future__ import annotations

import asyncio

import pytest

from ccproxy_asgi.upstream.aiohttp_client import AiohttpUpstreamClient
from ccproxy_asgi.upstream.base import HTTPClientConfig


async def _forward_proxy() -> tuple[asyncio.Server, list[str]]:
    """A stand-in forward proxy that records each request line and answers 200."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0].decode())
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, seen


async def test_requests_go_through_the_environment_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    server, seen = await _forward_proxy()
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "bypassed.invalid")
    async with server, AiohttpUpstreamClient(HTTPClientConfig(trust_env=True)) as client:
        for _ in range(2):
            async with await client.send("GET", "http://upstream.invalid/v1/models", headers={}) as response:
                assert response.status == 200
                assert await response.read() == b"ok"
    assert seen == ["GET http://upstream.invalid/v1/models HTTP/1.1"] * 2


async def test_no_proxy_and_trust_env_off_bypass_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "bypassed.invalid")
    trusting = AiohttpUpstreamClient(HTTPClientConfig(trust_env=True))
    assert trusting._proxy_for("http://bypassed.invalid/v1") is None
    assert trusting._proxy_for("http://other.invalid/v1") == "http://127.0.0.1:9"
    assert AiohttpUpstreamClient(HTTPClientConfig(trust_env=False))._proxy_for("http://other.invalid/v1") is None
