"""The proxy with the circuit breaker (and fallback upstreams) composed around it, for the breaker tests.

`create_app` does not mount the breaker yet, so the tests compose it the way `create_app` should:

    app, breaker = breaker_app(settings)        # in-process, e.g. under `serve_app`
    uvicorn --factory tests.support.breaker_app:app_from_env   # a separate process, settings from CCPROXY_*
"""

from __future__ import annotations

from pydantic import SecretStr

from ccproxy_asgi.app import build_endpoint, create_app
from ccproxy_asgi.breaker import CircuitBreaker, build_breaker
from ccproxy_asgi.endpoint.app import AnthropicEndpoint
from ccproxy_asgi.middleware.breaker import CircuitBreakerMiddleware, UpstreamHeaderMiddleware
from ccproxy_asgi.provider.base import ChatProvider
from ccproxy_asgi.provider.fallback import FallbackProvider, fallback_entries
from ccproxy_asgi.provider.openai import OpenAIProvider
from ccproxy_asgi.retry import RetryPolicy
from ccproxy_asgi.settings import Settings
from ccproxy_asgi.tokens.counter import TokenCounter
from ccproxy_asgi.translate.models import ModelMapper
from ccproxy_asgi.translate.options import ProfileResolver, TranslationOptions
from ccproxy_asgi.types import ASGIApp
from ccproxy_asgi.upstream import HTTPClientConfig, create_upstream_client


def _models(settings: Settings) -> ModelMapper:
    return ModelMapper(big_model=settings.big_model, small_model=settings.small_model, mapping=settings.model_map)


def _fallback_endpoint(settings: Settings, breaker: CircuitBreaker) -> AnthropicEndpoint:
    counter = TokenCounter()

    def make_provider(base_url: str, api_key: SecretStr | None) -> ChatProvider:
        client = create_upstream_client(
            settings.http_client,
            HTTPClientConfig(
                max_connections=settings.http_max_connections,
                connect_timeout=settings.http_connect_timeout_seconds,
                read_timeout=settings.http_read_timeout_seconds,
            ),
        )
        retry = RetryPolicy(max_attempts=settings.retry_max_attempts, max_delay=settings.retry_max_backoff_seconds)
        return OpenAIProvider(base_url=base_url, api_key=api_key, client=client, token_counter=counter, retry=retry)

    primary = build_endpoint(settings).provider
    provider = FallbackProvider(
        fallback_entries(settings, primary=primary, make_provider=make_provider),
        breaker=breaker,
        key_mode=settings.breaker_key,
    )
    return AnthropicEndpoint(
        provider=provider,
        models=_models(settings),
        profile_for=ProfileResolver.from_settings(
            reasoning_globs=settings.reasoning_models,
            max_tokens_field=settings.max_tokens_field,
            forward_top_k=settings.forward_top_k,
        ),
        options=TranslationOptions(server_tools=settings.server_tools),
        ping_interval=settings.ping_interval_seconds,
        max_request_bytes=settings.max_request_bytes,
    )


def breaker_app(settings: Settings) -> tuple[ASGIApp, CircuitBreaker]:
    """The proxy for `settings` with its breaker, and the breaker (to read its stats and snapshots)."""
    breaker = build_breaker(settings)
    if settings.fallback_upstreams:
        return UpstreamHeaderMiddleware(_fallback_endpoint(settings, breaker)), breaker
    assert settings.upstream_base_url is not None
    app = CircuitBreakerMiddleware(
        create_app(settings),
        breaker=breaker,
        upstream=settings.upstream_base_url,
        name=settings.upstream_name,
        key_mode=settings.breaker_key,
        resolve_model=_models(settings).resolve,
        max_request_bytes=settings.max_request_bytes,
    )
    return app, breaker


def app_from_env() -> ASGIApp:
    """`uvicorn --factory` entry point: settings from the environment."""
    return breaker_app(Settings())[0]


__all__ = ["app_from_env", "breaker_app"]
