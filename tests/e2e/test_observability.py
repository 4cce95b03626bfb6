"""Observability end to end: httpx -> the proxy (uvicorn, real socket) -> the mock upstream process.

The stack is composed the way `build_proxy` should compose it (see `observed_app`): the provider gets the
tracer and the adaptive timeout, the breaker and limiter are watched by the collector, the layers go
through the checked `Pipeline` as correlation, tracing, metrics, errors, breaker, limiter, and the
`/metrics` and `/health` routes sit outside it all.
Each test gets its own SDK `MeterProvider` (in-memory reader) and `TracerProvider` (in-memory exporter).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.app.wiring import Observability, build_breaker, build_observability, build_rate_limiter
from ccproxy_asgi.breaker import CircuitBreaker
from ccproxy_asgi.endpoint.dispatch import AnthropicEndpoint
from ccproxy_asgi.middleware.breaker import CircuitBreakerMiddleware
from ccproxy_asgi.middleware.correlation import CorrelationMiddleware
from ccproxy_asgi.middleware.error_normalization import ErrorNormalizationMiddleware
from ccproxy_asgi.middleware.metrics import MetricsMiddleware
from ccproxy_asgi.middleware.observability import ObservabilityRoutes
from ccproxy_asgi.middleware.ratelimit import TokenRateLimitMiddleware
from ccproxy_asgi.middleware.tracing import TracingMiddleware
from ccproxy_asgi.plumbing.pipeline import Pipeline
from ccproxy_asgi.provider.openai import OpenAIProvider
from ccproxy_asgi.provider.retry import RetryPolicy
from ccproxy_asgi.tokens.counter import TokenCounter
from ccproxy_asgi.translate.models import ModelMapper
from ccproxy_asgi.translate.options import ProfileResolver
from ccproxy_asgi.types import ASGIApp
from ccproxy_asgi.upstream import HTTPClientConfig, create_upstream_client
from tests.support.mock_process import MockUpstreamProcess, mock_upstream_fixture
from tests.support.proxy_server import serve_app
from tests.support.stack import proxy_settings

mock = mock_upstream_fixture(scope="module")

MESSAGE: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 32,
    "messages": [{"role": "user", "content": "hello there"}],
}
CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE_ID}-00f067aa0ba902b7-01"


def observed_app(
    settings: Settings,
    *,
    meter_provider: MeterProvider,
    tracer_provider: TracerProvider,
    breaker: CircuitBreaker | None = None,
) -> tuple[ASGIApp, Observability]:
    """The proxy for `settings` with every observability layer, composed as `create_app` should."""
    assert settings.upstream_base_url is not None
    limiter = build_rate_limiter(settings)
    obs = build_observability(settings, breaker=breaker, limiter=limiter, tracer_provider=tracer_provider)
    client = create_upstream_client(
        settings.http_client,
        HTTPClientConfig(
            connect_timeout=settings.http_connect_timeout_seconds,
            read_timeout=settings.http_read_timeout_seconds,
        ),
    )
    models = ModelMapper(big_model=settings.big_model, small_model=settings.small_model)
    provider = OpenAIProvider(
        base_url=settings.upstream_base_url,
        api_key=settings.upstream_api_key,
        client=client,
        token_counter=TokenCounter(),
        retry=RetryPolicy(
            max_attempts=settings.retry_max_attempts, max_delay=settings.retry_max_backoff_seconds
        ),
        tracer=obs.tracer,
        read_timeout=obs.adaptive_timeout,
        provider_name=settings.otel_provider_name,
    )
    endpoint = AnthropicEndpoint(
        provider=provider, models=models, profile_for=ProfileResolver.from_settings(reasoning_globs=[])
    )
    pipeline = Pipeline().add(CorrelationMiddleware, access_log=False)
    pipeline.add(TracingMiddleware, tracer_provider=tracer_provider)
    pipeline.add(MetricsMiddleware, collector=obs.collector, meter_provider=meter_provider)
    pipeline.add(ErrorNormalizationMiddleware)
    if breaker is not None:
        pipeline.add(CircuitBreakerMiddleware, breaker=breaker, upstream=settings.upstream_base_url)
    if limiter is not None:
        pipeline.add(TokenRateLimitMiddleware, limiter=limiter, models=models)
    app = ObservabilityRoutes(
        pipeline.wrap(endpoint), collector=obs.collector, health=obs.health, **obs.paths
    )
    return app, obs


@dataclass
class Proxy:
    http: httpx.Client
    obs: Observability
    reader: InMemoryMetricReader
    spans: InMemorySpanExporter
    breaker: CircuitBreaker | None

    def chat(self, content: str = "hello there", **extra: Any) -> httpx.Response:
        body = {**MESSAGE, "messages": [{"role": "user", "content": content}], **extra}
        return self.http.post("/v1/messages", json=body, headers={"x-api-key": "client-key"})

    def settle(self) -> None:
        """Wait until every request finished its layers: the client has the last byte a moment before
        the server's layers record the request and end its span."""
        deadline = time.monotonic() + 5
        while self.obs.collector.in_flight:
            assert time.monotonic() < deadline, "requests did not finish"
            time.sleep(0.005)

    def finished_spans(self, count: int) -> tuple[ReadableSpan, ...]:
        """The finished spans once there are `count` of them."""
        deadline = time.monotonic() + 5
        while len(spans := self.spans.get_finished_spans()) < count:
            assert time.monotonic() < deadline, f"expected {count} spans, have {len(spans)}"
            time.sleep(0.005)
        return spans

    def prometheus(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        self.settle()
        response = self.http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return parse_prometheus(response.text)

    def otel(self) -> dict[str, list[Any]]:
        self.settle()
        data = self.reader.get_metrics_data()
        assert data is not None
        found: dict[str, list[Any]] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = list(metric.data.data_points)
        return found


@pytest.fixture
def upstream(mock: MockUpstreamProcess) -> Iterator[MockUpstreamProcess]:
    mock.reset()
    yield mock
    mock.clear_faults()


def running(
    upstream: MockUpstreamProcess, *, with_breaker: bool = False, **overrides: Any
) -> Iterator[Proxy]:
    overrides.setdefault("retry_max_attempts", 1)
    settings = proxy_settings(upstream, **overrides)
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    breaker = build_breaker(settings) if with_breaker else None
    app, obs = observed_app(
        settings, meter_provider=meter_provider, tracer_provider=tracer_provider, breaker=breaker
    )
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield Proxy(http, obs, reader, exporter, breaker)
    meter_provider.shutdown()
    tracer_provider.shutdown()


@pytest.fixture
def proxy(upstream: MockUpstreamProcess) -> Iterator[Proxy]:
    yield from running(upstream, rate_limit_rpm=1000)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample line as {(name, labels): value}; fails on a line that is not valid exposition."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        pairs = frozenset(_LABEL.findall(labels or ""))
        key = (name, pairs)
        assert key not in samples, f"duplicate series {line!r}"
        samples[key] = float(value)
    return samples


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of `name` over the series carrying all of `labels`."""
    wanted = set(labels.items())
    return sum(value for (n, pairs), value in samples.items() if n == name and wanted <= pairs)


def otel_sum(points: list[Any], **attributes: Any) -> float:
    """Sum of counter values / histogram sums over the points carrying all of `attributes`."""
    result = 0.0
    for point in points:
        if all(point.attributes.get(key) == value for key, value in attributes.items()):
            result += point.sum if isinstance(point, HistogramDataPoint) else point.value
    return result


def otel_count(points: list[Any], **attributes: Any) -> int:
    """Sum of histogram counts over the points carrying all of `attributes`."""
    count = 0
    for point in points:
        found = dict(point.attributes or {})
        if isinstance(point, HistogramDataPoint) and all(found.get(k) == v for k, v in attributes.items()):
            count += point.count
    return count


def read_stream_usage(text: str) -> tuple[int, int]:
    """(input, output) tokens a streamed response reported, from message_start and message_delta."""
    inputs = [int(m) for m in re.findall(r'"input_tokens":(\d+)', text)]
    outputs = [int(m) for m in re.findall(r'"output_tokens":(\d+)', text)]
    return max(inputs), outputs[-1]


def test_scripted_requests_show_in_prometheus_and_otel(upstream: MockUpstreamProcess, proxy: Proxy) -> None:
    ok_1 = proxy.chat()
    ok_2 = proxy.chat("a second question")
    stream = proxy.chat("stream this", stream=True)
    upstream.queue_faults("429")
    limited = proxy.chat()
    upstream.queue_faults("500")
    failed = proxy.chat()
    assert [r.status_code for r in (ok_1, ok_2, stream, limited, failed)] == [200, 200, 200, 429, 500]
    expected_in = ok_1.json()["usage"]["input_tokens"] + ok_2.json()["usage"]["input_tokens"]
    expected_out = ok_1.json()["usage"]["output_tokens"] + ok_2.json()["usage"]["output_tokens"]
    stream_in, stream_out = read_stream_usage(stream.text)
    expected_in += stream_in
    expected_out += stream_out
    assert expected_in > 0
    assert expected_out > 0

    prom = proxy.prometheus()
    duration = "gen_ai_client_operation_duration_seconds_count"
    assert total(prom, duration) == 5
    assert (
        total(prom, duration, gen_ai_request_model="claude-sonnet-4-6", gen_ai_response_model="gpt-4o") == 5
    )
    assert total(prom, duration, error_type="rate_limit_error") == 1
    assert total(prom, duration, error_type="api_error") == 1
    http = "http_server_request_duration_seconds_count"
    assert total(prom, http, http_route="/v1/messages", http_response_status_code="200") == 3
    assert total(prom, http, http_response_status_code="429") == 1
    assert total(prom, http, http_response_status_code="500") == 1
    tokens = "gen_ai_client_token_usage_sum"
    assert total(prom, tokens, gen_ai_token_type="input") == expected_in
    assert total(prom, tokens, gen_ai_token_type="output") == expected_out
    assert total(prom, "gen_ai_client_token_usage_count", gen_ai_token_type="output") == 3
    assert total(prom, "ccproxy_usage_tokens_total", ccproxy_token_type="output") == expected_out
    assert total(prom, "gen_ai_server_time_to_first_token_seconds_count") == 1
    assert total(prom, "ccproxy_server_time_to_first_byte_seconds_count") == 1
    attempts = "ccproxy_upstream_attempts_total"
    assert total(prom, attempts, http_response_status_code="200") == 3
    assert total(prom, attempts, http_response_status_code="429", error_type="429") == 1
    assert total(prom, attempts, http_response_status_code="500", error_type="500") == 1
    assert total(prom, "http_server_active_requests") == 0
    assert total(prom, "ccproxy_success_rate") == pytest.approx(4 / 5)
    assert total(prom, "ccproxy_latency_window_seconds", ccproxy_window="upstream", quantile="0.99") > 0
    # The rate limiter's own counters and effective limits, read from its snapshot.
    assert total(prom, "ccproxy_ratelimit_admitted_total") == 5
    assert total(prom, "ccproxy_ratelimit_limit", ccproxy_ratelimit_limit_type="requests") > 0
    assert total(prom, "ccproxy_ratelimit_upstream_rate_limited_total") == 1

    otel = proxy.otel()
    durations = otel["gen_ai.client.operation.duration"]
    assert otel_count(durations) == 5
    assert otel_count(durations, **{"error.type": "rate_limit_error"}) == 1
    assert otel_count(durations, **{"error.type": "api_error", "gen_ai.operation.name": "chat"}) == 1
    assert all(p.attributes["gen_ai.provider.name"] == "openai" for p in durations)
    usage = otel["gen_ai.client.token.usage"]
    assert otel_sum(usage, **{"gen_ai.token.type": "input"}) == expected_in
    assert otel_sum(usage, **{"gen_ai.token.type": "output"}) == expected_out
    assert otel_count(otel["gen_ai.server.time_to_first_token"]) == 1
    assert otel_sum(otel["ccproxy.upstream.attempts"], **{"http.response.status_code": 429}) == 1
    assert otel_sum(otel["ccproxy.ratelimit.admitted"]) == 5
    active = otel["http.server.active_requests"]
    assert all(isinstance(p, NumberDataPoint) and p.value == 0 for p in active)


def test_retries_are_counted_per_attempt(upstream: MockUpstreamProcess) -> None:
    for proxy in running(upstream, retry_max_attempts=3):
        upstream.queue_faults("500", "503")
        assert proxy.chat().status_code == 200
        prom = proxy.prometheus()
        assert total(prom, "ccproxy_upstream_attempts_total") == 3
        assert total(prom, "ccproxy_upstream_attempts_total", ccproxy_upstream_retry="true") == 2
        assert total(prom, "ccproxy_upstream_retries_total") == 2
        # A request that succeeded after retries carries no error.type.
        [(_, labels)] = [key for key in prom if key[0] == "gen_ai_client_operation_duration_seconds_count"]
        assert "error_type" not in dict(labels)


def spans_by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in spans if span.kind is kind]


def test_server_and_client_spans_carry_the_clients_trace_to_the_upstream(
    upstream: MockUpstreamProcess, proxy: Proxy
) -> None:
    response = proxy.http.post(
        "/v1/messages",
        json=MESSAGE,
        headers={"traceparent": CLIENT_TRACEPARENT, "request-id": "req_trace_me"},
    )
    assert response.status_code == 200
    spans = proxy.finished_spans(2)
    [server] = spans_by_kind(spans, SpanKind.SERVER)
    [client] = spans_by_kind(spans, SpanKind.CLIENT)
    assert server.context is not None
    assert client.context is not None
    assert format(server.context.trace_id, "032x") == CLIENT_TRACE_ID
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert client.parent is not None
    assert client.parent.span_id == server.context.span_id
    assert client.context.trace_id == server.context.trace_id
    assert server.name == "POST /v1/messages"
    assert client.name == "chat gpt-4o"
    assert server.attributes is not None
    assert client.attributes is not None
    assert server.attributes["ccproxy.request_id"] == "req_trace_me"
    assert server.attributes["gen_ai.request.model"] == "claude-sonnet-4-6"
    assert server.attributes["gen_ai.response.model"] == "gpt-4o"
    assert server.attributes["gen_ai.usage.output_tokens"] == response.json()["usage"]["output_tokens"]
    assert server.attributes["http.response.status_code"] == 200
    assert client.attributes["gen_ai.operation.name"] == "chat"
    assert client.attributes["ccproxy.request_id"] == "req_trace_me"
    assert client.attributes["http.response.status_code"] == 200
    # What the upstream received: a traceparent in the client's trace, whose parent is the client span.
    received = upstream.requests()[-1]["headers"]["traceparent"]
    version, trace_id, parent_id, flags = received.split("-")
    assert trace_id == CLIENT_TRACE_ID
    assert parent_id == format(client.context.span_id, "016x")
    assert (version, flags) == ("00", "01")


def test_a_stream_is_one_server_span_and_one_client_span(upstream: MockUpstreamProcess, proxy: Proxy) -> None:
    response = proxy.http.post(
        "/v1/messages",
        json={**MESSAGE, "stream": True, "messages": [{"role": "user", "content": "[[chunks:12]] go"}]},
        headers={"traceparent": CLIENT_TRACEPARENT},
    )
    assert response.status_code == 200
    assert response.text.count("content_block_delta") >= 10
    spans = proxy.finished_spans(2)
    assert len(spans) == 2
    [client] = spans_by_kind(spans, SpanKind.CLIENT)
    assert client.attributes is not None
    assert client.attributes["gen_ai.request.stream"] is True
    output_tokens = client.attributes["gen_ai.usage.output_tokens"]
    assert isinstance(output_tokens, int)
    assert output_tokens > 0


def test_each_retry_is_its_own_client_span(upstream: MockUpstreamProcess) -> None:
    for proxy in running(upstream, retry_max_attempts=2):
        upstream.queue_faults("500")
        response = proxy.http.post("/v1/messages", json=MESSAGE, headers={"traceparent": CLIENT_TRACEPARENT})
        assert response.status_code == 200
        spans = proxy.finished_spans(3)
        [server] = spans_by_kind(spans, SpanKind.SERVER)
        clients = sorted(spans_by_kind(spans, SpanKind.CLIENT), key=lambda s: s.start_time or 0)
        assert server.context is not None
        assert [c.attributes["ccproxy.upstream.attempt"] for c in clients if c.attributes] == [0, 1]
        assert all(c.parent is not None and c.parent.span_id == server.context.span_id for c in clients)
        assert clients[0].attributes is not None
        assert clients[0].attributes["error.type"] == "500"
        received = [r["headers"]["traceparent"].split("-") for r in upstream.requests()]
        assert [parts[1] for parts in received] == [CLIENT_TRACE_ID, CLIENT_TRACE_ID]
        assert [parts[2] for parts in received] == [
            format(c.context.span_id, "016x") for c in clients if c.context is not None
        ]


def test_readiness_follows_the_breaker(upstream: MockUpstreamProcess) -> None:
    for proxy in running(
        upstream, with_breaker=True, breaker_failure_threshold=2, breaker_recovery_seconds=0.4
    ):
        assert proxy.chat().status_code == 200
        ready = proxy.http.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["breakers"][0]["state"] == "closed"
        assert ready.json()["checks"]["upstream"] == {"ok": True}

        upstream.queue_faults("503", "503")
        # Two distinct overloaded answers (a client's retry of one would not count twice).
        assert [proxy.chat(f"failing {index}").status_code for index in range(2)] == [529, 529]
        assert proxy.chat().status_code == 529  # open: answered by the breaker
        unready = proxy.http.get("/health/ready")
        assert unready.status_code == 503
        body = unready.json()
        assert body["status"] == "unready"
        assert body["breakers"][0]["state"] == "open"
        assert body["breakers"][0]["retry_after_seconds"] > 0
        live = proxy.http.get("/health").json()
        assert live["breaker_health"] == 0.0
        assert live["status"] != "ok"
        prom = proxy.prometheus()
        assert total(prom, "ccproxy_breaker_state", ccproxy_breaker_state="open") == 1
        assert total(prom, "ccproxy_breaker_transitions_total", ccproxy_breaker_to_state="open") == 1
        assert total(prom, "ccproxy_breaker_rejections_total") == 1
        # The two overloaded upstream answers and the breaker's own refusal.
        assert (
            total(prom, "gen_ai_client_operation_duration_seconds_count", error_type="overloaded_error") == 3
        )

        time.sleep(0.5)  # past the recovery time: the next request is the probe
        assert proxy.chat().status_code == 200
        again = proxy.http.get("/health/ready")
        assert again.status_code == 200
        assert again.json()["breakers"][0]["state"] == "closed"
        assert proxy.http.get("/health").json()["breaker_health"] == 1.0
        prom = proxy.prometheus()
        assert total(prom, "ccproxy_breaker_state", ccproxy_breaker_state="closed") == 1
        assert total(prom, "ccproxy_breaker_transitions_total", ccproxy_breaker_to_state="closed") == 1


def test_the_local_rate_limiter_shows_its_rejections(upstream: MockUpstreamProcess) -> None:
    for proxy in running(upstream, rate_limit_rpm=1, rate_limit_max_wait_seconds=0):
        assert proxy.chat().status_code == 200
        refused = proxy.chat()
        assert refused.status_code == 429
        assert len(upstream.requests()) == 1
        prom = proxy.prometheus()
        assert total(prom, "ccproxy_ratelimit_rejections_total", ccproxy_ratelimit_reason="rate_limited") == 1
        assert total(prom, "ccproxy_ratelimit_admitted_total") == 1
        assert total(prom, "ccproxy_ratelimit_limit", ccproxy_ratelimit_limit_type="requests") == 1
        # The refusal never reached the upstream: no attempt, but a rate_limit_error chat operation.
        assert (
            total(prom, "gen_ai_client_operation_duration_seconds_count", error_type="rate_limit_error") == 1
        )
        assert total(prom, "ccproxy_upstream_attempts_total") == 1


SLOW = "[[latency:1.2]] take your time"


def test_adaptive_timeout_cuts_a_slow_upstream_the_static_timeout_waits_for(
    upstream: MockUpstreamProcess,
) -> None:
    adaptive: dict[str, Any] = {
        "adaptive_timeout_enabled": True,
        "adaptive_timeout_min_samples": 5,
        "adaptive_timeout_min_seconds": 0.25,
        "adaptive_timeout_multiplier": 3.0,
    }
    for proxy in running(upstream, **adaptive):
        for _ in range(6):
            assert proxy.chat().status_code == 200
        timeout = proxy.obs.adaptive_timeout
        assert timeout is not None
        applied = timeout.compute()
        assert applied is not None
        assert 0.25 <= applied < 1.0
        started = time.monotonic()
        cut = proxy.chat(SLOW)
        elapsed = time.monotonic() - started
        assert cut.status_code == 504, cut.text
        assert cut.json()["error"]["type"] == "timeout_error"
        assert elapsed < 1.2
        prom = proxy.prometheus()
        assert total(prom, "ccproxy_upstream_attempts_total", error_type="UpstreamTimeoutError") == 1
        assert total(prom, "ccproxy_upstream_adaptive_timeout_seconds") > 0

    # The same request through a proxy with the static read timeout is simply served, slowly.
    for proxy in running(upstream):
        started = time.monotonic()
        served = proxy.chat(SLOW)
        assert served.status_code == 200
        assert time.monotonic() - started >= 1.2
        assert total(proxy.prometheus(), "ccproxy_upstream_adaptive_timeout_seconds") == 0
