"""Every 429 and 529 the proxy returns carries `retry-after`, and the proxy's own retries honour the
upstream's hint whatever the spelling of its header names.

A purpose-built upstream (`ScriptedUpstream`) answers from a script with header names spelled exactly as
written (`Retry-After`, `X-RateLimit-Reset-Requests`): the mock upstream writes them lower-case, which hid
the defect of a case-sensitive lookup. It records when each request arrived, so the wait between two
attempts is measured where it matters, at the upstream. Both upstream HTTP clients are exercised.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import pytest
from aiohttp import web
from multidict import CIMultiDict

from ccproxy_asgi.app import create_app
from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.errors import OverloadedError, RateLimitError, error_response_parts
from ccproxy_asgi.middleware.error_normalization import ErrorNormalizationMiddleware
from ccproxy_asgi.testing import call_asgi
from ccproxy_asgi.types import Message, Receive, Scope, Send
from tests.support.proxy_server import free_port, serve_app

CLIENTS = ["aiohttp", "httpx"]
MODEL = "claude-sonnet-4-6"
CLIENT_KEY = "client-key-of-the-retry-after-tests"
UPSTREAM_KEY = "upstream-key-of-the-retry-after-tests"
BODY: dict[str, Any] = {"model": MODEL, "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "scripted"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
).encode()


def openai_error(message: str, kind: str = "requests", code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


@dataclass(frozen=True)
class Reply:
    """One scripted answer: header names are sent exactly as spelled here."""

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = COMPLETION
    content_type: str = "application/json"


@dataclass
class Seen:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedUpstream:
    """An OpenAI-compatible upstream: each request gets the next scripted reply (or
    `default` once the script is used up); every request is recorded with its arrival time."""

    default: Reply = field(default_factory=Reply)
    script: deque[Reply] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, *replies: Reply, default: Reply | None = None) -> None:
        with self._lock:
            self.script = deque(replies)
            self.seen = []
            self.default = default or Reply()

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def gaps(self) -> list[float]:
        return [b.at - a.at for a, b in itertools.pairwise(self.requests())]

    async def handle(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        body = await request.read()
        with self._lock:
            self.seen.append(Seen(arrived, request.path, dict(request.headers), body))
            reply = self.script.popleft() if self.script else self.default
        # aiohttp writes header names as given (uvicorn would lower-case them).
        headers = CIMultiDict(reply.headers)
        headers["Content-Type"] = reply.content_type
        return web.Response(status=reply.status, headers=headers, body=reply.body)


@contextlib.contextmanager
def serve_scripted(upstream: ScriptedUpstream) -> Iterator[str]:
    """Run `upstream` with aiohttp on a free port in a thread of its own; yield its base URL."""
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    runner = web.AppRunner(app, access_log=None)
    port = free_port()
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class Stack:
    """The scripted upstream and the proxies in front of it, one per distinct set of settings."""

    def __init__(self, upstream: ScriptedUpstream, upstream_url: str, exits: contextlib.ExitStack) -> None:
        self.upstream = upstream
        self.upstream_url = upstream_url
        self._exits = exits
        self._proxies: dict[tuple[tuple[str, str], ...], str] = {}

    def proxy(self, **overrides: Any) -> str:
        key = tuple(sorted((k, repr(v)) for k, v in overrides.items()))
        if key not in self._proxies:
            values: dict[str, Any] = {
                "upstream_base_url": self.upstream_url + "/v1",
                "upstream_api_key": UPSTREAM_KEY,
                "retry_max_backoff_seconds": 0.05,
                "breaker_enabled": False,
                **overrides,
            }
            settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
            self._proxies[key] = self._exits.enter_context(serve_app(create_app(settings)))
        return self._proxies[key]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    upstream = ScriptedUpstream()
    with contextlib.ExitStack() as exits:
        url = exits.enter_context(serve_scripted(upstream))
        yield Stack(upstream, url, exits)


@pytest.fixture
def upstream(stack: Stack) -> ScriptedUpstream:
    stack.upstream.reset()
    return stack.upstream


def raw_post(url: str, body: dict[str, Any] | None = None) -> httpx.Response:
    """A client that announces no retries of its own (no `x-stainless-retry-count`)."""
    with httpx.Client(base_url=url, timeout=30.0) as client:
        return client.post("/v1/messages", json=body or BODY, headers={"x-api-key": CLIENT_KEY})


def sdk(url: str, **kwargs: Any) -> anthropic.Anthropic:
    kwargs.setdefault("max_retries", 0)
    return anthropic.Anthropic(base_url=url, api_key=CLIENT_KEY, timeout=30.0, **kwargs)


def sdk_error(url: str) -> anthropic.APIStatusError:
    with sdk(url) as client, pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(**BODY)
    return caught.value


# ----- the proxy's own retries honour a mixed-case Retry-After --------------------------------------------


def test_the_scripted_upstream_keeps_the_spelling_of_header_names(
    stack: Stack, upstream: ScriptedUpstream
) -> None:
    upstream.reset(Reply(429, [("Retry-After", "2")], openai_error("slow down")))
    with httpx.Client() as client:
        response = client.post(stack.upstream_url + "/v1/chat/completions", json={})
    assert response.status_code == 429
    assert ("Retry-After", "2") in [(k.decode(), v.decode()) for k, v in response.headers.raw]


@pytest.mark.parametrize("http_client", CLIENTS)
def test_a_mixed_case_retry_after_is_waited_out_before_the_retry(
    stack: Stack, upstream: ScriptedUpstream, http_client: str
) -> None:
    upstream.reset(Reply(429, [("Retry-After", "2")], openai_error("Rate limit reached")))
    response = raw_post(stack.proxy(http_client=http_client, retry_max_attempts=2))
    assert response.status_code == 200, response.text
    assert len(upstream.requests()) == 2
    [gap] = upstream.gaps()
    assert gap >= 1.99, f"the second attempt came {gap:.2f} s after the first; the upstream asked for 2 s"


# ----- retry-after on every 429 and 529 ------------------------------------------------------------------


@pytest.mark.parametrize("http_client", CLIENTS)
def test_a_429_that_outlived_the_proxys_retries_keeps_the_upstreams_retry_after(
    stack: Stack, upstream: ScriptedUpstream, http_client: str
) -> None:
    limited = Reply(429, [("Retry-After", "2")], openai_error("Rate limit reached"))
    upstream.reset(default=limited)
    url = stack.proxy(http_client=http_client, retry_max_attempts=2)
    response = raw_post(url)
    assert response.status_code == 429
    assert len(upstream.requests()) == 2, "the proxy retried once, then gave up"
    assert response.headers["retry-after"] == "2"
    assert response.headers["retry-after-ms"] == "2000"
    assert response.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("http_client", CLIENTS)
def test_the_sdk_sees_the_upstreams_mixed_case_retry_after(
    stack: Stack, upstream: ScriptedUpstream, http_client: str
) -> None:
    upstream.reset(default=Reply(429, [("Retry-After", "2")], openai_error("Rate limit reached")))
    error = sdk_error(stack.proxy(http_client=http_client))
    assert isinstance(error, anthropic.RateLimitError)
    assert error.response.headers["retry-after"] == "2"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("X-RateLimit-Reset-Requests", "1s")], "1"),
        ([("x-ratelimit-reset-requests", "6m0s")], "360"),
        ([("X-Ratelimit-Remaining-Tokens", "0"), ("X-Ratelimit-Reset-Tokens", "20ms")], "1"),
        ([("Retry-After-Ms", "1500")], "2"),
    ],
)
def test_a_429_with_only_openai_reset_headers_gets_a_retry_after_from_them(
    stack: Stack, upstream: ScriptedUpstream, headers: list[tuple[str, str]], expected: str
) -> None:
    upstream.reset(default=Reply(429, headers, openai_error("Rate limit reached")))
    error = sdk_error(stack.proxy())
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == expected


def test_reset_headers_give_the_exact_wait_in_retry_after_ms(
    stack: Stack, upstream: ScriptedUpstream
) -> None:
    upstream.reset(default=Reply(429, [("X-RateLimit-Reset-Requests", "1.5s")], openai_error("limited")))
    error = sdk_error(stack.proxy())
    assert error.response.headers["retry-after"] == "2"
    assert error.response.headers["retry-after-ms"] == "1500"


@pytest.mark.parametrize("client", ["sdk", "raw"])
def test_a_429_without_any_hint_still_gets_a_retry_after(
    stack: Stack, upstream: ScriptedUpstream, client: str
) -> None:
    upstream.reset(default=Reply(429, [], openai_error("Too many requests")))
    url = stack.proxy()
    headers = sdk_error(url).response.headers if client == "sdk" else raw_post(url).headers
    assert float(headers["retry-after"]) >= 1


@pytest.mark.parametrize("status", [503, 529])
@pytest.mark.parametrize("client", ["sdk", "raw"])
def test_an_overloaded_upstream_is_a_529_with_retry_after(
    stack: Stack, upstream: ScriptedUpstream, status: int, client: str
) -> None:
    upstream.reset(default=Reply(status, [], openai_error("overloaded", "server_error")))
    url = stack.proxy()
    headers: Mapping[str, str]
    if client == "sdk":
        error = sdk_error(url)
        assert isinstance(error, anthropic.OverloadedError)
        headers = error.response.headers
    else:
        response = raw_post(url)
        assert response.status_code == 529
        headers = response.headers
    assert float(headers["retry-after"]) >= 1


def test_an_overloaded_upstreams_own_retry_after_is_passed_on(
    stack: Stack, upstream: ScriptedUpstream
) -> None:
    upstream.reset(default=Reply(503, [("Retry-After", "3")], openai_error("overloaded", "server_error")))
    error = sdk_error(stack.proxy())
    assert error.status_code == 529
    assert error.response.headers["retry-after"] == "3"


def test_a_quota_429_says_do_not_retry_and_still_carries_retry_after(
    stack: Stack, upstream: ScriptedUpstream
) -> None:
    body = openai_error("You exceeded your current quota", "insufficient_quota", "insufficient_quota")
    upstream.reset(default=Reply(429, [], body))
    error = sdk_error(stack.proxy())
    assert error.response.headers["x-should-retry"] == "false"
    assert "retry-after" in error.response.headers


# ----- the safety nets: errors raised without a hint, inner apps answering without one ---------------------


@pytest.mark.parametrize("error", [RateLimitError("limited"), OverloadedError("busy")])
def test_an_error_raised_without_retry_after_is_answered_with_one(error: RateLimitError) -> None:
    status, headers, _ = error_response_parts(error, "req_x")
    assert status in (429, 529)
    assert (b"retry-after", b"1") in headers


async def _through_errors_layer(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> Message:
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    result = await call_asgi(ErrorNormalizationMiddleware(inner), "POST", "/v1/messages")
    return result.messages[0]


@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (429, b"application/json", b'{"type":"error","error":{"type":"rate_limit_error","message":"x"}}'),
        (429, b"text/plain", b"Too Many Requests"),
        (503, b"text/plain", b"Service Unavailable"),
        (529, b"application/json", b'{"detail":"overloaded"}'),
    ],
)
async def test_an_inner_429_or_529_without_retry_after_leaves_the_stack_with_one(
    status: int, content_type: bytes, body: bytes
) -> None:
    start = await _through_errors_layer(status, [(b"content-type", content_type)], body)
    assert start["status"] in (429, 529)
    names = [bytes(k).lower() for k, _ in start["headers"]]
    assert names.count(b"retry-after") == 1


async def test_an_inner_retry_after_is_kept_as_it_is() -> None:
    start = await _through_errors_layer(
        429, [(b"content-type", b"text/plain"), (b"Retry-After", b"17")], b"slow down"
    )
    values = [bytes(v) for k, v in start["headers"] if bytes(k).lower() == b"retry-after"]
    assert values == [b"17"]
