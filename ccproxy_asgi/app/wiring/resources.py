"""`Resources`: what the wiring built that must be opened at startup and closed at shutdown.

An `AsyncExitStack` for an app's lifespan, with names in its log lines:

    resources = Resources()
    breaker = resources.add("circuit breaker", build_breaker(settings))
    limiter = resources.add("rate limiter", limiter, start=limiter.ping)
    ...
    async with resources.running():     # start hooks in the order added
        ...                             # serve
                                        # every resource's aclose(), newest first

`ccproxy_asgi.plumbing.lifespan.LifespanContext(app, resources.running)` drives it from the ASGI lifespan.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

logger = logging.getLogger("ccproxy_asgi.app")


class Closeable(Protocol):
    async def aclose(self) -> None: ...


C = TypeVar("C", bound=Closeable)
StartHook = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    resource: Closeable
    start: StartHook | None


class ShutdownError(RuntimeError):
    """One or more resources failed to close (each failure was logged; the others still closed)."""


class Resources:
    """Named resources, started in the order added and closed in reverse.

    `add(name, resource, start=...)` registers an object with `aclose()` (looked up when it is closed, not
    when it is added) and an optional hook run at startup. At shutdown every resource is closed even if
    an earlier one fails; the failures are logged and then raised together as one `ShutdownError`. A start
    hook that raises closes every resource and the error propagates: nothing stays open after a failed
    startup.
    """

    def __init__(self) -> None:
        self._entries: list[_Entry] = []

    def add(self, name: str, resource: C, *, start: StartHook | None = None) -> C:
        self._entries.append(_Entry(name, resource, start))
        return resource

    @property
    def names(self) -> tuple[str, ...]:
        """The names in the order added (startup order; shutdown is the reverse)."""
        return tuple(entry.name for entry in self._entries)

    async def start(self) -> None:
        for entry in self._entries:
            if entry.start is not None:
                await entry.start()

    async def aclose(self) -> None:
        failed: list[str] = []
        for entry in reversed(self._entries):
            try:
                await entry.resource.aclose()
            except Exception:
                logger.exception("closing the %s failed", entry.name)
                failed.append(entry.name)
        if failed:
            raise ShutdownError(f"closing failed: {', '.join(failed)}")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Started on enter, closed on exit."""
        try:
            await self.start()
        except BaseException:
            with contextlib.suppress(ShutdownError):
                await self.aclose()
            raise
        try:
            yield
        finally:
            await self.aclose()


__all__ = ["Closeable", "Resources", "ShutdownError", "StartHook"]
