"""`create_app`: the whole proxy as one ASGI app, built from `Settings`.

Layers, outermost first (checked by `Pipeline`): correlation (request id, access log), tracing (when
on), metrics, error normalization, inbound auth (when `CCPROXY_API_KEYS` is set), the circuit breaker
(or, with fallback upstreams, the header naming the upstream that served), the token rate limiter (when
a budget is set), then the endpoint. `/metrics`, `/health` and `/health/ready` are answered in front of
all of them. `build_proxy` returns the parts too, for embedding and tests.

The objects the layers share come from `ccproxy_asgi.app.wiring.wire`, and the app's lifespan is theirs:
at startup the limiter's store is pinged, at shutdown the upstream clients, the limiter and the breaker
are closed, in that order (the reverse of building them). No layer opens or closes anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.app.wiring.objects import wire
from ccproxy_asgi.app.wiring.observability import Observability
from ccproxy_asgi.app.wiring.providers import model_mapper, openai_provider, require_upstream
from ccproxy_asgi.app.wiring.ratelimit import build_rate_limiter
from ccproxy_asgi.breaker.circuit_breaker import CircuitBreaker
from ccproxy_asgi.endpoint.dispatch import AnthropicEndpoint
from ccproxy_asgi.middleware.auth import APIKeyAuthMiddleware
from ccproxy_asgi.middleware.breaker import CircuitBreakerMiddleware, UpstreamHeaderMiddleware
from ccproxy_asgi.middleware.correlation import CorrelationMiddleware
from ccproxy_asgi.middleware.error_normalization import ErrorNormalizationMiddleware
from ccproxy_asgi.middleware.metrics import MetricsMiddleware
from ccproxy_asgi.middleware.observability import ObservabilityRoutes
from ccproxy_asgi.middleware.ratelimit import TokenRateLimitMiddleware
from ccproxy_asgi.middleware.tracing import TracingMiddleware
from ccproxy_asgi.plumbing.lifespan import LifespanContext
from ccproxy_asgi.plumbing.pipeline import Pipeline
from ccproxy_asgi.provider.base import ChatProvider
from ccproxy_asgi.ratelimit.cost import CostEstimator
from ccproxy_asgi.ratelimit.limiter import RateLimiter
from ccproxy_asgi.tokens.counter import TokenCounter, TokenCounterProtocol
from ccproxy_asgi.translate.models import ModelMapper
from ccproxy_asgi.translate.options import ProfileResolver, TranslationOptions
from ccproxy_asgi.types import ASGIApp


def build_endpoint(
    settings: Settings,
    *,
    provider: ChatProvider | None = None,
    counter: TokenCounter | None = None,
    models: ModelMapper | None = None,
) -> AnthropicEndpoint:
    """The terminal endpoint wired from settings, with the OpenAI provider unless one is given.

    Used alone, the endpoint's own lifespan closes the provider; inside `create_app` the wiring does."""
    base_url = require_upstream(settings)
    if provider is None:
        provider = openai_provider(settings, base_url, settings.upstream_api_key, counter or TokenCounter())
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


def mount_rate_limit(
    app: ASGIApp,
    settings: Settings,
    *,
    counter: TokenCounterProtocol | None = None,
    models: ModelMapper | None = None,
) -> ASGIApp:
    """`app` behind a `TokenRateLimitMiddleware` configured from `settings`, or `app` itself when no
    budget is configured. Pass the endpoint's token counter and model mapper to share them. The layer
    pings the limiter's store at startup and closes it at shutdown (its own lifespan)."""
    limiter = build_rate_limiter(settings)
    if limiter is None:
        return app
    return TokenRateLimitMiddleware(
        app,
        limiter=limiter,
        estimator=CostEstimator(counter=counter, default_max_tokens=settings.rate_limit_default_max_tokens),
        models=models if models is not None else model_mapper(settings),
        key=settings.rate_limit_key,
        max_request_bytes=settings.max_request_bytes,
        body_read_timeout=settings.body_read_timeout_seconds,
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
    wired = wire(settings)
    breaker, limiter, obs, models = wired.breaker, wired.limiter, wired.observability, wired.models
    endpoint = build_endpoint(settings, provider=wired.provider, counter=wired.counter, models=models)

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
    if wired.fallbacks:
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
                counter=wired.counter, default_max_tokens=settings.rate_limit_default_max_tokens
            ),
            models=models,
            key=settings.rate_limit_key,
            max_request_bytes=settings.max_request_bytes,
            body_read_timeout=settings.body_read_timeout_seconds,
            admission="deferred",
            close_limiter=False,  # the wiring's resources close it
        )
    # Probes and scrapes are answered outside the pipeline: no auth, limits or access-log line for them.
    app: ASGIApp = ObservabilityRoutes(
        pipeline.wrap(endpoint),
        collector=obs.collector if obs.metrics else None,
        health=obs.health,
        **obs.paths,
    )
    # The lifespan is answered here, not by the layers: the wiring opened everything, it closes it.
    app = LifespanContext(app, wired.resources.running)
    return Proxy(
        app=app, endpoint=endpoint, pipeline=pipeline, breaker=breaker, limiter=limiter, observability=obs
    )


def create_app(settings: Settings | None = None) -> ASGIApp:
    """The proxy as one ASGI app with a lifespan that opens and closes the upstream client and stores.

    Mounted under a prefix in a Starlette/FastAPI app, its lifespan must be driven by the parent's:
    see `ccproxy_asgi.plumbing.lifespan.run_lifespan`.
    """
    return build_proxy(settings).app


__all__ = ["Proxy", "build_endpoint", "build_proxy", "create_app", "mount_rate_limit"]
