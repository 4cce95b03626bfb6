"""Settings for the CLI and `create_app`, read from `CCPROXY_*` environment variables and an optional `.env`.

The layers themselves take plain keyword arguments or small frozen dataclasses; this object is only the
operator-facing configuration surface, so its field names are part of the public interface (each field is
`CCPROXY_<FIELD NAME IN UPPER CASE>`; the docs' configuration reference is checked against this class).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
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
    max_request_bytes: int = Field(
        default=32 * 1024 * 1024, gt=0, description="Largest request body accepted (413 above)."
    )

    # --- breaker --------------------------------------------------------------------------------------
    breaker_failure_threshold: int = Field(default=5, ge=1, description="Consecutive failures that open it.")
    breaker_recovery_seconds: float = Field(default=30.0, gt=0, description="Time open before probing.")

    # --- retry ----------------------------------------------------------------------------------------
    retry_max_attempts: int = Field(
        default=3, ge=1, description="Attempts per upstream call, first included."
    )
    retry_max_backoff_seconds: float = Field(default=8.0, gt=0, description="Cap of one backoff sleep.")

    # --- HTTP client ----------------------------------------------------------------------------------
    http_client: Literal["aiohttp", "httpx"] = Field(default="aiohttp", description="Upstream HTTP library.")
    http_max_connections: int = Field(default=200, ge=1, description="Connection pool size.")
    http_connect_timeout_seconds: float = Field(default=10.0, gt=0, description="Connect timeout.")
    http_read_timeout_seconds: float = Field(
        default=600.0, gt=0, description="Longest silence between two reads from the upstream."
    )
    http2: bool = Field(default=False, description="HTTP/2 to the upstream (httpx client only).")

    # --- logging --------------------------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        default="info", description="Log level."
    )
    log_format: Literal["text", "json"] = Field(default="text", description="Log line format.")

    # --- state store ----------------------------------------------------------------------------------
    state_backend: Literal["memory", "redis"] = Field(
        default="memory",
        description="Where limiter and breaker state live; redis to share it between processes.",
    )
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"), description="Redis URL for the redis state backend."
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
        value = item.get("input")
        shown = "" if "key" in field or isinstance(value, (dict, list)) else f" (got {value!r})"
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"invalid configuration: {name}: {message}{shown}")
    return "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and `.env`), with keyword overrides on top."""
    return Settings(**overrides)


__all__ = ["ENV_PREFIX", "Settings", "describe_validation_error", "env_name", "load_settings"]
