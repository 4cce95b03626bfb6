"""Sliding-window request history and an LRU cache: the pure-Python twin of ``lru_ops.pyx``.

Both variants have exactly this API and behaviour; import them through ``ccproxy_asgi._cython``.

``WindowLog()``
    History of ``(timestamp, tokens)`` entries for one rate-limit key, oldest first. Memory is
    bounded by what is still in the window: callers ``prune`` before each decision.

    - ``add(ts, tokens) -> int`` appends an entry and returns its handle (a sequence number that is
      never reused). A ``ts`` earlier than the latest one added since creation or ``clear()`` is
      stored as that latest one, so the log stays ordered even if a caller read its clock before
      awaiting (the entry then leaves the window a little late, never early). ``tokens`` must be
      ``>= 0`` (``ValueError``) and the sums must fit in a signed 64-bit integer; ``ts`` must not be NaN.
    - ``prune(cutoff) -> int`` drops entries with ``ts <= cutoff`` (for a window ``w`` at time ``now``:
      ``cutoff = now - w``) and returns how many live entries it dropped. Amortized O(1) per entry.
    - ``adjust(handle, delta) -> bool`` adds ``delta`` to a stored entry's tokens (clamped at 0) and to
      the running sum: how a reservation of ``prompt + max_tokens`` is reconciled with real usage.
      ``False`` (and no change) when the entry was pruned, cancelled or never existed.
    - ``cancel(handle) -> bool`` removes a live entry's request and tokens from the sums, as if it had
      never been added (a reservation whose request never reached the upstream). ``False`` if gone.
    - ``count`` (live entries) and ``tokens`` (their token sum): read-only ints, O(1).
    - ``oldest() -> (ts, tokens) | None``: the oldest live entry.
    - ``time_until_fits(now, window, max_count, max_tokens, need_tokens) -> float``: seconds until one
      more entry of ``need_tokens`` would fit with at most ``max_count`` entries and ``max_tokens``
      tokens in the window ``(now - window, now]``. ``0.0`` if it fits now, ``inf`` if it never can
      (``need_tokens > max_tokens`` or ``max_count < 1``); ``None`` as a limit means unlimited. Entries
      already out of the window count as gone, pruned or not. Otherwise the wait is ``ts - (now -
      window)`` of the newest entry that has to expire, always ``> 0``. O(1) when it fits, else
      O(entries that must expire).
    - ``clear()``: drops every entry; handles stay unique.

``LRUCache(maxsize)``
    Mapping of at most ``maxsize`` items (``0`` stores nothing; negative is a ``ValueError``) that
    evicts the least recently used one. ``get(key, default=None)`` (counts ``hits``/``misses`` and
    marks the key used), ``put(key, value)`` (inserts or replaces, marks used, evicts if full),
    ``key in cache`` and ``len(cache)`` (neither counts nor marks), ``keys()`` (least to most
    recently used), ``clear()`` (also resets the counters), ``maxsize``/``hits``/``misses`` read-only.
    All O(1) except ``keys()``. ``LRUCache[K, V]`` works at runtime for annotations.
"""

from __future__ import annotations

import math
import operator
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar, overload

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")

_INT64_MAX = 2**63 - 1
# Below this many consumed slots the list is not worth compacting.
_COMPACT_MIN = 64


def _check_int64(value: int) -> int:
    # The compiled twin stores C long longs; mirror its TypeError/OverflowError so both reject the same
    # input.
    value = operator.index(value)
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise OverflowError("Python int too large to convert to C long")
    return value


class WindowLog:
    """Time-ordered ``(timestamp, tokens)`` history with running sums; see the module docstring."""

    __slots__ = ("_count", "_head", "_last", "_live", "_seq0", "_tok", "_tokens", "_ts")

    def __init__(self) -> None:
        # Parallel lists, consumed from _head; list index i holds the entry with handle _seq0 + i.
        self._ts: list[float] = []
        self._tok: list[int] = []
        self._live: list[bool] = []
        self._head = 0
        self._seq0 = 0
        self._count = 0
        self._tokens = 0
        self._last = -math.inf

    @property
    def count(self) -> int:
        """Live entries stored."""
        return self._count

    @property
    def tokens(self) -> int:
        """Sum of the live entries' tokens."""
        return self._tokens

    def add(self, ts: float, tokens: int) -> int:
        """Append an entry and return its handle."""
        ts = float(ts)
        tokens = _check_int64(tokens)
        if math.isnan(ts):
            raise ValueError("timestamp is NaN")
        if tokens < 0:
            raise ValueError("tokens must be >= 0")
        if ts < self._last:
            ts = self._last
        self._last = ts
        self._ts.append(ts)
        self._tok.append(tokens)
        self._live.append(True)
        self._count += 1
        self._tokens += tokens
        return self._seq0 + len(self._ts) - 1

    def prune(self, cutoff: float) -> int:
        """Drop entries with ``ts <= cutoff``; return how many live entries were dropped."""
        cutoff = float(cutoff)
        ts, tok, live = self._ts, self._tok, self._live
        head, end = self._head, len(ts)
        dropped = 0
        while head < end and ts[head] <= cutoff:
            if live[head]:
                dropped += 1
                self._tokens -= tok[head]
            head += 1
        self._count -= dropped
        self._head = head
        self._drop_dead_head()
        return dropped

    def adjust(self, handle: int, delta: int) -> bool:
        """Add ``delta`` to a stored entry's tokens (not below 0); ``False`` if the entry is gone."""
        i = self._index(_check_int64(handle))
        delta = _check_int64(delta)
        if i < 0:
            return False
        old = self._tok[i]
        new = max(old + delta, 0)
        self._tok[i] = new
        self._tokens += new - old
        return True

    def cancel(self, handle: int) -> bool:
        """Forget a live entry's request and tokens; ``False`` if the entry is gone."""
        i = self._index(_check_int64(handle))
        if i < 0:
            return False
        self._live[i] = False
        self._count -= 1
        self._tokens -= self._tok[i]
        self._drop_dead_head()
        return True

    def oldest(self) -> tuple[float, int] | None:
        """The oldest live entry as ``(ts, tokens)``, or ``None`` when empty."""
        # _drop_dead_head keeps the head live, so the head is the answer.
        if self._head == len(self._ts):
            return None
        return (self._ts[self._head], self._tok[self._head])

    def time_until_fits(
        self,
        now: float,
        window: float,
        max_count: int | None,
        max_tokens: int | None,
        need_tokens: int,
    ) -> float:
        """Seconds until an entry of ``need_tokens`` fits the limits; ``0.0`` now, ``inf`` never."""
        now = float(now)
        window = float(window)
        need_tokens = _check_int64(need_tokens)
        if need_tokens < 0:
            raise ValueError("need_tokens must be >= 0")
        if math.isnan(now) or math.isnan(window) or window < 0.0:
            raise ValueError("now and window must be numbers, window >= 0")
        excess_count = 0
        if max_count is not None:
            max_count = _check_int64(max_count)
            if max_count < 1:
                return math.inf
            excess_count = self._count + 1 - max_count
        excess_tokens = 0
        if max_tokens is not None:
            max_tokens = _check_int64(max_tokens)
            if need_tokens > max_tokens:
                return math.inf
            excess_tokens = self._tokens + need_tokens - max_tokens
        if excess_count <= 0 and excess_tokens <= 0:
            return 0.0
        cutoff = now - window
        ts, tok, live = self._ts, self._tok, self._live
        for i in range(self._head, len(ts)):
            if not live[i]:
                continue
            excess_count -= 1
            excess_tokens -= tok[i]
            if excess_count <= 0 and excess_tokens <= 0:
                return 0.0 if ts[i] <= cutoff else ts[i] - cutoff
        # Unreachable: with every entry expired, one entry of need_tokens <= max_tokens fits.
        return 0.0

    def clear(self) -> None:
        """Drop every entry; later handles still never repeat earlier ones."""
        self._seq0 += len(self._ts)
        self._ts, self._tok, self._live = [], [], []
        self._head = 0
        self._count = 0
        self._tokens = 0
        self._last = -math.inf

    def _index(self, handle: int) -> int:
        i = handle - self._seq0
        if i < self._head or i >= len(self._ts) or not self._live[i]:
            return -1
        return i

    def _drop_dead_head(self) -> None:
        # Cancelled entries at the head would only make oldest() and time_until_fits() skip them.
        head, end, live = self._head, len(self._ts), self._live
        while head < end and not live[head]:
            head += 1
        self._head = head
        # Compacting once the consumed prefix outweighs the rest keeps prune amortized O(1) and memory
        # bounded by the live window.
        if head >= _COMPACT_MIN and head * 2 >= end:
            del self._ts[:head], self._tok[:head], self._live[:head]
            self._seq0 += head
            self._head = 0


class LRUCache(Generic[K, V]):
    """Bounded mapping that evicts the least recently used item; see the module docstring."""

    __slots__ = ("_data", "_hits", "_maxsize", "_misses")

    def __init__(self, maxsize: int) -> None:
        maxsize = _check_int64(maxsize)
        if maxsize < 0:
            raise ValueError("maxsize must be >= 0")
        self._maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self._hits = 0
        self._misses = 0

    @property
    def maxsize(self) -> int:
        """Most items kept."""
        return self._maxsize

    @property
    def hits(self) -> int:
        """``get`` calls that found their key since creation or ``clear()``."""
        return self._hits

    @property
    def misses(self) -> int:
        """``get`` calls that did not find their key since creation or ``clear()``."""
        return self._misses

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: T) -> V | T: ...
    def get(self, key: K, default: object = None) -> object:
        """The value for ``key`` (now most recently used), or ``default``."""
        data = self._data
        value = data.get(key, _MISSING)
        if value is _MISSING:
            self._misses += 1
            return default
        data.move_to_end(key)
        self._hits += 1
        return value

    def put(self, key: K, value: V) -> None:
        """Store ``value`` under ``key`` as most recently used, evicting the least recent if full."""
        data = self._data
        if key in data:
            data[key] = value
            data.move_to_end(key)
            return
        if self._maxsize == 0:
            return
        if len(data) >= self._maxsize:
            data.popitem(last=False)
        data[key] = value

    def keys(self) -> list[K]:
        """Keys from least to most recently used."""
        return list(self._data)

    def clear(self) -> None:
        """Drop every item and reset the counters."""
        self._data.clear()
        self._hits = 0
        self._misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


_MISSING = object()

__all__ = ["LRUCache", "WindowLog"]
