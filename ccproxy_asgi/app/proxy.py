"""`create_app`: the whole proxy as one ASGI app, built from `Settings`.

Layers, outermost first (checked by `Pipeline`): correlation (request id, access log), tracing (when
on), metrics, error normalization, inbound auth (when `CCPROXY_API_KEYS` is set), the circuit breaker
(or, with fallback upstreams, the header naming the upstream that served), the token rate limiter (when
a budget is set), then the endpoint. `/metrics`, `/health` and `/health/ready` are answered in front of
all of them. `build_proxy` returns the parts too, for embedding and tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.breaker import CircuitBreaker, build_breaker
from ccproxy_asgi.endpoint.dispatch import AnthropicEndpoint
from ccproxy_asgi.logs import register_secrets
from ccproxy_asgi.middleware.auth import APIKeyAuthMiddleware
from ccproxy_asgi.middleware.breaker import CircuitBreakerMiddleware, UpstreamHeaderMiddleware
from ccproxy_asgi.middleware.correlation import CorrelationMiddleware
from ccproxy_asgi.middleware.error_normalization import ErrorNormalizationMiddleware
from ccproxy_asgi.middleware.metrics import MetricsMiddleware
from ccproxy_asgi.middleware.observability import ObservabilityRoutes
from ccproxy_asgi.middleware.ratelimit import TokenRateLimitMiddleware
from ccproxy_asgi.middleware.tracing import TracingMiddleware
from ccproxy_asgi.observability.factory import Observability, build_observability
from ccproxy_asgi.plumbing.lifespan import LifespanHooks
from ccproxy_asgi.plumbing.pipeline import Pipeline
from ccproxy_asgi.provider.base import ChatProvider
from ccproxy_asgi.provider.fallback import FallbackProvider, fallback_entries
from ccproxy_asgi.provider.openai import OpenAIProvider
from ccproxy_asgi.provider.retry import RetryPolicy
from ccproxy_asgi.provider.retry_budget import RetryBudget
from ccproxy_asgi.ratelimit import RateLimiter, build_rate_limiter
from ccproxy_asgi.ratelimit.cost import CostEstimator
from ccproxy_asgi.tokens.counter import TokenCounter
from ccproxy_asgi.translate.models import ModelMapper
from ccproxy_asgi.translate.options import ProfileResolver, TranslationOptions
from ccproxy_asgi.types import ASGIApp
from ccproxy_asgi.upstream import HTTPClientConfig, create_upstream_client

MOCK_UPSTREAM_HINT = "set CCPROXY_UPSTREAM_BASE_URL (or OPENAI_BASE_URL) and CCPROXY_UPSTREAM_API_KEY"


def _retry_policy(settings: Settings) -> RetryPolicy:
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


def _openai_provider(
    settings: Settings,
    base_url: str,
    api_key: SecretStr | None,
    counter: TokenCounter,
    obs: Observability | None = None,
) -> OpenAIProvider:
    client = create_upstream_client(
        settings.http_client,
        HTTPClientConfig(
            max_connections=settings.http_max_connections,
            connect_timeout=settings.http_connect_timeout_seconds,
            read_timeout=settings.http_read_timeout_seconds,
            first_byte_timeout=settings.http_first_byte_timeout_seconds,
            http2=settings.http2,
        ),
    )
    return OpenAIProvider(
        base_url=base_url,
        api_key=api_key,
        client=client,
        token_counter=counter,
        retry=_retry_policy(settings),
        tracer=obs.tracer if obs is not None else None,
        read_timeout=obs.adaptive_timeout if obs is not None else None,
        provider_name=settings.otel_provider_name,
    )


def model_mapper(settings: Settings) -> ModelMapper:
    return ModelMapper(
        big_model=settings.big_model, small_model=settings.small_model, mapping=settings.model_map
    )


def build_endpoint(
    settings: Settings,
    *,
    provider: ChatProvider | None = None,
    counter: TokenCounter | None = None,
    models: ModelMapper | None = None,
) -> AnthropicEndpoint:
    """The terminal endpoint wired from settings, with the OpenAI provider unless one is given."""
    if settings.upstream_base_url is None:
        raise ValueError(f"no upstream configured: {MOCK_UPSTREAM_HINT}")
    if provider is None:
        provider = _openai_provider(
            settings, settings.upstream_base_url, settings.upstream_api_key, counter or TokenCounter()
        )
    return AnthropicEndpoint(
        provider=provider,
        models=models or model_mapper(settings),
        profile_for=ProfileResolver.from_settings(
            reasoning_globs=settings.reasoning_models,
            max_tokens_field=settings.max_tokens_field,
            forward_top_k=settings.forward_top_k,
            max_tool_description_chars=settings.max_tool_description_chars or None,
            mid_conversation_system=(
                None if settings.mid_conversation_system == "auto" else settings.mid_conversation_system
            ),
        ),
        options=TranslationOptions(server_tools=settings.server_tools),
        ping_interval=settings.ping_interval_seconds,
        max_request_bytes=settings.max_request_bytes,
        body_read_timeout=settings.body_read_timeout_seconds,
        list_upstream_models=settings.upstream_list_models,
        forward_client_key=settings.forward_client_key,
    )


@dataclass(frozen=True, slots=True)
class Proxy:
    """The assembled proxy: the ASGI app and the parts an embedding app may want to read."""

    app: ASGIApp
    endpoint: AnthropicEndpoint
    pipeline: Pipeline
    breaker: CircuitBreaker | None
    limiter: RateLimiter | None
    observability: Observability


def build_proxy(settings: Settings | None = None) -> Proxy:
    """Every layer the settings ask for around the endpoint, in the order `Pipeline` checks."""
    settings = settings or Settings()
    register_secrets(settings.upstream_api_key, *settings.api_keys)
    counter = TokenCounter()
    models = model_mapper(settings)
    breaker = build_breaker(settings) if settings.breaker_enabled else None
    limiter = build_rate_limiter(settings)
    obs = build_observability(settings, breaker=breaker, limiter=limiter)
    fallbacks = breaker is not None and bool(settings.fallback_upstreams)

    if settings.upstream_base_url is None:
        raise ValueError(f"no upstream configured: {MOCK_UPSTREAM_HINT}")
    provider: ChatProvider = _openai_provider(
        settings, settings.upstream_base_url, settings.upstream_api_key, counter, obs
    )
    if fallbacks and breaker is not None:
        provider = FallbackProvider(
            fallback_entries(
                settings,
                primary=provider,
                make_provider=lambda url, key: _openai_provider(settings, url, key, counter, obs),
            ),
            breaker=breaker,
            key_mode=settings.breaker_key,
        )
    endpoint = build_endpoint(settings, provider=provider, counter=counter, models=models)

    pipeline = Pipeline().add(
        CorrelationMiddleware, header_name=settings.request_id_header, access_log=settings.access_log
    )
    if obs.tracer is not None:
        pipeline.add(TracingMiddleware, provider_name=settings.otel_provider_name)
    if obs.metrics:
        pipeline.add(MetricsMiddleware, collector=obs.collector)
    pipeline.add(ErrorNormalizationMiddleware, max_body_bytes=settings.max_request_bytes)
    if settings.api_keys:
        pipeline.add(APIKeyAuthMiddleware, keys=[key.get_secret_value() for key in settings.api_keys])
    if fallbacks:
        pipeline.add(UpstreamHeaderMiddleware)
    elif breaker is not None:
        pipeline.add(
            CircuitBreakerMiddleware,
            breaker=breaker,
            upstream=str(settings.upstream_base_url),
            name=settings.upstream_name,
            key_mode=settings.breaker_key,
            resolve_model=models.resolve,
            max_request_bytes=settings.max_request_bytes,
            body_read_timeout=settings.body_read_timeout_seconds,
            admission="deferred",
        )
    if limiter is not None:
        pipeline.add(
            TokenRateLimitMiddleware,
            limiter=limiter,
            estimator=CostEstimator(
                counter=counter, default_max_tokens=settings.rate_limit_default_max_tokens
            ),
            models=models,
            key=settings.rate_limit_key,
            max_request_bytes=settings.max_request_bytes,
            body_read_timeout=settings.body_read_timeout_seconds,
            admission="deferred",
        )
    # Probes and scrapes are answered outside the pipeline: no auth, limits or access-log line for them.
    app: ASGIApp = ObservabilityRoutes(
        pipeline.wrap(endpoint),
        collector=obs.collector if obs.metrics else None,
        health=obs.health,
        **obs.paths,
    )
    if breaker is not None:
        app = LifespanHooks(app, on_shutdown=[breaker.aclose])
    return Proxy(
        app=app, endpoint=endpoint, pipeline=pipeline, breaker=breaker, limiter=limiter, observability=obs
    )


def create_app(settings: Settings | None = None) -> ASGIApp:
    """The proxy as one ASGI app with a lifespan that opens and closes the upstream client and stores.

    Mounted under a prefix in a Starlette/FastAPI app, its lifespan must be driven by the parent's:
    see `ccproxy_asgi.plumbing.lifespan.run_lifespan`.
    """
    return build_proxy(settings).app


__all__ = ["Proxy", "build_endpoint", "build_proxy", "create_app", "model_mapper"]
