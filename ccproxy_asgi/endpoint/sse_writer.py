"""Writes an SSE response and keeps it alive with `ping` events while the upstream is silent.

Reasoning models can think for minutes without a byte; nginx (60 s) and Cloudflare (100 s) close idle
connections long before that. A ping goes out only when nothing else was sent for `ping_interval`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from ccproxy_asgi.types import Send

PING_EVENT = b'event: ping\ndata: {"type":"ping"}\n\n'


class SSEWriter:
    """One streaming response: headers once, then event bytes, pings in the gaps, then the end."""

    def __init__(self, send: Send, *, ping_interval: float) -> None:
        self._send = send
        self._ping_interval = ping_interval
        self._lock = asyncio.Lock()
        self._last_write = time.monotonic()
        self._ping_task: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self, headers: list[tuple[bytes, bytes]]) -> None:
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        self._last_write = time.monotonic()
        self._ping_task = asyncio.get_running_loop().create_task(self._ping_loop())

    async def write(self, data: bytes) -> None:
        if not data or self._closed:
            return
        async with self._lock:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})
            self._last_write = time.monotonic()

    async def close(self, final: bytes = b"") -> None:
        """Send `final` and end the body; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._ping_task is not None:
            self._ping_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ping_task
        async with self._lock:
            await self._send({"type": "http.response.body", "body": final, "more_body": False})

    async def abort(self) -> None:
        """Stop pinging without sending anything more (the client is gone or the response is broken)."""
        self._closed = True
        if self._ping_task is not None:
            self._ping_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ping_task

    async def _ping_loop(self) -> None:
        while True:
            idle = time.monotonic() - self._last_write
            if idle < self._ping_interval:
                await asyncio.sleep(self._ping_interval - idle)
                continue
            async with self._lock:
                if self._closed:
                    return
                try:
                    await self._send({"type": "http.response.body", "body": PING_EVENT, "more_body": True})
                except Exception:  # the client is gone; the main task finds out on its next write
                    return
                self._last_write = time.monotonic()


__all__ = ["PING_EVENT", "SSEWriter"]
