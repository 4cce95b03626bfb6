"""Retry policy and the provider's retry loop, with a scripted upstream, an injected clock and no sleeping."""

from __future__ import annotations

import email.utils
import itertools
import logging
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from ccproxy_asgi import jsonutil
from ccproxy_asgi.context import RequestContext
from ccproxy_asgi.errors import (
    ApiError,
    FirstByteTimeoutError,
    OverloadedError,
    ProxyError,
    RateLimitError,
    UpstreamError,
    UpstreamTimeoutError,
)
from ccproxy_asgi.headers import Headers
from ccproxy_asgi.log_throttle import ThrottledLog
from ccproxy_asgi.provider.openai import OpenAIProvider
from ccproxy_asgi.provider.retry import (
    RETRYABLE_STATUSES,
    RetryPolicy,
    client_retry_count,
    parse_retry_after,
    upstream_retry_after,
)
from ccproxy_asgi.provider.retry_budget import RetryBudget
from ccproxy_asgi.testing import MockResponse, MockUpstreamClient, UpstreamRequest, scripted
from ccproxy_asgi.tokens.counter import TokenCounter
from tests.support.manual_clock import ManualClock

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


def test_retry_call_respects_the_total_time_budget() -> None:
    clock = ManualClock(100.0)
    call = RetryPolicy(total_timeout=5.0, random=lambda: 0.5).start(clock)
    assert call.delay(0, {"retry-after": "3"}) == 3.0
    clock.advance(3.0)
    assert call.delay(1, {"retry-after": "2"}) == 2.0  # ends exactly at the budget
    clock.advance(2.5)
    assert call.delay(2, {"retry-after-ms": "1"}) is None
    assert call.elapsed() == 5.5


def test_retry_call_spends_from_the_shared_budget() -> None:
    clock = ManualClock(100.0)
    budget = RetryBudget(ratio=0.0, min_per_second=0.2, window=10.0, clock=clock)  # 2 retries per window
    policy = RetryPolicy(budget=budget, random=lambda: 0.5)
    first, second = policy.start(clock), policy.start(clock)
    assert first.delay(0) is not None
    assert second.delay(0) is not None
    assert first.delay(1) is None, "the budget is spent"
    # A hint too long to wait must not take anything from the budget.
    clock.advance(20.0)
    assert first.delay(0, {"retry-after": "999"}) is None
    assert budget.available() == 2.0


# ----- the provider's loop ---------------------------------------------------------------------------------


Step = MockResponse | ProxyError
LATENCY = 0.25


class Upstream:
    """Answers each request with the next scripted response, or raises the next scripted error; every
    attempt takes LATENCY on the clock. `sent`: when each request was sent, and the request."""

    def __init__(self, clock: ManualClock, *steps: Step) -> None:
        self._clock = clock
        self._answer = scripted(*steps)
        self.sent: list[tuple[float, UpstreamRequest]] = []

    def __call__(self, request: UpstreamRequest) -> MockResponse:
        self.sent.append((self._clock.t, request))
        self._clock.advance(LATENCY)
        return self._answer(request)


OK_BODY = jsonutil.dumps({"id": "chatcmpl-1", "choices": [], "usage": {}})


def error(status: int, headers: Mapping[str, str] | None = None, **err: Any) -> MockResponse:
    return MockResponse(
        status, headers=headers, content=jsonutil.dumps({"error": {"message": f"e{status}", **err}})
    )


def provider(clock: ManualClock, *steps: Step, **policy: Any) -> tuple[OpenAIProvider, Upstream]:
    upstream = Upstream(clock, *steps)
    policy.setdefault("random", lambda: 0.5)
    made = OpenAIProvider(
        base_url="http://upstream.test/v1",
        api_key=None,
        client=MockUpstreamClient(upstream),
        token_counter=TokenCounter(),
        retry=RetryPolicy(**policy),
        sleep=clock.sleep,
        clock=clock,
    )
    return made, upstream


def gaps(upstream: Upstream) -> list[float]:
    times = [at for at, _ in upstream.sent]
    return [round(b - a, 6) for a, b in itertools.pairwise(times)]


async def test_attempts_are_recorded_with_status_headers_and_duration() -> None:
    clock = ManualClock(100.0)
    made, upstream = provider(
        clock,
        error(429, {"retry-after-ms": "200", "x-ratelimit-remaining-requests": "0"}),
        error(503),
        MockResponse(200, headers={"x-request-id": "up-3"}, content=OK_BODY),
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
    assert gaps(upstream) == [0.25 + 0.2, 0.25 + 0.5]
    assert {request.headers["x-request-id"] for _, request in upstream.sent} == {"req_attempts"}


async def test_connection_errors_and_timeouts_are_retried_and_recorded() -> None:
    clock = ManualClock(100.0)
    made, _ = provider(
        clock,
        UpstreamError("upstream connection error: refused"),
        UpstreamTimeoutError("t"),
        MockResponse(200, content=OK_BODY),
    )
    ctx = RequestContext()
    await made.complete({}, ctx)
    assert [(a.status, a.error) for a in ctx.attempts] == [
        (None, "UpstreamError"),
        (None, "UpstreamTimeoutError"),
        (200, None),
    ]


async def test_last_error_is_raised_when_attempts_run_out() -> None:
    clock = ManualClock(100.0)
    made, upstream = provider(clock, error(500), error(502), error(503), max_attempts=3)
    with pytest.raises(OverloadedError):
        await made.complete({}, RequestContext())
    assert len(upstream.sent) == 3


@pytest.mark.parametrize(
    "response",
    [
        error(429, code="insufficient_quota", type="insufficient_quota"),
        error(500, {"x-should-retry": "false"}),
        error(400),
        error(429, {"retry-after": "3600"}),
    ],
)
async def test_not_retried(response: MockResponse) -> None:
    clock = ManualClock(100.0)
    made, upstream = provider(clock, response, MockResponse(200, content=OK_BODY))
    ctx = RequestContext()
    with pytest.raises(ProxyError):
        await made.complete({}, ctx)
    assert len(upstream.sent) == 1
    assert len(ctx.attempts) == 1


async def test_quota_is_a_rate_limit_the_client_must_not_retry() -> None:
    clock = ManualClock(100.0)
    made, _ = provider(clock, error(429, code="insufficient_quota"))
    with pytest.raises(RateLimitError) as caught:
        await made.complete({}, RequestContext())
    assert caught.value.should_retry is False


async def test_should_retry_true_overrides_a_client_error_status() -> None:
    clock = ManualClock(100.0)
    made, upstream = provider(
        clock, error(400, {"x-should-retry": "true"}), MockResponse(200, content=OK_BODY)
    )
    await made.complete({}, RequestContext())
    assert len(upstream.sent) == 2


async def test_total_time_budget_stops_retrying() -> None:
    clock = ManualClock(100.0)
    made, upstream = provider(
        clock,
        error(429, {"retry-after": "2"}),
        error(429, {"retry-after": "2"}),
        error(500),
        total_timeout=3.0,
    )
    with pytest.raises(RateLimitError) as caught:
        await made.complete({}, RequestContext())
    # 0.25 s attempt + 2 s wait fits in 3 s; a second 2 s wait after the second attempt would not.
    assert len(upstream.sent) == 2
    assert caught.value.retry_after == 2.0, "the client still learns how long to wait"


async def test_retry_budget_is_shared_by_calls() -> None:
    clock = ManualClock(100.0)
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0, clock=clock)  # one retry per window
    made, upstream = provider(clock, error(500), error(500), error(500), error(500), budget=budget)
    with pytest.raises(ApiError):
        await made.complete({}, RequestContext())
    assert len(upstream.sent) == 2  # first call: one retry, then the budget is spent
    with pytest.raises(ApiError):
        await made.complete({}, RequestContext())
    assert len(upstream.sent) == 3  # second call: no retry at all


async def test_a_stream_is_handed_over_after_the_first_200_and_never_retried() -> None:
    clock = ManualClock(100.0)
    made, upstream = provider(clock, error(503), MockResponse(200, content=b"data: [DONE]\n\n"), error(500))
    ctx = RequestContext()
    async with made.stream({}, ctx) as response:
        assert response.status == 200
    assert len(upstream.sent) == 2
    assert [a.status for a in ctx.attempts] == [503, 200]


# ----- case-insensitive headers --------------------------------------------------------------------------


def test_headers_read_any_spelling_and_keep_the_first_of_a_repeated_name() -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    aiohttp_like = CIMultiDictProxy(CIMultiDict([("Retry-After", "2"), ("retry-after", "9"), ("X-A", "1")]))
    for source in (
        aiohttp_like,
        httpx.Headers({"Retry-After": "2", "X-A": "1"}),
        {"Retry-After": "2", "X-A": "1"},
        [(b"Retry-After", b"2"), (b"x-a", b"1")],
    ):
        headers = Headers(source)
        assert headers["retry-after"] == headers["RETRY-AFTER"] == headers.get("Retry-After") == "2"
        assert "RETRY-after" in headers
        assert dict(headers) == {"retry-after": "2", "x-a": "1"}
        assert headers == {"retry-after": "2", "x-a": "1"}
    assert Headers().get("x", "d") == "d"
    not_a_name: object = 3
    assert not_a_name not in Headers({"a": "b"})


def test_headers_are_immutable_and_of_does_not_copy_them() -> None:
    headers = Headers({"A": "b"})
    assert Headers.of(headers) is headers
    with pytest.raises(AttributeError):
        headers.x = 1  # Headers.__setattr__ refuses every name
    with pytest.raises(TypeError):
        headers["a"] = "c"  # type: ignore[index]


def test_parse_retry_after_reads_mixed_case_names() -> None:
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"Retry-After-Ms": "250", "Retry-After": "9"}) == 0.25


# ----- the upstream's wait: retry-after, then for a 429 its x-ratelimit-reset-* -----------------------------


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {"X-RateLimit-Reset-Requests": "1s"}, 1.0),
        (429, {"x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        (429, {"x-ratelimit-reset-requests": "20ms", "x-ratelimit-reset-tokens": "6m0s"}, 0.02),
        (
            429,
            {
                "x-ratelimit-remaining-requests": "5",
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-requests": "20ms",
                "x-ratelimit-reset-tokens": "6m0s",
            },
            360.0,
        ),
        (429, {"retry-after": "3", "x-ratelimit-reset-requests": "1s"}, 3.0),
        (429, {"x-ratelimit-reset-requests": "soon"}, None),
        (429, {"x-ratelimit-reset-requests": "inf"}, None),
        (500, {"x-ratelimit-reset-requests": "1s"}, None),
        (503, {"Retry-After": "4"}, 4.0),
    ],
)
def test_upstream_retry_after(status: int, headers: dict[str, str], expected: float | None) -> None:
    assert upstream_retry_after(status, headers) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], None),
        ([(b"x-stainless-retry-count", b"0")], 0),
        ([(b"x-stainless-retry-count", b"3")], 3),
        ([(b"x-stainless-retry-count", b"oops")], 0),
        ([(b"x-stainless-retry-count", b"99999999999999999999")], 32),
    ],
)
def test_client_retry_count(headers: list[tuple[bytes, bytes]], expected: int | None) -> None:
    assert client_retry_count({"type": "http", "headers": headers}) == expected


def test_estimate_doubles_with_the_retries_made_and_is_capped() -> None:
    policy = RetryPolicy()
    assert [policy.estimate(n) for n in (-1, 0, 1, 2, 3, 4, 50)] == [1.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


# ----- who retries: the policy ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_a_client_that_retries_by_itself_gets_every_retryable_status_at_once(status: int) -> None:
    call = RetryPolicy(random=lambda: 0.5).start(ManualClock(100.0))
    assert call.after_status(0, status, {"retry-after": "0.1"}, client_retry_count=0) is None
    assert call.after_status(0, status, {}, client_retry_count=4) is None
    assert call.after_status(0, status, {"retry-after": "0.1"}) == 0.1, "a client that does not retry"


def test_statuses_are_retried_for_other_clients_within_the_cap() -> None:
    call = RetryPolicy(max_retry_after=8.0, random=lambda: 0.5).start(ManualClock(100.0))
    assert call.after_status(0, 429, {"Retry-After": "2"}) == 2.0
    assert call.after_status(0, 429, {"X-RateLimit-Reset-Requests": "1s"}) == 1.0
    assert call.after_status(1, 503, {}) == 0.5, "backoff without a hint"
    assert call.after_status(0, 429, {"Retry-After": "9"}) is None, "longer than the cap: the client waits"
    assert call.after_status(0, 400, {}) is None
    assert call.after_status(0, 429, {}, should_retry=False) is None
    assert call.after_status(0, 503, {"x-should-retry": "false"}) is None
    assert call.after_status(0, 400, {"X-Should-Retry": "true"}) == 0.25


def test_failures_before_a_response_are_retried_for_every_client_but_timeouts() -> None:
    call = RetryPolicy(random=lambda: 0.5).start(ManualClock(100.0))
    refused = UpstreamError("upstream connection error: connection refused")
    assert call.after_failure(0, refused, client_retry_count=0) == 0.25
    assert call.after_failure(0, refused) == 0.25
    assert call.after_failure(0, UpstreamTimeoutError("t"), client_retry_count=0) is None
    assert call.after_failure(0, UpstreamTimeoutError("t")) == 0.25


def test_the_spent_budget_warning_is_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(100.0)
    budget = RetryBudget(ratio=0.0, min_per_second=0.0, window=10.0, clock=clock)
    policy = RetryPolicy(budget=budget, random=lambda: 0.5)
    object.__setattr__(
        policy, "_budget_log", ThrottledLog(logging.getLogger("ccproxy_asgi.provider.retry"), clock=clock)
    )
    with caplog.at_level(logging.INFO, logger="ccproxy_asgi.provider.retry"):
        for _ in range(500):
            assert policy.start(clock).after_status(0, 500, {}) is None
        spent = [r for r in caplog.records if "retry budget is spent" in r.getMessage()]
        assert len(spent) == 1, "one line, not one per request"
        clock.advance(61.0)
        policy.start(clock).after_status(0, 500, {})
        spent = [r for r in caplog.records if "retry budget is spent" in r.getMessage()]
        assert len(spent) == 2
        assert "499 more" in spent[-1].getMessage()
        # A budget that has room now and then (each request earns a fifth of a retry) is still one line.
        budget.ratio = 0.2
        retried = sum(policy.start(clock).after_status(0, 500, {}) is not None for _ in range(500))
        assert retried > 0
        spent = [r for r in caplog.records if "retry budget is spent" in r.getMessage()]
        assert len(spent) == 2


# ----- the provider's loop and the policy --------------------------------------------------------------------


async def test_a_mixed_case_retry_after_is_waited_out() -> None:
    clock = ManualClock(100.0)
    made, upstream = provider(clock, error(429, {"Retry-After": "2"}), MockResponse(200, content=OK_BODY))
    ctx = RequestContext()
    await made.complete({}, ctx)
    assert gaps(upstream) == [0.25 + 2.0]
    assert ctx.attempts[0].headers["retry-after"] == "2"


async def test_the_hint_survives_the_proxys_last_retry() -> None:
    clock = ManualClock(100.0)
    made, upstream = provider(
        clock, error(429, {"Retry-After": "2"}), error(429, {"Retry-After": "2"}), max_attempts=2
    )
    with pytest.raises(RateLimitError) as caught:
        await made.complete({}, RequestContext())
    assert len(upstream.sent) == 2
    assert caught.value.retry_after == 2.0


async def test_an_announcing_client_gets_the_status_and_its_hint_after_one_attempt() -> None:
    clock = ManualClock(100.0)
    made, upstream = provider(clock, error(429, {"Retry-After": "1"}), MockResponse(200, content=OK_BODY))
    with pytest.raises(RateLimitError) as caught:
        await made.complete({}, RequestContext(client_retry_count=0))
    assert len(upstream.sent) == 1
    assert caught.value.retry_after == 1.0


@pytest.mark.parametrize(("count", "expected"), [(0, 1.0), (1, 2.0), (2, 4.0), (9, 8.0)])
async def test_a_wait_is_estimated_for_an_overloaded_upstream_without_a_hint(
    count: int, expected: float
) -> None:
    clock = ManualClock(100.0)
    made, _ = provider(clock, error(503))
    with pytest.raises(OverloadedError) as caught:
        await made.complete({}, RequestContext(client_retry_count=count))
    assert caught.value.retry_after == expected


async def test_the_estimate_counts_the_proxys_own_retries_too() -> None:
    clock = ManualClock(100.0)
    made, upstream = provider(clock, error(429), error(429), error(429))
    with pytest.raises(RateLimitError) as caught:
        await made.complete({}, RequestContext())
    assert len(upstream.sent) == 3
    assert caught.value.retry_after == 4.0


async def test_a_server_error_without_a_hint_gets_no_invented_one() -> None:
    clock = ManualClock(100.0)
    made, _ = provider(clock, error(500))
    with pytest.raises(ApiError) as caught:
        await made.complete({}, RequestContext(client_retry_count=0))
    assert caught.value.retry_after is None, "the client's own backoff applies to a 500"


async def test_a_connection_failure_is_retried_even_for_an_announcing_client() -> None:
    clock = ManualClock(100.0)
    made, upstream = provider(
        clock, UpstreamError("upstream connection error: reset"), MockResponse(200, content=OK_BODY)
    )
    await made.complete({}, RequestContext(client_retry_count=0))
    assert len(upstream.sent) == 2


async def test_a_timeout_is_left_to_an_announcing_client() -> None:
    clock = ManualClock(100.0)
    made, upstream = provider(clock, UpstreamTimeoutError("t"), MockResponse(200, content=OK_BODY))
    with pytest.raises(UpstreamTimeoutError):
        await made.complete({}, RequestContext(client_retry_count=0))
    assert len(upstream.sent) == 1


async def test_the_policy_can_be_told_to_retry_for_announcing_clients_too() -> None:
    clock = ManualClock(100.0)
    made, upstream = provider(
        clock, error(503), MockResponse(200, content=OK_BODY), defer_to_retrying_clients=False
    )
    await made.complete({}, RequestContext(client_retry_count=0))
    assert len(upstream.sent) == 2


async def test_a_first_byte_timeout_is_never_retried() -> None:
    # The first-byte budget covers every attempt of a stream: once it fired there is nothing left to try.
    clock = ManualClock(100.0)
    made, upstream = provider(clock, FirstByteTimeoutError("first byte timed out"), error(503))
    ctx = RequestContext(request_id="req_first_byte")
    with pytest.raises(FirstByteTimeoutError):
        await made.complete({"model": "m"}, ctx)
    assert len(upstream.sent) == 1
    assert [a.error for a in ctx.attempts] == ["FirstByteTimeoutError"]
    assert clock.t == 100.25  # one attempt's latency, and no backoff slept after it
