"""The limiter's clock: the time for queue deadlines, and a way to wait for an event with a timeout.

Injected so that the queue, its deadlines and its fairness are tested without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def wait(self, event: asyncio.Event, within: float) -> bool:
        """Wait until `event` is set (True) or `within` seconds passed (False)."""
        ...


class MonotonicClock:
    """The real clock: `time.monotonic` and the event loop's timers."""

    def now(self) -> float:
        return time.monotonic()

    async def wait(self, event: asyncio.Event, within: float) -> bool:
        if event.is_set():
            return True
        if within <= 0:
            return False
        try:
            async with asyncio.timeout(within):
                await event.wait()
        except TimeoutError:
            return event.is_set()
        return True


__all__ = ["Clock", "MonotonicClock"]
