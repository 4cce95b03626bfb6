"""Retry policy and the provider's retry loop, with a scripted upstream, an injected clock and no sleeping."""

from __future__ import annotations

import email.utils
import itertools
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self

import pytest

from ccproxy_asgi import jsonutil
from ccproxy_asgi.context import RequestContext
from ccproxy_asgi.errors import (
    ApiError,
    OverloadedError,
    ProxyError,
    RateLimitError,
    UpstreamError,
    UpstreamTimeoutError,
)
from ccproxy_asgi.provider.openai import OpenAIProvider
from ccproxy_asgi.retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after
from ccproxy_asgi.retry_budget import RetryBudget
from ccproxy_asgi.tokens.counter import TokenCounter

# ----- parse_retry_after and the policy ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "bogus", "retry-after": "2"}, 2.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after-ms": "1e400"}, None),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after({"retry-after": email.utils.formatdate(now + 30, usegmt=True)}, now=now) == 30.0
    assert parse_retry_after({"retry-after": email.utils.formatdate(now - 30, usegmt=True)}, now=now) == 0.0


def test_retryable_statuses_and_the_should_retry_hint() -> None:
    policy = RetryPolicy()
    assert {408, 409, 429, 500, 502, 503, 504, 529} == RETRYABLE_STATUSES
    assert all(policy.is_retryable(status, {}) for status in RETRYABLE_STATUSES)
    assert not any(policy.is_retryable(status, {}) for status in (400, 401, 403, 404, 413, 422))
    assert policy.is_retryable(400, {"x-should-retry": "true"})
    assert not policy.is_retryable(503, {"x-should-retry": "false"})


def test_delay_prefers_the_upstream_hint_and_refuses_long_ones() -> None:
    policy = RetryPolicy(max_retry_after=20.0, random=lambda: 0.5)
    assert policy.delay(0, {"retry-after-ms": "300"}) == 0.3
    assert policy.delay(0, {"retry-after": "21"}) is None


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    top = RetryPolicy(base_delay=0.5, max_delay=8.0, random=lambda: 0.999999)
    assert [round(top.delay(n) or -1, 3) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert RetryPolicy(random=lambda: 0.0).delay(3) == 0.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_retry_call_respects_the_total_time_budget() -> None:
    clock = FakeClock()
    call = RetryPolicy(total_timeout=5.0, random=lambda: 0.5).start(clock)
    assert call.delay(0, {"retry-after": "3"}) == 3.0
    clock.now += 3.0
    assert call.delay(1, {"retry-after": "2"}) == 2.0  # ends exactly at the budget
    clock.now += 2.5
    assert call.delay(2, {"retry-after-ms": "1"}) is None
    assert call.elapsed() == 5.5


def test_retry_call_spends_from_the_shared_budget() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.2, window=10.0, clock=clock)  # 2 retries per window
    policy = RetryPolicy(budget=budget, random=lambda: 0.5)
    first, second = policy.start(clock), policy.start(clock)
    assert first.delay(0) is not None
    assert second.delay(0) is not None
    assert first.delay(1) is None, "the budget is spent"
    # A hint too long to wait must not take anything from the budget.
    clock.now += 20.0
    assert first.delay(0, {"retry-after": "999"}) is None
    assert budget.available() == 2.0


# ----- the provider's loop ---------------------------------------------------------------------------------


class FakeResponse:
    def __init__(self, status: int, headers: Mapping[str, str] | None = None, body: bytes = b"") -> None:
        self._status = status
        self._headers = dict(headers or {})
        self._body = body
        self.closed = False

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    async def read(self) -> bytes:
        return self._body

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        yield self._body

    async def aclose(self) -> None:
        self.closed = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


Step = FakeResponse | ProxyError


class ScriptedClient:
    """Answers each send with the next scripted response, or raises the next scripted error."""

    def __init__(self, clock: FakeClock, *steps: Step, latency: float = 0.25) -> None:
        self._clock = clock
        self._steps = list(steps)
        self._latency = latency
        self.sent: list[tuple[float, dict[str, str]]] = []

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> FakeResponse:
        self.sent.append((self._clock.now, dict(headers)))
        self._clock.now += self._latency
        step = self._steps.pop(0)
        if isinstance(step, ProxyError):
            raise step
        return step

    async def aclose(self) -> None:
        pass

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass


OK_BODY = jsonutil.dumps({"id": "chatcmpl-1", "choices": [], "usage": {}})


def error(status: int, headers: Mapping[str, str] | None = None, **err: Any) -> FakeResponse:
    return FakeResponse(status, headers, jsonutil.dumps({"error": {"message": f"e{status}", **err}}))


def provider(clock: FakeClock, *steps: Step, **policy: Any) -> tuple[OpenAIProvider, ScriptedClient]:
    client = ScriptedClient(clock, *steps)
    policy.setdefault("random", lambda: 0.5)
    made = OpenAIProvider(
        base_url="http://upstream.test/v1",
        api_key=None,
        client=client,
        token_counter=TokenCounter(),
        retry=RetryPolicy(**policy),
        sleep=clock.sleep,
        clock=clock,
    )
    return made, client


def gaps(client: ScriptedClient) -> list[float]:
    times = [at for at, _ in client.sent]
    return [round(b - a, 6) for a, b in itertools.pairwise(times)]


async def test_attempts_are_recorded_with_status_headers_and_duration() -> None:
    clock = FakeClock()
    made, client = provider(
        clock,
        error(429, {"retry-after-ms": "200", "x-ratelimit-remaining-requests": "0"}),
        error(503),
        FakeResponse(200, {"x-request-id": "up-3"}, OK_BODY),
    )
    ctx = RequestContext(request_id="req_attempts")
    assert await made.complete({"model": "m"}, ctx) == jsonutil.loads(OK_BODY)
    assert [a.status for a in ctx.attempts] == [429, 503, 200]
    assert ctx.attempts[0].headers["x-ratelimit-remaining-requests"] == "0"
    assert ctx.attempts[2].headers == {"x-request-id": "up-3"}
    assert all(
        a.duration_s == 0.25 and a.url == "http://upstream.test/v1/chat/completions" for a in ctx.attempts
    )
    # retry-after-ms first, then full jitter at 0.5 of 2 * 0.5 s; all attempts carry the same request id.
    assert gaps(client) == [0.25 + 0.2, 0.25 + 0.5]
    assert {headers["x-request-id"] for _, headers in client.sent} == {"req_attempts"}


async def test_connection_errors_and_timeouts_are_retried_and_recorded() -> None:
    clock = FakeClock()
    made, _ = provider(
        clock,
        UpstreamError("upstream connection error: refused"),
        UpstreamTimeoutError("t"),
        FakeResponse(200, {}, OK_BODY),
    )
    ctx = RequestContext()
    await made.complete({}, ctx)
    assert [(a.status, a.error) for a in ctx.attempts] == [
        (None, "UpstreamError"),
        (None, "UpstreamTimeoutError"),
        (200, None),
    ]


async def test_last_error_is_raised_when_attempts_run_out() -> None:
    clock = FakeClock()
    made, client = provider(clock, error(500), error(502), error(503), max_attempts=3)
    with pytest.raises(OverloadedError):
        await made.complete({}, RequestContext())
    assert len(client.sent) == 3


@pytest.mark.parametrize(
    "response",
    [
        error(429, code="insufficient_quota", type="insufficient_quota"),
        error(500, {"x-should-retry": "false"}),
        error(400),
        error(429, {"retry-after": "3600"}),
    ],
)
async def test_not_retried(response: FakeResponse) -> None:
    clock = FakeClock()
    made, client = provider(clock, response, FakeResponse(200, {}, OK_BODY))
    ctx = RequestContext()
    with pytest.raises(ProxyError):
        await made.complete({}, ctx)
    assert len(client.sent) == 1
    assert len(ctx.attempts) == 1


async def test_quota_is_a_rate_limit_the_client_must_not_retry() -> None:
    clock = FakeClock()
    made, _ = provider(clock, error(429, code="insufficient_quota"))
    with pytest.raises(RateLimitError) as caught:
        await made.complete({}, RequestContext())
    assert caught.value.should_retry is False


async def test_should_retry_true_overrides_a_client_error_status() -> None:
    clock = FakeClock()
    made, client = provider(clock, error(400, {"x-should-retry": "true"}), FakeResponse(200, {}, OK_BODY))
    await made.complete({}, RequestContext())
    assert len(client.sent) == 2


async def test_total_time_budget_stops_retrying() -> None:
    clock = FakeClock()
    made, client = provider(
        clock,
        error(429, {"retry-after": "2"}),
        error(429, {"retry-after": "2"}),
        error(500),
        total_timeout=3.0,
    )
    with pytest.raises(RateLimitError) as caught:
        await made.complete({}, RequestContext())
    # 0.25 s attempt + 2 s wait fits in 3 s; a second 2 s wait after the second attempt would not.
    assert len(client.sent) == 2
    assert caught.value.retry_after == 2.0, "the client still learns how long to wait"


async def test_retry_budget_is_shared_by_calls() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0, clock=clock)  # one retry per window
    made, client = provider(clock, error(500), error(500), error(500), error(500), budget=budget)
    with pytest.raises(ApiError):
        await made.complete({}, RequestContext())
    assert len(client.sent) == 2  # first call: one retry, then the budget is spent
    with pytest.raises(ApiError):
        await made.complete({}, RequestContext())
    assert len(client.sent) == 3  # second call: no retry at all


async def test_a_stream_is_handed_over_after_the_first_200_and_never_retried() -> None:
    clock = FakeClock()
    made, client = provider(clock, error(503), FakeResponse(200, {}, b"data: [DONE]\n\n"), error(500))
    ctx = RequestContext()
    async with made.stream({}, ctx) as response:
        assert response.status == 200
    assert len(client.sent) == 2
    assert [a.status for a in ctx.attempts] == [503, 200]
