"""Run a request's work while watching for the client to go away.

When the client disconnects, the work is cancelled, which cancels the upstream request and releases its
connection: a generation nobody will read should stop being billed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from ccproxy_asgi.plumbing.body import ClientDisconnected
from ccproxy_asgi.types import Receive

T = TypeVar("T")


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def run_until_disconnect(work: Awaitable[T], receive: Receive) -> T:
    """The result of `work`, or `ClientDisconnected` once the client left (the work is cancelled)."""
    work_task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
    try:
        await asyncio.wait((work_task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work_task.cancel()
        watcher.cancel()
        raise
    if work_task.done():
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        return work_task.result()
    work_task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await work_task
    raise ClientDisconnected


__all__ = ["run_until_disconnect"]
