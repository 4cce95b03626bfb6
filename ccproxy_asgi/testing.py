"""Test doubles for code built on ccproxy_asgi: a mock upstream client, an in-process ASGI caller, and the
mock upstream server.

- `MockUpstreamClient(handler)` is an `UpstreamClient` that sends nothing over the network: each request
  goes to `handler`, a plain or async function from `UpstreamRequest` to `MockResponse`, as httpx's
  `MockTransport` does. The handler raises `UpstreamError` or `UpstreamTimeoutError` to play a transport
  failure. `scripted(...)` makes a handler that answers from a list; `mock_upstream_replies(...)` one that
  gives the mock upstream's deterministic chat completions.
- `call_asgi(app, ...)` sends one HTTP request through an ASGI app in process and records every message
  the app sends back (`ASGIResult`).
- `serve_mock_upstream(...)` serves the OpenAI-compatible mock upstream (`ccproxy_asgi.mock_upstream`, with
  its faults, account limits and request log) on a local port, for tests that want real sockets.

Testing a route of your own behind the proxy's endpoint, without a network::

    from ccproxy_asgi.app.proxy import build_endpoint
    from ccproxy_asgi.app.settings import Settings
    from ccproxy_asgi.provider.openai import OpenAIProvider
    from ccproxy_asgi.testing import MockUpstreamClient, call_asgi, mock_upstream_replies
    from ccproxy_asgi.tokens.counter import TokenCounter

    client = MockUpstreamClient(mock_upstream_replies())
    provider = OpenAIProvider(
        base_url="http://upstream.test/v1", api_key=None, client=client, token_counter=TokenCounter()
    )
    endpoint = build_endpoint(Settings(upstream_base_url="http://upstream.test/v1"), provider=provider)
    result = await call_asgi(endpoint, "POST", "/v1/messages", json={...})
    assert result.status == 200
    assert client.requests[0].json()["model"] == ...
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from ccproxy_asgi import jsonutil
from ccproxy_asgi.headers import Headers
from ccproxy_asgi.mock_upstream.config import MockConfig
from ccproxy_asgi.mock_upstream.reply import plan_reply
from ccproxy_asgi.mock_upstream.server import MOCK_UPSTREAM, MockUpstream, create_mock_app
from ccproxy_asgi.mock_upstream.wire import ResponseMeta, completion_body, stream_frames
from ccproxy_asgi.types import ASGIApp, Message, Scope
from ccproxy_asgi.upstream.base import AsyncClosing, UpstreamResponse

# ----- the mock upstream client ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One request a `MockUpstreamClient` was asked to send: the arguments of `send`, as given."""

    method: str
    url: str
    headers: Headers
    content: bytes | None = None
    timeout: float | None = None
    first_byte_timeout: float | None = None

    def json(self) -> Any:
        """The body parsed as JSON."""
        return jsonutil.loads(self.content or b"")


class MockResponse(AsyncClosing):
    """An `UpstreamResponse` with a fixed status, headers and body.

    `content` is the body, or its chunks in the order `aiter_bytes` yields them; `json` is a body to
    serialise instead (with `content-type: application/json` unless `headers` name one). The headers keep
    the spelling they were given and are looked up case-insensitively, as aiohttp's are.
    """

    __slots__ = ("_chunks", "_headers", "_status", "closed")

    def __init__(
        self,
        status: int = 200,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        content: bytes | Iterable[bytes] = b"",
        json: Any = None,
    ) -> None:
        fields: CIMultiDict[str] = CIMultiDict(headers or ())
        if json is not None:
            content = jsonutil.dumps(json)
            fields.setdefault("content-type", "application/json")
        self._status = status
        self._headers = CIMultiDictProxy(fields)
        self._chunks = (content,) if isinstance(content, bytes) else tuple(content)
        self.closed = False

    def __repr__(self) -> str:
        return f"MockResponse({self._status})"

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    async def read(self) -> bytes:
        return b"".join(self._chunks)

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


#: What a `MockUpstreamClient` asks for each response.
Handler: TypeAlias = Callable[[UpstreamRequest], MockResponse | Awaitable[MockResponse]]


class MockUpstreamClient(AsyncClosing):
    """An `UpstreamClient` whose every `send` is answered by `handler`; each request is kept in
    `requests`, in order. After `aclose()` (`closed` is then True), `send` raises `RuntimeError`."""

    __slots__ = ("closed", "handler", "requests")

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[UpstreamRequest] = []
        self.closed = False

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - recorded, as the protocol's read timeout
        first_byte_timeout: float | None = None,
    ) -> UpstreamResponse:
        if self.closed:
            raise RuntimeError("the client is closed")
        request = UpstreamRequest(method, url, Headers(headers), content, timeout, first_byte_timeout)
        self.requests.append(request)
        answer = self.handler(request)
        if inspect.isawaitable(answer):
            return await answer
        return answer

    async def aclose(self) -> None:
        self.closed = True


def scripted(*steps: MockResponse | BaseException) -> Callable[[UpstreamRequest], MockResponse]:
    """A handler that answers each request with the next step: a response, or an exception to raise."""
    remaining = list(steps)

    def answer(request: UpstreamRequest) -> MockResponse:
        if not remaining:
            raise AssertionError(f"no scripted answer left for {request.method} {request.url}")
        step = remaining.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    return answer


def _include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def mock_upstream_replies(config: MockConfig | None = None) -> Handler:
    """A handler that answers chat completions (streamed or not) as the mock upstream does: the same
    deterministic replies, tool calls and `x-mock-*` overrides, but no faults, limits or latency (serve the
    mock with `serve_mock_upstream` for those). Any request but `POST …/chat/completions` gets a 404."""
    config = config or MockConfig()

    def answer(request: UpstreamRequest) -> MockResponse:
        if request.method != "POST" or not request.url.rstrip("/").endswith("/chat/completions"):
            return MockResponse(
                404, json={"error": {"message": "not found", "type": "invalid_request_error"}}
            )
        body = request.json()
        reply = plan_reply(body, config, request.headers)
        meta = ResponseMeta(
            completion_id="chatcmpl-" + os.urandom(12).hex(),
            created=int(time.time()),
            model=str(body.get("model")),
            include_usage=_include_usage(body),
            echo_stop_reason=config.echo_stop_reason,
        )
        if body.get("stream") is True:
            return MockResponse(
                headers={"content-type": "text/event-stream; charset=utf-8"},
                content=stream_frames(reply, meta),
            )
        return MockResponse(
            headers={"content-type": "application/json"}, content=completion_body(reply, meta)
        )

    return answer


# ----- the in-process ASGI caller ------------------------------------------------------------------------


@dataclass(slots=True)
class ASGIResult:
    """What an ASGI app sent for one request: every message in order, and readers for the response."""

    scope: Scope
    messages: list[Message] = field(default_factory=list)

    def _start(self) -> Message:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        assert len(starts) == 1, f"expected one http.response.start, got {len(starts)}"
        return starts[0]

    @property
    def started(self) -> bool:
        """Whether the app started a response."""
        return any(m["type"] == "http.response.start" for m in self.messages)

    @property
    def status(self) -> int:
        return int(self._start()["status"])

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The response's header fields as sent, spelling and repeats kept."""
        return [(bytes(name), bytes(value)) for name, value in self._start().get("headers", [])]

    @property
    def headers(self) -> Headers:
        """The response's header fields, looked up with any spelling (the first of repeats)."""
        return Headers(self.raw_headers)

    def header_values(self, name: str) -> list[str]:
        """Every value of header `name`, in order."""
        wanted = name.lower().encode("latin-1")
        return [value.decode("latin-1") for key, value in self.raw_headers if key.lower() == wanted]

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return jsonutil.loads(self.body)

    @property
    def complete(self) -> bool:
        """Whether the body was finished (a last `http.response.body` without `more_body`)."""
        bodies = [m for m in self.messages if m["type"] == "http.response.body"]
        return bool(bodies) and not bodies[-1].get("more_body", False)


async def disconnect() -> Message:
    """An `after_body` for `call_asgi`: the client is gone as soon as it has sent its body."""
    return {"type": "http.disconnect"}


async def call_asgi(
    app: ASGIApp,
    method: str = "GET",
    path: str = "/",
    *,
    headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]] = (),
    body: bytes | Iterable[bytes] = b"",
    json: Any = None,
    query_string: bytes = b"",
    root_path: str = "",
    scope: Scope | None = None,
    after_body: Callable[[], Awaitable[Message]] | None = None,
) -> ASGIResult:
    """Send one HTTP request through `app` in process and record every message it sends.

    `headers` is a mapping, whose names are lower-cased as a server does, or `(name, value)` byte pairs,
    sent as they are;
    `body` is the request body or its chunks, `json` a body to serialise instead (with
    `content-type: application/json` unless `headers` has one). `scope` is a scope to use as it is (the
    same object, so a test can set up its request context first); the keys it lacks are filled in from
    the other arguments. Once the body is read, `receive` waits until the response is complete and then
    reports a disconnect, as an HTTP client that reads the whole response does; `after_body` replaces
    that (`disconnect` for a client that leaves at once). Exceptions from `app` propagate.
    """
    pairs = (
        [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        if isinstance(headers, Mapping)
        else list(headers)
    )
    if json is not None:
        body = jsonutil.dumps(json)
        if not any(name.lower() == b"content-type" for name, _ in pairs):
            pairs.append((b"content-type", b"application/json"))
    chunks = [body] if isinstance(body, bytes) else list(body)
    request: MutableMapping[str, Any] = {} if scope is None else scope
    defaults: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": query_string,
        "headers": pairs,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    for key, value in defaults.items():
        request.setdefault(key, value)
    result = ASGIResult(request)
    finished = asyncio.Event()

    async def receive() -> Message:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        if after_body is not None:
            return await after_body()
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        result.messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            finished.set()

    await app(request, receive, send)
    return result


# ----- the mock upstream server ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MockServer:
    """A running mock upstream: its OpenAI base URL (`…/v1`) and its state (faults, request log)."""

    base_url: str
    mock: MockUpstream


@asynccontextmanager
async def serve_mock_upstream(
    config: MockConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[MockServer]:
    """Serve the mock upstream on `host:port` (port 0: a free one) for the duration of the block."""
    app = create_mock_app(config)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield MockServer(base_url=f"http://{bound_host}:{bound_port}/v1", mock=app[MOCK_UPSTREAM])
    finally:
        await runner.cleanup()


__all__ = [
    "ASGIResult",
    "Handler",
    "MockConfig",
    "MockResponse",
    "MockServer",
    "MockUpstreamClient",
    "UpstreamRequest",
    "call_asgi",
    "disconnect",
    "mock_upstream_replies",
    "scripted",
    "serve_mock_upstream",
]
