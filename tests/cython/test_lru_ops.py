"""lru_ops: WindowLog and LRUCache, both variants, against each other and against simple models."""

from __future__ import annotations

import math
import os
import tracemalloc
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccproxy_asgi._cython import load_variant


def _compiled() -> ModuleType:
    try:
        return load_variant("lru_ops", "compiled")
    except ImportError as exc:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"the CI build must compile ccproxy_asgi._cython.lru_ops: {exc}")
        pytest.skip(f"lru_ops not compiled (python setup.py build_ext --inplace): {exc}")


@pytest.fixture(scope="module")
def compiled() -> ModuleType:
    return _compiled()


@pytest.fixture(scope="module")
def twin() -> ModuleType:
    return load_variant("lru_ops", "python")


@pytest.fixture(scope="module", params=["python", "compiled"])
def mod(request: pytest.FixtureRequest) -> ModuleType:
    return load_variant("lru_ops", "python") if request.param == "python" else _compiled()


# --- WindowLog, example-based --------------------------------------------------------------------


def test_add_returns_increasing_handles_and_keeps_sums(mod: ModuleType) -> None:
    log = mod.WindowLog()
    assert [log.add(t, 10 * t) for t in range(1, 4)] == [0, 1, 2]
    assert (log.count, log.tokens, log.oldest()) == (3, 60, (1.0, 10))


def test_prune_drops_entries_at_or_before_cutoff(mod: ModuleType) -> None:
    log = mod.WindowLog()
    for t in range(10):
        log.add(float(t), 1)
    assert log.prune(4.0) == 5
    assert (log.count, log.tokens, log.oldest()) == (5, 5, (5.0, 1))
    assert log.prune(4.0) == 0
    assert log.prune(100.0) == 5
    assert (log.count, log.tokens, log.oldest()) == (0, 0, None)


def test_add_before_newest_is_stored_at_newest_time(mod: ModuleType) -> None:
    log = mod.WindowLog()
    log.add(10.0, 1)
    log.add(9.0, 2)
    # The late entry must not outlive its predecessor's expiry order.
    assert log.prune(9.5) == 0
    assert log.prune(10.0) == 2


@pytest.mark.parametrize(("ts", "tokens", "error"), [(float("nan"), 1, ValueError), (1.0, -1, ValueError)])
def test_add_rejects_bad_input(mod: ModuleType, ts: float, tokens: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        mod.WindowLog().add(ts, tokens)


def test_add_rejects_non_integer_tokens(mod: ModuleType) -> None:
    with pytest.raises(TypeError):
        mod.WindowLog().add(1.0, 1.5)
    with pytest.raises(OverflowError):
        mod.WindowLog().add(1.0, 2**64)


def test_adjust_reconciles_a_reservation(mod: ModuleType) -> None:
    log = mod.WindowLog()
    handle = log.add(1.0, 4096 + 500)
    log.add(2.0, 100)
    assert log.adjust(handle, 700 - (4096 + 500)) is True
    assert (log.tokens, log.oldest()) == (800, (1.0, 700))


def test_adjust_clamps_at_zero(mod: ModuleType) -> None:
    log = mod.WindowLog()
    handle = log.add(1.0, 10)
    assert log.adjust(handle, -50) is True
    assert (log.count, log.tokens) == (1, 0)


def test_adjust_after_expiry_is_a_no_op(mod: ModuleType) -> None:
    log = mod.WindowLog()
    old = log.add(1.0, 10)
    log.add(5.0, 10)
    log.prune(2.0)
    assert log.adjust(old, 100) is False
    assert log.adjust(12345, 1) is False
    assert log.adjust(-1, 1) is False
    assert log.tokens == 10


def test_cancel_forgets_request_and_tokens(mod: ModuleType) -> None:
    log = mod.WindowLog()
    first = log.add(1.0, 10)
    second = log.add(2.0, 20)
    log.add(3.0, 30)
    assert log.cancel(second) is True
    assert (log.count, log.tokens) == (2, 40)
    assert log.cancel(second) is False
    assert log.adjust(second, 5) is False
    assert log.cancel(first) is True
    # Cancelled entries never show up as the oldest one.
    assert log.oldest() == (3.0, 30)


def test_clear_keeps_handles_unique(mod: ModuleType) -> None:
    log = mod.WindowLog()
    stale = log.add(1.0, 10)
    log.clear()
    assert (log.count, log.tokens, log.oldest()) == (0, 0, None)
    fresh = log.add(2.0, 5)
    assert fresh != stale
    assert log.adjust(stale, 1) is False
    assert log.tokens == 5


def test_fits_now_when_under_both_limits(mod: ModuleType) -> None:
    log = mod.WindowLog()
    log.add(100.0, 500)
    assert log.time_until_fits(110.0, 60.0, 2, 1000, 500) == 0.0


def test_request_limit_waits_for_the_oldest_to_leave_the_window(mod: ModuleType) -> None:
    log = mod.WindowLog()
    for t in (100.0, 101.0, 102.0):
        log.add(t, 1)
    # 3 requests per 60 s: the 4th fits once the one at t=100 is out of (now - 60, now].
    assert log.time_until_fits(130.0, 60.0, 3, None, 1) == 30.0
    assert log.time_until_fits(160.0, 60.0, 3, None, 1) == 0.0


def test_token_limit_waits_for_enough_tokens_to_expire(mod: ModuleType) -> None:
    log = mod.WindowLog()
    for t, n in ((0.0, 400), (10.0, 300), (20.0, 200)):
        log.add(t, n)
    # 900 + 600 > 1000: the entries at 0 and 10 must go (700 freed), so the wait ends at 10 + 60.
    assert log.time_until_fits(30.0, 60.0, None, 1000, 600) == 40.0


def test_expired_but_unpruned_entries_count_as_gone(mod: ModuleType) -> None:
    log = mod.WindowLog()
    log.add(0.0, 1000)
    assert log.time_until_fits(60.0, 60.0, 1, 1000, 1000) == 0.0
    assert log.time_until_fits(59.5, 60.0, 1, 1000, 1000) == 0.5


def test_never_fits(mod: ModuleType) -> None:
    log = mod.WindowLog()
    assert log.time_until_fits(0.0, 60.0, 10, 100, 101) == math.inf
    assert log.time_until_fits(0.0, 60.0, 0, None, 0) == math.inf


def test_unlimited_always_fits(mod: ModuleType) -> None:
    log = mod.WindowLog()
    for t in range(100):
        log.add(float(t), 10**9)
    assert log.time_until_fits(100.0, 60.0, None, None, 10**12) == 0.0


def test_wait_is_strictly_positive_inside_the_window(mod: ModuleType) -> None:
    log = mod.WindowLog()
    now, window = 1e9, 60.0
    ts = math.nextafter(now - window, math.inf)
    log.add(ts, 1)
    assert log.time_until_fits(now, window, 1, None, 0) > 0.0


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((0.0, -1.0, 1, 1, 1), ValueError),
        ((0.0, 1.0, 1, 1, -1), ValueError),
        ((math.nan, 1.0, 1, 1, 1), ValueError),
    ],
)
def test_time_until_fits_rejects_bad_input(
    mod: ModuleType, args: tuple[Any, ...], error: type[Exception]
) -> None:
    log = mod.WindowLog()
    log.add(0.0, 1)
    with pytest.raises(error):
        log.time_until_fits(*args)


def test_memory_is_bounded_by_the_window(mod: ModuleType) -> None:
    log = mod.WindowLog()

    def traffic(start: int, n: int) -> None:
        for i in range(start, start + n):
            log.prune(i - 100.0)
            log.add(float(i), 1)

    traffic(0, 1000)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        traffic(1000, 50_000)
        grown = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert log.count == 100
    # 50k entries through a 100-entry window: a leak would be megabytes.
    assert grown < 64_000


def test_memory_shrinks_after_a_burst(mod: ModuleType) -> None:
    log = mod.WindowLog()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(30_000):
            log.add(float(i), 1)
        log.prune(1e9)
        log.add(1e9 + 1, 1)
        log.prune(1e9)
        left = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert log.count == 1
    assert left < 64_000


# --- WindowLog, against a model ------------------------------------------------------------------


@dataclass
class _Entry:
    handle: int
    ts: float
    tokens: int
    live: bool = True


class _ModelLog:
    """The obvious quadratic implementation: a list searched from scratch for every answer."""

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.next_handle = 0
        self.last = -math.inf

    def _live(self) -> list[_Entry]:
        return [e for e in self.entries if e.live]

    def add(self, ts: float, tokens: int) -> int:
        ts = self.last = max(ts, self.last)
        self.entries.append(_Entry(self.next_handle, ts, tokens))
        self.next_handle += 1
        return self.next_handle - 1

    def prune(self, cutoff: float) -> int:
        gone = [e for e in self._live() if e.ts <= cutoff]
        self.entries = [e for e in self.entries if e.ts > cutoff]
        return len(gone)

    def _find(self, handle: int) -> _Entry | None:
        return next((e for e in self._live() if e.handle == handle), None)

    def adjust(self, handle: int, delta: int) -> bool:
        entry = self._find(handle)
        if entry is not None:
            entry.tokens = max(entry.tokens + delta, 0)
        return entry is not None

    def cancel(self, handle: int) -> bool:
        entry = self._find(handle)
        if entry is not None:
            entry.live = False
        return entry is not None

    def clear(self) -> None:
        self.entries = []
        self.last = -math.inf

    @property
    def count(self) -> int:
        return len(self._live())

    @property
    def tokens(self) -> int:
        return sum(e.tokens for e in self._live())

    def oldest(self) -> tuple[float, int] | None:
        live = self._live()
        return (live[0].ts, live[0].tokens) if live else None

    def time_until_fits(
        self, now: float, window: float, max_count: int | None, max_tokens: int | None, need: int
    ) -> float:
        if (max_count is not None and max_count < 1) or (max_tokens is not None and need > max_tokens):
            return math.inf
        cutoff = now - window
        # Try every moment an entry leaves the window, earliest first.
        for wait in sorted({0.0} | {e.ts - cutoff for e in self._live() if e.ts > cutoff}):
            left = [e for e in self._live() if e.ts > cutoff + wait]
            if (max_count is None or len(left) + 1 <= max_count) and (
                max_tokens is None or sum(e.tokens for e in left) + need <= max_tokens
            ):
                return wait
        raise AssertionError("an empty window always fits")


# Integral times keep the model's float arithmetic exact, so answers can be compared with ==.
_limit = st.one_of(st.none(), st.integers(-1, 60))
_log_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(-2, 5), st.integers(0, 20)),
        st.tuples(st.just("prune"), st.integers(0, 30)),
        st.tuples(st.just("adjust"), st.integers(0, 60), st.integers(-30, 30)),
        st.tuples(st.just("cancel"), st.integers(0, 60)),
        st.tuples(
            st.just("fits"), st.integers(0, 10), st.integers(0, 30), _limit, _limit, st.integers(0, 40)
        ),
        st.tuples(st.just("clear")),
    ),
    max_size=80,
)


def _run_log_ops(log: Any, ops: list[tuple[Any, ...]]) -> list[object]:
    """Apply ops to any WindowLog-like object; record every answer and the sums after each op."""
    now = 0
    out: list[object] = []
    for op in ops:
        kind = op[0]
        if kind == "add":
            now += op[1]
            out.append(log.add(float(now), op[2]))
        elif kind == "prune":
            out.append(log.prune(float(now - op[1])))
        elif kind == "adjust":
            out.append(log.adjust(op[1], op[2]))
        elif kind == "cancel":
            out.append(log.cancel(op[1]))
        elif kind == "fits":
            out.append(log.time_until_fits(float(now + op[1]), float(op[2]), op[3], op[4], op[5]))
        else:
            log.clear()
        out.append((log.count, log.tokens, log.oldest()))
    return out


@settings(max_examples=300, deadline=None)
@given(ops=_log_ops)
def test_window_log_matches_model(mod: ModuleType, ops: list[tuple[Any, ...]]) -> None:
    assert _run_log_ops(mod.WindowLog(), ops) == _run_log_ops(_ModelLog(), ops)


def test_window_log_model_agrees_across_growth_and_shrink(mod: ModuleType) -> None:
    # Long enough to wrap the ring, grow it several times and shrink it again.
    ops: list[tuple[Any, ...]] = [("add", 1, i % 7) for i in range(300)]
    ops += [("fits", 0, 250, 100, 900, 5), ("cancel", 120), ("adjust", 200, -3), ("prune", 100)]
    ops += [("add", 0, 1), ("fits", 3, 250, 10, None, 0), ("prune", 0)] * 50
    assert _run_log_ops(mod.WindowLog(), ops) == _run_log_ops(_ModelLog(), ops)


_times = st.floats(-1e12, 1e12, allow_nan=False)
_free_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), _times, st.integers(0, 2**40)),
        st.tuples(st.just("prune"), _times),
        st.tuples(st.just("adjust"), st.integers(-2, 40), st.integers(-(2**40), 2**40)),
        st.tuples(st.just("cancel"), st.integers(-2, 40)),
        st.tuples(
            st.just("fits"),
            _times,
            st.floats(0, 1e6, allow_nan=False),
            st.one_of(st.none(), st.integers(-2, 40)),
            st.one_of(st.none(), st.integers(-2, 2**42)),
            st.integers(0, 2**41),
        ),
        st.tuples(st.just("clear")),
    ),
    max_size=60,
)


def _run_free_ops(log: Any, ops: list[tuple[Any, ...]]) -> list[object]:
    out: list[object] = []
    for op in ops:
        method = getattr(log, "clear" if op[0] == "clear" else op[0].replace("fits", "time_until_fits"))
        out.append(method(*op[1:]))
        out.append((log.count, log.tokens, log.oldest()))
    return out


@settings(max_examples=300, deadline=None)
@given(ops=_free_ops)
def test_window_log_variants_agree_on_arbitrary_floats(
    compiled: ModuleType, twin: ModuleType, ops: list[tuple[Any, ...]]
) -> None:
    assert _run_free_ops(compiled.WindowLog(), ops) == _run_free_ops(twin.WindowLog(), ops)


# --- LRUCache ------------------------------------------------------------------------------------


def test_lru_evicts_least_recently_used(mod: ModuleType) -> None:
    cache = mod.LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert "b" not in cache
    assert cache.keys() == ["a", "c"]
    assert len(cache) == 2


def test_lru_put_existing_replaces_and_refreshes(mod: ModuleType) -> None:
    cache = mod.LRUCache(2)
    cache.put(b"a", 1)
    cache.put(b"b", 2)
    cache.put(b"a", 10)
    cache.put(b"c", 3)
    assert cache.keys() == [b"a", b"c"]
    assert cache.get(b"a") == 10


def test_lru_counts_hits_and_misses_only_in_get(mod: ModuleType) -> None:
    cache = mod.LRUCache(4)
    cache.put(1, 100)
    assert cache.get(1) == 100
    assert cache.get(2) is None
    assert cache.get(2, -1) == -1
    assert 1 in cache
    assert 3 not in cache
    assert (cache.hits, cache.misses) == (1, 2)


def test_lru_contains_does_not_refresh(mod: ModuleType) -> None:
    cache = mod.LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert "a" in cache
    cache.put("c", 3)
    assert cache.keys() == ["b", "c"]


def test_lru_keeps_none_values_apart_from_misses(mod: ModuleType) -> None:
    cache = mod.LRUCache(2)
    cache.put("a", None)
    assert cache.get("a", "missing") is None
    assert (cache.hits, cache.misses) == (1, 0)


def test_lru_clear_resets_items_and_counters(mod: ModuleType) -> None:
    cache = mod.LRUCache(3)
    cache.put("a", 1)
    cache.get("a")
    cache.get("b")
    cache.clear()
    assert (len(cache), cache.hits, cache.misses, cache.keys()) == (0, 0, 0, [])
    cache.put("c", 3)
    assert cache.keys() == ["c"]


def test_lru_size_zero_stores_nothing(mod: ModuleType) -> None:
    cache = mod.LRUCache(0)
    cache.put("a", 1)
    assert (len(cache), cache.get("a"), cache.maxsize) == (0, None, 0)


def test_lru_rejects_negative_size_and_unhashable_keys(mod: ModuleType) -> None:
    with pytest.raises(ValueError, match="maxsize"):
        mod.LRUCache(-1)
    cache = mod.LRUCache(2)
    with pytest.raises(TypeError):
        cache.put([], 1)
    with pytest.raises(TypeError):
        cache.get({})


def test_lru_counters_are_read_only(mod: ModuleType) -> None:
    cache = mod.LRUCache(2)
    with pytest.raises(AttributeError):
        cache.hits = 5


def test_lru_is_subscriptable_for_annotations(mod: ModuleType) -> None:
    alias = mod.LRUCache[str, int]
    assert alias.__args__ == (str, int)


_lru_ops = st.lists(
    st.one_of(
        st.tuples(st.just("get"), st.integers(0, 12)),
        st.tuples(st.just("put"), st.integers(0, 12), st.integers()),
        st.tuples(st.just("contains"), st.integers(0, 12)),
        st.tuples(st.just("clear")),
    ),
    max_size=120,
)


def _model_lru(maxsize: int, ops: list[tuple[Any, ...]]) -> list[object]:
    items: list[tuple[int, int]] = []  # least recently used first
    hits = misses = 0
    out: list[object] = []
    for op in ops:
        kind = op[0]
        found = next((i for i, (k, _) in enumerate(items) if kind != "clear" and k == op[1]), None)
        if kind == "get":
            if found is None:
                misses += 1
                out.append(None)
            else:
                hits += 1
                items.append(items.pop(found))
                out.append(items[-1][1])
        elif kind == "put":
            if found is not None:
                items.pop(found)
            elif len(items) >= maxsize and items:
                items.pop(0)
            if maxsize:
                items.append((op[1], op[2]))
        elif kind == "contains":
            out.append(found is not None)
        else:
            items, hits, misses = [], 0, 0
        out.append(([k for k, _ in items], hits, misses))
    return out


def _run_lru(cache: Any, ops: list[tuple[Any, ...]]) -> list[object]:
    out: list[object] = []
    for op in ops:
        kind = op[0]
        if kind == "get":
            out.append(cache.get(op[1]))
        elif kind == "put":
            cache.put(op[1], op[2])
        elif kind == "contains":
            out.append(op[1] in cache)
        else:
            cache.clear()
        assert len(cache) == len(cache.keys())
        out.append((cache.keys(), cache.hits, cache.misses))
    return out


@settings(max_examples=300, deadline=None)
@given(maxsize=st.integers(0, 6), ops=_lru_ops)
def test_lru_matches_model(mod: ModuleType, maxsize: int, ops: list[tuple[Any, ...]]) -> None:
    assert _run_lru(mod.LRUCache(maxsize), ops) == _model_lru(maxsize, ops)


@settings(max_examples=200, deadline=None)
@given(maxsize=st.integers(0, 6), ops=_lru_ops)
def test_lru_variants_agree(
    compiled: ModuleType, twin: ModuleType, maxsize: int, ops: list[tuple[Any, ...]]
) -> None:
    assert _run_lru(compiled.LRUCache(maxsize), ops) == _run_lru(twin.LRUCache(maxsize), ops)
