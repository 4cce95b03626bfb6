"""The pure-ASGI layers. Each works alone, on one route of any ASGI app, or stacked by `create_app`.

Every layer is importable from here. They are imported on first use, so taking one layer does not load
the dependencies of the others (OpenTelemetry for metrics and tracing, tiktoken for the rate limiter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccproxy_asgi._lazy import lazy_exports

if TYPE_CHECKING:
    from ccproxy_asgi.middleware.auth import APIKeyAuthMiddleware, KeyVerifier, StaticKeyVerifier
    from ccproxy_asgi.middleware.breaker import CircuitBreakerMiddleware, UpstreamHeaderMiddleware
    from ccproxy_asgi.middleware.correlation import CorrelationMiddleware, is_valid_request_id
    from ccproxy_asgi.middleware.error_normalization import ErrorNormalizationMiddleware
    from ccproxy_asgi.middleware.metrics import MetricsMiddleware
    from ccproxy_asgi.middleware.observability import ObservabilityRoutes
    from ccproxy_asgi.middleware.ratelimit import TokenRateLimitMiddleware
    from ccproxy_asgi.middleware.tracing import TracingMiddleware

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "APIKeyAuthMiddleware": "ccproxy_asgi.middleware.auth",
        "CircuitBreakerMiddleware": "ccproxy_asgi.middleware.breaker",
        "CorrelationMiddleware": "ccproxy_asgi.middleware.correlation",
        "ErrorNormalizationMiddleware": "ccproxy_asgi.middleware.error_normalization",
        "KeyVerifier": "ccproxy_asgi.middleware.auth",
        "MetricsMiddleware": "ccproxy_asgi.middleware.metrics",
        "ObservabilityRoutes": "ccproxy_asgi.middleware.observability",
        "StaticKeyVerifier": "ccproxy_asgi.middleware.auth",
        "TokenRateLimitMiddleware": "ccproxy_asgi.middleware.ratelimit",
        "TracingMiddleware": "ccproxy_asgi.middleware.tracing",
        "UpstreamHeaderMiddleware": "ccproxy_asgi.middleware.breaker",
        "is_valid_request_id": "ccproxy_asgi.middleware.correlation",
    },
)

__all__ = [
    "APIKeyAuthMiddleware",
    "CircuitBreakerMiddleware",
    "CorrelationMiddleware",
    "ErrorNormalizationMiddleware",
    "KeyVerifier",
    "MetricsMiddleware",
    "ObservabilityRoutes",
    "StaticKeyVerifier",
    "TokenRateLimitMiddleware",
    "TracingMiddleware",
    "UpstreamHeaderMiddleware",
    "is_valid_request_id",
]
