"""A clock for the rate limiter's tests: time moves only when the test says so.

It is both the limiter's `Clock` (`now()`, `wait(event, within)`) and a store's time source (call it).
`await clock.advance(s)` moves time forward, waking every timed wait that falls due on the way, in
order, and lets the woken tasks run before it returns.
"""

from __future__ import annotations

import asyncio


class ManualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self.t

    def __call__(self) -> float:
        return self.t

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
        return len(self._sleepers)

    async def settle(self, rounds: int = 30) -> None:
        """Let every runnable task run until it blocks again."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
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
