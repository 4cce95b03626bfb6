"""`MetricsCollector`: the in-process metrics — counters, histograms, gauges and sliding windows.

It is what the Prometheus endpoint renders, what the health score and the adaptive timeout read, and
what needs no OpenTelemetry SDK. The number of series per metric is capped (`max_series`): past it,
new label combinations are folded into one `_OTHER` series, so a client that invents model names cannot
grow memory without bound.
"""

from __future__ import annotations

import bisect
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ccproxy_asgi.observability import semconv as sc
from ccproxy_asgi.observability.percentiles import SlidingOutcomes, SlidingPercentiles
from ccproxy_asgi.observability.prometheus import HistogramPoint, Point, render
from ccproxy_asgi.observability.record import Measurement, RequestRecord, adaptive_sample, measurements
from ccproxy_asgi.observability.sources import (
    BreakerSource,
    LimiterSource,
    Points,
    breaker_points,
    limiter_points,
)

logger = logging.getLogger("ccproxy_asgi.metrics")

QUANTILES = (0.5, 0.95, 0.99)
#: A function adding gauge points at export time (the health score, the adaptive timeout, ...).
GaugeSource = Callable[[Points], None]


class _Histogram:
    __slots__ = ("count", "counts", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)
        self.sum = 0.0
        self.count = 0


class _Family:
    """The series of one counter, keyed by label values (each series a one-item list)."""

    __slots__ = ("definition", "max_series", "overflow", "series")

    def __init__(self, definition: sc.MetricDef, max_series: int) -> None:
        self.definition = definition
        self.max_series = max_series
        self.series: dict[tuple[str, ...], Any] = {}
        self.overflow = (sc.ERROR_OTHER,) * len(definition.attributes)

    def _new(self, labels: tuple[str, ...]) -> Any:
        if len(self.series) >= self.max_series:
            labels = self.overflow
            existing = self.series.get(labels)
            if existing is not None:
                return existing
        created = self.series[labels] = self._empty()
        return created

    def _empty(self) -> Any:
        return [0.0]

    def add(self, labels: tuple[str, ...], value: float) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self._new(labels)
        series[0] += value

    def get(self, labels: tuple[str, ...]) -> float | None:
        series = self.series.get(labels)
        return None if series is None else float(series[0])

    def points(self) -> list[Point | HistogramPoint]:
        return [Point(labels, series[0]) for labels, series in sorted(self.series.items())]


class _HistogramFamily(_Family):
    """The series of one histogram: per-bucket counts (the last for +Inf), sum and count."""

    __slots__ = ("buckets",)

    def __init__(self, definition: sc.MetricDef, max_series: int) -> None:
        super().__init__(definition, max_series)
        self.buckets = definition.buckets

    def _empty(self) -> Any:
        return _Histogram(len(self.buckets))

    def add(self, labels: tuple[str, ...], value: float) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self._new(labels)
        series.counts[bisect.bisect_left(self.buckets, value)] += 1
        series.sum += value
        series.count += 1

    def get(self, labels: tuple[str, ...]) -> float | None:
        series = self.series.get(labels)
        return None if series is None else series.count

    def points(self) -> list[Point | HistogramPoint]:
        return [
            HistogramPoint(labels, tuple(series.counts), series.sum, series.count)
            for labels, series in sorted(self.series.items())
        ]


class MetricsCollector:
    """Per-request metrics in process memory, plus readings of watched limiters and breakers.

    - `window_seconds` / `window_slices` / `reservoir_size`: the sliding windows behind the quantiles
      and the success rate (see `SlidingPercentiles`).
    - `max_series`: series per metric before new label combinations fold into `_OTHER`.
    - `provider_name`: the `gen_ai.provider.name` of the upstream (the OpenAI wire format by default).

    Windows: `request_latency` (chat requests, whole duration), `upstream_latency` (upstream attempts,
    time to the response head; what the adaptive timeout reads), `ttft` (streams), `outcomes`.
    """

    def __init__(
        self,
        *,
        window_seconds: float = 60.0,
        window_slices: int = 12,
        reservoir_size: int = 256,
        max_series: int = 1000,
        provider_name: str = "openai",
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        rng = rng or random.Random()

        def window() -> SlidingPercentiles:
            return SlidingPercentiles(
                window_seconds=window_seconds,
                slices=window_slices,
                reservoir_size=reservoir_size,
                clock=clock,
                rng=rng,
            )

        self.provider_name = provider_name
        self.request_latency = window()
        self.upstream_latency = window()
        self.ttft = window()
        self.outcomes = SlidingOutcomes(window_seconds=window_seconds, slices=window_slices, clock=clock)
        self.in_flight = 0
        self._families = {
            d: (_HistogramFamily if d.kind == "histogram" else _Family)(d, max_series)
            for d in sc.REQUEST_METRICS
        }
        self._limiters: list[LimiterSource] = []
        self._breakers: list[BreakerSource] = []
        self._gauges: list[GaugeSource] = []

    # ----- recording -------------------------------------------------------------------------------------

    def record(self, record: RequestRecord, items: Sequence[Measurement] | None = None) -> None:
        """Count one finished request; `items` are its `measurements` when the caller has them already."""
        families = self._families
        for definition, labels, value in measurements(record, self.provider_name) if items is None else items:
            families[definition].add(labels, value)
        if not record.chat:
            return
        self.request_latency.add(record.duration_s)
        self.outcomes.add(not record.failed)
        if record.ttft_s is not None and not record.failed:
            self.ttft.add(record.ttft_s)
        for attempt in record.attempts:
            sample = adaptive_sample(attempt)
            if sample is not None:
                self.upstream_latency.add(sample)

    # ----- sources read at export time --------------------------------------------------------------------

    def watch_limiter(self, limiter: LimiterSource) -> None:
        """Export `limiter.snapshot()` (waits, rejections, effective limits) with the metrics."""
        self._limiters.append(limiter)

    def watch_breaker(self, breaker: BreakerSource) -> None:
        """Export `breaker.stats()` (states, transitions, rejections) with the metrics."""
        self._breakers.append(breaker)

    def add_gauge_source(self, source: GaugeSource) -> None:
        self._gauges.append(source)

    @property
    def breakers(self) -> Sequence[BreakerSource]:
        return tuple(self._breakers)

    def window_quantiles(self) -> dict[str, dict[float, float]]:
        return {
            "request": self.request_latency.quantiles(QUANTILES),
            "upstream": self.upstream_latency.quantiles(QUANTILES),
            "ttft": self.ttft.quantiles(QUANTILES),
        }

    def observed_points(
        self, *, windows: bool = True, limiters: bool = True, breakers: bool = True, gauges: bool = True
    ) -> Points:
        """Gauges and counters read now: in-flight and windows, limiters, breakers, extra gauge sources
        (each group can be left out, so an exporter reading one metric does not compute all of them).

        A failing source is logged and skipped: a scrape must not fail because one layer misbehaves.
        """
        points: Points = {}
        if windows:
            points[sc.HTTP_SERVER_ACTIVE] = [Point((), self.in_flight)]
            window: list[Point] = []
            for name, values in self.window_quantiles().items():
                window.extend(Point((name, str(q)), value) for q, value in values.items())
            if window:
                points[sc.LATENCY_WINDOW] = window
            rate = self.outcomes.success_rate()
            if rate is not None:
                points[sc.SUCCESS_RATE] = [Point((), rate)]
        for limiter in self._limiters if limiters else ():
            try:
                limiter_points(limiter.snapshot(), points)
            except Exception:
                logger.exception("reading the rate limiter's snapshot failed")
        for breaker in self._breakers if breakers else ():
            try:
                breaker_points(breaker.stats(), points)
            except Exception:
                logger.exception("reading the circuit breaker's stats failed")
        for source in self._gauges if gauges else ():
            try:
                source(points)
            except Exception:
                logger.exception("a gauge source failed")
        return points

    def families(self) -> list[tuple[sc.MetricDef, Sequence[Point | HistogramPoint]]]:
        """Every metric with its series: recorded ones, then observed ones."""
        result: list[tuple[sc.MetricDef, Sequence[Point | HistogramPoint]]] = [
            (definition, family.points()) for definition, family in self._families.items()
        ]
        result.extend(self.observed_points().items())
        return result

    def render_prometheus(self) -> str:
        return render(self.families())

    def value(self, definition: sc.MetricDef, labels: Iterable[str] = ()) -> float | None:
        """A counter's value, or a histogram's count, for one series (None: no such series)."""
        return self._families[definition].get(tuple(labels))


__all__ = ["QUANTILES", "GaugeSource", "MetricsCollector"]
