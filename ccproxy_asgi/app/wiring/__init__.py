"""The one place where `Settings` become objects, and where those objects are opened and closed.

The core packages (`breaker`, `ratelimit`, `observability`, `provider`, `upstream`, ...) take small frozen
value objects (`BreakerPolicy`, `Budget`, `AdaptivePolicy`, `HTTPClientConfig`, `RetryPolicy`,
`AdaptiveTimeoutPolicy`) and never see `Settings`; the modules here translate, one concern each:

    breaker          breaker_policy, build_breaker
    ratelimit        rate_limit_budget(s), adaptive_policy, limiter_store, build_rate_limiter
    observability    Observability, build_observability, readiness_checks
    providers        http_client_config, retry_policy, model_mapper, openai_provider, fallback_entries
    redis_clients    redis_client (the shared state backend's client)
    resources        Resources: started in order at startup, closed in reverse at shutdown
    objects          wire(settings): all of the above for `build_proxy`, registered with one Resources
"""

from __future__ import annotations

from ccproxy_asgi.app.wiring.breaker import breaker_policy, build_breaker
from ccproxy_asgi.app.wiring.objects import Wiring, wire
from ccproxy_asgi.app.wiring.observability import (
    Observability,
    adaptive_timeout_policy,
    build_observability,
    readiness_checks,
)
from ccproxy_asgi.app.wiring.providers import (
    MOCK_UPSTREAM_HINT,
    build_provider,
    fallback_entries,
    http_client_config,
    model_mapper,
    openai_provider,
    retry_policy,
)
from ccproxy_asgi.app.wiring.ratelimit import (
    adaptive_policy,
    build_rate_limiter,
    limiter_store,
    rate_limit_budget,
    rate_limit_budgets,
)
from ccproxy_asgi.app.wiring.resources import Resources, ShutdownError

__all__ = [
    "MOCK_UPSTREAM_HINT",
    "Observability",
    "Resources",
    "ShutdownError",
    "Wiring",
    "adaptive_policy",
    "adaptive_timeout_policy",
    "breaker_policy",
    "build_breaker",
    "build_observability",
    "build_provider",
    "build_rate_limiter",
    "fallback_entries",
    "http_client_config",
    "limiter_store",
    "model_mapper",
    "openai_provider",
    "rate_limit_budget",
    "rate_limit_budgets",
    "readiness_checks",
    "retry_policy",
    "wire",
]
