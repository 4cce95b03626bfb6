"""Simulated account limits and OpenAI's `x-ratelimit-*` headers.

The limiter is a true sliding window over the requests admitted in the last `window` seconds, so the
retry-after it reports is honest: waiting that long is exactly enough for the request to fit. A request
is charged the tokens it actually uses (prompt + completion), which the mock knows before answering.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


def format_duration(seconds: float) -> str:
    """Go-style duration as OpenAI writes reset times: `0s`, `12ms`, `1.5s`, `6m0s`, `1h2m3s`."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs = f"{millis / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def retry_after_headers(seconds: float) -> dict[str, str]:
    """`retry-after` (whole seconds, rounded up) and the exact `retry-after-ms`."""
    return {
        "retry-after": str(max(1, math.ceil(seconds))),
        "retry-after-ms": str(max(1, round(seconds * 1000))),
    }


@dataclass(frozen=True, slots=True)
class LimitDecision:
    """The outcome of asking the account for room, with the figures for the rate-limit headers."""

    allowed: bool
    retry_after: float
    limit_requests: int
    limit_tokens: int
    remaining_requests: int
    remaining_tokens: int
    reset_requests: float
    reset_tokens: float
    exceeded: str | None = None  # "requests" or "tokens"

    def headers(self) -> dict[str, str]:
        """The six `x-ratelimit-*` headers."""
        return {
            "x-ratelimit-limit-requests": str(self.limit_requests),
            "x-ratelimit-limit-tokens": str(self.limit_tokens),
            "x-ratelimit-remaining-requests": str(self.remaining_requests),
            "x-ratelimit-remaining-tokens": str(self.remaining_tokens),
            "x-ratelimit-reset-requests": format_duration(self.reset_requests),
            "x-ratelimit-reset-tokens": format_duration(self.reset_tokens),
        }


class AccountLimiter:
    """RPM and TPM budgets over one sliding window; a limit of 0 is unlimited."""

    def __init__(
        self,
        rpm: int,
        tpm: int,
        window: float = 60.0,
        *,
        advertised_rpm: int = 10_000,
        advertised_tpm: int = 30_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rpm = rpm
        self._tpm = tpm
        self._window = window
        self._advertised_rpm = rpm or advertised_rpm
        self._advertised_tpm = tpm or advertised_tpm
        self._clock = clock
        self._admitted: deque[tuple[float, int]] = deque()
        self._tokens_in_window = 0

    @property
    def enabled(self) -> bool:
        return bool(self._rpm or self._tpm)

    def reset(self) -> None:
        self._admitted.clear()
        self._tokens_in_window = 0

    def _prune(self, now: float) -> None:
        horizon = now - self._window
        admitted = self._admitted
        while admitted and admitted[0][0] <= horizon:
            self._tokens_in_window -= admitted.popleft()[1]

    def _wait_for_tokens(self, tokens: int, now: float) -> float:
        """Seconds until enough admitted tokens leave the window for `tokens` more to fit."""
        excess = self._tokens_in_window + tokens - self._tpm
        if tokens > self._tpm:
            return self._window  # can never fit; the honest answer is "a full window", then a 429 again
        freed = 0
        for stamp, charged in self._admitted:
            freed += charged
            if freed >= excess:
                return stamp + self._window - now
        return self._window

    def acquire(self, tokens: int) -> LimitDecision:
        """Admit a request charged `tokens`, or refuse it with the time after which it would fit."""
        if not self.enabled:
            return LimitDecision(
                True,
                0.0,
                self._advertised_rpm,
                self._advertised_tpm,
                self._advertised_rpm - 1,
                max(0, self._advertised_tpm - tokens),
                0.0,
                0.0,
            )
        now = self._clock()
        self._prune(now)
        count = len(self._admitted)
        waits: dict[str, float] = {}
        if self._rpm and count + 1 > self._rpm:
            waits["requests"] = self._admitted[0][0] + self._window - now
        if self._tpm and self._tokens_in_window + tokens > self._tpm:
            waits["tokens"] = self._wait_for_tokens(tokens, now)
        allowed = not waits
        if allowed:
            self._admitted.append((now, tokens))
            self._tokens_in_window += tokens
            count += 1
        # "Reset" is when the budget is whole again: the newest admitted request leaves the window.
        reset = max(0.0, self._admitted[-1][0] + self._window - now) if self._admitted else 0.0
        exceeded = max(waits, key=waits.__getitem__) if waits else None
        return LimitDecision(
            allowed=allowed,
            retry_after=max(waits.values()) if waits else 0.0,
            limit_requests=self._advertised_rpm,
            limit_tokens=self._advertised_tpm,
            remaining_requests=max(0, self._advertised_rpm - count),
            remaining_tokens=max(0, self._advertised_tpm - self._tokens_in_window),
            reset_requests=reset if self._rpm else 0.0,
            reset_tokens=reset if self._tpm else 0.0,
            exceeded=exceeded,
        )


__all__ = ["AccountLimiter", "LimitDecision", "format_duration", "retry_after_headers"]
