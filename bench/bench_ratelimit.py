"""What one rate-limit decision costs: in memory (compiled `lru_ops` vs its pure-Python twin) and in
Redis (one Lua script per decision: microseconds and round trips, counted by the server itself).

Run from the repository root:

    PYTHONPATH=. .venv/bin/python bench/bench_ratelimit.py [--repeat 5] [--redis-url URL]

Without --redis-url a `redis-server` is started on a free port for the run (skipped if not installed).
Memory figures are the best of N runs (the least disturbed one), divided by decisions per run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

# Run as a script from anywhere: the repository root holds `tests.fixtures` and `tests.support`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ccproxy_asgi._cython import load_variant
from ccproxy_asgi.ratelimit import AdaptivePolicy, Budget, Cost, MemoryStore, RateLimiter, Settlement
from ccproxy_asgi.ratelimit.redis_store import RedisStore

WINDOW = 60.0
RPM = 1000
DECISIONS = 100_000
POLICY = AdaptivePolicy()


class SteppingClock:
    """Advances one RPM step per reading pair, so the window stays full at steady state."""

    def __init__(self, step: float) -> None:
        self.t = 0.0
        self.step = step

    def __call__(self) -> float:
        return self.t


def best_of(repeat: int, run: Callable[[], int]) -> float:
    """Best seconds per operation over `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        operations = run()
        best = min(best, (time.perf_counter() - started) / operations)
    return best


def memory_decisions(lru: ModuleType, *, split: bool, full: bool) -> Callable[[], int]:
    """MemoryStore.decide at steady state: ~1000 entries in the window, each decision prunes one and
    records one (`full=False`), or the window is full and each decision computes the wait (`full`)."""
    budget = Budget(
        requests=RPM + 1 if not full else RPM // 2,  # +1: float steps never refuse the steady state
        tokens=10_000_000,
        input_tokens=8_000_000 if split else None,
        output_tokens=4_000_000 if split else None,
        window=WINDOW,
    )
    cost = Cost(1500, 500)

    def run() -> int:
        clock = SteppingClock(WINDOW / RPM)
        store = MemoryStore(clock=clock, window_log=lru.WindowLog)
        decide = store.decide
        for _ in range(DECISIONS):
            decide("global", cost, budget)
            clock.t += clock.step
        return DECISIONS

    return run


def window_log_alone(lru: ModuleType) -> Callable[[], int]:
    """Just the WindowLog calls of one admitting decision (prune, time_until_fits, add)."""

    def run() -> int:
        log = lru.WindowLog()
        prune, fits, add = log.prune, log.time_until_fits, log.add
        now, step = 0.0, WINDOW / RPM
        for _ in range(DECISIONS):
            prune(now - WINDOW)
            if fits(now, WINDOW, RPM, 10_000_000, 2000) == 0.0:
                add(now, 2000)
            now += step
        return DECISIONS

    return run


def limiter_round_trips(lru: ModuleType) -> Callable[[], int]:
    """The whole per-request cycle through RateLimiter: acquire (fast path) and settle with real usage."""
    budget = Budget(requests=RPM + 1, tokens=10_000_000, window=WINDOW)
    cost = Cost(1500, 500)
    actual = Settlement(actual=Cost(1500, 120), success=True)

    async def cycle(limiter: RateLimiter, clock: SteppingClock) -> None:
        acquire, settle = limiter.acquire, limiter.settle
        for _ in range(DECISIONS):
            reservation = await acquire("global", cost)
            await settle(reservation, actual)
            clock.t += clock.step

    def run() -> int:
        clock = SteppingClock(WINDOW / RPM)
        store = MemoryStore(clock=clock, window_log=lru.WindowLog)
        limiter = RateLimiter(budget=budget, store=store, window_margin=0.0)
        asyncio.run(cycle(limiter, clock))
        return DECISIONS

    return run


@contextlib.contextmanager
def redis_url(given: str | None) -> Iterator[str | None]:
    if given:
        yield given
        return
    if shutil.which("redis-server") is None:
        yield None
        return
    from tests.support.redis_server import RedisServer

    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.close()


async def _commandstats(store: RedisStore) -> dict[str, int]:
    info: dict[str, Any] = await store.client.info("commandstats")
    return {name: int(stats["calls"]) for name, stats in info.items()}


async def redis_figures(url: str, decisions: int, concurrency: int) -> dict[str, float]:
    store = RedisStore.from_url(url, prefix="bench:" + str(time.time_ns()))
    budget = Budget(requests=10_000_000, tokens=10**12, window=WINDOW)
    cost = Cost(1500, 500)
    try:
        await store.acquire("warm", cost, budget, POLICY)  # loads the script
        before = await _commandstats(store)
        started = time.perf_counter()
        for _ in range(decisions):
            await store.acquire("global", cost, budget, POLICY)
        sequential = (time.perf_counter() - started) / decisions
        after = await _commandstats(store)
        calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        calls["cmdstat_info"] = calls.get("cmdstat_info", 0) - 1
        commands = sum(calls.values())

        async def worker(n: int) -> None:
            for _ in range(n):
                await store.acquire("global", cost, budget, POLICY)

        started = time.perf_counter()
        await asyncio.gather(*(worker(decisions // concurrency) for _ in range(concurrency)))
        concurrent = (time.perf_counter() - started) / (decisions // concurrency * concurrency)

        reservation = await store.acquire("global", cost, budget, POLICY)
        assert reservation.ticket is not None
        started = time.perf_counter()
        for _ in range(decisions // 4):
            decision = await store.acquire("settle", cost, budget, POLICY)
            assert decision.ticket is not None
            await store.settle(
                decision.ticket, Settlement(actual=Cost(1500, 100), success=True), budget, POLICY
            )
        cycle = (time.perf_counter() - started) / (decisions // 4)
        return {
            "sequential_us": sequential * 1e6,
            "concurrent_us": concurrent * 1e6,
            "cycle_us": cycle * 1e6,
            "commands_per_decision": commands / decisions,
            "evalsha_per_decision": calls.get("cmdstat_evalsha", 0) / decisions,
        }
    finally:
        await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--redis-decisions", type=int, default=5000)
    args = parser.parse_args()

    variants: dict[str, ModuleType] = {"python": load_variant("lru_ops", "python")}
    try:
        variants["compiled"] = load_variant("lru_ops", "compiled")
    except ImportError:
        print("lru_ops is not compiled (python setup.py build_ext --inplace): pure-Python figures only")

    print(f"memory store, {RPM} RPM over {WINDOW:g} s (~{RPM} entries in the window), {DECISIONS} decisions")
    print(f"{'case':<46}" + "".join(f"{name:>12}" for name in variants) + f"{'speed-up':>10}")
    cases: list[tuple[str, Callable[[ModuleType], Callable[[], int]]]] = [
        ("WindowLog alone (prune, time_until_fits, add)", window_log_alone),
        ("decide: admit (prune 1, add 1)", lambda m: memory_decisions(m, split=False, full=False)),
        ("decide: admit, input+output budgets too", lambda m: memory_decisions(m, split=True, full=False)),
        ("decide: window full, compute the wait", lambda m: memory_decisions(m, split=False, full=True)),
        ("limiter: acquire + settle (whole request)", limiter_round_trips),
    ]
    for label, build in cases:
        figures = {name: best_of(args.repeat, build(module)) * 1e6 for name, module in variants.items()}
        row = f"{label:<46}" + "".join(f"{us:>10.2f}us" for us in figures.values())
        if "compiled" in figures:
            row += f"{figures['python'] / figures['compiled']:>9.2f}x"
        print(row)

    with redis_url(args.redis_url) as url:
        if url is None:
            print("redis: skipped (no redis-server; pass --redis-url)")
            return
        figures = asyncio.run(redis_figures(url, args.redis_decisions, concurrency=32))
        print(f"redis store ({url.rsplit('@', 1)[-1]}), {args.redis_decisions} decisions")
        print(f"  one decision, sequential:            {figures['sequential_us']:8.1f} us")
        print(f"  one decision, 32 concurrent callers: {figures['concurrent_us']:8.1f} us (throughput)")
        print(f"  acquire + settle, sequential:        {figures['cycle_us']:8.1f} us")
        inside = figures["commands_per_decision"] - figures["evalsha_per_decision"]
        print(
            f"  round trips per decision (EVALSHA calls the server counted): {figures['evalsha_per_decision']:.3f}"
        )
        print(
            f"  commands run inside the Lua script per decision: {inside:.1f} (server-side, no round trips)"
        )


if __name__ == "__main__":
    main()
