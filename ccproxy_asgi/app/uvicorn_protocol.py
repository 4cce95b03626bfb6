"""`LimitedHttpToolsProtocol`: uvicorn's httptools protocol with the connection limits uvicorn lacks.

uvicorn (0.3x to 0.55 at least) with httptools:
- arms its keep-alive timer only after a response, so a connection that never sends a byte is held
  forever;
- has no limit on the time a request head may take: any byte cancels the keep-alive timer, so a client
  sending one byte a second holds its connection (and its buffers) indefinitely;
- has no limit on the size of a request head (`h11_max_incomplete_event_size` applies to h11 only):
  a 64 MB header is parsed and handed to the app.

This subclass adds the three, and changes nothing else:
- a connection with no request on it, just opened or after a response, is closed after
  `keepalive_timeout` seconds (uvicorn's own keep-alive timer, also armed on connect);
- from the first byte with no request in flight, the head must be complete within `header_timeout`
  seconds, or the connection is closed;
- a head larger than `max_header_bytes` (request line and header lines) gets a 431 and the connection
  is closed; it is never buffered much past the limit (at most one read, 256 KiB).

Run it with `uvicorn.run(..., http=LimitedHttpToolsProtocol)` (what `ccproxy-asgi serve` does). The
limits come from `configure()` in this process, else from the `CCPROXY_SERVER_*` settings: uvicorn's
worker processes import this class afresh and read the same environment as the app does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

_STATUS_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
#: A header line's bytes besides its name and value: ": " and CRLF.
_HEADER_LINE_OVERHEAD = 4


@dataclass(frozen=True, slots=True)
class HeadLimits:
    keepalive_timeout: float
    header_timeout: float
    max_header_bytes: int


_configured: HeadLimits | None = None


def configure(limits: HeadLimits | None) -> None:
    """Use `limits` for the connections of this process (None: read the settings again)."""
    global _configured
    _configured = limits


def current_limits() -> HeadLimits:
    global _configured
    if _configured is None:
        from ccproxy_asgi.app.settings import load_settings

        settings = load_settings()
        _configured = HeadLimits(
            keepalive_timeout=settings.server_keepalive_timeout_seconds,
            header_timeout=settings.server_header_timeout_seconds,
            max_header_bytes=settings.server_max_header_bytes,
        )
    return _configured


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """See the module docstring."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, object],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = current_limits()
        # uvicorn's option is whole seconds; its timer takes any float.
        self.timeout_keep_alive = limits.keepalive_timeout  # type: ignore[assignment]
        self._header_timeout = limits.header_timeout
        self._max_head = limits.max_header_bytes
        # When the head in progress must be complete (None: no head pending). One timer at a time checks
        # it and re-arms for what is left, so a busy keep-alive connection does not schedule a timer per
        # request.
        self._head_deadline: float | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = False
        self._head_bytes = 0  # bytes of reads that ended inside the head
        self._head_size = 0  # bytes of the head's parts the parser has completed
        self._refused = False

    # ----- the connection ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        head_was_open = self._in_head
        if self._head_deadline is None and (self.cycle is None or self.cycle.response_complete):
            # Bytes on a connection with no request in flight begin the next request: its head has
            # `header_timeout` to arrive, however slowly the bytes come.
            self._head_deadline = self.loop.time() + self._header_timeout
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self._header_timeout, self._check_head_deadline)
        super().data_received(data)
        if self._in_head and not self._refused:
            # The parser buffers an unfinished header line itself; count what it holds so a head that
            # never ends is refused once it passes the limit, not when (if ever) the line completes.
            if head_was_open:
                self._head_bytes += len(data)
            if self._head_bytes > self._max_head:
                self._refuse()

    # ----- parser callbacks ----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._refused:
            return
        self._in_head = True
        self._head_bytes = self._head_size = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        self._head_size += len(url)
        if self._head_size > self._max_head:
            self._refuse()
        else:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._head_size += len(name) + len(value) + _HEADER_LINE_OVERHEAD
        if self._head_size > self._max_head:
            self._refuse()
        else:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        self._head_deadline = None
        super().on_headers_complete()

    # After a refusal the parser still runs to the end of the read it was given: nothing of it may reach
    # a request (there is none), nor raise from a callback (uvicorn would answer 400 on top of the 431).
    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    # ----- limits --------------------------------------------------------------------------------------

    def _refuse(self) -> None:
        self._refused = True
        self._in_head = False
        self._cancel_head_timer()
        if self.transport.is_closing():
            return
        content = [_STATUS_431]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.append(b"content-length: 0\r\nconnection: close\r\n\r\n")
        self.transport.write(b"".join(content))
        self.transport.close()

    def _check_head_deadline(self) -> None:
        self._head_timer = None
        if self._head_deadline is None or self.transport.is_closing():
            return
        left = self._head_deadline - self.loop.time()
        if left > 0:
            self._head_timer = self.loop.call_later(left, self._check_head_deadline)
            return
        # A head is overdue, so no request is in flight (the deadline is set only then, and cleared when
        # a head completes): closing cuts no response. Like nginx and hyper, no 408: a client this slow
        # is rarely still listening.
        self.transport.close()

    def _cancel_head_timer(self) -> None:
        self._head_deadline = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


__all__ = ["HeadLimits", "LimitedHttpToolsProtocol", "configure", "current_limits"]
