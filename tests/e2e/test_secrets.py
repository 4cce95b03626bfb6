"""No key in any log line or error body: the configured upstream key, inbound keys and the key a client
presented, through the whole stack on a real server, with a deliberately careless layer logging headers,
bodies and the upstream key, and with failures of every kind on the way.

The keys are chosen so no pattern (`sk-…`, `Bearer …`) catches them: only the literal masking does.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from ccproxy_asgi.app import create_app
from ccproxy_asgi.logs import JsonFormatter, RequestIdFilter
from ccproxy_asgi.middleware.error_normalization import ErrorNormalizationMiddleware
from ccproxy_asgi.types import ASGIApp, Receive, Scope, Send
from tests.support.mock_process import MockUpstreamProcess, mock_upstream_fixture
from tests.support.proxy_server import serve_app
from tests.support.stack import proxy_settings

UPSTREAM_KEY = "upstream-literal-secret-3141592653"
INBOUND_KEY = "inbound-configured-secret-1618033988"
CLIENT_KEY = "client-literal-secret-2718281828"
SECRETS = (UPSTREAM_KEY, INBOUND_KEY, CLIENT_KEY)
MODEL = "claude-sonnet-4-6"

secrets_upstream = mock_upstream_fixture(scope="module")
careless = logging.getLogger("ccproxy_asgi.careless")


class CarelessLayer:
    """What a hurried contributor might add: logs every header, the raw body and the upstream key."""

    def __init__(self, app: ASGIApp, upstream_key: str) -> None:
        self.app = app
        self.upstream_key = upstream_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = [(bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in scope["headers"]]
            careless.debug("request headers: %s", headers)
            careless.info(
                "request", extra={"headers": dict(headers), "upstream": {"api_key": self.upstream_key}}
            )
            careless.info("calling upstream with %s", self.upstream_key)
            if scope["path"] == "/crash":
                raise RuntimeError(f"crashed while holding {dict(headers).get('x-api-key')}")
        await self.app(scope, receive, send)


# The test's own clients log in this process too; their lines are the client's business, not the proxy's.
CLIENT_SIDE_LOGGERS = ("anthropic", "httpx", "httpcore", "httpx2", "httpcore2")


class Lines(logging.Handler):
    """Every line the proxy's side writes (its own loggers, uvicorn, aiohttp...), formatted as configured."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(RequestIdFilter())
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] not in CLIENT_SIDE_LOGGERS:
            self.lines.append(self.format(record))


@contextlib.contextmanager
def captured_logs() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@contextlib.contextmanager
def careless_proxy(mock: MockUpstreamProcess, **overrides: Any) -> Iterator[str]:
    settings = proxy_settings(mock, upstream_api_key=UPSTREAM_KEY, retry_max_attempts=1, **overrides)
    app: Any = create_app(settings)
    # The careless layer goes just inside the error layer, wherever that is in the stack.
    errors_layer = app
    while not isinstance(errors_layer, ErrorNormalizationMiddleware):
        errors_layer = errors_layer.app
    errors_layer.app = CarelessLayer(errors_layer.app, UPSTREAM_KEY)
    with serve_app(app) as url:
        yield url


def exercise(url: str, mock: MockUpstreamProcess, key: str, bodies: list[str]) -> None:
    """Successes, streams, upstream failures, bad input and a crash, with the client's key in many places."""
    sdk = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
    bearer = anthropic.Anthropic(base_url=url, auth_token=key, max_retries=0)
    raw = httpx.Client(base_url=url, timeout=30)
    messages: list[Any] = [{"role": "user", "content": f"my key is {key}"}]
    try:
        sdk.messages.create(model=MODEL, max_tokens=16, messages=messages)
        with bearer.messages.stream(model=MODEL, max_tokens=16, messages=messages) as stream:
            stream.get_final_message()
        for fault in ("401", "429", "500", "context_length", "quota"):
            mock.queue_faults(fault, fault, fault)
            with contextlib.suppress(anthropic.APIStatusError):
                sdk.messages.create(model=MODEL, max_tokens=16, messages=messages)
            mock.clear_faults()
        mock.queue_faults({"fault": "cut", "after_chunks": 2})
        with (
            contextlib.suppress(anthropic.APIStatusError),
            sdk.messages.stream(model=MODEL, max_tokens=16, messages=messages) as stream,
        ):
            stream.get_final_message()
        hostile = [
            ("/v1/messages", json.dumps({"model": key, "max_tokens": key, "messages": messages})),
            ("/v1/messages", f'{{"api_key": "{key}", broken'),
            ("/v1/messages/count_tokens", json.dumps({"model": 1, "messages": key})),
            ("/crash", "{}"),
            ("/v1/nope", "{}"),
        ]
        for path, content in hostile:
            response = raw.post(
                path,
                content=content,
                headers={"x-api-key": key, "request-id": key + "!", "authorization": f"Basic {key}"},
            )
            bodies.append(response.text + json.dumps(dict(response.headers)))
    finally:
        sdk.close()
        bearer.close()
        raw.close()


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize(
    ("forward_client_key", "key"),
    [
        # Inbound keys configured: clients present one of them (registered with the formatters).
        (False, INBOUND_KEY),
        # Key forwarding: each client presents its own upstream key, known to the proxy only per request.
        (True, CLIENT_KEY),
    ],
)
def test_no_key_in_any_log_line_or_error_body(
    secrets_upstream: MockUpstreamProcess, forward_client_key: bool, key: str
) -> None:
    secrets_upstream.reset()
    bodies: list[str] = []
    inbound = [] if forward_client_key else [INBOUND_KEY]
    with (
        captured_logs() as logs,
        careless_proxy(secrets_upstream, forward_client_key=forward_client_key, api_keys=inbound) as url,
    ):
        exercise(url, secrets_upstream, key, bodies)
    assert len(logs.lines) > 20, "the careless layer and the stack did log"
    joined = "\n".join(logs.lines)
    assert "***" in joined, "there was something to mask"
    assert "crashed while holding" in joined
    assert "unhandled" in joined
    for line in logs.lines:
        assert_clean(line)
    assert len(bodies) == 5
    for body in bodies:
        assert_clean(body)
    upstream_auth = {r["headers"].get("authorization") for r in secrets_upstream.requests()}
    expected = f"Bearer {key}" if forward_client_key else f"Bearer {UPSTREAM_KEY}"
    assert upstream_auth == {expected}, "the keys did flow where they belong"


class PlainLines(logging.Handler):
    """A naive handler: message and extras as they are."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        extras = {key: getattr(record, key) for key in ("headers", "upstream") if hasattr(record, key)}
        self.lines.append(f"{record.getMessage()} {extras}")


def test_the_careless_layer_would_leak_without_the_formatter(secrets_upstream: MockUpstreamProcess) -> None:
    """The same run with a naive handler shows the keys: the test above is not vacuous."""
    secrets_upstream.reset()
    handler = PlainLines()
    careless.addHandler(handler)
    careless.setLevel(logging.DEBUG)
    try:
        with careless_proxy(secrets_upstream, forward_client_key=True) as url:
            exercise(url, secrets_upstream, CLIENT_KEY, [])
    finally:
        careless.removeHandler(handler)
        careless.setLevel(logging.NOTSET)
    joined = "\n".join(handler.lines)
    assert UPSTREAM_KEY in joined
    assert CLIENT_KEY in joined
