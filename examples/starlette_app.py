"""The proxy as a Starlette app composed route by route: `Route(path, endpoint, middleware=[...])`.

    every route         correlation (request id, access log) -> metrics -> error envelopes   app-wide
    POST /v1/messages   auth -> circuit breaker -> token rate limiter -> endpoint             per route
    POST /v1/messages/count_tokens, GET /v1/models
                        auth -> endpoint (they never spend the upstream's budget)              per route
    GET|HEAD /          the endpoint alone: Claude Code pre-connects here without a key
    GET /ops/metrics, /ops/health, /ops/health/ready
                        Prometheus text and health JSON (`ObservabilityRoutes`), mounted on their own

The layers are listed once in a `Pipeline`, which checks their order (the error layer outside the
breaker and the limiter, auth outside the limiter, metrics outside both, correlation outermost), then
split between `Starlette(middleware=...)` and `Route(..., middleware=...)`.

    CCPROXY_UPSTREAM_BASE_URL=https://api.openai.com/v1 CCPROXY_UPSTREAM_API_KEY=sk-... \\
    CCPROXY_API_KEYS=team-key-1 CCPROXY_RATE_LIMIT_TPM=200000 \\
        uvicorn --app-dir examples --factory starlette_app:create_starlette_app --port 8000
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route

from ccproxy_asgi.app import (
    build_breaker,
    build_endpoint,
    build_observability,
    build_rate_limiter,
    model_mapper,
)
from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.middleware.auth import APIKeyAuthMiddleware
from ccproxy_asgi.middleware.breaker import CircuitBreakerMiddleware
from ccproxy_asgi.middleware.correlation import CorrelationMiddleware
from ccproxy_asgi.middleware.error_normalization import ErrorNormalizationMiddleware
from ccproxy_asgi.middleware.metrics import MetricsMiddleware
from ccproxy_asgi.middleware.observability import ObservabilityRoutes
from ccproxy_asgi.middleware.ratelimit import TokenRateLimitMiddleware
from ccproxy_asgi.plumbing.lifespan import run_lifespan
from ccproxy_asgi.plumbing.pipeline import Layer, Pipeline
from ccproxy_asgi.ratelimit import Budget, CostEstimator, RateLimiter
from ccproxy_asgi.tokens.counter import TokenCounter

#: Used when the settings configure no budget: this example always shows the limiter at work.
DEFAULT_BUDGET = Budget(requests=500, tokens=200_000, window=60.0)


def as_middleware(layers: Sequence[Layer]) -> list[Middleware]:
    """`Pipeline` layers as Starlette `Middleware`, outermost first (Starlette's order too)."""
    return [Middleware(layer.cls, *layer.args, **layer.options) for layer in layers]


def create_starlette_app(settings: Settings | None = None) -> Starlette:
    """The app for `settings` (default: `CCPROXY_*` from the environment)."""
    settings = settings or Settings()
    counter = TokenCounter()  # one token-count cache for the endpoint and the limiter
    models = model_mapper(settings)
    endpoint = build_endpoint(settings, counter=counter, models=models)
    breaker = build_breaker(settings)
    limiter = build_rate_limiter(settings) or RateLimiter(budget=DEFAULT_BUDGET)
    obs = build_observability(settings, breaker=breaker, limiter=limiter)
    keys = [key.get_secret_value() for key in settings.api_keys]

    pipeline = (
        Pipeline()
        .add(CorrelationMiddleware, header_name=settings.request_id_header, access_log=settings.access_log)
        .add(MetricsMiddleware, collector=obs.collector)
        .add(ErrorNormalizationMiddleware, max_body_bytes=settings.max_request_bytes)
    )
    if keys:
        pipeline.add(APIKeyAuthMiddleware, keys=keys)
    pipeline.add(
        CircuitBreakerMiddleware,
        breaker=breaker,
        upstream=str(settings.upstream_base_url),
        name=settings.upstream_name,
    )
    pipeline.add(
        TokenRateLimitMiddleware,
        limiter=limiter,
        estimator=CostEstimator(counter=counter, default_max_tokens=settings.rate_limit_default_max_tokens),
        models=models,
        key=settings.rate_limit_key,
        max_request_bytes=settings.max_request_bytes,
    )
    pipeline.check()  # raises PipelineOrderError naming both layers if the order breaks a guarantee
    app_wide = pipeline.layers[:3]  # correlation, metrics, errors
    messages = pipeline.layers[3:]  # (auth,) breaker, limiter
    authenticated = as_middleware(pipeline.layers[3:4] if keys else [])

    routes: list[BaseRoute] = [
        Route("/v1/messages", endpoint, methods=["POST"], middleware=as_middleware(messages)),
        Route("/v1/messages/count_tokens", endpoint, methods=["POST"], middleware=authenticated),
        Route("/v1/models", endpoint, methods=["GET", "HEAD"], middleware=authenticated),
        Route("/v1/models/{model_id}", endpoint, methods=["GET", "HEAD"], middleware=authenticated),
        Route("/", endpoint, methods=["GET", "HEAD"]),
        Mount("/ops", app=ObservabilityRoutes(collector=obs.collector, health=obs.health)),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Lifespan events reach no route: open and close what the routes use here.
        async with run_lifespan(endpoint):  # the upstream HTTP client
            try:
                await limiter.ping()  # an unreachable shared store is logged now, not at the first request
                yield
            finally:
                await limiter.aclose()
                await breaker.aclose()

    return Starlette(routes=routes, middleware=as_middleware(app_wide), lifespan=lifespan)


__all__ = ["DEFAULT_BUDGET", "as_middleware", "create_starlette_app"]
