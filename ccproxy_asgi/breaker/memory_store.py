"""`MemoryBreakerStore`: breaker state in this process.

Every method runs without awaiting anything, so under asyncio each call is atomic: two concurrent
requests cannot both take the last half-open probe slot.
"""

from __future__ import annotations

from collections import OrderedDict

from ccproxy_asgi.breaker.state_machine import BreakerRecord, acquire, record_outcome, snapshot
from ccproxy_asgi.breaker.values import BreakerPolicy, BreakerSnapshot, Outcome, State, Ticket, Transition


class MemoryBreakerStore:
    """Implements `BreakerStore` with a dict of records.

    Keys can include a model name a client chose, so the store is bounded: past `max_keys` the least
    recently used closed keys are forgotten (a closed key with no history loses nothing that matters).
    """

    def __init__(self, *, max_keys: int = 1024) -> None:
        self._records: OrderedDict[str, BreakerRecord] = OrderedDict()
        self._max_keys = max_keys

    def _record(self, key: str) -> BreakerRecord:
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = BreakerRecord()
            self._evict()
        else:
            self._records.move_to_end(key)
        return record

    def _evict(self) -> None:
        if len(self._records) <= self._max_keys:
            return
        for key in [k for k, r in self._records.items() if r.state is State.CLOSED]:
            del self._records[key]
            if len(self._records) <= self._max_keys:
                return

    async def acquire(
        self,
        key: str,
        policy: BreakerPolicy,
        now: float,
        token: str,
        *,
        fingerprint: str = "",
        alone: bool = False,
    ) -> tuple[Ticket, Transition | None]:
        return acquire(self._record(key), key, policy, now, token, fingerprint=fingerprint, alone=alone)

    async def record(
        self, ticket: Ticket, outcome: Outcome, policy: BreakerPolicy, now: float
    ) -> Transition | None:
        record = self._records.get(ticket.key)
        if record is None:
            return None
        return record_outcome(record, ticket, outcome, policy, now)

    async def snapshot(self, key: str, policy: BreakerPolicy, now: float) -> BreakerSnapshot:
        record = self._records.get(key)
        return snapshot(record if record is not None else BreakerRecord(), key, policy, now)

    def keys(self) -> list[str]:
        """The keys this store holds state for."""
        return list(self._records)

    async def aclose(self) -> None:
        return None


__all__ = ["MemoryBreakerStore"]
