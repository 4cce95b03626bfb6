"""The upstream side `Settings` describe: HTTP client configs, the retry policy, the model mapper, the
OpenAI provider of each upstream, and the fallback list when fallback upstreams are set.

Every provider gets its own HTTP client and closes it with its own `aclose()`; a `FallbackProvider` closes
every upstream's.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import SecretStr

from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.app.wiring.observability import Observability
from ccproxy_asgi.breaker.circuit_breaker import CircuitBreaker
from ccproxy_asgi.provider.base import ChatProvider
from ccproxy_asgi.provider.fallback import FallbackProvider, UpstreamEntry
from ccproxy_asgi.provider.openai import OpenAIProvider
from ccproxy_asgi.provider.retry import RetryPolicy
from ccproxy_asgi.provider.retry_budget import RetryBudget
from ccproxy_asgi.tokens.counter import TokenCounter
from ccproxy_asgi.translate.models import ModelMapper
from ccproxy_asgi.upstream import HTTPClientConfig, create_upstream_client

MOCK_UPSTREAM_HINT = "set CCPROXY_UPSTREAM_BASE_URL (or OPENAI_BASE_URL) and CCPROXY_UPSTREAM_API_KEY"


def require_upstream(settings: Settings) -> str:
    """The primary upstream's base URL; a `ValueError` saying how to set one when there is none."""
    if settings.upstream_base_url is None:
        raise ValueError(f"no upstream configured: {MOCK_UPSTREAM_HINT}")
    return settings.upstream_base_url


def http_client_config(settings: Settings) -> HTTPClientConfig:
    """The `CCPROXY_HTTP_*` settings as the upstream client's value object."""
    return HTTPClientConfig(
        max_connections=settings.http_max_connections,
        connect_timeout=settings.http_connect_timeout_seconds,
        read_timeout=settings.http_read_timeout_seconds,
        first_byte_timeout=settings.http_first_byte_timeout_seconds,
        http2=settings.http2,
    )


def retry_policy(settings: Settings) -> RetryPolicy:
    """The `CCPROXY_RETRY_*` settings as the provider's retry policy (a fresh retry budget each call)."""
    return RetryPolicy(
        max_attempts=settings.retry_max_attempts,
        max_delay=settings.retry_max_backoff_seconds,
        max_retry_after=settings.retry_max_retry_after_seconds,
        total_timeout=settings.retry_total_timeout_seconds,
        defer_to_retrying_clients=settings.retry_defer_to_retrying_clients,
        budget=RetryBudget(
            ratio=settings.retry_budget_ratio,
            min_per_second=settings.retry_budget_min_per_second,
            window=settings.retry_budget_window_seconds,
        ),
    )


def model_mapper(settings: Settings) -> ModelMapper:
    """Claude model names to the primary upstream's (`big_model`, `small_model`, `model_map`)."""
    return ModelMapper(
        big_model=settings.big_model, small_model=settings.small_model, mapping=settings.model_map
    )


def openai_provider(
    settings: Settings,
    base_url: str,
    api_key: SecretStr | None,
    counter: TokenCounter,
    obs: Observability | None = None,
) -> OpenAIProvider:
    """An `OpenAIProvider` for one upstream, with its own HTTP client (closed by its `aclose()`)."""
    return OpenAIProvider(
        base_url=base_url,
        api_key=api_key,
        client=create_upstream_client(settings.http_client, http_client_config(settings)),
        token_counter=counter,
        retry=retry_policy(settings),
        tracer=obs.tracer if obs is not None else None,
        read_timeout=obs.adaptive_timeout if obs is not None else None,
        provider_name=settings.otel_provider_name,
    )


def fallback_entries(
    settings: Settings,
    *,
    primary: ChatProvider,
    make_provider: Callable[[str, SecretStr | None], ChatProvider],
) -> list[UpstreamEntry]:
    """The primary upstream, then `settings.fallback_upstreams` in order, each built by
    `make_provider(base_url, api_key)` (so the caller decides clients, retries and token counting)."""
    if settings.upstream_base_url is None:
        raise ValueError("fallback upstreams need a primary upstream (CCPROXY_UPSTREAM_BASE_URL)")
    entries = [UpstreamEntry(settings.upstream_name, settings.upstream_base_url, primary)]
    for item in settings.fallback_upstreams:
        mapped = item.big_model or item.small_model or item.model_map
        mapper = (
            ModelMapper(big_model=item.big_model, small_model=item.small_model, mapping=item.model_map)
            if mapped
            else None
        )
        entries.append(
            UpstreamEntry(
                item.name,
                item.base_url,
                make_provider(item.base_url, item.api_key),
                mapper.resolve if mapper is not None else None,
            )
        )
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"upstream names must be unique, got {names}")
    return entries


def build_provider(
    settings: Settings,
    *,
    counter: TokenCounter,
    breaker: CircuitBreaker | None,
    obs: Observability | None = None,
) -> ChatProvider:
    """The primary upstream's provider, or, with a breaker and `fallback_upstreams`, a `FallbackProvider`
    over the primary and the fallbacks (each behind its own breaker key)."""
    provider: ChatProvider = openai_provider(
        settings, require_upstream(settings), settings.upstream_api_key, counter, obs
    )
    if breaker is None or not settings.fallback_upstreams:
        return provider
    return FallbackProvider(
        fallback_entries(
            settings,
            primary=provider,
            make_provider=lambda url, key: openai_provider(settings, url, key, counter, obs),
        ),
        breaker=breaker,
        key_mode=settings.breaker_key,
    )


__all__ = [
    "MOCK_UPSTREAM_HINT",
    "build_provider",
    "fallback_entries",
    "http_client_config",
    "model_mapper",
    "openai_provider",
    "require_upstream",
    "retry_policy",
]
