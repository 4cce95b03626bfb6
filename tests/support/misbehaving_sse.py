"""An OpenAI-compatible upstream that streams what no real one should, for the proxy's hardening tests.

    with running_misbehaving_upstream() as upstream:
        upstream.mode = "endless-line"     # or "long-line"
        ...  # point the proxy at upstream.openai_base_url
        assert upstream.sent[-1] < 32 * 2**20    # the proxy hung up early

It is raw asyncio on a real socket in a background thread: any POST gets `200 text/event-stream` and a
body delimited by the connection's close, so nothing in a server framework buffers or reframes what
the proxy receives. Modes:

- `long-line`: one chunk whose `data:` line carries `line_bytes` of text (2 MB by default) written in
  64 KiB pieces, then a `finish_reason` chunk and `[DONE]`: large, but a valid stream.
- `endless-line`: a `data:` line that never ends, 64 KiB at a time, until the proxy closes the
  connection or `cap_bytes` have gone out (so a proxy without a bound still finishes the test).

`sent` records, per request, the body bytes the proxy accepted before the stream ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Literal

from ccproxy_asgi import jsonutil

Mode = Literal["long-line", "endless-line"]
_PIECE = 64 * 1024


def _chunk(delta: dict[str, object], finish_reason: str | None = None) -> bytes:
    return jsonutil.dumps(
        {
            "id": "chatcmpl-misbehaving",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "misbehaving",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
    )


class MisbehavingUpstream:
    def __init__(self) -> None:
        self.mode: Mode = "long-line"
        self.line_bytes = 2 * 1000 * 1000
        self.cap_bytes = 96 * 1024 * 1024
        self.sent: list[int] = []
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sent.append(0)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                b"connection: close\r\n\r\n"
            )
            if self.mode == "long-line":
                await self._long_line(writer)
            else:
                await self._endless_line(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        for start in range(0, len(data), _PIECE):
            piece = data[start : start + _PIECE]
            writer.write(piece)
            await writer.drain()
            self.sent[-1] += len(piece)

    async def _long_line(self, writer: asyncio.StreamWriter) -> None:
        await self._write(writer, b"data: " + _chunk({"role": "assistant", "content": ""}) + b"\n\n")
        text = "a" * self.line_bytes
        await self._write(writer, b"data: " + _chunk({"content": text}) + b"\n\n")
        await self._write(writer, b"data: " + _chunk({}, "stop") + b"\n\ndata: [DONE]\n\n")

    async def _endless_line(self, writer: asyncio.StreamWriter) -> None:
        head = _chunk({"content": "x"})
        # The chunk's JSON up to inside the content string, which then never closes.
        await self._write(writer, b"data: " + head[: head.index(b'"x"') + 1])
        piece = b"a" * _PIECE
        while self.sent[-1] < self.cap_bytes:
            await self._write(writer, piece)

    def start(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        ready = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._server = await asyncio.start_server(self._serve_one, sock=sock)
            ready.set()
            async with self._server:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._server.serve_forever()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the misbehaving upstream did not start")

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._thread.join(10)


@contextlib.contextmanager
def running_misbehaving_upstream() -> Iterator[MisbehavingUpstream]:
    upstream = MisbehavingUpstream()
    upstream.start()
    try:
        yield upstream
    finally:
        upstream.stop()


__all__ = ["MisbehavingUpstream", "running_misbehaving_upstream"]
