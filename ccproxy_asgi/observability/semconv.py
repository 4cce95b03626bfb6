"""Metric definitions: one table that both exporters (OpenTelemetry, Prometheus text) are built from.

Names and attributes follow the OpenTelemetry semantic conventions where one exists: the GenAI
conventions for the chat operation (`gen_ai.client.operation.duration`, `gen_ai.client.token.usage`,
`gen_ai.server.time_to_first_token`), the HTTP conventions for the server and upstream-client side
(`http.server.request.duration`, `http.server.active_requests`, `http.client.request.duration`).
What the conventions do not cover (limiter, breaker, windows, health) lives under `ccproxy.*`.

Prometheus names are the OpenTelemetry ones as the OpenTelemetry Prometheus exporter would write them:
dots become underscores, a unit of seconds adds `_seconds`, a counter ends in `_total`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "updown", "histogram", "gauge"]

# ----- attribute keys ------------------------------------------------------------------------------------
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
# Deprecated by `gen_ai.provider.name`, still what many backends group by: sent on spans only.
SYSTEM = "gen_ai.system"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
TOKEN_TYPE = "gen_ai.token.type"
REQUEST_STREAM = "gen_ai.request.stream"
FINISH_REASONS = "gen_ai.response.finish_reasons"
USAGE_INPUT = "gen_ai.usage.input_tokens"
USAGE_OUTPUT = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ = "gen_ai.usage.cache_read.input_tokens"
USAGE_CACHE_CREATION = "gen_ai.usage.cache_creation.input_tokens"
ERROR_TYPE = "error.type"
HTTP_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_STATUS = "http.response.status_code"
URL_PATH = "url.path"
URL_SCHEME = "url.scheme"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
REQUEST_ID = "ccproxy.request_id"
ATTEMPT = "ccproxy.upstream.attempt"
ATTEMPTS = "ccproxy.upstream.attempts"
RETRY = "ccproxy.upstream.retry"
CCPROXY_TOKEN_TYPE = "ccproxy.token.type"
LIMIT_REASON = "ccproxy.ratelimit.reason"
LIMIT_KEY = "ccproxy.ratelimit.key"
LIMIT_TYPE = "ccproxy.ratelimit.limit_type"
BREAKER_KEY = "ccproxy.breaker.key"
BREAKER_STATE = "ccproxy.breaker.state"
BREAKER_FROM = "ccproxy.breaker.from_state"
BREAKER_TO = "ccproxy.breaker.to_state"
BREAKER_OUTCOME = "ccproxy.breaker.outcome"
WINDOW = "ccproxy.window"
QUANTILE = "quantile"

OPERATION_CHAT = "chat"
ERROR_OTHER = "_OTHER"

# ----- bucket boundaries (the conventions' advice, extended where LLM calls run longer) -------------------
# fmt: off
GENAI_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# The HTTP conventions stop at 10 s; a generation routinely takes minutes.
HTTP_DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0, 120.0, 300.0,
)
# fmt: on


@dataclass(frozen=True, slots=True, eq=False)
class MetricDef:
    """One metric: its OpenTelemetry name and unit, its Prometheus name, and its attribute keys in the
    order the collector keys its series by. Compared and hashed by identity: definitions are module
    constants, and they key dictionaries on the per-request path."""

    name: str
    prom_name: str
    kind: Kind
    unit: str
    description: str
    attributes: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def prom_labels(self) -> tuple[str, ...]:
        return tuple(prom_label(key) for key in self.attributes)


def prom_label(key: str) -> str:
    """An attribute key as a Prometheus label name."""
    return key.replace(".", "_")


_GENAI = (OPERATION, PROVIDER, REQUEST_MODEL, RESPONSE_MODEL)

# ----- per request --------------------------------------------------------------------------------------
HTTP_SERVER_DURATION = MetricDef(
    "http.server.request.duration",
    "http_server_request_duration_seconds",
    "histogram",
    "s",
    "Duration of HTTP server requests, to the last byte of the response.",
    (HTTP_METHOD, HTTP_ROUTE, HTTP_STATUS),
    HTTP_DURATION_BUCKETS,
)
HTTP_SERVER_ACTIVE = MetricDef(
    "http.server.active_requests",
    "http_server_active_requests",
    "updown",
    "{request}",
    "HTTP server requests in flight.",
)
GENAI_DURATION = MetricDef(
    "gen_ai.client.operation.duration",
    "gen_ai_client_operation_duration_seconds",
    "histogram",
    "s",
    "Duration of chat operations (Messages requests), retries and streaming included.",
    (*_GENAI, ERROR_TYPE),
    GENAI_DURATION_BUCKETS,
)
GENAI_TOKENS = MetricDef(
    "gen_ai.client.token.usage",
    "gen_ai_client_token_usage",
    "histogram",
    "{token}",
    "Input (cached included) and output tokens per chat operation.",
    (*_GENAI, TOKEN_TYPE),
    TOKEN_BUCKETS,
)
GENAI_TTFT = MetricDef(
    "gen_ai.server.time_to_first_token",
    "gen_ai_server_time_to_first_token_seconds",
    "histogram",
    "s",
    "Time to the first content delta of successful streamed responses.",
    _GENAI,
    TTFT_BUCKETS,
)
TTFB = MetricDef(
    "ccproxy.server.time_to_first_byte",
    "ccproxy_server_time_to_first_byte_seconds",
    "histogram",
    "s",
    "Time to the first byte of the response body of streamed chat responses.",
    _GENAI,
    TTFT_BUCKETS,
)
TOKENS = MetricDef(
    "ccproxy.usage.tokens",
    "ccproxy_usage_tokens_total",
    "counter",
    "{token}",
    "Tokens as the Anthropic usage reports them: input (uncached), output, cache_read_input, "
    "cache_creation_input.",
    (REQUEST_MODEL, RESPONSE_MODEL, CCPROXY_TOKEN_TYPE),
)
UPSTREAM_DURATION = MetricDef(
    "http.client.request.duration",
    "http_client_request_duration_seconds",
    "histogram",
    "s",
    "Upstream attempts: time to the response head (error bodies included).",
    (SERVER_ADDRESS, SERVER_PORT, HTTP_STATUS, ERROR_TYPE),
    HTTP_DURATION_BUCKETS,
)
UPSTREAM_ATTEMPTS = MetricDef(
    "ccproxy.upstream.attempts",
    "ccproxy_upstream_attempts_total",
    "counter",
    "{attempt}",
    "Upstream attempts, retries included (ccproxy.upstream.retry=true).",
    (SERVER_ADDRESS, HTTP_STATUS, ERROR_TYPE, RETRY),
)
UPSTREAM_RETRIES = MetricDef(
    "ccproxy.upstream.retries",
    "ccproxy_upstream_retries_total",
    "counter",
    "{attempt}",
    "Upstream attempts after the first of their request.",
    (SERVER_ADDRESS,),
)

REQUEST_METRICS = (
    HTTP_SERVER_DURATION,
    GENAI_DURATION,
    GENAI_TOKENS,
    GENAI_TTFT,
    TTFB,
    TOKENS,
    UPSTREAM_DURATION,
    UPSTREAM_ATTEMPTS,
    UPSTREAM_RETRIES,
)

# ----- read from the other layers when exported (observable instruments) ----------------------------------
LIMIT_ADMITTED = MetricDef(
    "ccproxy.ratelimit.admitted",
    "ccproxy_ratelimit_admitted_total",
    "counter",
    "{request}",
    "Requests the rate limiter admitted (after a wait or not).",
)
LIMIT_WAITS = MetricDef(
    "ccproxy.ratelimit.waits",
    "ccproxy_ratelimit_waits_total",
    "counter",
    "{request}",
    "Requests that waited in the rate limiter's queue.",
)
LIMIT_WAIT_TIME = MetricDef(
    "ccproxy.ratelimit.wait_time",
    "ccproxy_ratelimit_wait_time_seconds_total",
    "counter",
    "s",
    "Seconds spent waiting in the rate limiter's queue.",
)
LIMIT_REJECTIONS = MetricDef(
    "ccproxy.ratelimit.rejections",
    "ccproxy_ratelimit_rejections_total",
    "counter",
    "{request}",
    "Requests the rate limiter refused, by reason.",
    (LIMIT_REASON,),
)
LIMIT_UPSTREAM_429 = MetricDef(
    "ccproxy.ratelimit.upstream_rate_limited",
    "ccproxy_ratelimit_upstream_rate_limited_total",
    "counter",
    "{response}",
    "Upstream 429 answers the rate limiter learned from.",
)
LIMIT_QUEUED = MetricDef(
    "ccproxy.ratelimit.queued",
    "ccproxy_ratelimit_queued",
    "gauge",
    "{request}",
    "Requests waiting for budget now.",
)
LIMIT_EFFECTIVE = MetricDef(
    "ccproxy.ratelimit.limit",
    "ccproxy_ratelimit_limit",
    "gauge",
    "1",
    "Effective limit per key (configured times the adaptive factor).",
    (LIMIT_KEY, LIMIT_TYPE),
)
LIMIT_REMAINING = MetricDef(
    "ccproxy.ratelimit.remaining",
    "ccproxy_ratelimit_remaining",
    "gauge",
    "1",
    "Budget left in the current window per key, as of the last decision.",
    (LIMIT_KEY, LIMIT_TYPE),
)
LIMIT_FACTOR = MetricDef(
    "ccproxy.ratelimit.factor",
    "ccproxy_ratelimit_factor",
    "gauge",
    "1",
    "Adaptive factor of each key's limits (1 = as configured).",
    (LIMIT_KEY,),
)
BREAKER_STATE_DEF = MetricDef(
    "ccproxy.breaker.state",
    "ccproxy_breaker_state",
    "gauge",
    "1",
    "1 for the state each breaker key is in (as this process last saw it), 0 for the others.",
    (BREAKER_KEY, BREAKER_STATE),
)
BREAKER_TRANSITIONS = MetricDef(
    "ccproxy.breaker.transitions",
    "ccproxy_breaker_transitions_total",
    "counter",
    "{transition}",
    "Breaker state changes made by this process.",
    (BREAKER_KEY, BREAKER_FROM, BREAKER_TO),
)
BREAKER_REJECTIONS = MetricDef(
    "ccproxy.breaker.rejections",
    "ccproxy_breaker_rejections_total",
    "counter",
    "{request}",
    "Requests the breaker refused (answered 529).",
    (BREAKER_KEY,),
)
BREAKER_OUTCOMES = MetricDef(
    "ccproxy.breaker.outcomes",
    "ccproxy_breaker_outcomes_total",
    "counter",
    "{request}",
    "Outcomes of admitted requests as the breaker classified them.",
    (BREAKER_KEY, BREAKER_OUTCOME),
)
LATENCY_WINDOW = MetricDef(
    "ccproxy.latency.window",
    "ccproxy_latency_window_seconds",
    "gauge",
    "s",
    "Latency quantiles over the sliding window: request (chat), upstream (time to response head), ttft.",
    (WINDOW, QUANTILE),
)
SUCCESS_RATE = MetricDef(
    "ccproxy.success_rate",
    "ccproxy_success_rate",
    "gauge",
    "1",
    "Share of chat requests in the sliding window that did not fail on the server side.",
)
HEALTH_SCORE = MetricDef(
    "ccproxy.health.score",
    "ccproxy_health_score",
    "gauge",
    "1",
    "Health score from 0 to 1 (success rate, breaker states, upstream latency).",
)
ADAPTIVE_TIMEOUT = MetricDef(
    "ccproxy.upstream.adaptive_timeout",
    "ccproxy_upstream_adaptive_timeout_seconds",
    "gauge",
    "s",
    "Read timeout the adaptive policy currently gives upstream attempts (absent: the static one).",
)
