"""The breaker end to end: the anthropic SDK -> the proxy (uvicorn, real socket) -> the mock upstream process.

The upstream fails, the breaker opens after the configured count, clients get 529 `overloaded_error` with
`retry-after` while the upstream is not called at all; the upstream heals, a probe goes through, the
breaker closes and traffic resumes. Client mistakes never open it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from ccproxy_asgi.breaker import CircuitBreaker, State
from tests.support.breaker_app import breaker_app
from tests.support.breaker_support import distinct_message
from tests.support.mock_process import MockUpstreamProcess, mock_upstream_fixture
from tests.support.proxy_server import serve_app
from tests.support.stack import proxy_settings

mock = mock_upstream_fixture(scope="module")



@pytest.fixture
def upstream(mock: MockUpstreamProcess) -> Iterator[MockUpstreamProcess]:
    mock.reset()
    yield mock
    mock.clear_faults()


def proxy(mock: MockUpstreamProcess, **overrides: Any) -> Iterator[tuple[anthropic.Anthropic, CircuitBreaker]]:
    overrides.setdefault("retry_max_attempts", 1)  # one upstream call per request keeps the counts plain
    app, breaker = breaker_app(proxy_settings(mock, **overrides))
    with serve_app(app) as url:
        client = anthropic.Anthropic(base_url=url, api_key="client-key", max_retries=0, timeout=20)
        try:
            yield client, breaker
        finally:
            client.close()


@pytest.fixture
def tripping(upstream: MockUpstreamProcess) -> Iterator[tuple[anthropic.Anthropic, CircuitBreaker]]:
    yield from proxy(upstream, breaker_failure_threshold=3, breaker_recovery_seconds=0.6)


def test_opens_answers_529_without_calling_upstream_then_heals(
    upstream: MockUpstreamProcess, tripping: tuple[anthropic.Anthropic, CircuitBreaker]
) -> None:
    client, breaker = tripping
    assert client.messages.create(**distinct_message()).content  # healthy to begin with
    upstream.queue_faults("503", "529", "503")
    for _ in range(3):
        with pytest.raises(anthropic.APIStatusError) as failed:
            client.messages.create(**distinct_message())
        assert failed.value.status_code == 529  # 503 -> 529, docs/protocol.md#errors-upstream-to-client
    assert len(upstream.requests()) == 4
    opened_at = time.monotonic()

    # Open: an honest 529 at once, whether streamed or not, and the upstream is not called.
    for stream in (False, True):
        with pytest.raises(anthropic.OverloadedError) as refused:
            client.messages.create(**distinct_message(), stream=stream)
        response = refused.value.response
        assert response.status_code == 529
        assert response.headers["retry-after"] == "1"  # 0.6 s to the next probe, rounded up
        assert 0 < int(response.headers["retry-after-ms"]) <= 600
        assert refused.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
        assert response.headers["request-id"].startswith("req_")
    assert len(upstream.requests()) == 4

    # After the recovery time the next request is a probe; the upstream is still down: open again.
    time.sleep(max(0.0, opened_at + 0.65 - time.monotonic()))
    upstream.queue_faults("503")
    with pytest.raises(anthropic.APIStatusError) as still_down:
        client.messages.create(**distinct_message())
    assert still_down.value.status_code == 529
    reopened_at = time.monotonic()
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(**distinct_message())
    assert len(upstream.requests()) == 5

    # The upstream healed: the probe succeeds, the breaker closes, traffic resumes (streams too).
    time.sleep(max(0.0, reopened_at + 0.65 - time.monotonic()))
    assert client.messages.create(**distinct_message()).stop_reason == "end_turn"
    for _ in range(3):
        assert client.messages.create(**distinct_message()).content
    with client.messages.stream(**distinct_message()) as stream_:
        assert stream_.get_final_message().content
    assert len(upstream.requests()) == 10

    stats = breaker.stats()
    (key,) = stats
    assert key == upstream.openai_base_url
    assert stats[key].transitions == {
        "closed->open": 1,
        "open->half_open": 2,
        "half_open->open": 1,
        "half_open->closed": 1,
    }
    assert (stats[key].rejected, stats[key].failures) == (3, 4)


def test_client_mistakes_and_429s_never_open_it(
    upstream: MockUpstreamProcess, tripping: tuple[anthropic.Anthropic, CircuitBreaker]
) -> None:
    client, breaker = tripping
    for _ in range(4):  # rejected by the proxy itself: no upstream call
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(model="claude-sonnet-4-6", max_tokens=32, messages=[])
    upstream.queue_faults(*["400"] * 4, *["context_length"] * 4, *["429:retry_after=0"] * 4)
    for expected in [anthropic.BadRequestError] * 8 + [anthropic.RateLimitError] * 4:
        with pytest.raises(expected):
            client.messages.create(**distinct_message())
    assert len(upstream.requests()) == 12
    assert client.messages.create(**distinct_message()).content
    assert len(upstream.requests()) == 13
    (stats,) = breaker.stats().values()
    assert (stats.failures, stats.rejected, stats.transitions) == (0, 0, {})


def test_streams_cut_by_the_upstream_are_request_errors_and_timeouts_open_it(
    upstream: MockUpstreamProcess,
) -> None:
    for client, breaker in proxy(
        upstream,
        breaker_failure_threshold=3,
        breaker_recovery_seconds=30,
        breaker_open_probe_interval_seconds=5,
        http_read_timeout_seconds=0.3,
    ):
        upstream.queue_faults({"fault": "cut", "after_chunks": 2}, {"fault": "cut", "after_chunks": 1})
        for _ in range(2):
            with pytest.raises(anthropic.APIStatusError), client.messages.stream(**distinct_message()) as stream:
                stream.get_final_message()  # an `event: error` after the 200
        (counts,) = breaker.stats().values()
        assert (counts.request_errors, counts.failures) == (2, 0)  # these responses broke, the upstream is up
        upstream.queue_faults("hang", "hang", "hang")
        for _ in range(3):  # an upstream that accepts and stays silent: three read timeouts
            with pytest.raises(anthropic.APIStatusError) as timed_out:
                client.messages.create(**distinct_message())
            assert timed_out.value.status_code == 504
        with pytest.raises(anthropic.OverloadedError) as refused:
            client.messages.create(**distinct_message())
        # Open for 30 s; with no fallback a probe may go in 5 s (the interval here), the wait the client hears.
        assert 1 <= int(refused.value.response.headers["retry-after"]) <= 5
        (snapshot,) = asyncio.run(breaker.snapshots())
        assert snapshot.state is State.OPEN
        assert 28 <= snapshot.retry_after <= 30
        assert len(upstream.requests()) == 5


def test_connection_errors_open_it() -> None:
    from tests.support.echo_server import refused_port

    class Nowhere:
        openai_base_url = f"http://127.0.0.1:{refused_port()}/v1"

    for client, _ in proxy(Nowhere(), breaker_failure_threshold=2):  # type: ignore[arg-type]
        for _ in range(2):
            with pytest.raises(anthropic.APIStatusError) as failed:
                client.messages.create(**distinct_message())
            assert failed.value.status_code == 502
        with pytest.raises(anthropic.OverloadedError):
            client.messages.create(**distinct_message())
