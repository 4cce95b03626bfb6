"""Breaker and limiter decide only about requests that go upstream; the breaker never causes an outage
the upstream did not have. End to end, with the breaker at its defaults.

The anthropic SDK -> the proxy (uvicorn, real socket) -> the mock upstream process. A request the upstream
rejects every time (the `[[fault:500]]` directive: a prompt a model's template or tool parser chokes on)
is retried by its client over and over, while other clients keep working; request-specific failures mixed
with successes; client mistakes while the breaker is open; a dead upstream, which still opens it fast and
is probed back to health within about a second when there is no fallback.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from ccproxy_asgi.app import create_app
from ccproxy_asgi.breaker import CircuitBreaker, State
from tests.support.breaker_app import breaker_app
from tests.support.breaker_support import distinct_message
from tests.support.echo_server import refused_port
from tests.support.mock_process import MockUpstreamProcess, mock_upstream_fixture
from tests.support.proxy_server import serve_app
from tests.support.stack import proxy_settings

mock = mock_upstream_fixture(scope="module")

POISONED: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 32,
    "messages": [{"role": "user", "content": "this prompt breaks the tool parser [[fault:500]]"}],
}


@pytest.fixture
def upstream(mock: MockUpstreamProcess) -> Iterator[MockUpstreamProcess]:
    mock.reset()
    yield mock
    mock.clear_faults()


def serve(mock_url: str, mock: MockUpstreamProcess, **overrides: Any) -> Iterator[tuple[str, CircuitBreaker]]:
    settings = proxy_settings(mock, **overrides).model_copy(update={"upstream_base_url": mock_url})
    app, breaker = breaker_app(settings)
    with serve_app(app) as url:
        yield url, breaker


@pytest.fixture
def proxy(upstream: MockUpstreamProcess) -> Iterator[tuple[str, CircuitBreaker]]:
    """The proxy with the breaker at its defaults in front of the mock."""
    yield from serve(upstream.openai_base_url, upstream)


def client(url: str, **kwargs: Any) -> anthropic.Anthropic:
    kwargs.setdefault("max_retries", 0)
    return anthropic.Anthropic(base_url=url, api_key="client-key", timeout=20, **kwargs)


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def failing(status: int) -> dict[str, Any]:
    """A distinct request the mock answers with `status`, every time it is tried."""
    request = distinct_message()
    request["messages"][0]["content"] += f" [[fault:{status}]]"
    return request


def state_of(breaker: CircuitBreaker) -> State:
    snapshots = asyncio.run(breaker.snapshots())
    return snapshots[0].state if snapshots else State.CLOSED


def test_a_poisoned_request_retried_ten_times_fails_no_other_client(
    upstream: MockUpstreamProcess, proxy: tuple[str, CircuitBreaker]
) -> None:
    url, breaker = proxy
    healthy_failures: list[BaseException] = []
    served = 0
    stop = threading.Event()

    def other_clients() -> None:
        nonlocal served
        with client(url) as sdk:
            while not stop.is_set():
                try:
                    assert sdk.messages.create(**distinct_message()).content
                    served += 1
                except BaseException as exc:  # every failure of a healthy request is the defect
                    healthy_failures.append(exc)
                time.sleep(0.02)

    workers = [threading.Thread(target=other_clients) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        with client(url) as poisoned_client:
            for _ in range(10):  # Claude Code retries a 5xx up to ten times, the same body each time
                with pytest.raises(anthropic.InternalServerError):
                    poisoned_client.messages.create(**POISONED)
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    assert healthy_failures == []
    assert served > 0
    assert state_of(breaker) is State.CLOSED
    (stats,) = breaker.stats().values()
    assert stats.rejected == 0
    (snapshot,) = asyncio.run(breaker.snapshots())
    assert snapshot.window_failures == 1  # nine of the ten tries were the same request again


def test_one_request_in_three_failing_keeps_it_closed(
    upstream: MockUpstreamProcess, proxy: tuple[str, CircuitBreaker]
) -> None:
    url, breaker = proxy
    outcomes: list[int] = []
    with client(url) as sdk:
        for index in range(30):
            # A different request-specific failure in every third request.
            request = failing(500) if index % 3 == 0 else distinct_message()
            try:
                sdk.messages.create(**request)
                outcomes.append(200)
            except anthropic.APIStatusError as exc:
                outcomes.append(exc.status_code)
    assert outcomes.count(500) == 10
    assert outcomes.count(200) == 20
    assert 529 not in outcomes
    assert state_of(breaker) is State.CLOSED


def test_client_mistakes_get_their_own_4xx_while_the_breaker_is_open(
    upstream: MockUpstreamProcess,
) -> None:
    dead = f"http://127.0.0.1:{refused_port()}/v1"
    for url, breaker in serve(dead, upstream, max_request_bytes=4096, breaker_recovery_seconds=30):
        with client(url) as sdk:
            for _ in range(5):  # distinct requests, each refused at the TCP level: the upstream is down
                with pytest.raises(anthropic.APIStatusError) as failed:
                    sdk.messages.create(**distinct_message())
                assert failed.value.status_code == 502
            with pytest.raises(anthropic.OverloadedError) as refused:
                sdk.messages.create(**distinct_message())
            assert "retry-after" in refused.value.response.headers
        assert state_of(breaker) is State.OPEN
        with httpx.Client(base_url=url, timeout=10) as http:
            headers = {"content-type": "application/json", "x-api-key": "client-key"}
            invalid = "invalid_request_error"
            cases: list[tuple[str, bytes, int, str]] = [
                ("/v1/messages", b'{"model": "claude-sonnet-4-6", "max_tokens": ', 400, invalid),
                ("/v1/messages", encode({"model": "m", "messages": []}), 400, invalid),
                ("/v1/messages", encode({"model": "m", "max_tokens": 5}), 400, invalid),
                ("/v1/messages", encode({"max_tokens": 5, "messages": []}), 400, invalid),
                ("/v1/messages", encode({**distinct_message(), "pad": "x" * 8192}), 413, "request_too_large"),
                ("/v1/v1/messages", encode(distinct_message()), 404, "not_found_error"),
            ]
            for path, body, status, error_type in cases:
                response = http.post(path, content=body, headers=headers)
                assert (response.status_code, response.json()["error"]["type"]) == (status, error_type), path
                assert response.json()["request_id"] == response.headers["request-id"]
            counted = http.post("/v1/messages/count_tokens", json=distinct_message(), headers=headers)
            assert counted.status_code == 200
        (stats,) = breaker.stats().values()
        assert stats.rejected == 1  # only the one healthy request above was refused


def test_a_dead_upstream_opens_fast_and_is_probed_back_by_itself(upstream: MockUpstreamProcess) -> None:
    # A probe every 3 s instead of the default 1 s, so a loaded machine cannot let one slip into the
    # requests that must be shed.
    for url, breaker in serve(upstream.openai_base_url, upstream, breaker_open_probe_interval_seconds=3.0):
        with client(url) as sdk:
            assert sdk.messages.create(**distinct_message()).content
            for _ in range(5):  # every request fails: the upstream is overloaded
                with pytest.raises(anthropic.APIStatusError):
                    sdk.messages.create(**failing(503))
            tripped_at = time.monotonic()
            assert state_of(breaker) is State.OPEN
            calls = len(upstream.requests())
            for _ in range(3):  # shed at once, with a wait, and the upstream is not called
                with pytest.raises(anthropic.OverloadedError) as refused:
                    sdk.messages.create(**distinct_message())
                assert 1 <= int(refused.value.response.headers["retry-after"]) <= 3
            assert len(upstream.requests()) == calls
            # The recovery time is 30 s, but with no fallback a probe goes through after the interval:
            # the upstream healed, so the probe succeeds and the breaker closes by itself.
            time.sleep(max(0.0, tripped_at + 3.1 - time.monotonic()))
            assert sdk.messages.create(**distinct_message()).content
            assert state_of(breaker) is State.CLOSED
            assert sdk.messages.create(**distinct_message()).content


def test_a_probe_is_one_upstream_attempt(
    upstream: MockUpstreamProcess, proxy: tuple[str, CircuitBreaker]
) -> None:
    url, breaker = proxy
    with httpx.Client(base_url=url, timeout=10) as http:  # no SDK header: the proxy's own retries apply
        for _ in range(5):
            response = http.post("/v1/messages", json=failing(503))
            assert response.status_code == 529
        assert len(upstream.requests()) > 5  # the proxy retried those
        assert state_of(breaker) is State.OPEN
        time.sleep(1.05)
        calls = len(upstream.requests())
        response = http.post("/v1/messages", json=failing(503))  # the probe, still failing
        assert response.status_code == 529
        assert len(upstream.requests()) == calls + 1


def test_client_mistakes_get_their_own_4xx_while_the_rate_limit_is_spent(
    upstream: MockUpstreamProcess,
) -> None:
    settings = proxy_settings(
        upstream, rate_limit_rpm=1, rate_limit_window_seconds=60, rate_limit_max_wait_seconds=0
    )
    with serve_app(create_app(settings)) as url, httpx.Client(base_url=url, timeout=10) as http:
        assert http.post("/v1/messages", json=distinct_message()).status_code == 200
        spent = http.post("/v1/messages", json=distinct_message())
        assert spent.status_code == 429
        assert int(spent.headers["retry-after"]) > 0
        for body in (b"{not json", encode({"model": "m", "messages": []}), encode({"max_tokens": 5})):
            response = http.post("/v1/messages", content=body, headers={"content-type": "application/json"})
            assert response.status_code == 400, body
            assert response.json()["error"]["type"] == "invalid_request_error"
        assert http.post("/v1/messages", json=distinct_message()).status_code == 429
    assert len(upstream.requests()) == 1


def test_a_run_of_different_request_specific_faults_is_answered_each_as_itself(
    upstream: MockUpstreamProcess, proxy: tuple[str, CircuitBreaker]
) -> None:
    url, breaker = proxy
    faults_and_statuses = [
        ("500", 500),
        ("503", 529),  # an overloaded upstream is a 529 to Anthropic clients
        ("500", 500),
        ("malformed", 502),  # a 200 whose body is not JSON
        ("cut", 502),  # the connection dropped halfway through the body
        ("502", 500),  # a bad gateway in front of the upstream: api_error
        ("500", 500),
    ]
    with client(url) as sdk:
        for fault, status in faults_and_statuses:
            request = distinct_message()
            request["messages"][0]["content"] += f" [[fault:{fault}]]"
            with pytest.raises(anthropic.APIStatusError) as failed:
                sdk.messages.create(**request)
            assert failed.value.status_code == status, fault
            assert "circuit breaker" not in str(failed.value.body)
        for _ in range(3):  # and the next, healthy requests are served
            assert sdk.messages.create(**distinct_message()).content
    assert state_of(breaker) is State.CLOSED
