"""Two proxy processes sharing one real Redis: one trips the breaker, the other answers open too.

Each proxy is a separate `uvicorn --factory` process (settings from `CCPROXY_*`), so nothing but Redis is
shared between them; the mock upstream is a third process that counts what reaches it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from tests.support.breaker_support import distinct_message
from tests.support.mock_process import REPO_ROOT, MockUpstreamProcess, mock_upstream_fixture
from tests.support.proxy_server import free_port
from tests.support.redis_server import RedisServer, redis_server_fixture
from tests.support.stack import UPSTREAM_KEY

mock = mock_upstream_fixture(scope="module")
redis_server = redis_server_fixture()



@contextlib.contextmanager
def proxy_process(env: dict[str, str], timeout: float = 20.0) -> Iterator[str]:
    """`uvicorn --factory tests.support.breaker_app:app_from_env` on a free port; yields its URL."""
    port = free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("CCPROXY_", "OPENAI_"))}
    child_env.update(env)
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), child_env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as workdir, open(Path(workdir) / "log", "wb+") as log:
        command = [sys.executable, "-m", "uvicorn", "--factory", "tests.support.breaker_app:app_from_env"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
        process = subprocess.Popen(
            command,
            cwd=workdir,  # no stray .env is read
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(url + "/", timeout=1) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"proxy did not start:\n{log.read().decode(errors='replace')}")
                time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_one_process_trips_and_the_other_answers_open(mock: MockUpstreamProcess, redis_server: RedisServer) -> None:
    mock.reset()
    env = {
        "CCPROXY_UPSTREAM_BASE_URL": mock.openai_base_url,
        "CCPROXY_UPSTREAM_API_KEY": UPSTREAM_KEY,
        "CCPROXY_RETRY_MAX_ATTEMPTS": "1",
        "CCPROXY_STATE_BACKEND": "redis",
        "CCPROXY_REDIS_URL": redis_server.url,
        "CCPROXY_BREAKER_FAILURE_THRESHOLD": "2",
        "CCPROXY_BREAKER_RECOVERY_SECONDS": "1",
    }
    with proxy_process(env) as first_url, proxy_process(env) as second_url:
        first = anthropic.Anthropic(base_url=first_url, api_key="k", max_retries=0, timeout=20)
        second = anthropic.Anthropic(base_url=second_url, api_key="k", max_retries=0, timeout=20)
        try:
            assert second.messages.create(**distinct_message()).content  # both healthy to begin with
            mock.queue_faults("503", "503")
            for _ in range(2):
                with pytest.raises(anthropic.APIStatusError) as overloaded:
                    first.messages.create(**distinct_message())
                assert overloaded.value.status_code == 529
            tripped_at = time.monotonic()
            assert len(mock.requests()) == 3
            # The second process never saw a failure, yet it refuses: the state lives in Redis.
            with pytest.raises(anthropic.OverloadedError) as refused:
                second.messages.create(**distinct_message())
            assert refused.value.response.headers["retry-after"] == "1"
            with pytest.raises(anthropic.OverloadedError):
                first.messages.create(**distinct_message())
            assert len(mock.requests()) == 3
            # The second process's probe closes the breaker for the first as well.
            time.sleep(max(0.0, tripped_at + 1.05 - time.monotonic()))
            assert second.messages.create(**distinct_message()).content
            assert first.messages.create(**distinct_message()).content
            assert len(mock.requests()) == 5
        finally:
            first.close()
            second.close()
