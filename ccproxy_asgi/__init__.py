"""ccproxy-asgi: composable ASGI layers in front of an Anthropic Messages API endpoint backed by an
OpenAI-compatible upstream.

The public names are imported lazily, so `import ccproxy_asgi` (and every `python -m ccproxy_asgi.…`)
stays cheap and pulls in no HTTP library until one is used: the whole app (`create_app`, `build_proxy`,
`Settings`), every layer, the endpoint, and the plumbing to compose them yourself (`Pipeline`,
`run_lifespan`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccproxy_asgi._lazy import lazy_exports
from ccproxy_asgi._version import __version__

if TYPE_CHECKING:
    from ccproxy_asgi.app.proxy import build_proxy, create_app
    from ccproxy_asgi.app.settings import Settings
    from ccproxy_asgi.context import RequestContext, get_context
    from ccproxy_asgi.endpoint.dispatch import AnthropicEndpoint
    from ccproxy_asgi.errors import ProxyError
    from ccproxy_asgi.middleware.auth import APIKeyAuthMiddleware
    from ccproxy_asgi.middleware.breaker import CircuitBreakerMiddleware, UpstreamHeaderMiddleware
    from ccproxy_asgi.middleware.correlation import CorrelationMiddleware
    from ccproxy_asgi.middleware.error_normalization import ErrorNormalizationMiddleware
    from ccproxy_asgi.middleware.metrics import MetricsMiddleware
    from ccproxy_asgi.middleware.observability import ObservabilityRoutes
    from ccproxy_asgi.middleware.ratelimit import TokenRateLimitMiddleware
    from ccproxy_asgi.middleware.tracing import TracingMiddleware
    from ccproxy_asgi.plumbing.lifespan import run_lifespan
    from ccproxy_asgi.plumbing.pipeline import Pipeline

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        # the app
        "Settings": "ccproxy_asgi.app.settings",
        "build_proxy": "ccproxy_asgi.app.proxy",
        "create_app": "ccproxy_asgi.app.proxy",
        # the layers
        "APIKeyAuthMiddleware": "ccproxy_asgi.middleware.auth",
        "CircuitBreakerMiddleware": "ccproxy_asgi.middleware.breaker",
        "CorrelationMiddleware": "ccproxy_asgi.middleware.correlation",
        "ErrorNormalizationMiddleware": "ccproxy_asgi.middleware.error_normalization",
        "MetricsMiddleware": "ccproxy_asgi.middleware.metrics",
        "ObservabilityRoutes": "ccproxy_asgi.middleware.observability",
        "TokenRateLimitMiddleware": "ccproxy_asgi.middleware.ratelimit",
        "TracingMiddleware": "ccproxy_asgi.middleware.tracing",
        "UpstreamHeaderMiddleware": "ccproxy_asgi.middleware.breaker",
        # the endpoint, and composing it yourself
        "AnthropicEndpoint": "ccproxy_asgi.endpoint.dispatch",
        "Pipeline": "ccproxy_asgi.plumbing.pipeline",
        "run_lifespan": "ccproxy_asgi.plumbing.lifespan",
        # what every layer shares
        "ProxyError": "ccproxy_asgi.errors",
        "RequestContext": "ccproxy_asgi.context",
        "get_context": "ccproxy_asgi.context",
    },
)

__all__ = [
    "APIKeyAuthMiddleware",
    "AnthropicEndpoint",
    "CircuitBreakerMiddleware",
    "CorrelationMiddleware",
    "ErrorNormalizationMiddleware",
    "MetricsMiddleware",
    "ObservabilityRoutes",
    "Pipeline",
    "ProxyError",
    "RequestContext",
    "Settings",
    "TokenRateLimitMiddleware",
    "TracingMiddleware",
    "UpstreamHeaderMiddleware",
    "__version__",
    "build_proxy",
    "create_app",
    "get_context",
    "run_lifespan",
]
