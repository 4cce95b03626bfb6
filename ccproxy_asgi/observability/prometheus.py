"""The Prometheus text exposition format (version 0.0.4), written by hand: counters, gauges, histograms.

https://prometheus.io/docs/instrumenting/exposition_formats/ — one `# HELP` and one `# TYPE` line per
family, then one line per series; histogram buckets are cumulative and end with `le="+Inf"`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ccproxy_asgi.observability.semconv import MetricDef

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Point:
    """One series of a counter or gauge: its label values (in the definition's order) and its value."""

    labels: tuple[str, ...]
    value: float


@dataclass(frozen=True, slots=True)
class HistogramPoint:
    """One series of a histogram. `counts` are per bucket (not cumulative), the last one for +Inf."""

    labels: tuple[str, ...]
    counts: tuple[int, ...]
    sum: float
    count: int


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: integers without a fraction, `+Inf`, `NaN`."""
    if isinstance(value, int) or (math.isfinite(value) and value == int(value) and abs(value) < 2**53):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{name}="{_escape_label(value)}"' for name, value in zip(names, values, strict=True) if value]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _prom_type(definition: MetricDef) -> str:
    if definition.kind == "counter":
        return "counter"
    if definition.kind == "histogram":
        return "histogram"
    return "gauge"


def render_family(definition: MetricDef, points: Iterable[Point | HistogramPoint]) -> list[str]:
    """The lines of one metric family (none when it has no series)."""
    name = definition.prom_name
    names = definition.prom_labels
    lines: list[str] = []
    for point in points:
        if isinstance(point, HistogramPoint):
            cumulative = 0
            for bound, count in zip((*definition.buckets, math.inf), point.counts, strict=True):
                cumulative += count
                le = 'le="' + format_value(float(bound)) + '"'
                lines.append(f"{name}_bucket{_labels(names, point.labels, le)} {cumulative}")
            labels = _labels(names, point.labels)
            lines.append(f"{name}_sum{labels} {format_value(point.sum)}")
            lines.append(f"{name}_count{labels} {point.count}")
        else:
            lines.append(f"{name}{_labels(names, point.labels)} {format_value(point.value)}")
    if not lines:
        return []
    header = [
        f"# HELP {name} {_escape_help(definition.description)}",
        f"# TYPE {name} {_prom_type(definition)}",
    ]
    return header + lines


def render(families: Iterable[tuple[MetricDef, Sequence[Point | HistogramPoint]]]) -> str:
    """The whole exposition: every family with at least one series, ending in a newline."""
    lines: list[str] = []
    for definition, points in families:
        lines.extend(render_family(definition, points))
    return "\n".join(lines) + "\n" if lines else ""


__all__ = ["CONTENT_TYPE", "HistogramPoint", "Point", "format_value", "render", "render_family"]
