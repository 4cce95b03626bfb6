"""TokenRateLimitMiddleware as an ASGI layer, in-process: routing, body sharing, headers on the one
response start, its own Anthropic 429/413 answers, reconciliation, learning, disconnects, key modes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ccproxy_asgi.app import mount_rate_limit
from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.context import RequestContext, UpstreamAttempt, Usage, get_context
from ccproxy_asgi.headers import Headers
from ccproxy_asgi.middleware.ratelimit import TokenRateLimitMiddleware
from ccproxy_asgi.ratelimit import Budget, Cost, CostEstimator, MemoryStore, RateLimiter
from ccproxy_asgi.testing import call_asgi
from ccproxy_asgi.translate.models import ModelMapper
from ccproxy_asgi.types import ASGIApp, Message, Receive, Scope, Send
from tests.support.manual_clock import ManualClock

BODY = {"model": "claude-sonnet-4", "max_tokens": 100, "messages": [{"role": "user", "content": "hello"}]}


class FixedCounter:
    """Prices every prompt at `tokens`, remembering the models it was asked for."""

    def __init__(self, tokens: int = 50) -> None:
        self.tokens = tokens
        self.models: list[str] = []

    def count_request(self, body: Any, *, model: str) -> int:
        self.models.append(model)
        return self.tokens


class InnerApp:
    """Stands in for the endpoint: reads the body, optionally records attempts and usage, answers."""

    def __init__(
        self,
        *,
        status: int = 200,
        chunks: tuple[bytes, ...] = (b'{"ok":', b"true}"),
        usage: Usage | None = None,
        attempts: list[UpstreamAttempt] | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.status = status
        self.chunks = chunks
        self.usage = usage
        self.attempts = attempts or []
        self.headers = headers or []
        self.calls: list[tuple[bytes, RequestContext]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        ctx = get_context(scope)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append((body, ctx))
        ctx.attempts.extend(self.attempts)
        await send({"type": "http.response.start", "status": self.status, "headers": list(self.headers)})
        for i, chunk in enumerate(self.chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(self.chunks) - 1})
        ctx.usage = self.usage


def limiter_for(budget: Budget, **kwargs: Any) -> tuple[RateLimiter, MemoryStore, ManualClock]:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    kwargs.setdefault("window_margin", 0.0)
    return RateLimiter(budget=budget, store=store, clock=clock, **kwargs), store, clock


def layer(app: Any, limiter: RateLimiter, **kwargs: Any) -> TokenRateLimitMiddleware:
    kwargs.setdefault("estimator", CostEstimator(counter=FixedCounter()))
    return TokenRateLimitMiddleware(app, limiter=limiter, **kwargs)


def http_scope(
    path: str = "/v1/messages", method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None
) -> Scope:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"beta=true",
        "headers": headers or [(b"content-type", b"application/json"), (b"x-api-key", b"client-key-1")],
    }


async def call(
    app: ASGIApp,
    scope: Scope,
    body: bytes | None = None,
    *,
    after_body: Callable[[], Awaitable[Message]] | None = None,
) -> list[Message]:
    """`BODY` (or `body`) through `app` in two halves; every message the app sends."""
    raw = json.dumps(BODY).encode() if body is None else body
    halves = (raw[: len(raw) // 2], raw[len(raw) // 2 :])
    return (await call_asgi(app, body=halves, scope=scope, after_body=after_body)).messages


def start_of(sent: list[Message]) -> tuple[int, dict[str, str]]:
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, "exactly one response start"
    return starts[0]["status"], {k.decode(): v.decode() for k, v in starts[0]["headers"]}


def body_of(sent: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def test_admitted_request_reaches_the_app_with_the_body_parsed_once() -> None:
    limiter, _, _ = limiter_for(Budget(requests=10, tokens=10_000, window=60))
    inner = InnerApp(usage=Usage(input_tokens=40, output_tokens=10))
    counter = FixedCounter(50)
    app = layer(
        inner, limiter, estimator=CostEstimator(counter=counter), models=ModelMapper(big_model="gpt-4o")
    )
    sent = await call(app, http_scope())
    body, ctx = inner.calls[0]
    assert json.loads(body) == BODY
    assert ctx.body == body
    assert ctx.json == BODY  # parsed once, shared with the endpoint
    assert ctx.requested_model == "claude-sonnet-4"
    assert ctx.upstream_model == "gpt-4o"
    assert counter.models == ["gpt-4o"]  # counted with the upstream model's encoding
    assert ctx.estimated_input_tokens == 50
    status, headers = start_of(sent)
    assert status == 200
    assert headers["anthropic-ratelimit-requests-limit"] == "10"
    assert headers["anthropic-ratelimit-requests-remaining"] == "9"
    assert headers["anthropic-ratelimit-tokens-limit"] == "10000"
    assert headers["anthropic-ratelimit-tokens-remaining"] == str(10_000 - 150)
    assert headers["anthropic-ratelimit-tokens-reset"].endswith("Z")
    assert body_of(sent) == b'{"ok":true}'
    assert [m.get("more_body", False) for m in sent if m["type"] == "http.response.body"] == [True, False]
    snap = limiter.snapshot()
    assert snap.admitted == 1
    assert snap.settled == 1
    assert snap.reconciled_token_delta == 50 - 150  # reserved 50 + 100, used 40 + 10


async def test_streamed_usage_reconciles_the_window() -> None:
    limiter, store, _ = limiter_for(Budget(tokens=1000, window=60))
    chunks = tuple(f"event: x\ndata: {i}\n\n".encode() for i in range(5))
    inner = InnerApp(chunks=chunks, usage=Usage(input_tokens=45, output_tokens=5, cache_read_input_tokens=5))
    await call(layer(inner, limiter), http_scope())
    view = store.decide("global", Cost(0, 0), Budget(tokens=1000, window=60), reserve=False).view
    assert view.remaining_tokens == 1000 - 55


async def test_other_routes_and_lifespan_pass_straight_through() -> None:
    limiter, _, _ = limiter_for(Budget(requests=1, window=60))
    inner = InnerApp()
    app = layer(inner, limiter)
    for path, method in (
        ("/v1/messages/count_tokens", "POST"),
        ("/v1/models", "GET"),
        ("/v1/messages", "GET"),
    ):
        sent = await call(app, http_scope(path, method))
        assert start_of(sent)[1].get("anthropic-ratelimit-requests-limit") is None
    assert limiter.snapshot().checked == 0
    assert len(inner.calls) == 3
    # Lifespan reaches the app, and shutdown closes the limiter's store.
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    lifespan_sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        lifespan_sent.append(message)

    await limiter.acquire("x", Cost(1, 1))
    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in lifespan_sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert len(limiter.store) == 0  # type: ignore[arg-type]


async def test_mounted_under_a_prefix() -> None:
    limiter, _, _ = limiter_for(Budget(requests=5, window=60))
    inner = InnerApp()
    sent = await call(layer(inner, limiter), {**http_scope("/proxy/v1/messages"), "root_path": "/proxy"})
    assert start_of(sent)[1]["anthropic-ratelimit-requests-remaining"] == "4"


async def test_answers_an_anthropic_429_by_itself() -> None:
    limiter, _, _ = limiter_for(Budget(requests=1, window=60), max_wait=0)
    inner = InnerApp()
    app = layer(inner, limiter)
    await call(app, http_scope())
    scope = http_scope()
    scope["ccproxy"] = RequestContext(request_id="req_fromcorrelationlayer")
    sent = await call(app, scope)
    status, headers = start_of(sent)
    assert status == 429
    assert headers["request-id"] == "req_fromcorrelationlayer"
    assert headers["retry-after"] == "60"
    assert headers["content-type"] == "application/json"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    payload = json.loads(body_of(sent))
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "rate_limit_error"
    assert payload["request_id"] == "req_fromcorrelationlayer"
    assert len(inner.calls) == 1  # the refused request never reached the app


async def test_never_fits_is_a_413_not_a_queue() -> None:
    limiter, _, _ = limiter_for(Budget(tokens=100, window=60))
    sent = await call(layer(InnerApp(), limiter), http_scope())  # 50 + 100 > 100
    status, headers = start_of(sent)
    assert status == 413
    assert headers["x-should-retry"] == "false"
    payload = json.loads(body_of(sent))
    assert payload["error"]["type"] == "request_too_large"
    assert "max_tokens" in payload["error"]["message"]
    assert payload["request_id"].startswith("req_")


async def test_invalid_json_is_answered_here_and_never_forwarded() -> None:
    limiter, _, _ = limiter_for(Budget(requests=5, window=60))
    inner = InnerApp()
    sent = await call(layer(inner, limiter), http_scope(), body=b"{not json")
    assert start_of(sent)[0] == 400
    assert json.loads(body_of(sent))["error"]["type"] == "invalid_request_error"
    assert inner.calls == []


async def test_disconnect_while_queued_leaves_the_line_and_takes_nothing() -> None:
    limiter, store, clock = limiter_for(Budget(requests=1, window=60), max_wait=30)
    inner = InnerApp()
    app = layer(inner, limiter)
    in_flight = await limiter.acquire("global", Cost(1, 1))  # unsettled: the line may move soon
    gone = asyncio.Event()

    async def disconnect() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    queued = asyncio.ensure_future(call(app, http_scope(), after_body=disconnect))
    await clock.settle()
    assert limiter.queued("global") == 1
    gone.set()
    sent = await asyncio.wait_for(queued, 5)
    assert sent == []  # nobody to answer
    assert limiter.queued() == 0
    assert inner.calls == []
    snap = limiter.snapshot()
    assert snap.left_queue_cancelled == 1
    assert snap.admitted == 1
    assert in_flight.ticket is not None
    view = store.decide("global", Cost(0, 0), Budget(requests=5, window=60), reserve=False).view
    assert view.remaining_requests == 4  # only the first request is in the window


async def test_queued_request_is_served_when_budget_frees() -> None:
    limiter, _, clock = limiter_for(Budget(requests=1, window=10), max_wait=30)
    inner = InnerApp()
    app = layer(inner, limiter)
    await limiter.acquire("global", Cost(1, 1))  # in flight
    waiting = asyncio.ensure_future(call(app, http_scope()))
    await clock.run_for(9.0)
    assert not waiting.done()
    await clock.run_for(1.1)
    sent = await asyncio.wait_for(waiting, 5)
    assert start_of(sent)[0] == 200
    assert limiter.snapshot().admitted_after_wait == 1


async def test_learns_from_every_upstream_attempt_when_the_response_starts() -> None:
    limiter, _, _ = limiter_for(Budget(requests=100, window=60), max_wait=0)
    attempts = [
        UpstreamAttempt(url="u", status=429, headers=Headers({"Retry-After": "30"})),
        UpstreamAttempt(url="u", status=200, headers=Headers({"x-ratelimit-remaining-requests": "50"})),
    ]
    inner = InnerApp(attempts=attempts, usage=Usage(10, 10))
    await call(layer(inner, limiter), http_scope())
    snap = limiter.snapshot()
    assert snap.upstream_rate_limited == 1
    assert snap.limit_decreases == 1
    sent = await call(layer(InnerApp(), limiter), http_scope())
    status, headers = start_of(sent)
    assert status == 429  # paused for the upstream's retry-after
    assert 29 <= int(headers["retry-after"]) <= 30


async def test_inner_429_keeps_the_upstream_figures() -> None:
    limiter, _, _ = limiter_for(Budget(requests=100, window=60))
    upstream_headers = [(b"anthropic-ratelimit-requests-remaining", b"0"), (b"retry-after", b"7")]
    inner = InnerApp(status=429, headers=upstream_headers)
    sent = await call(layer(inner, limiter), http_scope())
    status, headers = start_of(sent)
    assert status == 429
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert "anthropic-ratelimit-requests-limit" not in headers
    # No attempts recorded (a foreign app): the response itself is learned from.
    assert limiter.snapshot().upstream_rate_limited == 1


async def test_client_key_mode_gives_each_client_its_budget() -> None:
    limiter, store, _ = limiter_for(Budget(requests=1, window=60), max_wait=0)
    app = layer(InnerApp(), limiter, key="client")

    def scope_for(key: bytes, bearer: bool = False) -> Scope:
        name, value = (b"authorization", b"Bearer " + key) if bearer else (b"x-api-key", key)
        return http_scope(headers=[(name, value)])

    assert start_of(await call(app, scope_for(b"alice")))[0] == 200
    assert start_of(await call(app, scope_for(b"bob", bearer=True)))[0] == 200
    assert start_of(await call(app, scope_for(b"alice", bearer=True)))[0] == 429
    keys = list(store._keys)
    assert all(key.startswith("client:key_") for key in keys)
    assert not any("alice" in key or "bob" in key for key in keys)  # never the secret itself


async def test_failing_app_still_settles() -> None:
    limiter, _, _ = limiter_for(Budget(requests=5, window=60))

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await call(layer(broken, limiter), http_scope())
    assert limiter.snapshot().settled == 1


async def test_mount_rate_limit_from_settings() -> None:
    inner = InnerApp()
    assert mount_rate_limit(inner, Settings(_env_file=None)) is inner  # type: ignore[call-arg]
    settings = Settings(
        _env_file=None, rate_limit_rpm=3, rate_limit_key="model", rate_limit_budgets={"gpt-4o": {"rpm": 1}}
    )  # type: ignore[call-arg]
    app = mount_rate_limit(inner, settings, counter=FixedCounter())
    assert isinstance(app, TokenRateLimitMiddleware)
    assert app.limiter.budget_for("model:gpt-4o") == Budget(requests=1, window=60)
    assert start_of(await call(app, http_scope()))[0] == 200


async def test_drops_into_starlette_middleware() -> None:
    limiter, _, _ = limiter_for(Budget(requests=1, window=60), max_wait=0)

    async def messages(request: Request) -> JSONResponse:
        ctx = get_context(request.scope)
        assert ctx.json is not None
        return JSONResponse({"model": ctx.json["model"]})

    app = Starlette(
        routes=[Route("/v1/messages", messages, methods=["POST"])],
        middleware=[
            Middleware(
                TokenRateLimitMiddleware, limiter=limiter, estimator=CostEstimator(counter=FixedCounter())
            )
        ],
    )
    ok = await call_asgi(app, "POST", "/v1/messages", json=BODY)
    refused = await call_asgi(app, "POST", "/v1/messages", json=BODY)
    assert ok.status == 200
    assert ok.json() == {"model": "claude-sonnet-4"}
    assert ok.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert refused.status == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.headers["request-id"] == refused.json()["request_id"]
