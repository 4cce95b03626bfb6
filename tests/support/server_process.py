"""Run `python -m ccproxy_asgi serve --server X` as a real process for a test, the way a user starts it.

    from tests.support.server_process import running_server

    with running_server("granian", env={"CCPROXY_UPSTREAM_BASE_URL": mock.openai_base_url, ...}) as server:
        httpx.get(server.base_url + "/")        # it answered `GET /` with 200 before the block started
    assert server.returncode == 0               # stopped with SIGINT, like Ctrl-C
    assert "Traceback" not in server.stderr

The process gets a clean environment (no `CCPROXY_*`, `OPENAI_*` or `ANTHROPIC_*` variable of the test
run leaks in), a scratch working directory (no stray `.env` is read), and its own session, so a signal
from the test reaches it alone and the escalation to SIGKILL can take the server's workers with it.
On Linux it also gets SIGTERM when the test process dies, so a killed test run leaves no server behind.

Stopping sends SIGINT (what Ctrl-C sends; `group=True` sends it to the whole process group, as a
terminal does), waits, then SIGTERM, then SIGKILL to the group, and always reaps: no zombie, no bound
port, and `returncode`, `stdout` and `stderr` are there for the test to assert a clean shutdown.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from tests.support.proxy_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
_POLL_SECONDS = 0.05
_PR_SET_PDEATHSIG = 1
#: Prefixes of variables the server reads; the test run's own values must not leak into the child.
_SCRUBBED_PREFIXES = ("CCPROXY_", "OPENAI_", "ANTHROPIC_")


class ServerProcessError(RuntimeError):
    """The server did not come up (the message carries its command and output)."""


def _load_prctl() -> Any:
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved here, in the parent: the child must not load libraries between fork and exec.
_PRCTL = _load_prctl()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    merged = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    merged.update(env or {})
    paths = [str(REPO_ROOT), *filter(None, merged.get("PYTHONPATH", "").split(os.pathsep))]
    merged["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    merged["PYTHONUNBUFFERED"] = "1"
    return merged


class ServerProcess:
    """A running `ccproxy-asgi serve` process; after `stop()`, its exit code and output."""

    def __init__(
        self,
        server: str,
        process: subprocess.Popen[bytes],
        base_url: str,
        stdout: IO[bytes],
        stderr: IO[bytes],
        workdir: tempfile.TemporaryDirectory[str],
    ) -> None:
        self.server = server
        self.process = process
        self.base_url = base_url
        self.returncode: int | None = None
        #: Which signal finally stopped it: "SIGINT", "SIGTERM" or "SIGKILL" (None while running).
        self.stopped_by: str | None = None
        #: Processes of its group still alive after it exited (killed by `stop()`; a clean exit leaves none).
        self.leftovers: list[int] = []
        self._stdout = stdout
        self._stderr = stderr
        self._workdir = workdir
        self._final: tuple[str, str] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def stdout(self) -> str:
        return self._final[0] if self._final else Path(self._stdout.name).read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self._final[1] if self._final else Path(self._stderr.name).read_text(errors="replace")

    def pids(self) -> list[int]:
        """The server process and all its descendants (granian's and uvicorn's workers)."""
        children: dict[int, list[int]] = {}
        for pid, ppid, _ in _proc_table():
            children.setdefault(ppid, []).append(pid)
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def socket_inodes(self) -> set[int]:
        """Inodes of the sockets the server's processes hold open (Linux `/proc`)."""
        inodes: set[int] = set()
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        target = os.readlink(fd)
                        if target.startswith("socket:["):
                            inodes.add(int(target[8:-1]))
        return inodes

    def signal(self, signum: int, *, group: bool = False) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.pid, signum)
            else:
                self.process.send_signal(signum)

    def stop(self, timeout: float = 15.0, *, group: bool = False) -> int:
        """SIGINT, wait `timeout`; then SIGTERM, wait; then SIGKILL the group. Reaps; returns the exit code."""
        if self.returncode is None:
            for signum, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0)):
                if self.process.poll() is not None:
                    break
                self.signal(signum, group=group or signum != signal.SIGINT)
                try:
                    self.process.wait(timeout=wait)
                    self.stopped_by = signal.Signals(signum).name
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                self.stopped_by = "SIGKILL"
                self.signal(signal.SIGKILL, group=True)
                self.process.wait()
            # Workers left behind (by a killed main process) would hold the port: take the group down too.
            self.leftovers = [pid for pid, _, pgrp in _proc_table() if pgrp == self.pid]
            if self.leftovers:
                self.signal(signal.SIGKILL, group=True)
            self.returncode = self.process.returncode
        if self._final is None:
            self._final = (self.stdout, self.stderr)
            for log in (self._stdout, self._stderr):
                log.close()
                with contextlib.suppress(OSError):
                    os.unlink(log.name)
            self._workdir.cleanup()
        return self.returncode


def _proc_table() -> list[tuple[int, int, int]]:
    """(pid, ppid, process group) of every live process, from `/proc` (zombies left out)."""
    table = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        table.append((int(entry.name), int(fields[1]), int(fields[2])))
    return table


def _wait_until_ready(process: subprocess.Popen[bytes], base_url: str, deadline: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(base_url + "/", timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        if process.poll() is not None:
            raise ServerProcessError(f"the server exited with {process.returncode} before answering")
        if time.monotonic() > deadline:
            raise ServerProcessError("the server did not answer GET / with 200 in time")
        time.sleep(_POLL_SECONDS)


def start_server(
    server: str,
    *,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    host: str = "127.0.0.1",
    port: int | None = None,
    timeout: float = 30.0,
) -> ServerProcess:
    """Start `python -m ccproxy_asgi serve --server SERVER` and wait until `GET /` answers 200.

    The caller must call `.stop()`; prefer `running_server`.
    """
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "ccproxy_asgi",
        "serve",
        "--server",
        server,
        "--host",
        host,
        "--port",
        str(port),
        *args,
    ]
    stdout = tempfile.NamedTemporaryFile(prefix=f"serve-{server}-", suffix=".out", delete=False)  # noqa: SIM115
    stderr = tempfile.NamedTemporaryFile(prefix=f"serve-{server}-", suffix=".err", delete=False)  # noqa: SIM115
    workdir = tempfile.TemporaryDirectory(prefix=f"serve-{server}-")
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=_child_env(env),
        cwd=workdir.name,
        start_new_session=True,
        preexec_fn=_die_with_parent if _PRCTL is not None else None,
    )
    handle = ServerProcess(server, process, f"http://{host}:{port}", stdout, stderr, workdir)
    try:
        _wait_until_ready(process, handle.base_url, time.monotonic() + timeout)
    except BaseException as exc:
        handle.stop(timeout=5.0)
        if isinstance(exc, ServerProcessError):
            raise ServerProcessError(
                f"{exc}; command {command}; exit {handle.returncode}; stderr:\n{handle.stderr}"
            ) from None
        raise
    return handle


@contextlib.contextmanager
def running_server(
    server: str,
    *,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    timeout: float = 30.0,
) -> Iterator[ServerProcess]:
    """A `ccproxy-asgi serve` process for the `with` block; stopped with SIGINT (and reaped) after it."""
    handle = start_server(server, env=env, args=args, timeout=timeout)
    try:
        yield handle
    finally:
        handle.stop()


__all__ = ["ServerProcess", "ServerProcessError", "running_server", "start_server"]
