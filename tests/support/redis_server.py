"""A real Redis for tests: `redis-server` started on a free port in a temp dir, or `REDIS_URL` when set.

    from tests.support.redis_server import redis_server_fixture

    redis_server = redis_server_fixture()          # a session-scoped pytest fixture

    def test_x(redis_server):
        store = RedisStore.from_url(redis_server.url, prefix=redis_server.unique_prefix())

Without `redis-server` (and no `REDIS_URL`) the tests that need it are skipped with the reason, except
under `CI=true`, where that is a failure: CI must test the shared store for real.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.proxy_server import free_port


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server process this test run owns (or an external one from REDIS_URL)."""

    def __init__(self, *, url: str | None = None) -> None:
        self.external = url is not None
        self.port = free_port()
        self.url = url or f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="ccproxy-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart, on the same port) the server and wait until it answers PING."""
        if self.external:
            return
        executable = shutil.which("redis-server")
        assert executable is not None
        self._process = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not _ping("127.0.0.1", self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (an outage, for tests); `start()` brings it back on the same port."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    @staticmethod
    def unique_prefix() -> str:
        """A key prefix no other test uses (tests may share one server)."""
        return "test:" + uuid.uuid4().hex[:12]


def require_redis_server() -> None:
    """Skip (or, under CI=true, fail) when no Redis can be had."""
    if os.environ.get("REDIS_URL") or shutil.which("redis-server"):
        return
    message = "redis-server is not installed and REDIS_URL is not set (apt-get install redis-server)"
    if _in_ci():
        pytest.fail(message + "; CI must run the Redis tests")
    pytest.skip(message)


@contextlib.contextmanager
def running_redis_server() -> Iterator[RedisServer]:
    require_redis_server()
    server = RedisServer(url=os.environ.get("REDIS_URL") or None)
    try:
        server.start()
        yield server
    finally:
        server.close()


def redis_server_fixture(scope: Any = "session", name: str | None = None) -> Callable[[], Any]:
    """A pytest fixture yielding a `RedisServer`; assign it to a module-level name."""

    def _fixture() -> Iterator[RedisServer]:
        with running_redis_server() as server:
            yield server

    return pytest.fixture(scope=scope, name=name)(_fixture)


__all__ = ["RedisServer", "redis_server_fixture", "require_redis_server", "running_redis_server"]
