"""The proxy in a process of its own, with a test-only route that counts its asyncio tasks.

    with running_fault_proxy({"CCPROXY_UPSTREAM_BASE_URL": url, ...}) as proxy:
        before = proxy.snapshot()            # open fds (from /proc) and asyncio tasks of the process
        ...
        proxy.wait_for_baseline(before)      # both back to where they were, or AssertionError

The fault-matrix tests need the proxy's open file descriptors and asyncio tasks before and after each
fault. A proxy in the test's own process would mix its fds and tasks with the test's, so it runs here as
`python -m tests.support.fault_proxy PORT`: `create_app()` built from the `CCPROXY_*` environment, like
`ccproxy-asgi serve` builds it, under uvicorn, wrapped in an app that answers `GET /_test/tasks` itself
and passes everything else on. The product has no such route; it exists only in this wrapper.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.proxy_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
TASKS_PATH = "/_test/tasks"
_SCRUBBED_PREFIXES = ("CCPROXY_", "OPENAI_", "ANTHROPIC_")


def with_task_route(app: Any) -> Any:
    """`app` plus `GET /_test/tasks`: the process's asyncio tasks (this request's own included)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == TASKS_PATH:
            tasks = asyncio.all_tasks()
            names = sorted(getattr(task.get_coro(), "__qualname__", "?") for task in tasks)
            body = json.dumps({"count": len(tasks), "names": names}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return wrapped


@dataclass(frozen=True)
class Snapshot:
    fds: int
    tasks: int
    task_names: tuple[str, ...] = ()


class FaultProxy:
    """A running proxy process: its URL, pid, fds and tasks; `stop()` ends it and keeps its output."""

    def __init__(self, process: subprocess.Popen[bytes], base_url: str, log: Any) -> None:
        self.process = process
        self.base_url = base_url
        self._log = log
        self._output: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        """What the process wrote to stdout and stderr so far."""
        if self._output is not None:
            return self._output
        return Path(self._log.name).read_text(errors="replace")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def tasks(self) -> tuple[int, tuple[str, ...]]:
        with urllib.request.urlopen(self.base_url + TASKS_PATH, timeout=5) as response:
            data = json.loads(response.read())
        return int(data["count"]), tuple(data["names"])

    def snapshot(self) -> Snapshot:
        tasks, names = self.tasks()
        return Snapshot(fds=self.fds(), tasks=tasks, task_names=names)

    def settle(self, baseline: Snapshot, timeout: float = 10.0) -> Snapshot:
        """The first snapshot at or below `baseline` within `timeout` (or the last one taken)."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.snapshot()
            if (now.fds <= baseline.fds and now.tasks <= baseline.tasks) or time.monotonic() > deadline:
                return now
            time.sleep(0.05)

    def wait_for_baseline(self, baseline: Snapshot, timeout: float = 10.0) -> Snapshot:
        """Like `settle`, but an AssertionError naming what stayed open if the baseline is not reached."""
        now = self.settle(baseline, timeout)
        assert now.fds <= baseline.fds, f"fds {baseline.fds} -> {now.fds}"
        assert now.tasks <= baseline.tasks, (
            f"tasks {baseline.tasks} -> {now.tasks}: {baseline.task_names} -> {now.task_names}"
        )
        return now

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._output is None:
            self._output = self.output
            self._log.close()
            with contextlib.suppress(OSError):
                os.unlink(self._log.name)
        return self.process.returncode


def _child_env(env: Mapping[str, str]) -> dict[str, str]:
    merged = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    merged.update(env)
    paths = [str(REPO_ROOT), *filter(None, merged.get("PYTHONPATH", "").split(os.pathsep))]
    merged["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    merged["PYTHONUNBUFFERED"] = "1"
    return merged


def start_fault_proxy(env: Mapping[str, str], timeout: float = 30.0) -> FaultProxy:
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="fault-proxy-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fault_proxy", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_child_env(env),
        cwd=tempfile.gettempdir(),
        start_new_session=True,
    )
    proxy = FaultProxy(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(proxy.base_url + "/", timeout=2) as response:
                if response.status == 200:
                    return proxy
        except (OSError, urllib.error.HTTPError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            proxy.stop()
            raise RuntimeError(f"the fault proxy did not come up; output:\n{proxy.output}")
        time.sleep(0.05)


@contextlib.contextmanager
def running_fault_proxy(env: Mapping[str, str]) -> Iterator[FaultProxy]:
    proxy = start_fault_proxy(env)
    try:
        yield proxy
    finally:
        proxy.stop()


def main(argv: list[str]) -> None:
    import uvicorn

    from ccproxy_asgi.app import create_app
    from ccproxy_asgi.app.settings import Settings
    from ccproxy_asgi.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        with_task_route(create_app(settings)),
        host="127.0.0.1",
        port=int(argv[0]),
        lifespan="on",
        log_level=settings.log_level,
        access_log=False,
        log_config=None,
    )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main(sys.argv[1:])


__all__ = ["FaultProxy", "Snapshot", "running_fault_proxy", "start_fault_proxy", "with_task_route"]
