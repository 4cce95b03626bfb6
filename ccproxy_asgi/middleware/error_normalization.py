"""`ErrorNormalizationMiddleware`: every error that leaves it is an Anthropic error envelope.

- An exception before the response started becomes its envelope: a `ProxyError` with its own status,
  type and retry headers, anything else a 500 `api_error` with a fixed message (never a traceback).
- An error response of an inner app that is not an envelope (a framework's `{"detail": ...}`, a plain
  "Not Found", FastAPI's 422 list) is rewritten into one with the status and type of the error class for
  its status (`errors.error_class_for_status`, docs/protocol.md#errors-status-and-type); an envelope
  without `request_id` gets it.
- After an SSE stream began, an exception, an unfinished body, or an inner attempt at a second
  `http.response.start` become one `event: error` frame and the end of the stream.
- A request body over `max_body_bytes` is answered 413 `request_too_large`.
- Every 429 and 529 leaves with `retry-after`: an inner app's answer without one gets
  `errors.DEFAULT_RETRY_AFTER`, so a client never has to guess (a safety net: the layers that know better
  set their own).
- Messages taken from an inner app's error body are redacted like an upstream's (keys, URL credentials,
  stack traces, file paths).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, ClassVar

from ccproxy_asgi import jsonutil
from ccproxy_asgi.context import ensure_request_id, get_context
from ccproxy_asgi.errors import (
    DEFAULT_RETRY_AFTER,
    RETRY_AFTER_STATUSES,
    ApiError,
    ProxyError,
    RequestTooLargeError,
    error_body,
    error_class_for_status,
    sse_error_event,
)
from ccproxy_asgi.headers import drop_raw_headers, has_raw_header, raw_header, request_header
from ccproxy_asgi.plumbing.pipeline import LayerKind
from ccproxy_asgi.plumbing.responses import error_messages, send_error
from ccproxy_asgi.provider.redaction import redact_error_text
from ccproxy_asgi.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("ccproxy_asgi.errors")

_MAX_MESSAGE = 1000
# Error bodies are small; anything larger is not worth parsing for a message.
_MAX_ERROR_BODY = 256 * 1024
# Headers of an inner error response that the rewritten one must not keep: they describe the old body
# (and the request id, which the rewritten one sets).
_DROPPED_HEADERS = frozenset(
    {b"content-type", b"content-length", b"content-encoding", b"transfer-encoding", b"request-id"}
)


def wire_status(status: int) -> tuple[int, str]:
    """The status and Anthropic error type an error response with `status` leaves the stack with: those of
    the error class for it (`errors.error_class_for_status`)."""
    cls = error_class_for_status(status)
    return cls.status, cls.error_type


def is_envelope(body: Any) -> bool:
    """Whether `body` (parsed JSON) is an Anthropic error envelope."""
    if not isinstance(body, dict) or body.get("type") != "error":
        return False
    error = body.get("error")
    return (
        isinstance(error, dict)
        and isinstance(error.get("type"), str)
        and isinstance(error.get("message"), str)
    )


def _validation_message(items: list[Any]) -> str | None:
    """FastAPI/pydantic `detail` lists as `field.path: message; ...` (never the offending input)."""
    parts: list[str] = []
    for item in items[:10]:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "json_invalid":
            # Its `loc` is (body, character offset), which reads like a field name.
            parts.append("request body is not valid JSON")
            continue
        loc = [str(part) for part in item.get("loc", ()) if isinstance(part, (str, int))]
        if loc and loc[0] == "body":
            loc = loc[1:]
        msg = str(item.get("msg") or "invalid value")
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    return "; ".join(parts) or None


def _message_from(status: int, content_type: str, body: bytes) -> str:
    """The most useful human message in an inner app's error body."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    message: str | None = None
    if "json" in content_type or body[:1] in (b"{", b"["):
        try:
            data = jsonutil.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            detail = data.get("detail", data.get("message", data.get("error")))
            if isinstance(detail, dict):
                detail = detail.get("message")
            if isinstance(detail, list):
                message = _validation_message(detail)
            elif isinstance(detail, str):
                message = detail
    elif status < 500 and content_type.startswith("text/plain"):
        # Server errors are described by their status only: their text may be a traceback.
        message = body.decode("utf-8", "replace").strip()
    message = redact_error_text((message or phrase).strip()).strip() or phrase
    return message[:_MAX_MESSAGE]


def _with_retry_after(status: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers`, with `retry-after` added when `status` must carry one and has none."""
    if status in RETRY_AFTER_STATUSES and not has_raw_header(headers, b"retry-after"):
        headers.append((b"retry-after", DEFAULT_RETRY_AFTER))
    return headers


def _json_parts(
    status: int,
    envelope: dict[str, Any],
    kept: list[tuple[bytes, bytes]],
    request_id: str,
) -> tuple[Message, Message]:
    body = jsonutil.dumps(envelope)
    headers = [
        *kept,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"request-id", request_id.encode("latin-1")),
    ]
    _with_retry_after(status, headers)
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    )


class ErrorNormalizationMiddleware:
    """Anthropic error envelopes out, whatever the inner app raised or answered.

    `max_body_bytes`: a request body larger than this is answered 413 (None: no limit here).
    """

    kind: ClassVar[LayerKind] = LayerKind.ERRORS

    def __init__(self, app: ASGIApp, *, max_body_bytes: int | None = None) -> None:
        self.app = app
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        request_id = ensure_request_id(ctx)
        limit = self._max_body_bytes
        if limit is not None and _declared_length(scope) > limit:
            await send_error(send, RequestTooLargeError(_too_large(limit)), request_id)
            return
        response = _ResponseState(send, request_id, head=scope.get("method") == "HEAD")
        received = 0
        too_large = False

        async def watched_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.disconnect":
                response.disconnected = True
            elif limit is not None and message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise RequestTooLargeError(_too_large(limit))
            return message

        async def normalizing_send(message: Message) -> None:
            if too_large and message["type"] == "http.response.start" and not response.started:
                # The inner app failed on the body we cut short; whatever it answers, the cause is size.
                response.override = RequestTooLargeError(_too_large(limit or 0))
            await response.send(message)

        try:
            await self.app(scope, watched_receive, normalizing_send)
        except Exception as exc:
            await response.fail(exc)
            return
        await response.finish()


def _declared_length(scope: Scope) -> int:
    value = request_header(scope, b"content-length")
    try:
        return int(value) if value is not None else -1
    except ValueError:
        return -1


def _too_large(limit: int) -> str:
    return f"request body exceeds the limit of {limit} bytes"


class _ResponseState:
    """One response passing through: forwarded as is, held back and rewritten (errors), or ended."""

    def __init__(self, send: Send, request_id: str, *, head: bool) -> None:
        self._send = send
        self._request_id = request_id
        self._head = head
        self.started = False  # a response start reached the client
        self.finished = False  # its last body message too
        self.sse = False
        self.disconnected = False
        self.override: ProxyError | None = None
        self._held: Message | None = None  # an inner error response's start, until its body is complete
        self._held_body: list[bytes] = []
        self._held_size = 0

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            await self._start(message)
        elif kind == "http.response.body":
            await self._body(message)
        elif self._held is None and not self.finished:
            await self._send(message)

    async def _start(self, message: Message) -> None:
        if self.started or self._held is not None:
            # An inner layer trying to answer twice: the client already has a status line.
            logger.warning("dropped a second http.response.start from the inner app")
            await self.end_stream(ApiError("internal error after the response started"))
            return
        status = int(message["status"])
        headers = list(message.get("headers", ()))
        content_type = _header_value(headers, b"content-type")
        self.sse = content_type.startswith("text/event-stream")
        if self.override is not None:
            self._held = message
            return
        if status >= 400 and not self._head:
            self._held = message
            return
        self.started = True
        if status in RETRY_AFTER_STATUSES:
            message = {**message, "headers": _with_retry_after(status, headers)}
        await self._send(message)

    async def _body(self, message: Message) -> None:
        if self.finished:
            return
        if self._held is None:
            if not self.started:
                return  # a body before any start: nothing valid can be made of it
            self.finished = not message.get("more_body", False)
            await self._send(message)
            return
        chunk = bytes(message.get("body", b""))
        if self._held_size <= _MAX_ERROR_BODY:
            self._held_body.append(chunk[: _MAX_ERROR_BODY + 1])
        self._held_size += len(chunk)
        if not message.get("more_body", False):
            await self._release()

    async def _release(self) -> None:
        """Send the held error response, as it was when it is already an envelope, else rewritten."""
        held = self._held
        assert held is not None
        self._held = None
        if self.override is not None:
            await self._emit_error(self.override)
            return
        status = int(held["status"])
        headers = list(held.get("headers", ()))
        body = b"".join(self._held_body)
        content_type = _header_value(headers, b"content-type")
        kept = drop_raw_headers(headers, _DROPPED_HEADERS)
        parsed: Any = None
        if self._held_size <= _MAX_ERROR_BODY and "json" in content_type:
            try:
                parsed = jsonutil.loads(body)
            except ValueError:
                parsed = None
        if is_envelope(parsed):
            if parsed.get("request_id") is None:
                parsed["request_id"] = self._request_id
            start, end = _json_parts(status, parsed, kept, self._request_id)
        else:
            wire, error_type = wire_status(status)
            message = _message_from(status, content_type, body if self._held_size <= _MAX_ERROR_BODY else b"")
            start, end = _json_parts(
                wire, error_body(error_type, message, self._request_id), kept, self._request_id
            )
        await self._deliver(start, end)

    async def _emit_error(self, error: ProxyError) -> None:
        await self._deliver(*error_messages(error, self._request_id))

    async def _deliver(self, start: Message, end: Message) -> None:
        self.started = True
        self.finished = True
        await self._send(start)
        await self._send(end)

    async def end_stream(self, error: ProxyError) -> None:
        """Past the status line: an SSE `error` event and the end of the body (nothing for other types)."""
        if self.finished or not self.started:
            return
        self.finished = True
        if not self.sse:
            # A JSON body cut short cannot be repaired; ending it would pass it off as complete.
            return
        frame = sse_error_event(error.error_type, error.message, self._request_id)
        try:
            await self._send({"type": "http.response.body", "body": frame, "more_body": False})
        except Exception:  # the client is gone
            logger.debug("could not send the stream's error event", exc_info=True)

    async def fail(self, exc: Exception) -> None:
        """The inner app raised `exc`."""
        error = exc if isinstance(exc, ProxyError) else ApiError("internal server error")
        if not isinstance(exc, ProxyError):
            logger.error("unhandled error in the application", exc_info=exc)
        if self.override is not None:
            error = self.override
        if self.started:
            if not self.finished and not self.sse:
                raise exc  # let the server abort the connection: a truncated body must not look complete
            if not self.finished:
                logger.warning("stream failed after start: %s", error.message)
            await self.end_stream(error)
            return
        self._held = None
        try:
            await self._emit_error(error)
        except Exception:
            logger.debug("could not send the error response", exc_info=True)

    async def finish(self) -> None:
        """The inner app returned: end what it left open."""
        if self._held is not None:
            await self._release()  # a held error response whose body never ended
        elif self.started and not self.finished and self.sse and not self.disconnected:
            logger.warning("stream ended by the application without finishing its body")
            await self.end_stream(ApiError("the response stream ended unexpectedly"))
        elif not self.started and not self.disconnected:
            logger.error("the application returned without a response")
            await self._emit_error(ApiError("internal server error: no response"))


def _header_value(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    return (raw_header(headers, name) or "").lower()


__all__ = ["ErrorNormalizationMiddleware", "is_envelope", "wire_status"]
