"""Settings for the CLI and `create_app`, read from `CCPROXY_*` environment variables and an optional `.env`.

The layers themselves take plain keyword arguments or small frozen dataclasses; this object is only the
operator-facing configuration surface, so its field names are part of the public interface (each field is
`CCPROXY_<FIELD NAME IN UPPER CASE>`; the docs' configuration reference is checked against this class).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "CCPROXY_"


def _split_csv(value: Any) -> Any:
    """Accept `a,b,c` as well as a JSON list for list-valued variables."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            import json

            return json.loads(stripped)
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return value


def _refuse_url_credentials(url: str, where_the_key_goes: str) -> None:
    """A base URL with `user:password@` is refused: the clients send no Authorization from it, so every
    request would fail upstream while start-up and readiness looked fine."""
    if "@" in urlsplit(url).netloc:
        raise ValueError(
            f"must not carry credentials (user:password@ in the URL); put the key in {where_the_key_goes}"
        )


def _hide_url_credentials(value: Any) -> Any:
    """`value` with the user:password@ part of a URL masked, for error messages."""
    if isinstance(value, str) and "@" in value:
        try:
            parts = urlsplit(value)
        except ValueError:
            return "***"
        if "@" in parts.netloc:
            return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
    return value


class FallbackUpstream(BaseModel):
    """One fallback upstream: where it is, its key, and how requested models map to its own models
    (no mapping at all: the main upstream's model name is sent unchanged)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    base_url: str
    api_key: SecretStr | None = None
    big_model: str | None = None
    small_model: str | None = None
    model_map: dict[str, str] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str, info: ValidationInfo) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        name = info.data.get("name")
        where = f"the api_key of fallback upstream {name!r}" if name else "its api_key"
        _refuse_url_credentials(value, where)
        return value.rstrip("/")


class Settings(BaseSettings):
    """Every knob of the proxy. Groups are marked by comments; see docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    # --- upstream -------------------------------------------------------------------------------------
    upstream_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CCPROXY_UPSTREAM_BASE_URL", "OPENAI_BASE_URL", "upstream_base_url"),
        description="OpenAI-compatible base URL including the version path, e.g. https://api.openai.com/v1. "
        "Falls back to OPENAI_BASE_URL. Unset: the built-in mock upstream is served.",
    )
    upstream_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CCPROXY_UPSTREAM_API_KEY", "OPENAI_API_KEY", "upstream_api_key"),
        description="Key sent to the upstream as `Authorization: Bearer`. Falls back to OPENAI_API_KEY.",
    )
    upstream_list_models: bool = Field(
        default=False, description="Also list the upstream's own models on GET /v1/models."
    )
    forward_client_key: bool = Field(
        default=False,
        description="Send the client's own key upstream instead of the upstream key (for per-user upstream keys).",
    )

    # --- model mapping --------------------------------------------------------------------------------
    big_model: str = Field(default="gpt-4o", description="Upstream model for Claude opus/sonnet names.")
    small_model: str = Field(default="gpt-4o-mini", description="Upstream model for Claude haiku names.")
    model_map: dict[str, str] = Field(
        default_factory=dict,
        description='JSON object of requested name or glob -> upstream model, e.g. {"claude-3-5-*":"gpt-4o"}.',
    )
    reasoning_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Globs of upstream models to treat as reasoning models (added to the built-in "
        "gpt-5*/o1*/o3*/o4* rules): reasoning_effort is sent, temperature/top_p/stop dropped.",
    )
    max_tokens_field: Literal["auto", "max_tokens", "max_completion_tokens"] = Field(
        default="auto",
        description="Which OpenAI field carries max_tokens; auto picks per model family.",
    )
    forward_top_k: bool | None = Field(
        default=None,
        description="Forward top_k; unset: per model family (self-hosted yes, OpenAI models no).",
    )
    max_tool_description_chars: int = Field(
        default=0,
        ge=0,
        description="Cut tool descriptions to this many characters (the full text moves to the system prompt), "
        "for upstreams that limit them; 0 = no limit.",
    )
    mid_conversation_system: Literal["auto", "system", "user"] = Field(
        default="auto",
        description="System messages after the first (Claude Code's agent listings): sent as system messages, "
        "or as <system-reminder> user text for chat templates that refuse them; auto: user text for "
        "self-hosted models, system for OpenAI's.",
    )
    server_tools: Literal["reject", "drop"] = Field(
        default="reject",
        description="What to do with Anthropic server tools (web_search, code_execution, ...).",
    )
    ping_interval_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Seconds of upstream silence after which a stream gets a `ping` event.",
    )

    # --- limits ---------------------------------------------------------------------------------------
    rate_limit_rpm: int = Field(default=0, ge=0, description="Requests per window; 0 = off.")
    rate_limit_tpm: int = Field(default=0, ge=0, description="Tokens per window; 0 = off.")
    rate_limit_window_seconds: float = Field(
        default=60.0, gt=0, description="Length of the rate-limit window."
    )
    rate_limit_max_wait_seconds: float = Field(
        default=30.0, ge=0, description="How long a request may queue for budget before a 429."
    )
    rate_limit_input_tpm: int = Field(
        default=0, ge=0, description="Input (prompt) tokens per window, besides the TPM budget; 0 = off."
    )
    rate_limit_output_tpm: int = Field(
        default=0, ge=0, description="Output tokens (max_tokens reserved) per window; 0 = off."
    )
    rate_limit_key: Literal["global", "model", "client", "client_model"] = Field(
        default="global",
        description="What a budget belongs to: the whole proxy, each upstream model, each client key, "
        "or each client key and model.",
    )
    rate_limit_budgets: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="JSON object of limiter key -> budget overriding the defaults for that key, e.g. "
        '{"model:gpt-4o":{"rpm":500,"tpm":30000}} (fields rpm, tpm, input_tpm, output_tpm; 0 = off; '
        "with rate_limit_key=model a bare model name works too).",
    )
    rate_limit_default_max_tokens: int = Field(
        default=4096, ge=0, description="Output tokens reserved for a request that names no max_tokens."
    )
    rate_limit_adaptive: bool = Field(
        default=True,
        description="Adapt to the upstream: cut limits on its 429s, pause for its retry-after, grow back "
        "after successes, and tighten from its x-ratelimit-remaining-* headers.",
    )
    rate_limit_decrease_factor: float = Field(
        default=0.8, gt=0, lt=1, description="Limits are multiplied by this on an upstream 429."
    )
    rate_limit_min_factor: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Floor of the adaptive factor (fraction of the configured limits).",
    )
    rate_limit_increase_factor: float = Field(
        default=1.1, ge=1, description="Limits are multiplied by this after a run of successes."
    )
    rate_limit_successes_to_increase: int = Field(
        default=10, ge=1, description="Consecutive successful responses before the limits grow."
    )
    rate_limit_store_failure_mode: Literal["open", "closed"] = Field(
        default="open",
        description="When the shared (redis) store is unreachable: admit without limits (open) or "
        "answer 429 (closed). Either way it is logged as an error and retried every second.",
    )
    rate_limit_redis_prefix: str = Field(
        default="ccproxy:rl", description="Prefix of the rate limiter's Redis keys."
    )
    rate_limit_window_margin_seconds: float = Field(
        default=0.05,
        ge=0,
        description="Added to the window locally: the upstream counts a request when it arrives, a little "
        "after the proxy admitted it.",
    )
    max_request_bytes: int = Field(
        default=32 * 1024 * 1024, gt=0, description="Largest request body accepted (413 above)."
    )
    body_read_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Longest time a client may take to send its whole request body (408 after), so a "
        "stalled or slow-loris client cannot hold a request open forever.",
    )

    # --- breaker --------------------------------------------------------------------------------------
    breaker_failure_threshold: int = Field(
        default=5, ge=1, description="Distinct failing requests in a row (no success between) that open it."
    )
    breaker_recovery_seconds: float = Field(default=30.0, gt=0, description="Time open before probing.")
    breaker_enabled: bool = Field(
        default=True, description="Put the circuit breaker in front of the upstream(s)."
    )
    breaker_failure_ratio: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="With at least min_requests in the window: open when this fraction failed, and not on "
        "consecutive failures below it; 0 = off (consecutive failures alone decide).",
    )
    breaker_window_seconds: float = Field(default=60.0, gt=0, description="Window of the failure ratio.")
    breaker_min_requests: int = Field(
        default=20, ge=1, description="Requests in the window before the failure ratio is judged."
    )
    breaker_recovery_growth: float = Field(
        default=1.0, ge=1, description="Recovery time multiplier per further trip without a close; 1 = off."
    )
    breaker_max_recovery_seconds: float = Field(default=300.0, gt=0, description="Cap of the recovery time.")
    breaker_half_open_probes: int = Field(
        default=1, ge=1, description="Requests let through at once while half-open."
    )
    breaker_half_open_successes: int = Field(
        default=1, ge=1, description="Probe successes that close the breaker again."
    )
    breaker_probe_lease_seconds: float = Field(
        default=120.0, gt=0, description="A probe slot whose request never reported back is freed after this."
    )
    breaker_open_probe_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="While open with no fallback left, one probe is let through this often.",
    )
    breaker_repeat_memory_seconds: float = Field(
        default=300.0,
        ge=0,
        description="A request failing again within this time (same body: a client's retry) is not counted "
        "again; 0 = off.",
    )
    breaker_count_429: bool = Field(default=False, description="Count upstream 429s as breaker failures.")
    breaker_key: Literal["upstream", "upstream_model"] = Field(
        default="upstream", description="One breaker per upstream, or per upstream and upstream model."
    )
    breaker_redis_failure_mode: Literal["local", "allow"] = Field(
        default="local",
        description="While Redis is unreachable: an in-process breaker (local) or none (allow).",
    )

    # --- fallback upstreams ---------------------------------------------------------------------------
    upstream_name: str = Field(
        default="primary", description="Name of the main upstream in the x-ccproxy-upstream response header."
    )
    fallback_upstreams: list[FallbackUpstream] = Field(
        default_factory=list,
        description='JSON list of upstreams tried in order when the main one is down, e.g. [{"name":"local",'
        '"base_url":"http://127.0.0.1:8000/v1","api_key":"...","big_model":"qwen","model_map":{}}].',
    )

    # --- retry ----------------------------------------------------------------------------------------
    retry_max_attempts: int = Field(
        default=3, ge=1, description="Attempts per upstream call, first included."
    )
    retry_max_backoff_seconds: float = Field(default=8.0, gt=0, description="Cap of one backoff sleep.")
    retry_max_retry_after_seconds: float = Field(
        default=8.0,
        ge=0,
        description="Longest upstream retry-after the proxy waits out itself; a longer one goes to the "
        "client at once (with its retry-after), so a client never waits twice.",
    )
    retry_total_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        description="Time budget of one upstream call, attempts and waits together: no retry is started "
        "that would end past it.",
    )
    retry_budget_ratio: float = Field(
        default=0.2,
        ge=0,
        description="Retry budget: retries may add at most this fraction of the recent requests (per process).",
    )
    retry_budget_min_per_second: float = Field(
        default=1.0,
        ge=0,
        description="Retry budget: retries per second always allowed, however little traffic there is.",
    )
    retry_budget_window_seconds: float = Field(
        default=10.0, gt=0, description="Retry budget: how far back requests and retries are counted."
    )
    retry_defer_to_retrying_clients: bool = Field(
        default=True,
        description="A client that announces its own retries (x-stainless-retry-count: the SDKs, Claude "
        "Code) gets a retryable upstream status back at once, so attempts do not multiply; false retries "
        "for it too, hiding a transient error at that price.",
    )

    # --- HTTP client ----------------------------------------------------------------------------------
    http_client: Literal["aiohttp", "httpx"] = Field(default="aiohttp", description="Upstream HTTP library.")
    http_max_connections: int = Field(default=200, ge=1, description="Connection pool size.")
    http_connect_timeout_seconds: float = Field(default=10.0, gt=0, description="Connect timeout.")
    http_read_timeout_seconds: float = Field(
        default=600.0, gt=0, description="Longest silence between two reads from the upstream."
    )
    http_first_byte_timeout_seconds: float = Field(
        default=45.0,
        gt=0,
        description="Streaming requests: longest wait for the upstream's response head, retries included "
        "(the client gets nothing, not even a ping, until then); non-streaming ones wait up to the read "
        "timeout.",
    )
    http2: bool = Field(default=False, description="HTTP/2 to the upstream (httpx client only).")

    # --- logging --------------------------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        default="info", description="Log level."
    )
    log_format: Literal["text", "json"] = Field(default="text", description="Log line format.")
    request_id_header: str = Field(
        default="request-id",
        pattern=r"^[A-Za-z0-9-]+$",
        description="Request header read for the client's request id (x-request-id is accepted too); "
        "the id is echoed as `request-id` (and this header) and sent upstream as x-request-id.",
    )
    access_log: bool = Field(default=True, description="One access-log line per request.")

    # --- observability --------------------------------------------------------------------------------
    metrics_enabled: bool = Field(
        default=True,
        description="Record request metrics: OpenTelemetry instruments (the global MeterProvider, a no-op "
        "until an SDK is configured) and the Prometheus text endpoint.",
    )
    metrics_path: str = Field(
        default="/metrics",
        pattern=r"^(/.*)?$",
        description="Path of the Prometheus text endpoint; empty = off.",
    )
    health_path: str = Field(
        default="/health",
        pattern=r"^(/.*)?$",
        description="Liveness with the health score (JSON); empty = off.",
    )
    health_ready_path: str = Field(
        default="/health/ready",
        pattern=r"^(/.*)?$",
        description="Readiness (JSON; 503 while a breaker is open or the upstream or a store is unreachable); "
        "empty = off.",
    )
    health_latency_target_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Upstream p99 time to response head above which the health score drops.",
    )
    metrics_window_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Sliding window of the latency percentiles, the success rate and the adaptive timeout.",
    )
    tracing_enabled: bool = Field(
        default=True,
        description="OpenTelemetry spans (one per request, one per upstream attempt) through the global "
        "TracerProvider, a no-op until an SDK is configured; the client's W3C traceparent reaches the "
        "upstream either way.",
    )
    otel_provider_name: str = Field(
        default="openai",
        description="gen_ai.provider.name on metrics and spans (the upstream's wire format).",
    )
    adaptive_timeout_enabled: bool = Field(
        default=False,
        description="Derive the upstream read timeout from observed latency: clamp(multiplier x quantile of "
        "recent time to response head, min, max). It bounds silences within streams too.",
    )
    adaptive_timeout_multiplier: float = Field(default=3.0, gt=0, description="Adaptive timeout: multiplier.")
    adaptive_timeout_quantile: float = Field(
        default=0.99, gt=0, le=1, description="Adaptive timeout: latency quantile it follows."
    )
    adaptive_timeout_min_seconds: float = Field(
        default=30.0, gt=0, description="Adaptive timeout: floor (cover a healthy model's longest pause)."
    )
    adaptive_timeout_max_seconds: float | None = Field(
        default=None, gt=0, description="Adaptive timeout: ceiling; unset = http_read_timeout_seconds."
    )
    adaptive_timeout_min_samples: int = Field(
        default=50, ge=1, description="Adaptive timeout: observations in the window before it applies."
    )

    # --- serving (`ccproxy-asgi serve`) ---------------------------------------------------------------
    server_keepalive_timeout_seconds: float = Field(
        default=75.0,
        gt=0,
        description="serve: a connection with no request on it (just opened, or after a response) is closed "
        "after this long. Keep it above the idle timeout of a load balancer in front (60 s for nginx and AWS "
        "ALB). hypercorn and granian time the idle wait and the request head as one: there the smaller of "
        "this and server_header_timeout_seconds applies to both.",
    )
    server_header_timeout_seconds: float = Field(
        default=20.0,
        gt=0,
        description="serve: once a request has begun, its head (request line and headers) must be in within "
        "this long, or the connection is closed (slow clients holding connections open).",
    )
    server_max_header_bytes: int = Field(
        default=64 * 1024,
        ge=8192,
        description="serve: largest request head (request line and headers) accepted, in bytes; 431 above. "
        "At least 8192.",
    )

    # --- state store ----------------------------------------------------------------------------------
    state_backend: Literal["memory", "redis"] = Field(
        default="memory",
        description="Where limiter and breaker state live; redis to share it between processes.",
    )
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"), description="Redis URL for the redis state backend."
    )
    redis_cluster: bool = Field(
        default=False,
        description="redis_url names a node of a Redis Cluster (the client learns the other nodes from it).",
    )

    # --- inbound auth ---------------------------------------------------------------------------------
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Keys clients must present (x-api-key or Authorization: Bearer); empty = no inbound auth.",
    )

    @field_validator("reasoning_models", "api_keys", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("upstream_base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        _refuse_url_credentials(value, "CCPROXY_UPSTREAM_API_KEY")
        return value.rstrip("/")

    @property
    def uses_mock_upstream(self) -> bool:
        return self.upstream_base_url is None


def env_name(field: str) -> str:
    """The environment variable that sets `field`."""
    return ENV_PREFIX + field.upper()


def describe_validation_error(error: ValidationError) -> str:
    """One line per invalid variable: its name and what is wrong, without a traceback wall."""
    lines = []
    for item in error.errors(include_url=False):
        field = str(item["loc"][0]) if item["loc"] else "?"
        name = env_name(field) if field in Settings.model_fields else field
        value = _hide_url_credentials(item.get("input"))
        shown = "" if "key" in field or isinstance(value, (dict, list)) else f" (got {value!r})"
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"invalid configuration: {name}: {message}{shown}")
    return "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and `.env`), with keyword overrides on top."""
    return Settings(**overrides)


__all__ = [
    "ENV_PREFIX",
    "FallbackUpstream",
    "Settings",
    "describe_validation_error",
    "env_name",
    "load_settings",
]
