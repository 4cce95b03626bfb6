"""The collector and its Prometheus text: what one request yields, the exposition format, the series cap,
and the readings of the real rate limiter and circuit breaker."""

from __future__ import annotations

import math

import pytest

from ccproxy_asgi.breaker import CircuitBreaker, Outcome
from ccproxy_asgi.context import UpstreamAttempt, Usage
from ccproxy_asgi.errors import RateLimitError
from ccproxy_asgi.observability import semconv as sc
from ccproxy_asgi.observability.collector import MetricsCollector
from ccproxy_asgi.observability.prometheus import HistogramPoint, Point, format_value, render, render_family
from ccproxy_asgi.observability.record import RequestRecord, measurements
from ccproxy_asgi.observability.sources import BreakerSource, LimiterSource
from ccproxy_asgi.ratelimit import Budget, Cost, RateLimiter

URL = "https://api.example.com:8443/v1/chat/completions"


def chat(**overrides: object) -> RequestRecord:
    values: dict[str, object] = {
        "method": "POST",
        "route": "/v1/messages",
        "status": 200,
        "duration_s": 0.5,
        "chat": True,
        "request_model": "claude-sonnet-4-6",
        "response_model": "gpt-4o",
        "usage": Usage(input_tokens=10, output_tokens=5, cache_read_input_tokens=4),
        "attempts": [UpstreamAttempt(url=URL, status=200, duration_s=0.2)],
    }
    values.update(overrides)
    return RequestRecord(**values)  # type: ignore[arg-type]


def test_one_chat_request_yields_the_genai_and_http_measurements() -> None:
    got = {(d.name, labels): value for d, labels, value in measurements(chat(), "openai")}
    genai = ("chat", "openai", "claude-sonnet-4-6", "gpt-4o")
    assert got[("http.server.request.duration", ("POST", "/v1/messages", "200"))] == 0.5
    assert got[("gen_ai.client.operation.duration", (*genai, ""))] == 0.5
    # Semantic-convention input includes cached tokens; the Anthropic-style counter keeps them apart.
    assert got[("gen_ai.client.token.usage", (*genai, "input"))] == 14
    assert got[("gen_ai.client.token.usage", (*genai, "output"))] == 5
    assert got[("ccproxy.usage.tokens", ("claude-sonnet-4-6", "gpt-4o", "input"))] == 10
    assert got[("ccproxy.usage.tokens", ("claude-sonnet-4-6", "gpt-4o", "cache_read_input"))] == 4
    assert ("ccproxy.usage.tokens", ("claude-sonnet-4-6", "gpt-4o", "cache_creation_input")) not in got
    assert got[("http.client.request.duration", ("api.example.com", "8443", "200", ""))] == 0.2
    assert got[("ccproxy.upstream.attempts", ("api.example.com", "200", "", "false"))] == 1
    assert not any(name == "ccproxy.upstream.retries" for name, _ in got)


def test_retries_timeouts_and_streams() -> None:
    record = chat(
        stream=True,
        ttfb_s=0.1,
        ttft_s=0.3,
        attempts=[
            UpstreamAttempt(url=URL, error="UpstreamTimeoutError", duration_s=2.0),
            UpstreamAttempt(url=URL, status=429, duration_s=0.01),
            UpstreamAttempt(url=URL, status=200, duration_s=0.2),
        ],
    )
    got = {(d.name, labels): value for d, labels, value in measurements(record, "openai")}
    genai = ("chat", "openai", "claude-sonnet-4-6", "gpt-4o")
    assert got[("ccproxy.server.time_to_first_byte", genai)] == 0.1
    assert got[("gen_ai.server.time_to_first_token", genai)] == 0.3
    assert got[("ccproxy.upstream.attempts", ("api.example.com", "", "UpstreamTimeoutError", "false"))] == 1
    assert got[("ccproxy.upstream.attempts", ("api.example.com", "429", "429", "true"))] == 1
    assert got[("ccproxy.upstream.retries", ("api.example.com",))] == 2
    failed_stream = chat(stream=True, ttfb_s=0.1, ttft_s=0.3, error_type="overloaded_error")
    assert failed_stream.failed
    names = {d.name for d, _, _ in measurements(failed_stream, "openai")}
    assert "gen_ai.server.time_to_first_token" not in names  # only for successful responses


def test_failed_means_server_side() -> None:
    assert chat(status=None).failed
    assert chat(status=502, error_type="api_error").failed
    assert not chat(status=429, error_type="rate_limit_error").failed
    assert not chat(status=400, error_type="invalid_request_error").failed
    assert chat(status=200, error_type="api_error").failed  # an error event after the stream began


def test_format_value() -> None:
    assert format_value(3.0) == "3"
    assert format_value(7) == "7"
    assert format_value(0.25) == "0.25"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"


def test_exposition_text() -> None:
    counter = sc.MetricDef("a.b", "a_b_total", "counter", "1", 'Help with "quotes"\nand a newline.', ("x.y",))
    histogram = sc.MetricDef("h", "h_seconds", "histogram", "s", "A histogram.", ("k",), (0.1, 1.0))
    text = render(
        [
            (counter, [Point(('va"l\\ue\n',), 2.0), Point(("",), 1.5)]),
            (histogram, [HistogramPoint(("v",), (1, 2, 3), 7.25, 6)]),
            (sc.HEALTH_SCORE, []),
        ]
    )
    assert text == (
        '# HELP a_b_total Help with "quotes"\\nand a newline.\n'
        "# TYPE a_b_total counter\n"
        'a_b_total{x_y="va\\"l\\\\ue\\n"} 2\n'
        "a_b_total 1.5\n"
        "# HELP h_seconds A histogram.\n"
        "# TYPE h_seconds histogram\n"
        'h_seconds_bucket{k="v",le="0.1"} 1\n'
        'h_seconds_bucket{k="v",le="1"} 3\n'
        'h_seconds_bucket{k="v",le="+Inf"} 6\n'
        'h_seconds_sum{k="v"} 7.25\n'
        'h_seconds_count{k="v"} 6\n'
    )
    assert render_family(sc.HEALTH_SCORE, []) == []


def test_collector_counts_and_renders() -> None:
    collector = MetricsCollector()
    collector.record(chat())
    collector.record(chat(status=429, error_type="rate_limit_error", usage=None, attempts=[]))
    collector.record(RequestRecord(method="GET", route="/v1/models", status=200, duration_s=0.001))
    genai = ("chat", "openai", "claude-sonnet-4-6", "gpt-4o")
    assert collector.value(sc.GENAI_DURATION, (*genai, "")) == 1
    assert collector.value(sc.GENAI_DURATION, (*genai, "rate_limit_error")) == 1
    assert collector.value(sc.HTTP_SERVER_DURATION, ("GET", "/v1/models", "200")) == 1
    assert collector.value(sc.TOKENS, ("claude-sonnet-4-6", "gpt-4o", "output")) == 5
    assert collector.value(sc.TOKENS, ("nope",)) is None
    assert collector.outcomes.counts() == (2, 0)  # a 429 is the client's business, not a failure
    assert collector.request_latency.count() == 2
    assert collector.upstream_latency.count() == 1
    text = collector.render_prometheus()
    assert (
        'gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name="chat",'
        'gen_ai_provider_name="openai",gen_ai_request_model="claude-sonnet-4-6",'
        'gen_ai_response_model="gpt-4o",error_type="rate_limit_error"} 1'
    ) in text
    assert (
        'gen_ai_client_token_usage_sum{gen_ai_operation_name="chat",gen_ai_provider_name="openai",'
        'gen_ai_request_model="claude-sonnet-4-6",gen_ai_response_model="gpt-4o",gen_ai_token_type="input"} 14'
    ) in text
    assert "http_server_active_requests 0" in text
    assert "ccproxy_success_rate 1" in text
    assert 'ccproxy_latency_window_seconds{ccproxy_window="request",quantile="0.99"}' in text
    assert text.count("# TYPE gen_ai_client_operation_duration_seconds histogram") == 1


def test_series_are_capped_and_label_values_clipped() -> None:
    collector = MetricsCollector(max_series=3)
    for i in range(10):
        collector.record(chat(request_model=f"model-{i}", usage=None, attempts=[]))
    family = collector._families[sc.GENAI_DURATION]
    assert len(family.series) == 4  # three real ones and the overflow series
    assert collector.value(sc.GENAI_DURATION, ("_OTHER",) * 5) == 7
    fresh = MetricsCollector()
    fresh.record(chat(request_model="x" * 1000, usage=None, attempts=[]))
    [labels] = fresh._families[sc.GENAI_DURATION].series
    assert labels[2] == "x" * 128


def test_a_failing_source_does_not_break_a_scrape(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def snapshot(self) -> object:
            raise RuntimeError("boom")

    collector = MetricsCollector()
    collector.watch_limiter(Broken())  # type: ignore[arg-type]
    assert "http_server_active_requests 0" in collector.render_prometheus()
    assert "reading the rate limiter's snapshot failed" in caplog.text


async def test_the_real_limiter_and_breaker_are_read() -> None:
    limiter = RateLimiter(budget=Budget(requests=2, tokens=1000), max_wait=0)
    breaker = CircuitBreaker()
    limiter_source: LimiterSource = limiter
    breaker_source: BreakerSource = breaker
    collector = MetricsCollector()
    collector.watch_limiter(limiter_source)
    collector.watch_breaker(breaker_source)
    for _ in range(2):
        await limiter.acquire("global", Cost(10, 20))
    with pytest.raises(RateLimitError):
        await limiter.acquire("global", Cost(10, 20))
    for _ in range(5):
        ticket = await breaker.acquire("https://up.example/v1")
        await breaker.record(ticket, Outcome.FAILURE)
    refused = await breaker.acquire("https://up.example/v1")
    assert not refused.allowed

    text = collector.render_prometheus()
    assert "ccproxy_ratelimit_admitted_total 2" in text
    assert 'ccproxy_ratelimit_rejections_total{ccproxy_ratelimit_reason="rate_limited"} 1' in text
    assert (
        'ccproxy_ratelimit_limit{ccproxy_ratelimit_key="global",ccproxy_ratelimit_limit_type="requests"} 2'
        in text
    )
    assert (
        'ccproxy_ratelimit_limit{ccproxy_ratelimit_key="global",ccproxy_ratelimit_limit_type="tokens"} 1000'
        in text
    )
    assert 'ccproxy_ratelimit_factor{ccproxy_ratelimit_key="global"} 1' in text
    assert "ccproxy_ratelimit_queued 0" in text
    key = 'ccproxy_breaker_key="https://up.example/v1"'
    assert f'ccproxy_breaker_state{{{key},ccproxy_breaker_state="open"}} 1' in text
    assert f'ccproxy_breaker_state{{{key},ccproxy_breaker_state="closed"}} 0' in text
    assert (
        f'ccproxy_breaker_transitions_total{{{key},ccproxy_breaker_from_state="closed",'
        'ccproxy_breaker_to_state="open"} 1'
    ) in text
    assert f"ccproxy_breaker_rejections_total{{{key}}} 1" in text
    assert f'ccproxy_breaker_outcomes_total{{{key},ccproxy_breaker_outcome="failure"}} 5' in text
