"""Retry policy for the upstream call: which failures, how long to wait, and when to stop.

Retries happen only before the first byte reaches the client (the provider owns that rule). The wait
honours the upstream's own hints first (`retry-after-ms`, then `retry-after` as seconds or an HTTP date),
else exponential backoff with full jitter, so a crowd of proxies does not retry in lockstep.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the upstream asks us to wait, or None when it gave no usable hint."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000.0
            if value >= 0:
                return value
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        seconds = float(raw)
        return seconds if seconds >= 0 else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts, and how long between them."""

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    # An upstream asking for a longer pause than this is not retried here: the client decides.
    max_retry_after: float = 20.0
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


__all__ = ["RETRYABLE_STATUSES", "RetryPolicy", "parse_retry_after"]
