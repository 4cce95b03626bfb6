"""AdaptiveTimeout: clamp(multiplier * quantile, min, max) once there are enough samples, cached briefly,
fed by the collector (timed-out attempts included), built from Settings, and exported as a gauge."""

from __future__ import annotations

import pytest

from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.app.wiring import build_observability
from ccproxy_asgi.context import UpstreamAttempt
from ccproxy_asgi.observability.adaptive_timeout import AdaptiveTimeout, AdaptiveTimeoutPolicy
from ccproxy_asgi.observability.collector import MetricsCollector
from ccproxy_asgi.observability.percentiles import SlidingPercentiles
from ccproxy_asgi.observability.record import RequestRecord
from tests.support.manual_clock import ManualClock


def timeout_with(values: list[float], clock: ManualClock, **policy: float) -> AdaptiveTimeout:
    window = SlidingPercentiles(window_seconds=60, clock=clock)
    for value in values:
        window.add(value)
    settings: dict[str, float] = {"min_seconds": 1.0, "max_seconds": 100.0, "min_samples": 10, **policy}
    return AdaptiveTimeout(window, AdaptiveTimeoutPolicy(**settings), clock=clock)  # type: ignore[arg-type]


def test_none_until_there_are_enough_samples() -> None:
    clock = ManualClock()
    timeout = timeout_with([2.0] * 9, clock)
    assert timeout() is None
    timeout.window.add(2.0)
    assert timeout() == pytest.approx(6.0)  # 3 x p99, at once: no stale "None" is cached


def test_clamped_between_min_and_max() -> None:
    clock = ManualClock()
    assert timeout_with([0.01] * 20, clock)() == 1.0
    assert timeout_with([90.0] * 20, clock)() == 100.0
    mixed = timeout_with([1.0] * 99 + [10.0], clock, multiplier=2.0, quantile=0.5)
    assert mixed() == pytest.approx(2.0)


def test_the_value_is_reused_for_refresh_seconds() -> None:
    clock = ManualClock()
    timeout = timeout_with([2.0] * 20, clock, refresh_seconds=5.0)
    assert timeout() == pytest.approx(6.0)
    for _ in range(200):
        timeout.window.add(20.0)
    assert timeout() == pytest.approx(6.0)
    assert timeout.current == pytest.approx(6.0)
    clock.t += 5
    assert timeout() == pytest.approx(60.0)


def test_policy_is_checked() -> None:
    bad: list[dict[str, float]] = [
        {"multiplier": 0},
        {"quantile": 0},
        {"quantile": 1.5},
        {"min_seconds": 0},
        {"min_seconds": 10, "max_seconds": 5},
        {"min_samples": 0},
        {"refresh_seconds": -1},
    ]
    for fields in bad:
        with pytest.raises(ValueError, match="must"):
            AdaptiveTimeoutPolicy(**fields)  # type: ignore[arg-type]


def test_the_collector_feeds_head_latency_and_timeouts_but_not_refusals() -> None:
    collector = MetricsCollector()
    url = "http://up/v1/chat/completions"
    attempts = [
        UpstreamAttempt(url=url, status=200, duration_s=0.3),
        UpstreamAttempt(url=url, status=500, duration_s=0.1),
        UpstreamAttempt(url=url, error="UpstreamTimeoutError", duration_s=4.0),
        UpstreamAttempt(url=url, error="UpstreamError", duration_s=0.001),  # connection refused
    ]
    collector.record(
        RequestRecord(
            method="POST", route="/v1/messages", status=200, duration_s=5, chat=True, attempts=attempts
        )
    )
    assert collector.upstream_latency.count() == 3
    assert collector.upstream_latency.quantile(1.0) == 4.0
    assert collector.upstream_latency.quantile(0.0) == 0.1


def test_built_from_settings_only_when_enabled_and_exported() -> None:
    off = build_observability(Settings(_env_file=None))  # type: ignore[call-arg]
    assert off.adaptive_timeout is None
    assert "ccproxy_upstream_adaptive_timeout_seconds" not in off.collector.render_prometheus()
    on = build_observability(
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            adaptive_timeout_enabled=True,
            adaptive_timeout_min_samples=3,
            adaptive_timeout_min_seconds=0.5,
            http_read_timeout_seconds=42,
        )
    )
    timeout = on.adaptive_timeout
    assert timeout is not None
    assert timeout.policy.max_seconds == 42  # unset ceiling: the static read timeout
    assert timeout() is None
    for _ in range(3):
        on.collector.upstream_latency.add(0.4)
    assert timeout() == pytest.approx(1.2)
    assert "ccproxy_upstream_adaptive_timeout_seconds 1.2" in on.collector.render_prometheus()
