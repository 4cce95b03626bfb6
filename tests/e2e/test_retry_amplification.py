"""The proxy's retries do not multiply its client's: a client that announces it retries by itself
(`x-stainless-retry-count`, sent by the official SDKs and Claude Code) gets a retryable status back at
once, with its `retry-after`, and makes the only retries; a client that does not announce it still gets
the proxy's retries. Counted at the upstream, per client request."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import httpx2
import pytest

from tests.e2e.test_retry_after import (
    BODY,
    CLIENT_KEY,
    Reply,
    ScriptedUpstream,
    Stack,
    openai_error,
    raw_post,
    sdk,
)
from tests.e2e.test_retry_after import stack as stack

CLIENTS = ["aiohttp", "httpx"]


@pytest.fixture
def upstream(stack: Stack) -> Iterator[ScriptedUpstream]:
    stack.upstream.reset()
    yield stack.upstream
    stack.upstream.reset()


class CountingTransport(httpx2.HTTPTransport):
    """Counts the HTTP requests the SDK sends to the proxy (its first attempt and its retries)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str | None] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self.sent.append(request.headers.get("x-stainless-retry-count"))
        return super().handle_request(request)


@pytest.mark.parametrize("http_client", CLIENTS)
def test_a_retrying_sdk_against_a_persistent_429_costs_one_upstream_attempt_per_request(
    stack: Stack, upstream: ScriptedUpstream, http_client: str
) -> None:
    upstream.reset(default=Reply(429, [("Retry-After", "1")], openai_error("Rate limit reached")))
    url = stack.proxy(http_client=http_client)
    transport = CountingTransport()
    started = time.monotonic()
    with (
        anthropic.Anthropic(
            base_url=url,
            api_key=CLIENT_KEY,
            max_retries=2,
            timeout=30.0,
            http_client=httpx2.Client(transport=transport),
        ) as client,
        pytest.raises(anthropic.RateLimitError) as caught,
    ):
        client.messages.create(**BODY)
    elapsed = time.monotonic() - started
    assert transport.sent == ["0", "1", "2"], "the SDK made its three attempts"
    assert len(upstream.requests()) == 3, "one upstream attempt per client request"
    assert caught.value.response.headers["retry-after"] == "1"
    # The SDK waited the upstream's 1 s twice; the proxy waited nothing on top.
    assert 1.9 <= elapsed < 4.5, elapsed


@pytest.mark.parametrize("status", [500, 503, 529])
def test_a_retrying_sdk_against_a_persistent_5xx_costs_one_upstream_attempt_per_request(
    stack: Stack, upstream: ScriptedUpstream, status: int
) -> None:
    upstream.reset(default=Reply(status, [("Retry-After", "0")], openai_error("broken", "server_error")))
    transport = CountingTransport()
    with (
        anthropic.Anthropic(
            base_url=stack.proxy(),
            api_key=CLIENT_KEY,
            max_retries=2,
            timeout=30.0,
            http_client=httpx2.Client(transport=transport),
        ) as client,
        pytest.raises(anthropic.APIStatusError),
    ):
        client.messages.create(**BODY)
    assert len(transport.sent) == 3
    assert len(upstream.requests()) == 3


def test_one_announcing_request_is_answered_at_once_with_the_upstreams_hint(
    stack: Stack, upstream: ScriptedUpstream
) -> None:
    upstream.reset(Reply(429, [("Retry-After", "1")], openai_error("Rate limit reached")))
    started = time.monotonic()
    with sdk(stack.proxy()) as client, pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(**BODY)
    assert time.monotonic() - started < 0.9, "the proxy did not wait the retry-after itself"
    assert len(upstream.requests()) == 1
    assert caught.value.response.headers["retry-after"] == "1"


def test_operators_can_have_the_proxy_retry_for_announcing_clients_too(
    stack: Stack, upstream: ScriptedUpstream
) -> None:
    upstream.reset(Reply(503, [("Retry-After", "0")], openai_error("overloaded", "server_error")))
    with sdk(stack.proxy(retry_defer_to_retrying_clients=False)) as client:
        assert client.messages.create(**BODY).content  # the 503 was retried here, hidden from the SDK
    assert len(upstream.requests()) == 2


@pytest.mark.parametrize("http_client", CLIENTS)
def test_a_client_that_does_not_retry_gets_the_proxys_retries(
    stack: Stack, upstream: ScriptedUpstream, http_client: str
) -> None:
    limited = Reply(429, [("Retry-After-Ms", "200")], openai_error("Rate limit reached"))
    upstream.reset(limited, limited)
    response = raw_post(stack.proxy(http_client=http_client, retry_max_attempts=3))
    assert response.status_code == 200, response.text
    assert len(upstream.requests()) == 3
    assert all(gap >= 0.19 for gap in upstream.gaps()), upstream.gaps()


def test_a_client_that_does_not_retry_is_not_kept_waiting_past_the_cap(
    stack: Stack, upstream: ScriptedUpstream
) -> None:
    upstream.reset(Reply(429, [("Retry-After", "30")], openai_error("Rate limit reached")))
    started = time.monotonic()
    response = raw_post(stack.proxy())
    assert time.monotonic() - started < 5
    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    assert len(upstream.requests()) == 1
