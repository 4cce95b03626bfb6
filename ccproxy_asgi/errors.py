"""Exceptions that carry what the wire needs, and the Anthropic error envelope.

Every layer raises these where the cause is known (the endpoint on bad input, the provider on an upstream
failure, the rate limiter on an exhausted budget, the breaker while open). They are turned into wire
format in one place, `error_response_parts`, so a layer answers correctly with or without the error
normalization layer mounted around it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from ccproxy_asgi import jsonutil


class ProxyError(Exception):
    """Base of every error the proxy answers a client with.

    `status` and `error_type` follow the Anthropic status table
    (docs/protocol.md#errors-status-and-type). `retry_after` is
    seconds (float) and becomes `retry-after` (whole seconds, rounded up) and `retry-after-ms`.
    `should_retry` becomes `x-should-retry` when not None, which the official SDKs obey over the status.
    """

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "api_error"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        should_retry: bool | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.should_retry = should_retry
        self.extra_headers: dict[str, str] = dict(headers or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, message={self.message!r})"


class InvalidRequestError(ProxyError):
    status = 400
    error_type = "invalid_request_error"


class AuthenticationError(ProxyError):
    status = 401
    error_type = "authentication_error"


class BillingError(ProxyError):
    status = 402
    error_type = "billing_error"


class PermissionDeniedError(ProxyError):
    status = 403
    error_type = "permission_error"


class NotFoundError(ProxyError):
    status = 404
    error_type = "not_found_error"


class MethodNotAllowedError(ProxyError):
    status = 405
    error_type = "invalid_request_error"


class RequestTimeoutError(ProxyError):
    """The client did not send its whole request body in time (a stalled or slow-loris client)."""

    status = 408
    error_type = "timeout_error"


class RequestTooLargeError(ProxyError):
    status = 413
    error_type = "request_too_large"


class RateLimitError(ProxyError):
    status = 429
    error_type = "rate_limit_error"


class ApiError(ProxyError):
    status = 500
    error_type = "api_error"


class UpstreamError(ApiError):
    """The upstream failed in a way that is not the client's fault (bad gateway)."""

    status = 502


class UpstreamTimeoutError(ProxyError):
    status = 504
    error_type = "timeout_error"


class FirstByteTimeoutError(UpstreamTimeoutError):
    """No response head within the first-byte budget of a stream: the budget covers every attempt of the
    request, so this one is never retried."""


class OverloadedError(ProxyError):
    status = 529
    error_type = "overloaded_error"


def _classes_by_status() -> dict[int, type[ProxyError]]:
    """Each status to the class that introduced it (a subclass keeping its parent's status, such as
    `FirstByteTimeoutError`, does not replace it)."""
    table: dict[int, type[ProxyError]] = {}
    pending = list(ProxyError.__subclasses__())
    while pending:
        cls = pending.pop(0)
        table.setdefault(cls.status, cls)
        pending.extend(cls.__subclasses__())
    return table


#: The Anthropic status table (docs/protocol.md#errors-status-and-type), derived from the classes above:
#: a status to the error class a response with that status is on the wire.
ERROR_CLASS_BY_STATUS: Mapping[int, type[ProxyError]] = MappingProxyType(_classes_by_status())
#: Statuses no class answers with, and the class that stands for each: a validation error (FastAPI's 422)
#: is a malformed request, a conflict is retried like a server error (the SDKs retry both), an
#: unavailable service is overloaded.
STATUS_ALIASES: Mapping[int, type[ProxyError]] = MappingProxyType(
    {409: ApiError, 422: InvalidRequestError, 503: OverloadedError}
)


def error_class_for_status(status: int) -> type[ProxyError]:
    """The error class of an error response with `status`: its own, an alias, else `InvalidRequestError`
    for a 4xx and `ApiError` for anything else."""
    cls = ERROR_CLASS_BY_STATUS.get(status) or STATUS_ALIASES.get(status)
    if cls is not None:
        return cls
    return InvalidRequestError if 400 <= status < 500 else ApiError


#: Statuses that always leave the proxy with `retry-after`, and its value when nobody knew better (whole
#: seconds: 1 is the shortest wait the SDKs honour, they ignore 0).
RETRY_AFTER_STATUSES = frozenset({429, 529})
DEFAULT_RETRY_AFTER = b"1"


def error_body(error_type: str, message: str, request_id: str | None) -> dict[str, Any]:
    """The Anthropic error envelope (docs/protocol.md#errors-the-anthropic-envelope)."""
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def error_headers(error: ProxyError) -> list[tuple[bytes, bytes]]:
    """Response headers an error carries besides content-type: retry hints and its own extras."""
    headers: list[tuple[bytes, bytes]] = []
    if error.retry_after is not None and error.retry_after >= 0:
        headers.append((b"retry-after", str(max(0, math.ceil(error.retry_after))).encode()))
        headers.append((b"retry-after-ms", str(max(0, round(error.retry_after * 1000))).encode()))
    elif error.status in RETRY_AFTER_STATUSES and not any(
        name.lower() == "retry-after" for name in error.extra_headers
    ):
        # Every 429 and 529 says how long to wait: without it each client guesses its own backoff.
        headers.append((b"retry-after", DEFAULT_RETRY_AFTER))
    if error.should_retry is not None:
        headers.append((b"x-should-retry", b"true" if error.should_retry else b"false"))
    for name, value in error.extra_headers.items():
        headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return headers


def error_response_parts(
    error: ProxyError, request_id: str | None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of the JSON response for `error`."""
    body = jsonutil.dumps(error_body(error.error_type, error.message, request_id))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *error_headers(error),
    ]
    if request_id is not None:
        headers.append((b"request-id", request_id.encode("latin-1")))
    return error.status, headers, body


def sse_error_event(error_type: str, message: str, request_id: str | None) -> bytes:
    """An `event: error` frame for errors after a stream began (docs/protocol.md#errors-during-a-stream)."""
    payload = jsonutil.dumps(error_body(error_type, message, request_id))
    return b"event: error\ndata: " + payload + b"\n\n"


__all__ = [
    "DEFAULT_RETRY_AFTER",
    "ERROR_CLASS_BY_STATUS",
    "RETRY_AFTER_STATUSES",
    "STATUS_ALIASES",
    "ApiError",
    "AuthenticationError",
    "BillingError",
    "FirstByteTimeoutError",
    "InvalidRequestError",
    "MethodNotAllowedError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProxyError",
    "RateLimitError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "error_body",
    "error_class_for_status",
    "error_headers",
    "error_response_parts",
    "sse_error_event",
]
