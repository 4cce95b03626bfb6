"""The state machine itself, as plain functions over one key's record.

The memory store runs these directly; the Redis store runs the same rules in Lua (`_lua.py`), and the
shared store tests hold both to the same behaviour. Every function takes `now` so no clock is read here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ccproxy_asgi.breaker.values import (
    MAX_REMEMBERED_FAILURES,
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
    # When the last probe was let through while open (probes of an upstream with no alternative).
    last_probe: float = -math.inf
    # Fingerprints of recently failed requests -> when they are forgotten; insertion ordered.
    failed: dict[str, float] = field(default_factory=dict)


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


def _known_failure(record: BreakerRecord, fingerprint: str, now: float) -> bool:
    expires = record.failed.get(fingerprint) if fingerprint else None
    return expires is not None and expires > now


def _remember_failure(record: BreakerRecord, policy: BreakerPolicy, fingerprint: str, now: float) -> None:
    """Remember a failed request's fingerprint (bounded: expired and then the oldest are dropped)."""
    if not fingerprint or policy.repeat_memory_seconds <= 0:
        return
    for stale in [fp for fp, expires in record.failed.items() if expires <= now]:
        del record.failed[stale]
    record.failed.pop(fingerprint, None)
    record.failed[fingerprint] = now + policy.repeat_memory_seconds
    while len(record.failed) > MAX_REMEMBERED_FAILURES:
        del record.failed[next(iter(record.failed))]


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
    record.last_probe = now  # the failure that tripped it was the latest probe of the upstream
    _reset_counts(record)
    return Transition(key, previous, State.OPEN, reason, retry_after=delay)


def _close(record: BreakerRecord, key: str, policy: BreakerPolicy) -> Transition:
    previous = record.state
    record.state = State.CLOSED
    record.epoch += 1
    record.trips = 0
    _reset_counts(record)
    return Transition(key, previous, State.CLOSED, f"{policy.half_open_successes} probes succeeded")


def _should_trip(record: BreakerRecord, policy: BreakerPolicy, now: float) -> str | None:
    """Why the breaker should open after a counted failure, or None."""
    total, failures = window_counts(record, policy, now)
    busy = policy.failure_ratio > 0 and total >= policy.min_requests
    mostly_failing = busy and failures >= policy.failure_ratio * total
    if record.consecutive_failures >= policy.failure_threshold and (not busy or mostly_failing):
        return f"{record.consecutive_failures} consecutive failures"
    if mostly_failing:
        return f"{failures} of {total} requests failed"
    return None


def _prune_probes(record: BreakerRecord, now: float) -> None:
    for token in [token for token, expires in record.probes.items() if expires <= now]:
        del record.probes[token]


def _probe(
    record: BreakerRecord, key: str, policy: BreakerPolicy, now: float, token: str, fingerprint: str
) -> Ticket:
    """Let the request through as a probe if a slot is free (and, while still open, the interval passed)."""
    state = record.state
    opened_for = max(0.0, record.open_until - now) if state is State.OPEN else 0.0
    if _known_failure(record, fingerprint, now):
        # A request already seen failing proves nothing about the upstream: never a probe.
        wait = max(policy.busy_retry_after, opened_for)
        return Ticket(key, False, state, record.epoch, retry_after=wait, fingerprint=fingerprint)
    _prune_probes(record, now)
    if len(record.probes) >= policy.half_open_max_probes:
        wait = policy.busy_retry_after
        return Ticket(key, False, state, record.epoch, retry_after=wait, fingerprint=fingerprint)
    if state is State.OPEN:
        next_probe = record.last_probe + policy.open_probe_interval_seconds
        if now < next_probe:
            wait = min(opened_for, next_probe - now)
            return Ticket(key, False, state, record.epoch, retry_after=wait, fingerprint=fingerprint)
        record.last_probe = now
    record.probes[token] = now + policy.probe_lease_seconds
    return Ticket(key, True, state, record.epoch, probe=token, fingerprint=fingerprint)


def acquire(
    record: BreakerRecord,
    key: str,
    policy: BreakerPolicy,
    now: float,
    token: str,
    *,
    fingerprint: str = "",
    alone: bool = False,
) -> tuple[Ticket, Transition | None]:
    """Admit or refuse one request. `token` names the probe slot if the request becomes a probe;
    `alone` says no other upstream can serve it, so an open breaker keeps probing (see `BreakerPolicy`)."""
    transition = None
    if record.state is State.OPEN:
        if now < record.open_until:
            if alone:
                return _probe(record, key, policy, now, token, fingerprint), None
            retry_after = record.open_until - now
            return Ticket(key, False, State.OPEN, record.epoch, retry_after=retry_after), None
        # Probes let through while open keep their slots (and their epoch): they are half-open probes now.
        record.state = State.HALF_OPEN
        record.successes = 0
        transition = Transition(key, State.OPEN, State.HALF_OPEN, "recovery timeout elapsed")
    if record.state is State.HALF_OPEN:
        return _probe(record, key, policy, now, token, fingerprint), transition
    return Ticket(key, True, State.CLOSED, record.epoch, fingerprint=fingerprint), transition


def record_outcome(
    record: BreakerRecord, ticket: Ticket, outcome: Outcome, policy: BreakerPolicy, now: float
) -> Transition | None:
    """Apply what an admitted request's end taught us; stale tickets (an earlier epoch) change nothing."""
    if not ticket.allowed or ticket.epoch != record.epoch:
        return None
    key = ticket.key
    if outcome is Outcome.FAILURE or outcome is Outcome.REQUEST_ERROR:
        repeat = _known_failure(record, ticket.fingerprint, now)
        _remember_failure(record, policy, ticket.fingerprint, now)
        if repeat:
            # The same request failing again: no new evidence, but a probe slot it held comes back.
            outcome = Outcome.NEUTRAL
    if record.state is State.CLOSED:
        if outcome is Outcome.NEUTRAL:
            return None
        _count(record, policy, now, outcome is not Outcome.SUCCESS)
        if outcome is Outcome.SUCCESS:
            record.consecutive_failures = 0
            return None
        if outcome is Outcome.FAILURE:
            record.consecutive_failures += 1
        reason = _should_trip(record, policy, now)
        return _trip(record, key, policy, now, reason) if reason is not None else None
    if ticket.probe is None:
        return None
    # A probe whose lease ran out still reports: it is still evidence about the upstream.
    record.probes.pop(ticket.probe, None)
    if outcome is Outcome.FAILURE and record.state is State.HALF_OPEN:
        return _trip(record, key, policy, now, "a half-open probe failed")
    if outcome is Outcome.SUCCESS:
        record.successes += 1
        if record.successes >= policy.half_open_successes:
            return _close(record, key, policy)
    # A probe that failed while the breaker is still open leaves it open until its recovery time ends.
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
