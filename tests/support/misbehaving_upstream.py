"""A deliberately broken OpenAI-compatible upstream on a raw asyncio socket server, for fault tests.

    with running_misbehaving_upstream() as upstream:
        settings = {"upstream_base_url": upstream.openai_base_url, ...}
        ...  # a request whose model is "stall" gets a stream that goes silent after its first chunk
        record = upstream.wait_closed("stall")      # when (and by whom) that connection was closed

The mock upstream (aiohttp) only breaks HTTP in ways its framework allows. This server writes every
byte itself, so it can accept a request and say nothing, reset the connection mid-stream, send malformed
JSON or SSE, bytes that are not UTF-8, a 2 MB line, go silent mid-stream or stream forever. The behaviour
of a request is its `model` name (the proxy passes names it has no mapping for through unchanged); see
`BEHAVIOURS`. Every response ends its connection (`connection: close`), so the proxy never keeps one in
its pool and its open file descriptors return to their count of before the request.

It runs its own event loop in a background thread, so synchronous tests can use it too, and it records
every connection: the behaviour, when the request arrived, when the connection ended and who ended it
(`peer`: the proxy closed or reset it; `server`: this server did, as its behaviour says).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

BEHAVIOURS = {
    "ok": "a normal answer: a JSON completion, or a short SSE stream ending in [DONE]",
    "silent": "reads the request, then sends nothing until the proxy gives up",
    "silent-body": "sends the 200 head of a JSON answer, then no body until the proxy gives up",
    "stall": "stream: the 200 head and a first content chunk, then silence",
    "reset": "the 200 head and a first chunk (stream) or half the body (JSON), then a TCP reset",
    "reset-before-head": "reads the request, then resets the connection without a byte",
    "malformed-json": "a 200 JSON answer that is not JSON (cut in the middle)",
    "malformed-sse": "stream: one good chunk, then a `data:` line that is not JSON",
    "non-utf8": "bytes that are not UTF-8 inside the content (stream or JSON)",
    "endless": "stream: content chunks every 20 ms, forever",
    "slow": "stream: 50 content chunks, one every 100 ms, then [DONE]",
    "big-line": "stream: one 2 MB content chunk on a single SSE line, then [DONE]",
    "endless-line": "stream: one `data:` line that never ends (64 KB every 10 ms)",
}

Behaviour = str
ClosedBy = Literal["peer", "server"]

BIG_LINE_TEXT_BYTES = 2 * 1024 * 1024
_READ_LIMIT = 64 * 1024 * 1024


@dataclass
class ConnectionRecord:
    """What the upstream saw of one connection (times from `time.monotonic()`)."""

    opened_at: float
    behaviour: Behaviour | None = None
    stream: bool | None = None
    request_at: float | None = None
    closed_at: float | None = None
    closed_by: ClosedBy | None = None
    #: When the proxy's close (EOF) or reset reached this server, seen at once, whatever it was doing.
    peer_gone_at: float | None = None
    bytes_sent: int = 0
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


class PeerClosed(Exception):
    """The proxy closed or reset the connection."""


def _chunk(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def _delta(content: str | None = None, *, role: bool = False, finish: str | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-misbehaving",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "misbehaving",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _usage_chunk() -> dict[str, Any]:
    return {
        "id": "chatcmpl-misbehaving",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "misbehaving",
        "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def completion_json(content: str = "Hello there.") -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-misbehaving",
            "object": "chat.completion",
            "created": 0,
            "model": "misbehaving",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }
    ).encode()


def _head(status: int, content_type: str, *, length: int | None = None) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}",
        f"content-type: {content_type}",
        "connection: close",
        f"content-length: {length}" if length is not None else "transfer-encoding: chunked",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _framed(data: bytes) -> bytes:
    """One HTTP/1.1 chunk (streams use chunked encoding, so a cut is detectable as one)."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


_LAST_CHUNK = b"0\r\n\r\n"


class _Conversation:
    """One connection: read the request, answer as its behaviour says, note how it ended."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: ConnectionRecord,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.record = record
        self.gone = asyncio.Event()

    async def watch_peer(self, on_gone: Any) -> None:
        """Once the request is read, the only reader: notes the moment the proxy closes or resets."""
        with contextlib.suppress(ConnectionError, OSError):
            while await self.reader.read(65536):
                pass
        on_gone()
        self.gone.set()

    async def send(self, data: bytes) -> None:
        if self.gone.is_set():
            raise PeerClosed
        self.writer.write(data)
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            raise PeerClosed from exc
        self.record.bytes_sent += len(data)

    async def wait_for_peer(self) -> None:
        """Say nothing until the proxy closes (EOF) or resets the connection."""
        await self.gone.wait()
        raise PeerClosed

    def reset(self) -> None:
        """Abort with a TCP RST rather than an orderly FIN."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def read_request(self) -> dict[str, Any] | None:
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        raw = await self.reader.readexactly(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        return body if isinstance(body, dict) else {}

    async def stream_head(self) -> None:
        await self.send(_head(200, "text/event-stream"))

    async def event(self, payload: dict[str, Any] | str | bytes) -> None:
        data = payload if isinstance(payload, bytes) else _chunk(payload)
        await self.send(_framed(data))

    async def finish_stream(self) -> None:
        await self.event(_delta(finish="stop"))
        await self.event(_usage_chunk())
        await self.event("[DONE]")
        await self.send(_LAST_CHUNK)

    async def answer(self, behaviour: Behaviour, stream: bool) -> None:
        if behaviour == "silent":
            await self.wait_for_peer()
        if behaviour == "reset-before-head":
            self.reset()
            return
        if not stream:
            await self.answer_json(behaviour)
            return
        await self.stream_head()
        await self.event(_delta("", role=True))
        if behaviour == "stall":
            await self.event(_delta("Hello"))
            await self.wait_for_peer()
        elif behaviour == "reset":
            await self.event(_delta("Hello"))
            await asyncio.sleep(0.05)
            self.reset()
            return
        elif behaviour == "malformed-sse":
            await self.event(_delta("Hello"))
            # Apart, so the good chunk reaches the proxy in a read of its own.
            await asyncio.sleep(0.05)
            await self.event('{"id": "chatcmpl-misbehaving", "choices": [{"delta": {"content": "x"')
            await self.finish_stream()
        elif behaviour == "non-utf8":
            prefix = json.dumps(_delta("caf")).encode()
            # Inside the JSON string: a Latin-1 e-acute and a byte that begins no UTF-8 sequence.
            broken = prefix.replace(b'"content": "caf"', b'"content": "caf\xe9 \xff ok"')
            await self.event(b"data: " + broken + b"\n\n")
            await self.finish_stream()
        elif behaviour == "endless":
            while True:
                await self.event(_delta("tick "))
                await asyncio.sleep(0.02)
        elif behaviour == "slow":
            for index in range(50):
                await self.event(_delta(f"word{index} "))
                await asyncio.sleep(0.1)
            await self.finish_stream()
        elif behaviour == "big-line":
            await self.event(_delta("x" * BIG_LINE_TEXT_BYTES))
            await self.finish_stream()
        elif behaviour == "endless-line":
            await self.send(_framed(b'data: {"choices": [{"index": 0, "delta": {"content": "'))
            block = _framed(b"y" * 65536)
            while True:
                await self.send(block)
                await asyncio.sleep(0.01)
        else:
            await self.event(_delta("Hello"))
            await self.event(_delta(" there."))
            await self.finish_stream()

    async def answer_json(self, behaviour: Behaviour) -> None:
        body = completion_json()
        if behaviour == "malformed-json":
            body = body[: len(body) // 2]
        elif behaviour == "non-utf8":
            body = completion_json("caf\x00").replace(b"caf\\u0000", b"caf\xe9 \xff ok")
        head = _head(200, "application/json", length=len(body))
        if behaviour == "silent-body":
            await self.send(head)
            await self.wait_for_peer()
        if behaviour == "reset":
            await self.send(head + body[: len(body) // 2])
            await asyncio.sleep(0.05)
            self.reset()
            return
        await self.send(head + body)


class MisbehavingUpstream:
    """The server, its address, and the connection records (see the module docstring)."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._records: list[ConnectionRecord] = []
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    # ----- what the tests read ---------------------------------------------------------------------------

    def records(self, behaviour: Behaviour | None = None) -> list[ConnectionRecord]:
        """Connections so far (those with that behaviour, if given), oldest first."""
        with self._changed:
            return [r for r in self._records if behaviour is None or r.behaviour == behaviour]

    def open_connections(self) -> int:
        with self._changed:
            return sum(1 for r in self._records if not r.closed)

    def clear(self) -> None:
        """Forget closed connections (a test's records start empty)."""
        with self._changed:
            self._records = [r for r in self._records if not r.closed]

    def wait_closed(self, behaviour: Behaviour, *, count: int = 1, timeout: float = 10.0) -> ConnectionRecord:
        """The `count`-th connection with `behaviour` once it has ended; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matching = [r for r in self._records if r.behaviour == behaviour]
                if len(matching) >= count and matching[count - 1].closed:
                    return matching[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no closed connection #{count} with behaviour {behaviour!r} within {timeout} s: "
                        f"{matching}"
                    )
                self._changed.wait(left)

    def wait_request(self, behaviour: Behaviour, *, timeout: float = 10.0) -> ConnectionRecord:
        """The first connection whose request had `behaviour`, once that request arrived."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for record in self._records:
                    if record.behaviour == behaviour:
                        return record
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no request with behaviour {behaviour!r} within {timeout} s")
                self._changed.wait(left)

    # ----- serving -----------------------------------------------------------------------------------------

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record = ConnectionRecord(opened_at=time.monotonic())
        with self._changed:
            self._records.append(record)
        talk = _Conversation(reader, writer, record)
        closed_by: ClosedBy = "server"
        try:
            body = await talk.read_request()
            if body is None:
                closed_by = "peer"
                return
            model = body.get("model")
            behaviour = model if isinstance(model, str) and model in BEHAVIOURS else "ok"
            with self._changed:
                record.behaviour = behaviour
                record.stream = bool(body.get("stream"))
                record.request_at = time.monotonic()
                record.body = body
                self._changed.notify_all()

            def gone() -> None:
                with self._changed:
                    record.peer_gone_at = time.monotonic()
                    self._changed.notify_all()

            watcher = asyncio.get_running_loop().create_task(talk.watch_peer(gone))
            try:
                await talk.answer(behaviour, record.stream)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        except (PeerClosed, ConnectionError, asyncio.IncompleteReadError):
            closed_by = "peer"
        finally:
            with self._changed:
                record.closed_at = time.monotonic()
                record.closed_by = closed_by
                self._changed.notify_all()
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def _track(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, ready: threading.Event) -> None:
        self._server = await asyncio.start_server(self._track, self.host, 0, limit=_READ_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        async with self._server:
            await self._server.serve_forever()

    def start(self) -> None:
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop
        main = loop.create_task(self._serve(ready))

        def run() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)

        self._main = main
        self._thread = threading.Thread(target=run, name="misbehaving-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the misbehaving upstream did not start")

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def close_connections() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close_connections(), loop).result(10)
        if self._main is not None:
            loop.call_soon_threadsafe(self._main.cancel)
        thread.join(10)
        loop.close()
        self._loop = self._thread = None


@contextlib.contextmanager
def running_misbehaving_upstream() -> Iterator[MisbehavingUpstream]:
    upstream = MisbehavingUpstream()
    upstream.start()
    try:
        yield upstream
    finally:
        upstream.stop()


__all__ = [
    "BEHAVIOURS",
    "BIG_LINE_TEXT_BYTES",
    "ConnectionRecord",
    "MisbehavingUpstream",
    "completion_json",
    "running_misbehaving_upstream",
]
