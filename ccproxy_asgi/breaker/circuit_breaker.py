"""`CircuitBreaker`: the policy, a store and a clock, plus the logging and counters around them.

No ASGI here: the middleware (one upstream) and the fallback provider (several) both drive this class,
one `acquire` before a request and one `record` after it, so there is one breaker core for both.
"""

from __future__ import annotations

import logging
import secrets
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ccproxy_asgi.breaker.memory_store import MemoryBreakerStore
from ccproxy_asgi.breaker.outcomes import request_outcome
from ccproxy_asgi.breaker.store import BreakerStore
from ccproxy_asgi.breaker.values import BreakerPolicy, BreakerSnapshot, Outcome, State, Ticket, Transition
from ccproxy_asgi.context import UpstreamAttempt

logger = logging.getLogger("ccproxy_asgi.breaker")

TransitionListener = Callable[[Transition], None]


def request_fingerprint(body: bytes | None) -> str:
    """A short digest of a request body: equal for a client's retries of the same request.

    Not a security boundary, only "have we seen this request fail": CRC-32 plus the length is stable
    across processes (shared through Redis) and costs about a microsecond for a typical body.
    """
    if not body:
        return ""
    return f"{zlib.crc32(body):08x}{len(body):x}"


@dataclass(frozen=True, slots=True)
class BreakerStats:
    """What this process saw on one key: the last state it knows, its transitions and its verdicts."""

    state: State
    transitions: dict[str, int]
    admitted: int
    rejected: int
    successes: int
    failures: int
    request_errors: int
    neutral: int


@dataclass(slots=True)
class _Counters:
    state: State = State.CLOSED
    transitions: Counter[str] = field(default_factory=Counter)
    admitted: int = 0
    rejected: int = 0
    outcomes: Counter[Outcome] = field(default_factory=Counter)


class CircuitBreaker:
    """Per-key closed / open / half-open breaker (see `BreakerPolicy` for the rules).

    `clock` must be one clock for everything that shares the store: the monotonic clock is right for the
    memory store, the wall clock for Redis shared by several processes (`ccproxy_asgi.app.build_breaker` picks).
    """

    def __init__(
        self,
        *,
        policy: BreakerPolicy | None = None,
        store: BreakerStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        token: Callable[[], str] = lambda: secrets.token_hex(8),
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self.store: BreakerStore = store if store is not None else MemoryBreakerStore()
        self._clock = clock
        self._token = token
        self._counters: dict[str, _Counters] = {}
        self._listeners: list[TransitionListener] = []

    def add_listener(self, listener: TransitionListener) -> None:
        """Call `listener` on every state change this process makes (for metrics exporters)."""
        self._listeners.append(listener)

    def _counter(self, key: str) -> _Counters:
        counters = self._counters.get(key)
        if counters is None:
            counters = self._counters[key] = _Counters()
        return counters

    def _changed(self, transition: Transition) -> None:
        counters = self._counter(transition.key)
        counters.state = transition.to_state
        counters.transitions[f"{transition.from_state.value}->{transition.to_state.value}"] += 1
        if transition.to_state is State.OPEN:
            logger.warning(
                "circuit breaker opened for %s (%s); next probe in %.1f s",
                transition.key,
                transition.reason,
                transition.retry_after,
            )
        else:
            logger.info(
                "circuit breaker %s for %s (%s)",
                "half-open" if transition.to_state is State.HALF_OPEN else "closed",
                transition.key,
                transition.reason,
            )
        for listener in self._listeners:
            try:
                listener(transition)
            except Exception:
                logger.exception("breaker transition listener failed")

    async def acquire(self, key: str, *, fingerprint: str = "", alone: bool = False) -> Ticket:
        """Admit a request on `key` (maybe as a probe) or refuse it with a `retry_after`.

        `fingerprint` (see `request_fingerprint`) lets the breaker tell a client's retry of a failed
        request from new evidence; `alone` says no other upstream could serve the request, so an open
        breaker keeps probing instead of refusing everything for its whole recovery time.
        """
        ticket, transition = await self.store.acquire(
            key, self.policy, self._clock(), self._token(), fingerprint=fingerprint, alone=alone
        )
        if transition is not None:
            self._changed(transition)
        counters = self._counter(key)
        counters.state = ticket.state
        if ticket.allowed:
            counters.admitted += 1
        else:
            counters.rejected += 1
        return ticket

    async def record(self, ticket: Ticket, outcome: Outcome) -> None:
        """Report how a request admitted with `ticket` ended. Every admitted ticket must come back once,
        NEUTRAL included: that is what frees a probe slot when a probe proved nothing."""
        if not ticket.allowed:
            return
        self._counter(ticket.key).outcomes[outcome] += 1
        transition = await self.store.record(ticket, outcome, self.policy, self._clock())
        if transition is not None:
            self._changed(transition)

    def outcome_of(
        self,
        attempts: Sequence[UpstreamAttempt],
        *,
        stream_error: object = None,
        error_status: int | None = None,
        completed: bool = True,
    ) -> Outcome:
        """Classify a request's end under this breaker's policy (`count_429`); see `request_outcome`."""
        return request_outcome(
            attempts,
            stream_error=stream_error,
            error_status=error_status,
            completed=completed,
            count_429=self.policy.count_429,
        )

    async def snapshot(self, key: str) -> BreakerSnapshot:
        """The current state of `key` (from the shared store when there is one), for health endpoints."""
        return await self.store.snapshot(key, self.policy, self._clock())

    async def snapshots(self) -> list[BreakerSnapshot]:
        """Snapshots of every key this process has used."""
        return [await self.snapshot(key) for key in list(self._counters)]

    def stats(self) -> dict[str, BreakerStats]:
        """Counters per key since start, as seen by this process."""
        return {
            key: BreakerStats(
                state=c.state,
                transitions=dict(c.transitions),
                admitted=c.admitted,
                rejected=c.rejected,
                successes=c.outcomes[Outcome.SUCCESS],
                failures=c.outcomes[Outcome.FAILURE],
                request_errors=c.outcomes[Outcome.REQUEST_ERROR],
                neutral=c.outcomes[Outcome.NEUTRAL],
            )
            for key, c in self._counters.items()
        }

    async def aclose(self) -> None:
        await self.store.aclose()


__all__ = ["BreakerStats", "CircuitBreaker", "TransitionListener", "request_fingerprint"]
