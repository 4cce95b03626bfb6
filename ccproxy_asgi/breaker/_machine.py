"""The state machine itself, as plain functions over one key's record.

The memory store runs these directly; the Redis store runs the same rules in Lua (`_lua.py`), and the
shared store tests hold both to the same behaviour. Every function takes `now` so no clock is read here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ccproxy_asgi.breaker._model import (
    WINDOW_BUCKETS,
    BreakerPolicy,
    BreakerSnapshot,
    Outcome,
    State,
    Ticket,
    Transition,
)


@dataclass(slots=True)
class BreakerRecord:
    """Everything one key remembers."""

    state: State = State.CLOSED
    epoch: int = 0
    consecutive_failures: int = 0
    # Rolling window: slot i holds (bucket id, outcomes, failures) for a bucket with id % WINDOW_BUCKETS == i.
    buckets: list[tuple[int, int, int]] = field(default_factory=lambda: [(-1, 0, 0)] * WINDOW_BUCKETS)
    open_until: float = 0.0
    trips: int = 0
    successes: int = 0
    # Probe token -> the time its lease runs out.
    probes: dict[str, float] = field(default_factory=dict)


def _bucket_id(policy: BreakerPolicy, now: float) -> int:
    return math.floor(now / (policy.window_seconds / WINDOW_BUCKETS))


def window_counts(record: BreakerRecord, policy: BreakerPolicy, now: float) -> tuple[int, int]:
    """Outcomes and failures in the window ending at `now`."""
    oldest = _bucket_id(policy, now) - WINDOW_BUCKETS + 1
    total = failures = 0
    for bucket, count, failed in record.buckets:
        if bucket >= oldest:
            total += count
            failures += failed
    return total, failures


def _count(record: BreakerRecord, policy: BreakerPolicy, now: float, failed: bool) -> None:
    bucket = _bucket_id(policy, now)
    slot = bucket % WINDOW_BUCKETS
    current, count, failures = record.buckets[slot]
    if current != bucket:
        count = failures = 0
    record.buckets[slot] = (bucket, count + 1, failures + int(failed))


def _reset_counts(record: BreakerRecord) -> None:
    record.consecutive_failures = 0
    record.successes = 0
    record.probes.clear()
    record.buckets = [(-1, 0, 0)] * WINDOW_BUCKETS


def _trip(record: BreakerRecord, key: str, policy: BreakerPolicy, now: float, reason: str) -> Transition:
    previous = record.state
    record.trips += 1
    delay = policy.recovery_for(record.trips)
    record.state = State.OPEN
    record.epoch += 1
    record.open_until = now + delay
    _reset_counts(record)
    return Transition(key, previous, State.OPEN, reason, retry_after=delay)


def _prune_probes(record: BreakerRecord, now: float) -> None:
    for token in [token for token, expires in record.probes.items() if expires <= now]:
        del record.probes[token]


def acquire(
    record: BreakerRecord, key: str, policy: BreakerPolicy, now: float, token: str
) -> tuple[Ticket, Transition | None]:
    """Admit or refuse one request. `token` names the probe slot if the request becomes a probe."""
    transition = None
    if record.state is State.OPEN:
        if now < record.open_until:
            return Ticket(key, False, State.OPEN, record.epoch, retry_after=record.open_until - now), None
        record.state = State.HALF_OPEN
        record.epoch += 1
        _reset_counts(record)
        transition = Transition(key, State.OPEN, State.HALF_OPEN, "recovery timeout elapsed")
    if record.state is State.HALF_OPEN:
        _prune_probes(record, now)
        if len(record.probes) >= policy.half_open_max_probes:
            ticket = Ticket(key, False, State.HALF_OPEN, record.epoch, retry_after=policy.busy_retry_after)
            return ticket, transition
        record.probes[token] = now + policy.probe_lease_seconds
        return Ticket(key, True, State.HALF_OPEN, record.epoch, probe=token), transition
    return Ticket(key, True, State.CLOSED, record.epoch), transition


def record_outcome(
    record: BreakerRecord, ticket: Ticket, outcome: Outcome, policy: BreakerPolicy, now: float
) -> Transition | None:
    """Apply what an admitted request's end taught us; stale tickets (an earlier epoch) change nothing."""
    if not ticket.allowed or ticket.epoch != record.epoch:
        return None
    key = ticket.key
    if record.state is State.CLOSED:
        if outcome is Outcome.NEUTRAL:
            return None
        _count(record, policy, now, outcome is Outcome.FAILURE)
        if outcome is Outcome.SUCCESS:
            record.consecutive_failures = 0
            return None
        record.consecutive_failures += 1
        if record.consecutive_failures >= policy.failure_threshold:
            return _trip(record, key, policy, now, f"{record.consecutive_failures} consecutive failures")
        if policy.failure_ratio > 0:
            total, failures = window_counts(record, policy, now)
            if total >= policy.min_requests and failures >= policy.failure_ratio * total:
                return _trip(record, key, policy, now, f"{failures} of {total} requests failed")
        return None
    if record.state is State.HALF_OPEN and ticket.probe is not None:
        # A probe whose lease ran out still reports: it is still evidence about the upstream.
        record.probes.pop(ticket.probe, None)
        if outcome is Outcome.FAILURE:
            return _trip(record, key, policy, now, "a half-open probe failed")
        if outcome is Outcome.SUCCESS:
            record.successes += 1
            if record.successes >= policy.half_open_successes:
                record.state = State.CLOSED
                record.epoch += 1
                record.trips = 0
                _reset_counts(record)
                return Transition(key, State.HALF_OPEN, State.CLOSED, f"{policy.half_open_successes} probes succeeded")
    return None


def snapshot(record: BreakerRecord, key: str, policy: BreakerPolicy, now: float) -> BreakerSnapshot:
    """The record as seen at `now`, without changing it."""
    state = record.state
    retry_after = 0.0
    probes = sum(1 for expires in record.probes.values() if expires > now)
    successes = record.successes
    if state is State.OPEN:
        if now < record.open_until:
            retry_after = record.open_until - now
        else:
            state, probes, successes = State.HALF_OPEN, 0, 0
    total, failures = window_counts(record, policy, now)
    return BreakerSnapshot(
        key=key,
        state=state,
        retry_after=retry_after,
        consecutive_failures=record.consecutive_failures,
        window_requests=total,
        window_failures=failures,
        probes_in_flight=probes,
        half_open_successes=successes,
        trips=record.trips,
        epoch=record.epoch,
    )


__all__ = ["BreakerRecord", "acquire", "record_outcome", "snapshot", "window_counts"]
