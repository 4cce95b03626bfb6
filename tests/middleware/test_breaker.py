"""`CircuitBreakerMiddleware` in-process: the gate, the 529 it answers with, and what it records."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from ccproxy_asgi.breaker import BreakerPolicy, CircuitBreaker, Outcome, State
from ccproxy_asgi.context import UpstreamAttempt, get_context
from ccproxy_asgi.middleware.breaker import CircuitBreakerMiddleware, UpstreamHeaderMiddleware
from ccproxy_asgi.testing import ASGIResult, call_asgi
from ccproxy_asgi.types import ASGIApp, Message, Receive, Scope, Send
from tests.support.manual_clock import ManualClock

UPSTREAM = "http://user:secret@upstream.test/v1/"
KEY = "http://upstream.test/v1"
BODY = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": []}).encode()

Behaviour = Callable[[Scope, Receive, Send], Awaitable[None]]


class FakeEndpoint:
    """Plays the endpoint: reads the body, records upstream attempts like the provider, answers."""

    def __init__(self) -> None:
        self.calls = 0
        self.bodies: list[bytes] = []
        self.behaviour: Behaviour = answer(200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            return
        self.calls += 1
        message = await receive()
        self.bodies.append(message.get("body", b""))
        await self.behaviour(scope, receive, send)


def answer(upstream_status: int | None, *, client_status: int | None = None, error: str | None = None) -> Behaviour:
    async def behaviour(scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope)
        if upstream_status is not None or error is not None:
            ctx.attempts.append(UpstreamAttempt(url=KEY, status=upstream_status, error=error))
        status = client_status or (upstream_status if upstream_status and upstream_status != 200 else 200)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return behaviour


def breaker(clock: ManualClock, **policy: Any) -> CircuitBreaker:
    return CircuitBreaker(policy=BreakerPolicy(**policy), clock=clock)


def layer(endpoint: FakeEndpoint, cb: CircuitBreaker, **kwargs: Any) -> CircuitBreakerMiddleware:
    # Most tests here are about shedding load; probing while open (`alone`) has tests of its own.
    kwargs.setdefault("alone", False)
    return CircuitBreakerMiddleware(endpoint, breaker=cb, upstream=UPSTREAM, **kwargs)


_sent = itertools.count()


def distinct_body() -> bytes:
    """A valid Messages body no earlier request had: distinct failures are independent evidence."""
    message = {"role": "user", "content": f"request {next(_sent)}"}
    return json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [message]}).encode()


async def post(app: ASGIApp, path: str = "/v1/messages", body: bytes | None = None) -> ASGIResult:
    body = distinct_body() if body is None else body
    return await call_asgi(app, "POST", path, body=body, headers={"content-type": "application/json"})


async def test_opens_after_upstream_failures_and_answers_529_without_calling_inside() -> None:
    clock, endpoint = ManualClock(), FakeEndpoint()
    cb = breaker(clock, failure_threshold=3, recovery_seconds=12.5)
    app = layer(endpoint, cb)
    endpoint.behaviour = answer(503)
    for _ in range(3):
        assert (await post(app)).status == 503
    clock.advance(2)
    response = await post(app)
    assert endpoint.calls == 3
    assert response.status == 529
    assert response.headers["retry-after"] == "11"  # 10.5 s to the next probe, rounded up
    assert response.headers["retry-after-ms"] == "10500"
    assert response.headers["request-id"].startswith("req_")
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "overloaded_error"
    assert body["request_id"] == response.headers["request-id"]
    assert "secret" not in response.text


async def test_only_messages_posts_are_gated() -> None:
    endpoint = FakeEndpoint()
    cb = breaker(ManualClock(), failure_threshold=1)
    app = layer(endpoint, cb)
    endpoint.behaviour = answer(503)
    await post(app)
    assert (await post(app)).status == 529
    endpoint.behaviour = answer(None)
    assert (await post(app, "/v1/messages/count_tokens")).status == 200
    assert (await call_asgi(app, "GET", "/v1/models")).status == 200
    assert (await call_asgi(app, "GET", "/v1/messages")).status == 200  # the endpoint answers 405 itself
    sent: list[Message] = []
    messages = iter([{"type": "lifespan.startup"}])

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"}]
    assert endpoint.calls == 4  # 1 failing message, count_tokens and two GETs while open


async def test_client_errors_and_local_rejections_never_open_it() -> None:
    endpoint = FakeEndpoint()
    cb = breaker(ManualClock(), failure_threshold=2)
    app = layer(endpoint, cb)
    for behaviour in (answer(400), answer(404), answer(422), answer(429), answer(None, client_status=429),
                      answer(None, client_status=400)):
        endpoint.behaviour = behaviour
        for _ in range(3):
            await post(app)
    snap = await cb.snapshot(KEY)
    assert (snap.state, snap.consecutive_failures) == (State.CLOSED, 0)
    assert cb.stats()[KEY].neutral == 18


async def test_timeouts_connection_errors_and_silences_after_the_200_count() -> None:
    endpoint = FakeEndpoint()
    cb = breaker(ManualClock(), failure_threshold=3)
    app = layer(endpoint, cb)
    for behaviour in (
        answer(None, error="UpstreamTimeoutError", client_status=504),
        answer(None, error="UpstreamError", client_status=502),
        answer(200, client_status=504),  # 200, then the upstream went silent: the endpoint answered 504
    ):
        endpoint.behaviour = behaviour
        await post(app)
    assert (await cb.snapshot(KEY)).state is State.OPEN


async def test_request_errors_count_in_the_window_but_never_in_a_run() -> None:
    endpoint = FakeEndpoint()
    cb = breaker(ManualClock(), failure_threshold=2, min_requests=6, failure_ratio=0.5)
    app = layer(endpoint, cb)
    request_errors = (
        answer(500),  # the upstream answered 500: maybe this request's own doing
        answer(200, client_status=502),  # 200, then the body was cut or was not JSON
    )
    for behaviour in request_errors * 2:
        endpoint.behaviour = behaviour
        await post(app)
    snap = await cb.snapshot(KEY)
    assert (snap.state, snap.consecutive_failures, snap.window_failures) == (State.CLOSED, 0, 4)
    endpoint.behaviour = answer(200)
    await post(app)
    endpoint.behaviour = answer(500)
    await post(app)  # five of six failed: the ratio decides
    assert (await cb.snapshot(KEY)).state is State.OPEN
    assert cb.stats()[KEY].request_errors == 5


async def test_a_stream_the_upstream_left_silent_counts_but_a_finished_one_resets() -> None:
    endpoint = FakeEndpoint()
    cb = breaker(ManualClock(), failure_threshold=2)
    app = layer(endpoint, cb)

    def stream(cut: bool) -> Behaviour:
        async def behaviour(scope: Scope, receive: Receive, send: Send) -> None:
            ctx = get_context(scope)
            ctx.attempts.append(UpstreamAttempt(url=KEY, status=200))
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"event: message_start\n\n", "more_body": True})
            if cut:  # the upstream went silent mid-stream: the idle read timeout ended it
                ctx.stream_error = "timeout_error"
            await send({"type": "http.response.body", "body": b""})

        return behaviour

    endpoint.behaviour = stream(cut=True)
    await post(app)
    assert (await cb.snapshot(KEY)).consecutive_failures == 1
    endpoint.behaviour = stream(cut=False)
    await post(app)
    assert (await cb.snapshot(KEY)).consecutive_failures == 0
    endpoint.behaviour = stream(cut=True)
    await post(app)
    await post(app)
    assert (await cb.snapshot(KEY)).state is State.OPEN


async def test_a_probe_whose_client_left_gives_its_slot_back() -> None:
    clock, endpoint = ManualClock(), FakeEndpoint()
    cb = breaker(clock, failure_threshold=1, recovery_seconds=1)
    app = layer(endpoint, cb)
    endpoint.behaviour = answer(503)
    await post(app)
    clock.advance(1)
    started = asyncio.Event()

    async def abandoned(scope: Scope, receive: Receive, send: Send) -> None:
        # The provider's attempt was cancelled by the disconnect: no status, no error, no response.
        get_context(scope).attempts.append(UpstreamAttempt(url=KEY))
        started.set()
        await receive()  # the disconnect

    endpoint.behaviour = abandoned
    disconnect = asyncio.Event()

    async def leave() -> Message:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    task = asyncio.create_task(call_asgi(app, "POST", "/v1/messages", body=BODY, after_body=leave))
    await started.wait()
    assert not (await cb.acquire(KEY)).allowed  # the probe slot is taken while it runs
    disconnect.set()
    assert (await task).messages == [], "nothing may be sent to a client that left"
    snap = await cb.snapshot(KEY)
    assert (snap.state, snap.probes_in_flight) == (State.HALF_OPEN, 0)
    endpoint.behaviour = answer(200)
    assert (await post(app)).status == 200
    assert (await cb.snapshot(KEY)).state is State.CLOSED


async def test_an_exception_inside_still_reports_the_outcome() -> None:
    endpoint = FakeEndpoint()
    cb = breaker(ManualClock(), failure_threshold=1)
    app = layer(endpoint, cb)

    async def crash(scope: Scope, receive: Receive, send: Send) -> None:
        get_context(scope).attempts.append(UpstreamAttempt(url=KEY, status=502))
        raise RuntimeError("boom")

    endpoint.behaviour = crash
    with contextlib.suppress(RuntimeError):
        await post(app)
    assert (await cb.snapshot(KEY)).state is State.OPEN
    assert cb.stats()[KEY].failures == 1


async def test_names_the_upstream_and_records_the_key() -> None:
    endpoint = FakeEndpoint()
    cb = breaker(ManualClock())
    seen: list[Any] = []

    async def behaviour(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(get_context(scope).breaker_key)
        await answer(200)(scope, receive, send)

    endpoint.behaviour = behaviour
    response = await post(layer(endpoint, cb, name="primary"))
    assert response.headers["x-ccproxy-upstream"] == "primary"
    assert seen == [KEY]
    response = await post(layer(endpoint, cb))
    assert "x-ccproxy-upstream" not in response.headers


async def test_upstream_model_keys_give_each_model_its_own_breaker() -> None:
    endpoint = FakeEndpoint()
    cb = breaker(ManualClock(), failure_threshold=1)
    app = layer(endpoint, cb, key_mode="upstream_model", resolve_model=lambda m: "big" if "sonnet" in m else m)
    endpoint.behaviour = answer(503)
    await post(app)
    assert (await cb.snapshot(KEY + "|big")).state is State.OPEN
    assert (await post(app)).status == 529
    endpoint.behaviour = answer(200)
    other = json.dumps({"model": "gpt-4o-mini", "max_tokens": 5, "messages": []}).encode()
    assert (await post(app, body=other)).status == 200
    assert endpoint.bodies[-1] == other  # the body read for the key is replayed to the inner app
    assert (await post(app, body=b"{not json")).status == 200  # the endpoint's 400, not the gate's
    assert endpoint.bodies[-1] == b"{not json"


async def test_upstream_model_mode_answers_413_for_an_oversized_body() -> None:
    endpoint = FakeEndpoint()
    app = layer(endpoint, breaker(ManualClock()), key_mode="upstream_model", max_request_bytes=10)
    response = await post(app)
    assert response.status == 413
    assert response.json()["error"]["type"] == "request_too_large"
    assert endpoint.calls == 0


async def test_drops_into_starlette_middleware_and_mounts() -> None:
    endpoint = FakeEndpoint()
    cb = breaker(ManualClock(), failure_threshold=1)
    endpoint.behaviour = answer(503)
    app = Starlette(
        routes=[
            Mount(
                "/anthropic",
                app=endpoint,
                middleware=[Middleware(CircuitBreakerMiddleware, breaker=cb, upstream=UPSTREAM, name="p")],
            )
        ],
    )
    assert (await post(app, "/anthropic/v1/messages")).status == 503
    response = await post(app, "/anthropic/v1/messages")
    assert response.status == 529
    assert response.json()["error"]["type"] == "overloaded_error"


async def test_upstream_header_middleware_names_whoever_served() -> None:
    endpoint = FakeEndpoint()

    async def behaviour(scope: Scope, receive: Receive, send: Send) -> None:
        get_context(scope).upstream_name = "secondary"
        await answer(200)(scope, receive, send)

    endpoint.behaviour = behaviour
    response = await post(UpstreamHeaderMiddleware(endpoint))
    assert response.headers["x-ccproxy-upstream"] == "secondary"


def test_outcome_of_uses_the_policy() -> None:
    cb = CircuitBreaker(policy=BreakerPolicy(count_429=True))
    assert cb.outcome_of([UpstreamAttempt(url=KEY, status=429)]) is Outcome.FAILURE


async def test_a_body_that_never_finishes_arriving_is_a_408_on_arrival() -> None:
    endpoint = FakeEndpoint()
    app = layer(endpoint, breaker(ManualClock()), body_read_timeout=0.1)
    sent: list[Message] = []
    first = True

    async def receive() -> Message:
        nonlocal first
        if first:  # one byte of the body, then nothing more: a slow-loris client
            first = False
            return {"type": "http.request", "body": b"{", "more_body": True}
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/messages", "headers": [], "query_string": b""}
    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["error"]["type"] == "timeout_error"
    assert endpoint.calls == 0


async def test_on_arrival_a_body_the_endpoint_refuses_passes_the_open_breaker() -> None:
    # The same readers as the endpoint decide: max_tokens 0 is a client error (400), never a 529.
    endpoint = FakeEndpoint()
    cb = breaker(ManualClock(), failure_threshold=1)
    app = layer(endpoint, cb)
    endpoint.behaviour = answer(503)
    await post(app)
    assert (await post(app)).status == 529  # open
    endpoint.behaviour = answer(None, client_status=400)
    refused = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 0, "messages": []}).encode()
    assert (await post(app, body=refused)).status == 400
    assert endpoint.bodies[-1] == refused
