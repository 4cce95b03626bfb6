"""The tests' one clock: time moves only when the test says so.

`ManualClock` is every kind of clock the package takes:
- a time source, `clock()` (the breaker, the retry budget, the percentiles, the throttled log, the stores);
- the limiter's `Clock`, `now()` and `wait(event, within)` (ratelimit/clock.py);
- an injected `sleep` (the provider's backoff), which moves time by the seconds asked and returns at once.

`t` is the current time; a test may set it. There are two ways to move it:
- `advance(seconds)` for code that only reads the clock: plain, no event loop needed. It refuses to pass
  a timed `wait` that would fall due on the way, since nothing would wake it;
- `await run_for(seconds)` when tasks are waiting on the clock: it wakes every timed wait that falls due
  on the way, in order, and lets the woken tasks run before it returns.

`tick` makes each reading move time first (`ManualClock(0.0, tick=0.1)` reads 0.1, 0.2, 0.3, ...), for
code whose durations are measured between readings.
"""

from __future__ import annotations

import asyncio


class ManualClock:
    def __init__(self, start: float = 1000.0, *, tick: float = 0.0) -> None:
        self.t = start
        self.tick = tick
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        if self.tick:
            self.t = round(self.t + self.tick, 9)
        return self.t

    def now(self) -> float:
        return self()

    def advance(self, seconds: float) -> None:
        target = self.t + seconds
        if any(when <= target and not timer.done() for when, timer in self._sleepers):
            raise RuntimeError("a timed wait falls due on the way: use `await clock.run_for(...)`")
        self.t = target

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    async def wait(self, event: asyncio.Event, within: float) -> bool:
        if event.is_set():
            return True
        if within <= 0:
            return False
        timer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self.t + within, timer)
        self._sleepers.append(entry)
        setter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait((setter, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            setter.cancel()
            self._sleepers.remove(entry)
        return event.is_set()

    @property
    def sleepers(self) -> int:
        """How many timed waits are pending."""
        return len(self._sleepers)

    async def settle(self, rounds: int = 30) -> None:
        """Let every runnable task run until it blocks again."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def run_for(self, seconds: float) -> None:
        target = self.t + seconds
        await self.settle()
        while True:
            due = [when for when, timer in self._sleepers if when <= target and not timer.done()]
            if not due:
                break
            self.t = max(self.t, min(due))
            for when, timer in list(self._sleepers):
                if when <= self.t and not timer.done():
                    timer.set_result(None)
            await self.settle()
        self.t = target
        await self.settle()


__all__ = ["ManualClock"]
