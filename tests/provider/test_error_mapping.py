"""The error vocabulary of the upstream clients, the package's public face, and what the proxy reads from
their error responses: headers with any spelling of their names."""

from __future__ import annotations

import socket
import ssl

import pytest

import ccproxy_asgi.upstream as upstream
from ccproxy_asgi.errors import UpstreamError, UpstreamTimeoutError
from ccproxy_asgi.headers import Headers
from ccproxy_asgi.provider.error_mapping import map_upstream_error
from ccproxy_asgi.upstream import HTTPClientConfig, create_upstream_client
from ccproxy_asgi.upstream.transport_errors import connection_error, os_reason, timeout_error
from tests.support.echo_server import run_echo_server


class LibraryError(Exception):
    """Stands in for a library exception that wraps the OS error as its cause."""


def wrapped(inner: BaseException) -> LibraryError:
    outer = LibraryError("Cannot connect to host user:secret@example.com:443")
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize(
    ("inner", "reason"),
    [
        (ConnectionRefusedError(111, "Connect call failed"), "connection refused"),
        (ConnectionResetError(104, "reset"), "connection reset by peer"),
        (socket.gaierror(-2, "Name or service not known"), "name resolution failed"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "TLS certificate verification failed"),
        (ssl.SSLError(1, "wrong version number"), "TLS error"),
    ],
)
def test_os_reason_names_the_cause_without_the_message(inner: BaseException, reason: str) -> None:
    error = connection_error(wrapped(inner), "fallback")
    assert isinstance(error, UpstreamError)
    assert str(error) == f"upstream connection error: {reason}"


def test_unknown_cause_uses_the_fixed_fallback() -> None:
    assert os_reason(wrapped(ValueError("user:secret"))) is None
    assert str(connection_error(wrapped(ValueError("x")), "server disconnected")) == (
        "upstream connection error: server disconnected"
    )


def test_os_error_kept_on_an_attribute_is_found() -> None:
    outer = LibraryError("no cause chain")
    outer.os_error = ConnectionRefusedError(111, "refused")  # type: ignore[attr-defined]
    assert os_reason(outer) == "connection refused"


def test_cause_cycles_terminate() -> None:
    first, second = LibraryError("a"), LibraryError("b")
    first.__cause__, second.__cause__ = second, first
    assert os_reason(first) is None


def test_timeout_error_names_phase_and_limit() -> None:
    error = timeout_error("read", 600.0)
    assert isinstance(error, UpstreamTimeoutError)
    assert error.status == 504
    assert str(error) == "upstream timeout: read timed out after 600 s"
    assert str(timeout_error("wait for a free connection", None)) == (
        "upstream timeout: wait for a free connection timed out"
    )


def test_public_names_are_exactly_the_intended_ones() -> None:
    assert set(upstream.__all__) == {
        "DEFAULT_USER_AGENT",
        "AiohttpUpstreamClient",
        "AiohttpUpstreamResponse",
        "FirstByteTimeoutClient",
        "HTTPClientConfig",
        "HttpxUpstreamClient",
        "HttpxUpstreamResponse",
        "UpstreamClient",
        "UpstreamClientKind",
        "UpstreamResponse",
        "create_upstream_client",
    }
    for name in upstream.__all__:
        assert getattr(upstream, name) is not None
    with pytest.raises(AttributeError):
        _ = upstream.NoSuchThing


@pytest.mark.parametrize("kind", ["aiohttp", "httpx"])
async def test_response_headers_of_either_client_are_read_in_any_spelling(
    kind: upstream.UpstreamClientKind,
) -> None:
    async with (
        run_echo_server() as server,
        create_upstream_client(kind, HTTPClientConfig(trust_env=False)) as client,
    ):
        response = await client.send("GET", server.url + "/echo", headers={})
        async with response:
            await response.read()
            headers = Headers(response.headers)
    # The echo server spells it `X-Custom-Header`; a plain dict of aiohttp's headers keeps that spelling.
    assert headers["x-custom-header"] == headers["X-CUSTOM-HEADER"] == "yes"


def test_the_error_mapping_reads_mixed_case_headers() -> None:
    body = b'{"error": {"message": "slow down"}}'
    limited = map_upstream_error(429, {"Retry-After": "2", "X-RateLimit-Limit-Requests": "60"}, body)
    assert limited.retry_after == 2.0
    assert limited.extra_headers["anthropic-ratelimit-requests-limit"] == "60"
    assert map_upstream_error(429, {"X-Ratelimit-Reset-Requests": "6m0s"}, body).retry_after == 360.0
    assert map_upstream_error(503, {"RETRY-AFTER-MS": "1500"}, body).retry_after == 1.5
