"""`RedisBreakerStore`: one breaker shared by every process that uses the same Redis.

Each decision is one call of one Lua script (`_lua.py`), so concurrent processes cannot both take the last
probe slot or both miss a trip. When Redis cannot be reached the store degrades instead of failing the
request: by default to an in-process breaker (logged once per outage), and it tries Redis again after
`retry_interval` seconds. Tickets remember which store issued them, so each outcome goes back there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

from ccproxy_asgi.breaker.memory_store import MemoryBreakerStore
from ccproxy_asgi.breaker.redis_script import BREAKER_SCRIPT
from ccproxy_asgi.breaker.values import BreakerPolicy, BreakerSnapshot, Outcome, State, Ticket, Transition
from ccproxy_asgi.redis_client import REDIS_ERRORS, RedisClient

logger = logging.getLogger("ccproxy_asgi.breaker")

RedisFailureMode = Literal["local", "allow"]
_STORE_ERRORS = REDIS_ERRORS


def _policy_args(policy: BreakerPolicy) -> list[str]:
    longest = max(
        policy.window_seconds,
        policy.max_recovery_seconds,
        policy.probe_lease_seconds,
        policy.repeat_memory_seconds,
    )
    ttl = 2 * longest + 60
    values: list[float] = [
        policy.failure_threshold,
        policy.failure_ratio,
        policy.window_seconds,
        policy.min_requests,
        policy.recovery_seconds,
        policy.recovery_growth,
        policy.max_recovery_seconds,
        policy.half_open_max_probes,
        policy.half_open_successes,
        policy.probe_lease_seconds,
        policy.busy_retry_after,
        policy.open_probe_interval_seconds,
        policy.repeat_memory_seconds,
        math.ceil(ttl * 1000),
    ]
    return [repr(float(value)) for value in values]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _transition(key: str, parts: Sequence[Any]) -> Transition | None:
    from_state, to_state, reason, retry_after = (_text(part) for part in parts)
    if not from_state:
        return None
    return Transition(key, State(from_state), State(to_state), reason, retry_after=float(retry_after))


class RedisBreakerStore:
    """Implements `BreakerStore` over `redis.asyncio`.

    `failure_mode` says what happens while Redis is unreachable: "local" runs an in-process breaker,
    "allow" lets every request through unguarded. Give the client short timeouts and no retries of its
    own (`ccproxy_asgi.app.build_breaker` does): a slow Redis should degrade quickly, not hold requests.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = "ccproxy:breaker:",
        failure_mode: RedisFailureMode = "local",
        retry_interval: float = 5.0,
        local: MemoryBreakerStore | None = None,
    ) -> None:
        self._client = client
        self._script = client.register_script(BREAKER_SCRIPT)
        self._prefix = prefix
        self._failure_mode = failure_mode
        self._retry_interval = retry_interval
        self._local = local or MemoryBreakerStore()
        self._down_until: float | None = None

    @property
    def degraded(self) -> bool:
        """Whether Redis was unreachable at the last attempt."""
        return self._down_until is not None

    def redis_keys(self, key: str) -> list[str]:
        """The Redis keys of breaker `key`: its hash, its probe set and its recently failed requests,
        under one hash tag."""
        tag = hashlib.sha256(key.encode()).hexdigest()[:24]
        base = f"{self._prefix}{{{tag}}}"
        return [base, base + ":probes", base + ":failed"]

    def _usable(self, now: float) -> bool:
        return self._down_until is None or now >= self._down_until

    def _went_down(self, exc: BaseException, now: float) -> None:
        if self._down_until is None:
            mode = "an in-process breaker" if self._failure_mode == "local" else "no breaker"
            # The exception's text can quote the URL (and its password), so only its type is logged.
            logger.warning(
                "breaker store (redis) unreachable (%s); using %s until it answers again",
                type(exc).__name__,
                mode,
            )
        self._down_until = now + self._retry_interval

    def _came_back(self) -> None:
        if self._down_until is not None:
            logger.warning("breaker store (redis) reachable again; the shared breaker is back in use")
            self._down_until = None

    async def _run(self, key: str, op: str, policy: BreakerPolicy, now: float, *extra: str) -> list[Any]:
        args = [op, repr(float(now)), *_policy_args(policy), *extra, key]
        result = await self._script(keys=self.redis_keys(key), args=args)
        self._came_back()
        assert isinstance(result, list)
        return result

    async def _local_acquire(
        self, key: str, policy: BreakerPolicy, now: float, token: str, fingerprint: str, alone: bool
    ) -> tuple[Ticket, Transition | None]:
        if self._failure_mode == "allow":
            return Ticket(key, True, State.CLOSED, -1, local=True), None
        ticket, transition = await self._local.acquire(
            key, policy, now, token, fingerprint=fingerprint, alone=alone
        )
        return dataclasses.replace(ticket, local=True), transition

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
        if self._usable(now):
            try:
                result = await self._run(
                    key, "acquire", policy, now, token, fingerprint, "1" if alone else "0"
                )
            except _STORE_ERRORS as exc:
                self._went_down(exc, now)
            else:
                allowed = int(result[0]) == 1
                state = State(_text(result[1]))
                ticket = Ticket(
                    key,
                    allowed,
                    state,
                    int(float(_text(result[2]))),
                    retry_after=float(_text(result[3])),
                    probe=token if allowed and state is not State.CLOSED else None,
                    fingerprint=fingerprint,
                )
                return ticket, _transition(key, result[4:8])
        return await self._local_acquire(key, policy, now, token, fingerprint, alone)

    async def record(
        self, ticket: Ticket, outcome: Outcome, policy: BreakerPolicy, now: float
    ) -> Transition | None:
        if not ticket.allowed:
            return None
        if ticket.local:
            if self._failure_mode == "allow":
                return None
            return await self._local.record(ticket, outcome, policy, now)
        try:
            result = await self._run(
                ticket.key,
                "record",
                policy,
                now,
                outcome.value,
                str(ticket.epoch),
                ticket.probe or "",
                ticket.fingerprint,
            )
        except _STORE_ERRORS as exc:
            # The outcome is lost; a probe slot it held is reclaimed when its lease runs out.
            self._went_down(exc, now)
            return None
        return _transition(ticket.key, result[2:6])

    async def snapshot(self, key: str, policy: BreakerPolicy, now: float) -> BreakerSnapshot:
        if self._usable(now):
            try:
                result = await self._run(key, "snapshot", policy, now)
            except _STORE_ERRORS as exc:
                self._went_down(exc, now)
            else:
                numbers = [float(_text(part)) for part in result[1:]]
                return BreakerSnapshot(
                    key=key,
                    state=State(_text(result[0])),
                    retry_after=numbers[0],
                    consecutive_failures=int(numbers[1]),
                    window_requests=int(numbers[2]),
                    window_failures=int(numbers[3]),
                    probes_in_flight=int(numbers[4]),
                    half_open_successes=int(numbers[5]),
                    trips=int(numbers[6]),
                    epoch=int(numbers[7]),
                )
        local = await self._local.snapshot(key, policy, now)
        return dataclasses.replace(local, degraded=True)

    async def aclose(self) -> None:
        await self._client.aclose()


__all__ = ["RedisBreakerStore", "RedisFailureMode"]
