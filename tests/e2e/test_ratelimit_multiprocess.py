"""Three proxy processes (uvicorn, separate OS processes) share one TPM budget through a real Redis.

Demand is well above the budget. The admitted tokens are counted at the mock upstream, from the requests
it actually received (each priced exactly as the mock charged it: prompt + completion), over every
sliding window. With the Redis store the three processes together stay within +-5 % of the budget; with
the memory store each process spends the whole budget alone, about 3x. The figures are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ccproxy_asgi.mock_upstream import MockConfig, plan_reply
from tests.support.mock_process import REPO_ROOT, MockUpstreamProcess, running_mock_upstream
from tests.support.proxy_server import free_port
from tests.support.redis_server import RedisServer, redis_server_fixture

redis_server = redis_server_fixture(scope="module")

PROCESSES = 3
WINDOW = 2.0
BUDGET = 2000  # tokens per WINDOW
RUN_WINDOWS = 3
WORKERS_PER_PROXY = 6
UVICORN = [sys.executable, "-m", "uvicorn", "--factory", "tests.support.ratelimit_app:create_limited_app"]
UVICORN += ["--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"]


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstreamProcess]:
    with running_mock_upstream("--record-limit", "20000") as process:
        yield process


@contextlib.contextmanager
def proxy_processes(mock: MockUpstreamProcess, **env: str) -> Iterator[list[str]]:
    """PROCESSES uvicorn processes serving `create_limited_app` with `CCPROXY_*` settings from `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CCPROXY_")}
    base.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        CCPROXY_UPSTREAM_BASE_URL=mock.openai_base_url,
        CCPROXY_UPSTREAM_API_KEY="sk-test-upstream-0123456789abcdef",
        CCPROXY_RETRY_MAX_BACKOFF_SECONDS="0.05",
        CCPROXY_RATE_LIMIT_TPM=str(BUDGET),
        CCPROXY_RATE_LIMIT_WINDOW_SECONDS=str(WINDOW),
        CCPROXY_RATE_LIMIT_MAX_WAIT_SECONDS=str(WINDOW),
        CCPROXY_LOG_LEVEL="warning",
        **env,
    )
    ports = [free_port() for _ in range(PROCESSES)]
    processes = [
        subprocess.Popen(
            [*UVICORN, "--port", str(port)],
            cwd=REPO_ROOT,
            env=base,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 30
        for url, process in zip(urls, processes, strict=True):
            while True:
                try:
                    with urllib.request.urlopen(url + "/", timeout=1) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"proxy at {url} did not start: {process.stderr.read()!r}")  # type: ignore[union-attr]
                time.sleep(0.05)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()


async def drive(urls: list[str], seconds: float) -> Counter[int]:
    """WORKERS_PER_PROXY clients per proxy sending Messages requests (half streamed) until `seconds`."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient, name: str) -> None:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            body = {
                "model": "gpt-4o-mini",
                "max_tokens": 40,
                "stream": n % 2 == 0,
                "messages": [{"role": "user", "content": f"{name} asks question {n}: say something."}],
            }
            response = await client.post("/v1/messages", json=body, headers={"x-api-key": "client"})
            statuses[response.status_code] += 1
            if response.status_code != 200:
                await asyncio.sleep(0.05)

    clients = [httpx.AsyncClient(base_url=url, timeout=30.0) for url in urls]
    try:
        await asyncio.gather(
            *(
                worker(client, f"p{p}w{w}")
                for p, client in enumerate(clients)
                for w in range(WORKERS_PER_PROXY)
            )
        )
    finally:
        for client in clients:
            await client.aclose()
    return statuses


@dataclass
class WindowFigures:
    requests: int
    tokens: int
    max_sliding: int
    full_windows: list[int]

    def line(self, label: str) -> str:
        ratio = self.max_sliding / BUDGET
        windows = ", ".join(str(t) for t in self.full_windows)
        return (
            f"{label:<28} upstream requests={self.requests:>4} tokens={self.tokens:>6} "
            f"max tokens in any {WINDOW:g}s window={self.max_sliding:>5} ({ratio:.3f} x budget {BUDGET}); "
            f"consecutive windows: {windows}"
        )


def admitted_tokens(recorded: list[dict[str, Any]]) -> WindowFigures:
    """Tokens the mock charged, over every sliding window ending at a request, and per whole window."""
    config = MockConfig()
    events = sorted(
        (entry["timestamp"], plan_reply(entry["body"], config, entry["headers"]).total_tokens)
        for entry in recorded
    )
    best = 0
    total = 0
    start = 0
    for end, (stamp, tokens) in enumerate(events):
        total += tokens
        while events[start][0] <= stamp - WINDOW:
            total -= events[start][1]
            start += 1
        best = max(best, total)
        del end
    full: list[int] = []
    if events:
        first, last = events[0][0], events[-1][0]
        edge = first
        while edge + WINDOW <= last:
            full.append(sum(t for s, t in events if edge <= s < edge + WINDOW))
            edge += WINDOW
    return WindowFigures(len(events), sum(t for _, t in events), best, full)


async def _run(mock: MockUpstreamProcess, **env: str) -> tuple[WindowFigures, Counter[int]]:
    with proxy_processes(mock, **env) as urls:
        await mock.areset()
        statuses = await drive(urls, RUN_WINDOWS * WINDOW)
        recorded = await mock.arequests()
    return admitted_tokens(recorded), statuses


async def test_three_processes_share_one_budget_through_redis(
    mock: MockUpstreamProcess, redis_server: RedisServer
) -> None:
    shared, shared_statuses = await _run(
        mock,
        CCPROXY_STATE_BACKEND="redis",
        CCPROXY_REDIS_URL=redis_server.url,
        CCPROXY_RATE_LIMIT_REDIS_PREFIX=redis_server.unique_prefix(),
    )
    alone, alone_statuses = await _run(mock, CCPROXY_STATE_BACKEND="memory")
    print()
    print(shared.line("redis store, 3 processes") + f"; client statuses {dict(shared_statuses)}")
    print(alone.line("memory store, 3 processes") + f"; client statuses {dict(alone_statuses)}")
    assert shared_statuses[200] > 0
    assert 0.95 * BUDGET <= shared.max_sliding <= 1.05 * BUDGET
    assert all(0.95 * BUDGET <= t <= 1.05 * BUDGET for t in shared.full_windows)
    assert alone.max_sliding >= 2.5 * BUDGET  # each process spends the whole budget by itself
