"""Run the mock upstream as a real separate process for a test, a module or a session.

    from tests.support.mock_process import mock_upstream_fixture, running_mock_upstream

    mock_upstream = mock_upstream_fixture("--chunks", "3", scope="module")   # a pytest fixture

    async def test_something(mock_upstream):
        client = AsyncOpenAI(base_url=mock_upstream.openai_base_url, api_key="test")
        mock_upstream.queue_faults({"fault": "429", "retry_after": 2})
        ...
        assert mock_upstream.requests()[-1]["headers"]["authorization"] == "Bearer test"

    with running_mock_upstream("--latency", "0.1", env={"CCPROXY_MOCK_REASONING": "reasoning"}) as mock:
        ...  # mock.base_url == "http://127.0.0.1:PORT"

The process binds port 0 and announces its port on its first stdout line; it is started with
`--parent-pid` so it also exits if the test run dies without stopping it. Stopping sends SIGTERM, waits,
kills if it must, and reaps the process, so no zombie or bound port is left behind.
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import pytest

from ccproxy_asgi.mock_upstream.cli import LISTENING_PREFIX

REPO_ROOT = Path(__file__).resolve().parents[2]
_POLL_SECONDS = 0.02
Scope = Literal["session", "package", "module", "class", "function"]


class MockUpstreamError(RuntimeError):
    """The mock process did not start, or a control call failed."""


class MockUpstreamProcess:
    """A running mock upstream process and small clients for its control endpoints."""

    def __init__(self, process: subprocess.Popen[bytes], log: IO[bytes], base_url: str) -> None:
        self.process = process
        self.base_url = base_url
        self._log = log
        self._final_output: str | None = None

    @property
    def openai_base_url(self) -> str:
        """The `base_url` to give an OpenAI client: `base_url + "/v1"`."""
        return self.base_url + "/v1"

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str) -> str:
        return self.base_url + path

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far (all of it, once stopped)."""
        if self._final_output is not None:
            return self._final_output
        return Path(self._log.name).read_text(errors="replace")

    # ----- control endpoints (blocking; they are local and answer in about a millisecond) ---------------

    def call(self, method: str, path: str, payload: Any = None) -> Any:
        """Call one of the mock's endpoints and return the decoded JSON answer."""
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.url(path), data=data, method=method)
        request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise MockUpstreamError(
                f"{method} {path} -> {exc.code}: {exc.read().decode(errors='replace')}"
            ) from exc

    def queue_faults(self, *faults: Mapping[str, Any] | str) -> int:
        """Queue faults, each used by exactly one later chat request; returns the queue length."""
        return int(self.call("POST", "/mock/faults", list(faults))["queued"])

    def clear_faults(self) -> None:
        self.call("DELETE", "/mock/faults")

    def requests(self) -> list[dict[str, Any]]:
        """The recorded chat requests, oldest first."""
        recorded: list[dict[str, Any]] = self.call("GET", "/mock/requests")
        return recorded

    def clear_requests(self) -> None:
        self.call("DELETE", "/mock/requests")

    def reset(self) -> None:
        """Forget queued faults, recorded requests and the simulated account-limit windows."""
        self.call("POST", "/mock/reset")

    async def aqueue_faults(self, *faults: Mapping[str, Any] | str) -> int:
        return await asyncio.to_thread(self.queue_faults, *faults)

    async def arequests(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.requests)

    async def areset(self) -> None:
        await asyncio.to_thread(self.reset)

    # ----- lifecycle -------------------------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, wait up to `timeout`, then SIGKILL; always reaps. Returns the exit code."""
        process = self.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if not self._log.closed:
            self._final_output = self.output()
            self._log.close()
            with contextlib.suppress(OSError):
                os.unlink(self._log.name)
        return process.returncode


def _child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ)
    merged.update(env or {})
    paths = [str(REPO_ROOT), *filter(None, merged.get("PYTHONPATH", "").split(os.pathsep))]
    merged["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    merged["PYTHONUNBUFFERED"] = "1"
    return merged


def _wait_for_url(process: subprocess.Popen[bytes], log_path: str, deadline: float) -> str:
    while time.monotonic() < deadline:
        with open(log_path, "rb") as log:
            for line in log:
                text = line.decode(errors="replace").strip()
                if text.startswith(LISTENING_PREFIX):
                    return text[len(LISTENING_PREFIX) :]
        if process.poll() is not None:
            raise MockUpstreamError(f"mock upstream exited with {process.returncode} before listening")
        time.sleep(_POLL_SECONDS)
    raise MockUpstreamError("mock upstream did not announce its port in time")


def _wait_for_health(process: subprocess.Popen[bytes], base_url: str, deadline: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(base_url + "/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise MockUpstreamError("mock upstream did not answer /health in time")
        time.sleep(_POLL_SECONDS)


def start_mock_upstream(
    *args: str,
    env: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 20.0,
) -> MockUpstreamProcess:
    """Start `python -m ccproxy_asgi.mock_upstream` with extra `args`/`env` and wait until it answers.

    The caller must call `.stop()`; prefer `running_mock_upstream` or `mock_upstream_fixture`.
    """
    log = tempfile.NamedTemporaryFile(prefix="mock-upstream-", suffix=".log", delete=False)  # noqa: SIM115
    command = [
        sys.executable,
        "-m",
        "ccproxy_asgi.mock_upstream",
        "--host",
        host,
        "--port",
        str(port),
        "--parent-pid",
        str(os.getpid()),
        *args,
    ]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_child_env(env),
        cwd=REPO_ROOT,
    )
    mock = MockUpstreamProcess(process, log, "")
    try:
        deadline = time.monotonic() + timeout
        mock.base_url = _wait_for_url(process, log.name, deadline)
        _wait_for_health(process, mock.base_url, deadline)
    except BaseException as exc:
        output = mock.output()
        mock.stop()
        if isinstance(exc, MockUpstreamError):
            raise MockUpstreamError(f"{exc}; command {command}; output:\n{output}") from None
        raise
    return mock


@contextlib.contextmanager
def running_mock_upstream(
    *args: str, env: Mapping[str, str] | None = None, host: str = "127.0.0.1", timeout: float = 20.0
) -> Iterator[MockUpstreamProcess]:
    """A mock upstream process for the duration of the `with` block."""
    mock = start_mock_upstream(*args, env=env, host=host, timeout=timeout)
    try:
        yield mock
    finally:
        mock.stop()


def mock_upstream_fixture(
    *args: str,
    scope: Scope = "session",
    env: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Callable[[], Any]:
    """A pytest fixture running one mock upstream per `scope`; assign it to a module-level name.

    `scope` is any pytest scope ("session", "package", "module", "class", "function"). The fixture's
    name is the attribute it is assigned to unless `name` is given.
    """
    arguments: Sequence[str] = tuple(args)

    def _fixture() -> Iterator[MockUpstreamProcess]:
        with running_mock_upstream(*arguments, env=env) as mock:
            yield mock

    return pytest.fixture(scope=scope, name=name)(_fixture)


__all__ = [
    "MockUpstreamError",
    "MockUpstreamProcess",
    "mock_upstream_fixture",
    "running_mock_upstream",
    "start_mock_upstream",
]
