"""A clock the breaker tests move by hand (the breaker reads time only through its injected clock)."""

from __future__ import annotations


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


__all__ = ["FakeClock"]
