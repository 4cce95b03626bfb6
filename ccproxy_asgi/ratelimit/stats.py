"""Counters of what the limiter decided, and a snapshot of them for a metrics layer to read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ccproxy_asgi.ratelimit.budget import WindowView


@dataclass(frozen=True, slots=True)
class EffectiveLimits:
    """A key's limits as last seen by a decision: configured times the adaptive factor."""

    factor: float
    requests: int | None
    tokens: int | None
    input_tokens: int | None
    output_tokens: int | None
    remaining_requests: int | None
    remaining_tokens: int | None

    @classmethod
    def from_view(cls, view: WindowView) -> EffectiveLimits:
        return cls(
            factor=view.factor,
            requests=view.limit_requests,
            tokens=view.limit_tokens,
            input_tokens=view.limit_input_tokens,
            output_tokens=view.limit_output_tokens,
            remaining_requests=view.remaining_requests,
            remaining_tokens=view.remaining_tokens,
        )


@dataclass(frozen=True, slots=True)
class LimiterSnapshot:
    """Every counter since the limiter started, plus gauges (`queued`, `effective`) as of now."""

    checked: int
    admitted: int
    admitted_after_wait: int
    waits: int
    wait_seconds_total: float
    wait_seconds_max: float
    queued: int
    rejected_rate_limited: int
    rejected_too_large: int
    rejected_store_unavailable: int
    left_queue_cancelled: int
    failed_open: int
    store_errors: int
    settled: int
    reconciled_token_delta: int
    upstream_rate_limited: int
    limit_decreases: int
    limit_increases: int
    effective: dict[str, EffectiveLimits] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class LimiterStats:
    """Mutable counters owned by one `RateLimiter`."""

    checked: int = 0
    admitted: int = 0
    admitted_after_wait: int = 0
    waits: int = 0
    wait_seconds_total: float = 0.0
    wait_seconds_max: float = 0.0
    rejected_rate_limited: int = 0
    rejected_too_large: int = 0
    rejected_store_unavailable: int = 0
    left_queue_cancelled: int = 0
    failed_open: int = 0
    store_errors: int = 0
    settled: int = 0
    reconciled_token_delta: int = 0
    upstream_rate_limited: int = 0
    limit_decreases: int = 0
    limit_increases: int = 0
    effective: dict[str, EffectiveLimits] = field(default_factory=dict)

    def record_wait(self, seconds: float) -> None:
        self.waits += 1
        self.wait_seconds_total += seconds
        self.wait_seconds_max = max(self.wait_seconds_max, seconds)

    def snapshot(self, queued: int) -> LimiterSnapshot:
        return LimiterSnapshot(
            checked=self.checked,
            admitted=self.admitted,
            admitted_after_wait=self.admitted_after_wait,
            waits=self.waits,
            wait_seconds_total=self.wait_seconds_total,
            wait_seconds_max=self.wait_seconds_max,
            queued=queued,
            rejected_rate_limited=self.rejected_rate_limited,
            rejected_too_large=self.rejected_too_large,
            rejected_store_unavailable=self.rejected_store_unavailable,
            left_queue_cancelled=self.left_queue_cancelled,
            failed_open=self.failed_open,
            store_errors=self.store_errors,
            settled=self.settled,
            reconciled_token_delta=self.reconciled_token_delta,
            upstream_rate_limited=self.upstream_rate_limited,
            limit_decreases=self.limit_decreases,
            limit_increases=self.limit_increases,
            effective=dict(self.effective),
        )


__all__ = ["EffectiveLimits", "LimiterSnapshot", "LimiterStats"]
