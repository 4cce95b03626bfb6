"""A real HTTP server on a free port for the upstream-client tests, with scripted misbehaviour.

It runs in the test's own event loop, so tests can hold the server at a step with `asyncio.Event`s
(`gate`) and observe what it saw (`disconnects`, `second_chunk_sent`).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class EchoServer:
    """Handles to a running server: its base URL and what the tests synchronise on."""

    url: str = ""
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    second_chunk_sent: asyncio.Event = field(default_factory=asyncio.Event)
    first_chunk_sent: asyncio.Event = field(default_factory=asyncio.Event)
    stall_started: asyncio.Event = field(default_factory=asyncio.Event)
    disconnects: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    def reset(self) -> None:
        """Fresh events for the next test (the server itself is shared)."""
        self.gate = asyncio.Event()
        self.first_chunk_sent = asyncio.Event()
        self.second_chunk_sent = asyncio.Event()
        self.stall_started = asyncio.Event()
        while not self.disconnects.empty():
            self.disconnects.get_nowait()


def _routes(state: EchoServer) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.route("*", "/echo")
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        payload = {
            "method": request.method,
            "path": request.path_qs,
            "headers": dict(request.headers),
            "body": body.decode("latin-1"),
        }
        return web.json_response(payload, headers={"X-Custom-Header": "yes"})

    @routes.get("/status/{code}")
    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        headers = {"Location": "http://127.0.0.1:9/elsewhere"} if 300 <= code < 400 else {}
        return web.Response(status=code, text=f"status {code}", headers=headers)

    @routes.get("/gzip")
    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(b"hello " * 100),
            headers={"Content-Encoding": "gzip"},
            content_type="text/plain",
        )

    @routes.get("/set-cookie")
    async def set_cookie(request: web.Request) -> web.Response:
        response = web.Response(text="cookie set")
        response.set_cookie("session", "from-upstream")
        return response

    @routes.get("/two-chunks")
    async def two_chunks(request: web.Request) -> web.StreamResponse:
        # The second chunk waits for the test: a client that buffered would never see the first.
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        state.first_chunk_sent.set()
        await state.gate.wait()
        await response.write(b"data: second\n\n")
        state.second_chunk_sent.set()
        await response.write_eof()
        return response

    @routes.get("/stall-head")
    async def stall_head(request: web.Request) -> web.Response:
        state.stall_started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            state.disconnects.put_nowait("stall-head")
            raise
        return web.Response()  # pragma: no cover

    @routes.get("/stall-body")
    async def stall_body(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"partial")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            state.disconnects.put_nowait("stall-body")
            raise
        return response  # pragma: no cover

    @routes.get("/cut")
    async def cut(request: web.Request) -> web.StreamResponse:
        # Chunked encoding: closing before the terminating chunk is a detectable truncation.
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"data: partial\n\n")
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()
        return response

    @routes.get("/cut-length")
    async def cut_length(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"x" * 10)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()
        return response

    @routes.get("/endless")
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:
                await response.write(b"data: tick\n\n")
                state.first_chunk_sent.set()
                await asyncio.sleep(0.02)
        except (asyncio.CancelledError, ConnectionResetError):
            state.disconnects.put_nowait("endless")
            raise

    return routes


@asynccontextmanager
async def run_echo_server() -> AsyncIterator[EchoServer]:
    """Serve on 127.0.0.1 and a free port until the context exits."""
    state = EchoServer()
    app = web.Application()
    app.add_routes(_routes(state))
    # handler_cancellation: a client disconnect cancels the handler, which is how tests observe it.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


def refused_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@asynccontextmanager
async def blackhole_port() -> AsyncIterator[int]:
    """A port whose accept queue is full, so a new connect hangs (SYNs dropped): a connect timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    await asyncio.sleep(0.05)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def echo_json(body: bytes) -> dict[str, object]:
    """The decoded payload of `/echo`."""
    decoded: dict[str, object] = json.loads(body)
    return decoded


__all__ = ["EchoServer", "blackhole_port", "echo_json", "refused_port", "run_echo_server"]
