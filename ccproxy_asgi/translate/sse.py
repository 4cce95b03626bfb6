"""Server-sent events: an incremental decoder for upstream streams, an encoder for our own.

The decoder follows the WHATWG event-stream interpretation (fields `event`, `data`, `id`, `retry`; `:`
comments; `\\n`, `\\r\\n` and `\\r` line ends) and is built for the common case, where a network read
holds whole events: it finds the last blank line at the byte level and decodes only the complete part.
An event boundary is an ASCII byte pair, never inside a multi-byte UTF-8 character, so splitting there is
what an incremental UTF-8 decoder would do, without its per-byte bookkeeping; the incomplete tail waits
as bytes for the next read.

The unfinished event is bounded: an upstream that sends a line (or an event) without end would otherwise
grow the buffer, and the proxy's memory, for as long as it keeps sending. Past `MAX_EVENT_BYTES` the
decoder raises `SSEOverflowError` and forgets what it held.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ccproxy_asgi import jsonutil

#: Largest event (every line of it up to the closing blank line) the decoder will hold: 8 MiB. A chat
#: completion chunk is well under 1 KB; even a whole tool call's arguments in one chunk stays far below.
MAX_EVENT_BYTES = 8 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
_CR = 0x0D
_LF = 0x0A


class SSEEvent(NamedTuple):
    """One dispatched event. `id` is the last event id seen so far in the stream (it persists)."""

    event: str | None
    data: str
    id: str | None = None
    retry: int | None = None


# NamedTuple's generated __new__ is Python code; building the tuple directly is twice as fast.
_new_event = tuple.__new__


class SSEOverflowError(ValueError):
    """An event grew past the decoder's limit without its closing blank line."""


class SSEDecoder:
    """Incremental event-stream decoder: `feed` bytes as they arrive, `close` at end of input.

    Invalid UTF-8 becomes U+FFFD and never raises. Following the spec, a block without any `data`
    line is not dispatched. Unlike the spec, `close` dispatches a final event that lacks its closing
    blank line, so a server that ends with `data: [DONE]` and no newline is still understood; a
    truncated JSON payload then fails where it is parsed, which is the right place to report it.
    """

    __slots__ = ("_last_id", "_max_event_bytes", "_parts", "_pending_cr", "_pending_size", "_started")

    def __init__(self, *, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        # The unfinished event, as the reads that brought it: joined only once a boundary arrives, so a
        # large event in many small reads costs linear time, not quadratic.
        self._parts: list[bytes] = []
        self._pending_size = 0  # bytes in `_parts`
        self._max_event_bytes = max_event_bytes
        # A `\r` that ended the previous read: it may be the first half of a `\r\n`.
        self._pending_cr = False
        self._last_id: str | None = None
        self._started = False

    @property
    def pending_bytes(self) -> int:
        """Bytes held for the unfinished event."""
        return self._pending_size

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Events completed by `data` (often none, often several).

        Raises `SSEOverflowError` once the unfinished event holds more than `max_event_bytes`."""
        if self._pending_cr:
            data = b"\r" + data
            self._pending_cr = False
        if _CR in data:
            if data.endswith(b"\r"):
                data = data[:-1]
                self._pending_cr = True
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if not data:
            return []
        parts = self._parts
        if parts:
            parts.append(data)
            if b"\n\n" not in data and not (data[0] == _LF and parts[-2].endswith(b"\n")):
                self._hold(len(data))
                return []
            buf = b"".join(parts)
            parts.clear()
            self._pending_size = 0
        else:
            buf = data
        end = buf.rfind(b"\n\n")
        if end < 0:
            parts.append(buf)
            self._hold(len(buf))
            return []
        if end + 2 < len(buf):
            parts.append(buf[end + 2 :])
            self._hold(len(buf) - end - 2)
        return self._parse(buf[: end + 2])

    def _hold(self, size: int) -> None:
        self._pending_size += size
        if self._pending_size > self._max_event_bytes:
            held = self._pending_size
            self._parts.clear()
            self._pending_size = 0
            raise SSEOverflowError(
                f"an event passed {self._max_event_bytes} bytes ({held} held) without its closing blank line"
            )

    def close(self) -> list[SSEEvent]:
        """Flush at end of input: the last event even without its closing blank line."""
        buf = b"".join(self._parts)
        self._parts.clear()
        self._pending_size = 0
        self._pending_cr = False  # a final lone `\r` ends a line, which the appended `\n\n` does anyway
        if not buf.strip(b"\n"):
            return []
        return self._parse(buf + b"\n\n")

    def _parse(self, region: bytes) -> list[SSEEvent]:
        if not self._started:
            self._started = True
            if region.startswith(_BOM):
                region = region[3:]
        events: list[SSEEvent] = []
        append = events.append
        # Blocks are split and decoded as bytes: a boundary is ASCII, so each block decodes on its own.
        for block in region.split(b"\n\n"):
            if not block:
                continue
            # The usual upstream frame is a single `data:` line; skip the field loop for it.
            if block.startswith(b"data:") and _LF not in block:
                value = block[6:] if block[5:6] == b" " else block[5:]
                append(_new_event(SSEEvent, (None, value.decode("utf-8", "replace"), self._last_id, None)))
                continue
            event = self._parse_block(block.decode("utf-8", "replace"))
            if event is not None:
                append(event)
        return events

    def _parse_block(self, block: str) -> SSEEvent | None:
        name: str | None = None
        data: list[str] | None = None
        retry: int | None = None
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            field, colon, value = line.partition(":")
            if colon and value.startswith(" "):
                value = value[1:]
            if field == "data":
                if data is None:
                    data = [value]
                else:
                    data.append(value)
            elif field == "event":
                name = value
            elif field == "id" and "\0" not in value:
                self._last_id = value
            elif field == "retry" and value.isascii() and value.isdigit():
                retry = int(value)
        if data is None:
            return None
        return SSEEvent(name or None, "\n".join(data), self._last_id, retry)


def encode_event(name: str, payload: dict[str, Any]) -> bytes:
    """One outgoing event: `event: <name>`, then the payload as compact JSON on one `data:` line."""
    return b"event: " + name.encode() + b"\ndata: " + jsonutil.dumps(payload) + b"\n\n"


__all__ = ["MAX_EVENT_BYTES", "SSEDecoder", "SSEEvent", "SSEOverflowError", "encode_event"]
