"""Turning a library's transport exception into the proxy's own error, without leaking secrets.

The message of the error we raise reaches the proxy's clients (in the Anthropic error envelope) and the
logs, so it is built from a fixed vocabulary and OS error names, never from the library's message, which
may quote the URL (credentials, query keys) or, for some libraries, request details.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl

from ccproxy_asgi.errors import FirstByteTimeoutError, UpstreamError, UpstreamTimeoutError


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it wraps, outermost first, without cycles."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen) and len(seen) < 8:
        seen.append(current)
        # aiohttp keeps the wrapped OSError on an attribute rather than as the cause.
        wrapped = getattr(current, "os_error", None)
        if isinstance(wrapped, BaseException) and all(wrapped is not s for s in seen):
            seen.append(wrapped)
        current = current.__cause__ or current.__context__
    return seen


def os_reason(exc: BaseException) -> str | None:
    """A short description of the OS-level cause (refused, reset, DNS, TLS) if there is one."""
    for item in _chain(exc):
        if isinstance(item, ssl.SSLCertVerificationError):
            return "TLS certificate verification failed"
        if isinstance(item, ssl.SSLError):
            return "TLS error"
        if isinstance(item, socket.gaierror):
            return "name resolution failed"
        if isinstance(item, OSError) and item.errno is not None and item.errno in errno.errorcode:
            return os.strerror(item.errno).lower()
    return None


def connection_error(exc: BaseException, fallback: str) -> UpstreamError:
    """An `UpstreamError` for `exc`: the OS cause if known, else the caller's fixed `fallback` text."""
    return UpstreamError(f"upstream connection error: {os_reason(exc) or fallback}")


def timeout_error(phase: str, seconds: float | None) -> UpstreamTimeoutError:
    """An `UpstreamTimeoutError` naming the phase (connect, read, write, pool) and the limit."""
    limit = f" after {seconds:g} s" if seconds is not None else ""
    return UpstreamTimeoutError(f"upstream timeout: {phase} timed out{limit}")


def first_byte_timeout_error(seconds: float) -> FirstByteTimeoutError:
    """The first-byte timeout fired: named apart from the read timeout, whose remedy differs."""
    return FirstByteTimeoutError(
        f"upstream timeout: first byte timed out after {round(seconds, 2):g} s (no response head)"
    )


__all__ = ["connection_error", "first_byte_timeout_error", "os_reason", "timeout_error"]
