"""Lifespan plumbing: answer the lifespan with a context manager, run startup/shutdown hooks around an
app's own lifespan, and run a mounted app's lifespan.

`LifespanContext(app, context)` answers the lifespan scope by entering `context()` at startup and leaving
it at shutdown (as Starlette's `lifespan=`); `create_app` uses it with the `Resources` its wiring built,
so the one place that built the breaker, limiter and upstream clients also closes them.

Starlette does not run the lifespan of an app mounted with `Mount("/anthropic", app=create_app())`;
`run_lifespan` lets the parent's own lifespan drive it:

    proxy = create_app()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with run_lifespan(proxy):
            yield

    app = Starlette(routes=[Mount("/anthropic", app=proxy)], lifespan=lifespan)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from ccproxy_asgi.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]


class LifespanError(RuntimeError):
    """A sub-application failed its startup or shutdown."""


class LifespanContext:
    """Answers the lifespan scope itself: `context()` is entered at startup and left at shutdown; every
    other scope goes to `app`.

    The inner app's own lifespan is not run: `context` opens and closes everything the app uses. An
    exception entering it answers `lifespan.startup.failed`, leaving it `lifespan.shutdown.failed`.
    """

    def __init__(self, app: ASGIApp, context: Callable[[], AbstractAsyncContextManager[object]]) -> None:
        self.app = app
        self._context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        message = await receive()
        assert message["type"] == "lifespan.startup"
        context = self._context()
        try:
            await context.__aenter__()
        except Exception as exc:
            logger.exception("startup failed")
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        try:
            await context.__aexit__(None, None, None)
        except Exception as exc:
            logger.exception("shutdown failed")
            await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})


class LifespanHooks:
    """Runs `on_startup` before and `on_shutdown` after the inner app's own lifespan.

    Other scope types pass straight through. If the inner app does not speak lifespan (a bare
    endpoint raising on it), the hooks still run.
    """

    def __init__(
        self, app: ASGIApp, *, on_startup: Sequence[Hook] = (), on_shutdown: Sequence[Hook] = ()
    ) -> None:
        self.app = app
        self._on_startup = tuple(on_startup)
        self._on_shutdown = tuple(on_shutdown)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        message = await receive()
        assert message["type"] == "lifespan.startup"
        try:
            for hook in self._on_startup:
                await hook()
            async with run_lifespan(self.app, state=scope.get("state")):
                await send({"type": "lifespan.startup.complete"})
                message = await receive()
                assert message["type"] == "lifespan.shutdown"
        except Exception as exc:
            logger.exception("startup failed")
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        try:
            for hook in reversed(self._on_shutdown):
                await hook()
        except Exception as exc:
            logger.exception("shutdown failed")
            await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})


@contextlib.asynccontextmanager
async def run_lifespan(app: ASGIApp, *, state: dict[str, object] | None = None) -> AsyncIterator[None]:
    """Start `app`'s lifespan on enter and shut it down on exit, as a server would."""
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    scope: Scope = {
        "type": "lifespan",
        "asgi": {"version": "3.0", "spec_version": "2.0"},
        "state": state or {},
    }

    async def receive() -> Message:
        return await to_app.get()

    async def send(message: Message) -> None:
        await from_app.put(message)

    async def run() -> None:
        try:
            await app(scope, receive, send)
        except Exception as exc:  # an app that does not speak lifespan may raise on the scope
            await from_app.put({"type": "lifespan.unsupported", "message": repr(exc)})

    task = asyncio.get_running_loop().create_task(run())
    await to_app.put({"type": "lifespan.startup"})
    reply = await _reply(from_app, task)
    if reply["type"] == "lifespan.startup.failed":
        await task
        raise LifespanError(f"startup failed: {reply.get('message', '')}")
    supported = reply["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        if supported:
            await to_app.put({"type": "lifespan.shutdown"})
            reply = await _reply(from_app, task)
        await task
        if supported and reply["type"] == "lifespan.shutdown.failed":
            raise LifespanError(f"shutdown failed: {reply.get('message', '')}")


async def _reply(from_app: asyncio.Queue[Message], task: asyncio.Task[None]) -> Message:
    """The app's next lifespan message; an app that returns without answering does not speak lifespan."""
    getter = asyncio.ensure_future(from_app.get())
    done, _ = await asyncio.wait((getter, task), return_when=asyncio.FIRST_COMPLETED)
    if getter in done:
        return getter.result()
    getter.cancel()
    return from_app.get_nowait() if not from_app.empty() else {"type": "lifespan.unsupported"}


__all__ = ["Hook", "LifespanContext", "LifespanError", "LifespanHooks", "run_lifespan"]
