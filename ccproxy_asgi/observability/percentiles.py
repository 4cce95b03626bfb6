"""Streaming statistics over a sliding time window, in bounded memory: quantiles and a success rate.

Both keep a ring of time slices (`slices` of them, each `window_seconds / slices` long). A slice is
reused, and thereby forgotten, once the clock has moved a whole window past it, so nothing ever needs
pruning and memory never grows with traffic.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable


class _Ring:
    """Which slice the clock is in, and which slices are still inside the window."""

    __slots__ = ("_clock", "_end", "_epochs", "_index", "_width", "slices")

    def __init__(self, window_seconds: float, slices: int, clock: Callable[[], float]) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        if slices < 1:
            raise ValueError("slices must be at least 1")
        self.slices = slices
        self._width = window_seconds / slices
        self._clock = clock
        self._epochs = [-(2**62)] * slices
        # The current slice and when it ends: most calls land in the same slice as the previous one.
        self._index = 0
        self._end = -math.inf

    def current(self) -> tuple[int, bool]:
        """The index of the current slice, and whether it was stale (must be reset by the caller)."""
        now = self._clock()
        if now < self._end:
            return self._index, False
        epoch = math.floor(now / self._width)
        index = epoch % self.slices
        self._index = index
        self._end = (epoch + 1) * self._width
        if self._epochs[index] == epoch:
            return index, False
        self._epochs[index] = epoch
        return index, True

    def live(self) -> list[int]:
        """Indexes of the slices inside the window."""
        epoch = math.floor(self._clock() / self._width)
        oldest = epoch - self.slices
        return [i for i, e in enumerate(self._epochs) if oldest < e <= epoch]


class SlidingPercentiles:
    """Quantiles (p50/p95/p99 …) of the values added during the last `window_seconds`.

    Each slice counts its values and keeps a uniform random sample of at most `reservoir_size` of them
    (reservoir sampling, algorithm R). A quantile is read from the union of the live slices' samples,
    each sample weighted by how many values it stands for, so a busy slice is not under-represented next
    to a quiet one. Memory is at most `slices * reservoir_size` floats whatever the traffic; below
    `reservoir_size` values per slice the quantiles are exact.
    """

    __slots__ = ("_counts", "_random", "_ring", "_samples", "_size")

    def __init__(
        self,
        *,
        window_seconds: float = 60.0,
        slices: int = 12,
        reservoir_size: int = 256,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if reservoir_size < 1:
            raise ValueError("reservoir_size must be at least 1")
        self._ring = _Ring(window_seconds, slices, clock)
        self._size = reservoir_size
        self._counts = [0] * slices
        self._samples: list[list[float]] = [[] for _ in range(slices)]
        self._random = (rng or random.Random()).random

    def add(self, value: float) -> None:
        index, stale = self._ring.current()
        samples = self._samples[index]
        if stale:
            self._counts[index] = 0
            samples.clear()
        count = self._counts[index] = self._counts[index] + 1
        if len(samples) < self._size:
            samples.append(value)
        else:
            slot = int(self._random() * count)
            if slot < self._size:
                samples[slot] = value

    def count(self) -> int:
        """Values added inside the window (not only the ones kept)."""
        return sum(self._counts[i] for i in self._ring.live())

    def capacity(self) -> int:
        """The most samples this window ever holds."""
        return self._ring.slices * self._size

    def quantiles(self, qs: Iterable[float] = (0.5, 0.95, 0.99)) -> dict[float, float]:
        """`{q: value}` for each quantile `q` in [0, 1]; empty when the window holds no value."""
        weighted: list[tuple[float, float]] = []
        exact = True
        for i in self._ring.live():
            # A copy: an OpenTelemetry exporter thread may read while the event loop adds.
            samples = list(self._samples[i])
            if not samples:
                continue
            weight = max(self._counts[i], len(samples)) / len(samples)
            if weight != 1.0:
                exact = False
            weighted.extend((value, weight) for value in samples)
        if not weighted:
            return {}
        weighted.sort()
        if exact:
            values = [value for value, _ in weighted]
            return {q: _interpolated(values, q) for q in qs}
        return _weighted(weighted, qs)

    def quantile(self, q: float) -> float | None:
        return self.quantiles((q,)).get(q)


def _check(q: float) -> None:
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is outside [0, 1]")


def _interpolated(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    _check(q)
    position = q * (len(values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def _weighted(pairs: list[tuple[float, float]], qs: Iterable[float]) -> dict[float, float]:
    """The smallest value whose cumulative weight reaches `q` of the total, for each `q`."""
    total = sum(weight for _, weight in pairs)
    wanted = sorted(qs)
    for q in wanted:
        _check(q)
    result: dict[float, float] = {}
    cumulative = 0.0
    index = 0
    for value, weight in pairs:
        cumulative += weight
        while index < len(wanted) and cumulative >= wanted[index] * total - 1e-9:
            result[wanted[index]] = value
            index += 1
        if index == len(wanted):
            break
    for q in wanted[index:]:
        result[q] = pairs[-1][0]
    return result


class SlidingOutcomes:
    """How many requests in the last `window_seconds` succeeded and failed."""

    __slots__ = ("_failures", "_ring", "_totals")

    def __init__(
        self, *, window_seconds: float = 60.0, slices: int = 12, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ring = _Ring(window_seconds, slices, clock)
        self._totals = [0] * slices
        self._failures = [0] * slices

    def add(self, ok: bool) -> None:
        index, stale = self._ring.current()
        if stale:
            self._totals[index] = 0
            self._failures[index] = 0
        self._totals[index] += 1
        if not ok:
            self._failures[index] += 1

    def counts(self) -> tuple[int, int]:
        """(requests, failures) inside the window."""
        live = self._ring.live()
        return sum(self._totals[i] for i in live), sum(self._failures[i] for i in live)

    def success_rate(self) -> float | None:
        """Successes / requests inside the window; None when there was no request."""
        total, failures = self.counts()
        return None if total == 0 else (total - failures) / total


__all__ = ["SlidingOutcomes", "SlidingPercentiles"]
