"""Retry policy for the upstream call: which failures, how long to wait, and when to stop.

Retries happen only before the first byte reaches the client (the provider owns that rule). The wait
honours the upstream's own hints first (`retry-after-ms`, then `retry-after` as seconds or an HTTP date),
else exponential backoff with full jitter, so a crowd of proxies does not retry in lockstep. A call stops
retrying when its attempts are used up, when the next wait would take it past its total time budget, or
when the shared `RetryBudget` says retries already make up too much of the recent traffic.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from ccproxy_asgi.retry_budget import RetryBudget

logger = logging.getLogger("ccproxy_asgi.retry")

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the upstream asks us to wait, or None when it gave no usable hint.

    `retry-after-ms` first, then `retry-after` as seconds, then as an HTTP date (a date in the past is 0).
    Negative, NaN and infinite values are no hint at all.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        value = _seconds(raw_ms, scale=1000.0)
        if value is not None:
            return value
    raw = headers.get("retry-after")
    if not raw:
        return None
    value = _seconds(raw, scale=1.0)
    if value is not None:
        return value
    try:
        when = parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when - current)


def _seconds(raw: str, *, scale: float) -> float | None:
    try:
        value = float(raw) / scale
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts, how long between them, and the limits on retrying at all.

    `total_timeout`: seconds one call may spend, attempts and waits together, before it stops retrying
    (a retry whose wait would end past it is not made; an attempt in flight is bounded by the HTTP
    client's own timeouts, not cut). `budget`: shared by every call of one upstream (see `RetryBudget`).
    """

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    # An upstream asking for a longer pause than this is not retried here: the client decides.
    max_retry_after: float = 20.0
    total_timeout: float | None = None
    budget: RetryBudget | None = field(default=None, compare=False)
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def is_retryable(self, status: int, headers: Mapping[str, str]) -> bool:
        hint = headers.get("x-should-retry")
        if hint == "true":
            return True
        if hint == "false":
            return False
        return status in RETRYABLE_STATUSES

    def delay(self, retries_taken: int, headers: Mapping[str, str] | None = None) -> float | None:
        """Seconds to sleep before the next attempt, or None if the upstream's hint is too long to wait."""
        if headers is not None:
            hinted = parse_retry_after(headers)
            if hinted is not None:
                return hinted if hinted <= self.max_retry_after else None
        ceiling = min(self.max_delay, self.base_delay * (2**retries_taken))
        return float(ceiling * self.random())

    def start(self, clock: Callable[[], float] = time.monotonic) -> RetryCall:
        """Begin one upstream call: counts it in the budget and starts its clock."""
        if self.budget is not None:
            self.budget.record_request()
        return RetryCall(self, clock)


class RetryCall:
    """The retry decisions of one upstream call, within its time budget and the shared retry budget."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float]) -> None:
        self._policy = policy
        self._clock = clock
        self._started = clock()

    def elapsed(self) -> float:
        return self._clock() - self._started

    def delay(self, retries_taken: int, headers: Mapping[str, str] | None = None) -> float | None:
        """Seconds to wait before retrying, or None to give up now and raise the last error.

        Only a None-free answer takes a retry from the budget, so the caller must retry when it gets one.
        """
        policy = self._policy
        wait = policy.delay(retries_taken, headers)
        if wait is None:
            return None
        if policy.total_timeout is not None and self.elapsed() + wait > policy.total_timeout:
            logger.info("not retrying: the call's time budget of %gs would be exceeded", policy.total_timeout)
            return None
        if policy.budget is not None and not policy.budget.try_spend():
            logger.warning("not retrying: the retry budget is spent (%r)", policy.budget)
            return None
        return wait


__all__ = ["RETRYABLE_STATUSES", "RetryCall", "RetryPolicy", "parse_retry_after"]
