"""Observability core: metrics collection with sliding-window percentiles, the Prometheus text format,
OpenTelemetry instruments (GenAI semantic conventions), the health monitor, the adaptive upstream
timeout, and tracing helpers.

No ASGI here: `ccproxy_asgi.middleware.metrics.MetricsMiddleware`,
`ccproxy_asgi.middleware.tracing.TracingMiddleware` and
`ccproxy_asgi.middleware.observability.ObservabilityRoutes` (`/metrics`, `/health`, `/health/ready`)
drive it.
"""

from __future__ import annotations

from ccproxy_asgi.observability.adaptive_timeout import AdaptiveTimeout, AdaptiveTimeoutPolicy
from ccproxy_asgi.observability.collector import MetricsCollector
from ccproxy_asgi.observability.health import (
    HealthMonitor,
    HealthScore,
    Readiness,
    ReadinessCheck,
    ping_check,
    tcp_check,
)
from ccproxy_asgi.observability.otel import OTelMetrics
from ccproxy_asgi.observability.percentiles import SlidingOutcomes, SlidingPercentiles
from ccproxy_asgi.observability.record import RequestRecord
from ccproxy_asgi.observability.sources import BreakerSource, LimiterSource
from ccproxy_asgi.observability.tracing import get_tracer, traced_send

__all__ = [
    "AdaptiveTimeout",
    "AdaptiveTimeoutPolicy",
    "BreakerSource",
    "HealthMonitor",
    "HealthScore",
    "LimiterSource",
    "MetricsCollector",
    "OTelMetrics",
    "Readiness",
    "ReadinessCheck",
    "RequestRecord",
    "SlidingOutcomes",
    "SlidingPercentiles",
    "get_tracer",
    "ping_check",
    "tcp_check",
    "traced_send",
]
