"""The collector, health monitor, adaptive timeout and tracer `Settings` describe.

Only the core objects are built here; `build_proxy` mounts the layers that use them:

    obs = build_observability(settings, breaker=breaker, limiter=limiter)
    OpenAIProvider(..., tracer=obs.tracer, read_timeout=obs.adaptive_timeout,
                   provider_name=settings.otel_provider_name)          # every provider, fallbacks too
    pipeline = Pipeline().add(CorrelationMiddleware, ...)
    if obs.tracer is not None:
        pipeline.add(TracingMiddleware, provider_name=settings.otel_provider_name)
    if obs.metrics:
        pipeline.add(MetricsMiddleware, collector=obs.collector)
    pipeline.add(ErrorNormalizationMiddleware, ...)                     # then auth, breaker, limiter
    app = ObservabilityRoutes(pipeline.wrap(endpoint), collector=obs.collector if obs.metrics else None,
                              health=obs.health, **obs.paths)

Nothing here needs closing: the collector and the health monitor hold no connection of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Tracer, TracerProvider

from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.observability.adaptive_timeout import AdaptiveTimeout, AdaptiveTimeoutPolicy
from ccproxy_asgi.observability.collector import MetricsCollector
from ccproxy_asgi.observability.health import HealthMonitor, ReadinessCheck, ping_check, tcp_check
from ccproxy_asgi.observability.sources import BreakerSource, LimiterSource
from ccproxy_asgi.observability.tracing import get_tracer


@dataclass(slots=True)
class Observability:
    """What the observability layers share. `adaptive_timeout` and `tracer` are None when off; hand
    them to `OpenAIProvider(read_timeout=..., tracer=...)`."""

    collector: MetricsCollector
    health: HealthMonitor
    metrics: bool = True
    adaptive_timeout: AdaptiveTimeout | None = None
    tracer: Tracer | None = None
    paths: dict[str, str | None] = field(default_factory=dict)


def _not_degraded(store: Any) -> ReadinessCheck:
    async def check() -> bool:
        return not bool(store.degraded)

    return check


def readiness_checks(
    settings: Settings, breaker: BreakerSource | None, limiter: LimiterSource | None
) -> dict[str, ReadinessCheck]:
    """Upstream reachable (TCP), the limiter's shared store answering its ping, the breaker's shared store
    not in its local fallback."""
    checks: dict[str, ReadinessCheck] = {}
    if settings.upstream_base_url:
        checks["upstream"] = tcp_check(
            settings.upstream_base_url, timeout=settings.http_connect_timeout_seconds
        )
    limiter_store = getattr(limiter, "store", None)
    if limiter_store is not None and callable(getattr(limiter_store, "ping", None)):
        checks["ratelimit_store"] = ping_check(limiter_store)
    breaker_store = getattr(breaker, "store", None)
    if breaker_store is not None and hasattr(breaker_store, "degraded"):
        checks["breaker_store"] = _not_degraded(breaker_store)
    return checks


def adaptive_timeout_policy(settings: Settings) -> AdaptiveTimeoutPolicy:
    """The `CCPROXY_ADAPTIVE_TIMEOUT_*` settings as the adaptive timeout's value object."""
    maximum = settings.adaptive_timeout_max_seconds or settings.http_read_timeout_seconds
    return AdaptiveTimeoutPolicy(
        multiplier=settings.adaptive_timeout_multiplier,
        quantile=settings.adaptive_timeout_quantile,
        min_seconds=min(settings.adaptive_timeout_min_seconds, maximum),
        max_seconds=maximum,
        min_samples=settings.adaptive_timeout_min_samples,
    )


def build_observability(
    settings: Settings,
    *,
    breaker: BreakerSource | None = None,
    limiter: LimiterSource | None = None,
    tracer_provider: TracerProvider | None = None,
    checks: Mapping[str, ReadinessCheck] | None = None,
) -> Observability:
    """The observability objects for `settings`, watching `breaker` and `limiter` when given.
    `checks` are added to (or replace, by name) the default readiness checks."""
    collector = MetricsCollector(
        window_seconds=settings.metrics_window_seconds, provider_name=settings.otel_provider_name
    )
    if breaker is not None:
        collector.watch_breaker(breaker)
    if limiter is not None:
        collector.watch_limiter(limiter)
    health = HealthMonitor(
        collector,
        checks={**readiness_checks(settings, breaker, limiter), **(checks or {})},
        latency_target_seconds=settings.health_latency_target_seconds,
    )
    collector.add_gauge_source(health.add_points)
    adaptive: AdaptiveTimeout | None = None
    if settings.adaptive_timeout_enabled:
        adaptive = AdaptiveTimeout(collector.upstream_latency, adaptive_timeout_policy(settings))
        collector.add_gauge_source(adaptive.add_points)
    return Observability(
        collector=collector,
        health=health,
        metrics=settings.metrics_enabled,
        adaptive_timeout=adaptive,
        tracer=get_tracer(tracer_provider) if settings.tracing_enabled else None,
        paths={
            "metrics_path": (settings.metrics_path or None) if settings.metrics_enabled else None,
            "health_path": settings.health_path or None,
            "ready_path": settings.health_ready_path or None,
        },
    )


__all__ = ["Observability", "adaptive_timeout_policy", "build_observability", "readiness_checks"]
