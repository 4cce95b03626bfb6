"""`OTelMetrics`: the same metrics through an OpenTelemetry `Meter`, so any OTel exporter can ship them.

Per-request metrics are synchronous instruments recorded when a request ends. What other layers count
(limiter, breaker) and the sliding windows are observable instruments whose callbacks read the
`MetricsCollector` at collection time.

Without a `meter_provider` the global one is used: until an SDK `MeterProvider` is installed that is
OpenTelemetry's no-op proxy, which costs well under a microsecond per measurement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, MeterProvider, Observation

from ccproxy_asgi._version import __version__
from ccproxy_asgi.observability import semconv as sc
from ccproxy_asgi.observability.collector import MetricsCollector
from ccproxy_asgi.observability.record import Measurement, RequestRecord, measurements
from ccproxy_asgi.observability.sources import Points

logger = logging.getLogger("ccproxy_asgi.metrics")

INSTRUMENTATION_NAME = "ccproxy_asgi"
_ATTRIBUTE_CACHE_SIZE = 4096

# Which group of `MetricsCollector.observed_points` each observable metric comes from.
_OBSERVED: dict[sc.MetricDef, str] = {
    sc.LATENCY_WINDOW: "windows",
    sc.SUCCESS_RATE: "windows",
    sc.LIMIT_ADMITTED: "limiters",
    sc.LIMIT_WAITS: "limiters",
    sc.LIMIT_WAIT_TIME: "limiters",
    sc.LIMIT_REJECTIONS: "limiters",
    sc.LIMIT_UPSTREAM_429: "limiters",
    sc.LIMIT_QUEUED: "limiters",
    sc.LIMIT_EFFECTIVE: "limiters",
    sc.LIMIT_REMAINING: "limiters",
    sc.LIMIT_FACTOR: "limiters",
    sc.BREAKER_STATE_DEF: "breakers",
    sc.BREAKER_TRANSITIONS: "breakers",
    sc.BREAKER_REJECTIONS: "breakers",
    sc.BREAKER_OUTCOMES: "breakers",
    sc.HEALTH_SCORE: "gauges",
    sc.ADAPTIVE_TIMEOUT: "gauges",
}
_GROUPS = ("windows", "limiters", "breakers", "gauges")


_INT_ATTRIBUTES = frozenset({sc.HTTP_STATUS, sc.SERVER_PORT})
_BOOL_ATTRIBUTES = frozenset({sc.RETRY})


def attributes(definition: sc.MetricDef, labels: Iterable[str]) -> dict[str, str | int | bool]:
    """Label values as OpenTelemetry attributes, typed as the conventions say (a status code and a port
    are ints); empty values are left out."""
    result: dict[str, str | int | bool] = {}
    for key, value in zip(definition.attributes, labels, strict=True):
        if not value:
            continue
        if key in _INT_ATTRIBUTES and value.isdigit():
            result[key] = int(value)
        elif key in _BOOL_ATTRIBUTES:
            result[key] = value == "true"
        else:
            result[key] = value
    return result


class OTelMetrics:
    """The OpenTelemetry side of the metrics layer; see the module docstring."""

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        collector: MetricsCollector | None = None,
        provider_name: str = "openai",
    ) -> None:
        meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__, meter_provider=meter_provider)
        self.provider_name = provider_name
        self._histograms: dict[sc.MetricDef, Histogram] = {}
        self._counters: dict[sc.MetricDef, Counter] = {}
        for definition in sc.REQUEST_METRICS:
            if definition.kind == "histogram":
                self._histograms[definition] = meter.create_histogram(
                    definition.name,
                    unit=definition.unit,
                    description=definition.description,
                    explicit_bucket_boundaries_advisory=[float(b) for b in definition.buckets],
                )
            else:
                self._counters[definition] = meter.create_counter(
                    definition.name, unit=definition.unit, description=definition.description
                )
        self.active_requests = meter.create_up_down_counter(
            sc.HTTP_SERVER_ACTIVE.name,
            unit=sc.HTTP_SERVER_ACTIVE.unit,
            description=sc.HTTP_SERVER_ACTIVE.description,
        )
        self._attributes: dict[tuple[sc.MetricDef, tuple[str, ...]], dict[str, str | int | bool]] = {}
        if collector is not None:
            for definition, group in _OBSERVED.items():
                callback = self._observer(collector, definition, group)
                if definition.kind == "counter":
                    meter.create_observable_counter(
                        definition.name, [callback], unit=definition.unit, description=definition.description
                    )
                else:
                    meter.create_observable_gauge(
                        definition.name, [callback], unit=definition.unit, description=definition.description
                    )

    def _attrs(self, definition: sc.MetricDef, labels: tuple[str, ...]) -> dict[str, str | int | bool]:
        key = (definition, labels)
        cached = self._attributes.get(key)
        if cached is None:
            if len(self._attributes) >= _ATTRIBUTE_CACHE_SIZE:
                self._attributes.clear()
            cached = self._attributes[key] = attributes(definition, labels)
        return cached

    def record(self, record: RequestRecord, items: Sequence[Measurement] | None = None) -> None:
        """Record one finished request; `items` are its `measurements` when the caller has them already."""
        histograms = self._histograms
        for definition, labels, value in measurements(record, self.provider_name) if items is None else items:
            histogram = histograms.get(definition)
            if histogram is not None:
                histogram.record(value, self._attrs(definition, labels))
            else:
                self._counters[definition].add(value, self._attrs(definition, labels))

    @staticmethod
    def _observer(
        collector: MetricsCollector, definition: sc.MetricDef, group: str
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        flags: dict[str, Any] = {name: name == group for name in _GROUPS}

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            try:
                points: Points = collector.observed_points(**flags)
            except Exception:  # collection runs on an exporter's thread: never let it die there
                logger.exception("observing %s failed", definition.name)
                return []
            return [
                Observation(point.value, attributes(definition, point.labels))
                for point in points.get(definition, ())
            ]

        return observe


__all__ = ["INSTRUMENTATION_NAME", "OTelMetrics", "attributes"]
