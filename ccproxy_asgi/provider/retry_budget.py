"""`RetryBudget`: retries may add at most a fraction of recent traffic, so a failing upstream is not hammered.

Per-call attempt limits do not bound the load a sick upstream sees: every client request still brings its
full set of retries, and clients retry too (Claude Code up to 10 times). A budget bounds the total, the
way Envoy's `retry_budget` and Finagle's `RetryBudget` do: over a sliding window, retries may reach
`ratio` times the requests seen plus `min_per_second` times the window (so a quiet proxy can still retry).

State is per process and per budget object (one per upstream provider); plain Python, no ASGI, with an
injectable clock. Memory is a fixed ring of buckets, whatever the traffic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RetryBudget:
    """Counts requests and retries over the last `window` seconds and admits retries within the budget.

    - `ratio`: retries allowed per request seen (0.2: one retry per five requests).
    - `min_per_second`: retries always allowed, per second of window, however little traffic there is.
    - `window`: seconds of history, kept as `buckets` counters (the window slides one bucket at a time).
    """

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_per_second: float = 1.0,
        window: float = 10.0,
        buckets: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ratio < 0 or min_per_second < 0:
            raise ValueError("ratio and min_per_second must not be negative")
        if window <= 0 or buckets < 1:
            raise ValueError("window must be positive and buckets at least 1")
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.window = window
        self._width = window / buckets
        self._clock = clock
        self._epochs = [-1] * buckets
        self._requests = [0] * buckets
        self._retries = [0] * buckets

    def __repr__(self) -> str:
        return f"RetryBudget(ratio={self.ratio}, min_per_second={self.min_per_second}, window={self.window})"

    def _slot(self) -> int:
        """The current bucket, emptied first if it last counted an older epoch."""
        epoch = math.floor(self._clock() / self._width)
        index = epoch % len(self._epochs)
        if self._epochs[index] != epoch:
            self._epochs[index] = epoch
            self._requests[index] = 0
            self._retries[index] = 0
        return index

    def _totals(self) -> tuple[int, int]:
        current = self._epochs[self._slot()]
        oldest = current - len(self._epochs) + 1
        requests = retries = 0
        for epoch, req, ret in zip(self._epochs, self._requests, self._retries, strict=True):
            if epoch >= oldest:
                requests += req
                retries += ret
        return requests, retries

    def record_request(self) -> None:
        """Count one original request (its first attempt); retries are counted by `try_spend`."""
        self._requests[self._slot()] += 1

    def available(self) -> float:
        """Retries that may still be spent now."""
        requests, retries = self._totals()
        return self.ratio * requests + self.min_per_second * self.window - retries

    def try_spend(self) -> bool:
        """Take one retry from the budget; False (and nothing counted) when it is spent."""
        if self.available() < 1:
            return False
        self._retries[self._slot()] += 1
        return True


__all__ = ["RetryBudget"]
