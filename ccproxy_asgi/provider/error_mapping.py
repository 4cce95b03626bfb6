"""Upstream HTTP errors -> the Anthropic error a client should see, in one table
(docs/protocol.md#errors-upstream-to-client).

The upstream may be OpenAI (`{"error": {"message", "type", "code", "param"}}`), vLLM
(`{"object": "error", "message": ...}`), OpenRouter (`{"error": {"message", "code": 429, "metadata"}}`) or
something that answers plain text; all of them are read defensively. Their text is passed on only after
redaction (`ccproxy_asgi.provider.redaction`): keys, URL credentials, stack traces and file paths out.

Every 429 and 529 carries a wait: the upstream's (`retry-after-ms`, `retry-after`, for a 429 its
`x-ratelimit-reset-*`), else the caller's `estimate`, else `errors.DEFAULT_RETRY_AFTER` on the wire.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ccproxy_asgi import jsonutil
from ccproxy_asgi.errors import (
    ApiError,
    AuthenticationError,
    BillingError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProxyError,
    RateLimitError,
    RequestTooLargeError,
    UpstreamError,
    UpstreamTimeoutError,
    error_class_for_status,
)
from ccproxy_asgi.headers import Headers
from ccproxy_asgi.provider.redaction import MAX_SCANNED, redact_error_text
from ccproxy_asgi.provider.retry import upstream_retry_after
from ccproxy_asgi.provider.upstream_limits import anthropic_ratelimit_headers

_MAX_MESSAGE = 1000
# Errors that tell the client to wait: they get the caller's estimate when the upstream gave no hint.
_WAIT_ERRORS: tuple[type[ProxyError], ...] = (RateLimitError, OverloadedError)
# Upstream 4xx answered with the error class of their status, the upstream's message as it is; any other
# 4xx without a row of its own is the client's malformed request.
_AS_IS_ERRORS: tuple[type[ProxyError], ...] = (BillingError, NotFoundError, RequestTooLargeError)
_QUOTA_CODES = frozenset({"insufficient_quota", "credit_balance_exhausted", "billing_hard_limit_reached"})
_CONTEXT_HINTS = (
    "context_length_exceeded",
    "maximum context length",  # OpenAI, older vLLM
    "maximum model length",  # newer vLLM
    "context window",
    "context size",  # llama.cpp
    "too many tokens",
    "prompt is too long",
)


@dataclass(frozen=True, slots=True)
class UpstreamErrorDetail:
    message: str
    code: str | None
    type: str | None


def parse_error_body(body: bytes, secrets: Iterable[str | None] = ()) -> UpstreamErrorDetail:
    """The message, code and type of an upstream error body, whatever its shape; the message redacted
    (`secrets` are values to remove besides the registered ones), then capped. In that order: a cap first
    could cut a key in half and leave a half no rule recognises."""
    detail = _parse_error_body(body)
    message = redact_error_text(detail.message, secrets).strip() or "no error message"
    return UpstreamErrorDetail(message[:_MAX_MESSAGE], detail.code, detail.type)


def _parse_error_body(body: bytes) -> UpstreamErrorDetail:
    """The fields of `body`, the message uncapped but for `MAX_SCANNED` (redaction looks no further)."""
    text = body[: MAX_SCANNED * 4].decode("utf-8", "replace").strip()
    try:
        data: Any = jsonutil.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return UpstreamErrorDetail(
                message=str(err.get("message") or text),
                code=None if err.get("code") is None else str(err.get("code")),
                type=None if err.get("type") is None else str(err.get("type")),
            )
        if isinstance(err, str):
            return UpstreamErrorDetail(message=err, code=None, type=None)
        message = data.get("message") or data.get("detail") or text
        code = data.get("code")
        return UpstreamErrorDetail(
            message=str(message),
            code=None if code is None else str(code),
            type=None if data.get("type") is None else str(data.get("type")),
        )
    return UpstreamErrorDetail(message=text or "no error body", code=None, type=None)


def _is_context_overflow(detail: UpstreamErrorDetail) -> bool:
    haystack = f"{detail.code or ''} {detail.message}".lower()
    return any(hint in haystack for hint in _CONTEXT_HINTS)


def _is_quota(detail: UpstreamErrorDetail) -> bool:
    return (detail.code in _QUOTA_CODES) or (detail.type in _QUOTA_CODES) or "quota" in detail.message.lower()


def map_upstream_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    client_key_forwarded: bool = False,
    secrets: Iterable[str | None] = (),
    estimate: float | None = None,
) -> ProxyError:
    """The error to raise for an upstream answer with a non-2xx `status`.

    `secrets`: values the upstream may echo that the client must not see (the keys the request was sent
    with). `estimate`: the wait to tell the client for a 429, 503 or 529 that came without a hint.
    """
    headers = Headers.of(headers)
    detail = parse_error_body(body, secrets)
    message = detail.message
    cls = error_class_for_status(status)
    retry_after = upstream_retry_after(status, headers)
    if retry_after is None and issubclass(cls, _WAIT_ERRORS):
        retry_after = estimate
    if status == 400 or status == 422:
        if _is_context_overflow(detail):
            return InvalidRequestError(f"prompt is too long: {message}")
        return InvalidRequestError(message)
    if status in (401, 403):
        if client_key_forwarded:
            cls = AuthenticationError if status == 401 else PermissionDeniedError
            return cls(message)
        # The proxy's own key was refused: blaming the client's key would send them on a wrong hunt.
        # Retrying cannot fix a wrong key: without `x-should-retry: false` Claude Code retries for minutes.
        return ApiError(f"upstream credentials rejected ({status})", should_retry=False)
    if status == 409:
        # Retried by the SDKs as a 500 is; a client 4xx would tell them not to.
        return ApiError(f"upstream conflict (409): {message}", retry_after=retry_after)
    if status == 408 or status == 504:
        # The upstream's 408 says the proxy's request to it timed out: for the client, a gateway timeout.
        return UpstreamTimeoutError(f"upstream timed out: {message}", retry_after=retry_after)
    if status == 429:
        if _is_quota(detail):
            return RateLimitError(f"upstream quota exhausted: {message}", should_retry=False)
        return RateLimitError(message, retry_after=retry_after, headers=anthropic_ratelimit_headers(headers))
    if cls is OverloadedError:  # 503, 529
        return OverloadedError(f"upstream overloaded: {message}", retry_after=retry_after)
    if status >= 500:
        return ApiError(f"upstream error ({status}): {message}", retry_after=retry_after)
    if cls in _AS_IS_ERRORS:
        # 402 from OpenRouter and other credit-based gateways: paying, not retrying, is the fix.
        return cls(message)
    if 400 <= status < 500:
        return InvalidRequestError(message)
    return UpstreamError(f"unexpected upstream status {status}")


__all__ = ["UpstreamErrorDetail", "map_upstream_error", "parse_error_body"]
