"""`CorrelationMiddleware`: one request id through both hops, on every log record and one access line.

Mount it outermost: it reads the client's id (`request-id`, else `x-request-id`), keeps it when it is
valid, else generates an Anthropic-style `req_…`, and puts it in the request context (the provider sends
it upstream as `x-request-id`), in the logging contextvar, and on every response header, the 500s of
inner layers included. When the request is over it writes one access-log line.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

from ccproxy_asgi.context import RequestContext, get_context, new_request_id
from ccproxy_asgi.errors import ApiError, ProxyError
from ccproxy_asgi.headers import bearer_token, drop_raw_headers, raw_headers_of
from ccproxy_asgi.logs import ACCESS_LOGGER, bind, unbind
from ccproxy_asgi.plumbing.pipeline import LayerKind
from ccproxy_asgi.plumbing.responses import send_error
from ccproxy_asgi.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("ccproxy_asgi.correlation")
access_logger = logging.getLogger(ACCESS_LOGGER)

MAX_REQUEST_ID_LENGTH = 128
# Anthropic (`req_…`), OpenAI, UUIDs and most tracing ids fit; nothing that could split a log line or a
# header, or smuggle markup into a JSON consumer.
_VALID_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]*")


def is_valid_request_id(value: str) -> bool:
    """The default validator: 1-128 characters of `[A-Za-z0-9_.:-]`, starting alphanumeric."""
    return len(value) <= MAX_REQUEST_ID_LENGTH and _VALID_ID.fullmatch(value) is not None


def _client_secrets(found: dict[bytes, str]) -> list[str | None]:
    """The key the client presented (either header), so log lines of this request can mask it."""
    return [found.get(b"x-api-key"), bearer_token(found.get(b"authorization"))]


class CorrelationMiddleware:
    """Request id in, request id out, and an access log line.

    - `header_name`: the request header read first (default `request-id`, what the Anthropic SDK reads);
      `fallback_header_names` are tried next (default `x-request-id`).
    - `generator`: makes an id when none (or an invalid one) came in; `validator` decides validity.
    - The response always carries `request-id`, and `header_name` too when that is another name.
    - `access_log`: write one line per request to the `ccproxy_asgi.access` logger.
    """

    kind: ClassVar[LayerKind] = LayerKind.CORRELATION

    def __init__(
        self,
        app: ASGIApp,
        *,
        header_name: str = "request-id",
        fallback_header_names: Sequence[str] = ("x-request-id",),
        generator: Callable[[], str] = new_request_id,
        validator: Callable[[str], bool] = is_valid_request_id,
        access_log: bool = True,
    ) -> None:
        self.app = app
        self._read = tuple(
            dict.fromkeys(name.lower().encode("latin-1") for name in (header_name, *fallback_header_names))
        )
        self._write = tuple(dict.fromkeys((b"request-id", header_name.lower().encode("latin-1"))))
        self._wanted = frozenset((*self._read, b"authorization", b"x-api-key"))
        self._generator = generator
        self._validator = validator
        self._access_log = access_log

    def _incoming_id(self, found: dict[bytes, str]) -> str:
        for name in self._read:
            value = found.get(name)
            if value is None:
                continue
            value = value.strip()
            if self._validator(value):
                return value
            logger.warning(
                "invalid %s header replaced by a generated id (%d characters, starting %r)",
                name.decode("latin-1"),
                len(value),
                value[:16],
            )
            break
        return self._generator()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        found = raw_headers_of(scope.get("headers", ()), self._wanted)
        if ctx.request_id is None:
            ctx.request_id = self._incoming_id(found)
        request_id = ctx.request_id
        id_header = request_id.encode("latin-1")
        started = time.perf_counter()
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = drop_raw_headers(message.get("headers", ()), self._write)
                headers.extend((name, id_header) for name in self._write)
                message["headers"] = headers
            await send(message)

        bound = bind(request_id, _client_secrets(found))
        try:
            await self.app(scope, receive, send_with_id)
        except ProxyError as exc:
            if status is not None:
                raise
            # No error layer inside answered: the error carries its own wire form.
            await self._send_error(send_with_id, exc, request_id)
        except Exception:
            if status is None:
                # Still give the client an envelope with its id; the server logs the error.
                await self._send_error(send_with_id, ApiError("internal server error"), request_id)
            raise
        finally:
            # Checked here so a disabled access log costs nothing: the record's fields are not built.
            if self._access_log and access_logger.isEnabledFor(logging.INFO):
                self._log_access(scope, ctx, status, time.perf_counter() - started)
            unbind(bound)

    @staticmethod
    async def _send_error(send: Send, error: ProxyError, request_id: str) -> None:
        try:
            await send_error(send, error, request_id)
        except Exception:  # the client is gone; the server logs the original error
            logger.debug("could not send the 500 response", exc_info=True)

    @staticmethod
    def _log_access(scope: Scope, ctx: RequestContext, status: int | None, seconds: float) -> None:
        usage = ctx.usage
        method = scope.get("method", "")
        path = scope.get("path", "")  # never the query string: it may carry a key
        access_logger.info(
            "%s %s %s %.1fms",
            method,
            path,
            status if status is not None else "-",
            seconds * 1000,
            extra={
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "model": ctx.requested_model,
                "upstream_model": ctx.upstream_model,
                "stream": ctx.stream,
                "input_tokens": None if usage is None else usage.input_tokens,
                "output_tokens": None if usage is None else usage.output_tokens,
                "attempts": len(ctx.attempts),
                "stream_error": ctx.stream_error,
                "request_id": ctx.request_id,
            },
        )


__all__ = ["MAX_REQUEST_ID_LENGTH", "CorrelationMiddleware", "is_valid_request_id"]
