"""`BreakerStore`: where breaker state lives. Memory for one process, Redis for several."""

from __future__ import annotations

from typing import Protocol

from ccproxy_asgi.breaker.values import BreakerPolicy, BreakerSnapshot, Outcome, Ticket, Transition


class BreakerStore(Protocol):
    """Runs the breaker's transitions atomically per key. `now` comes from the breaker's clock."""

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
        """Admit or refuse a request on `key`; `token` names the probe slot if it becomes a probe,
        `fingerprint` the request's body, `alone` whether no other upstream could serve it."""
        ...

    async def record(
        self, ticket: Ticket, outcome: Outcome, policy: BreakerPolicy, now: float
    ) -> Transition | None:
        """Apply the outcome of a request admitted with `ticket`."""
        ...

    async def snapshot(self, key: str, policy: BreakerPolicy, now: float) -> BreakerSnapshot:
        """The state of `key`, without changing it."""
        ...

    async def aclose(self) -> None: ...


__all__ = ["BreakerStore"]
