"""End to end: a burst against a mock upstream that enforces a real account limit (`--rpm-limit` /
`--tpm-limit`), through the proxy without and with the rate limiter, over real sockets.

The proxy's own retries (3 attempts, honouring the upstream's retry-after) are on in both runs, so the
comparison is with the proxy as it would otherwise be deployed. Each test prints its figures.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ccproxy_asgi.app import build_endpoint
from tests.support.mock_process import MockUpstreamProcess, running_mock_upstream
from tests.support.proxy_server import serve_app
from tests.support.ratelimit_app import limited_app, settings_for

WINDOW = 1.0
RPM = 10
TPM = 1000


def _body(i: int, *, stream: bool) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "max_tokens": 40,
        "stream": stream,
        "messages": [{"role": "user", "content": f"Request number {i}: say something short."}],
    }


@dataclass
class BurstResult:
    statuses: Counter[int]
    upstream_requests: int
    seconds: float

    @property
    def client_429s(self) -> int:
        return self.statuses[429]

    @property
    def upstream_429s(self) -> int:
        return self.upstream_requests - self.statuses[200]

    def line(self, label: str) -> str:
        return (
            f"{label:<34} client 200s={self.statuses[200]:>3} client 429s={self.client_429s:>3} "
            f"upstream calls={self.upstream_requests:>3} upstream 429s={self.upstream_429s:>3} "
            f"time={self.seconds:5.1f}s"
        )


async def _burst(url: str, mock: MockUpstreamProcess, n: int) -> BurstResult:
    await mock.areset()
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as client:

        async def one(i: int) -> int:
            response = await client.post(
                "/v1/messages", json=_body(i, stream=i % 2 == 1), headers={"x-api-key": "client"}
            )
            if response.status_code == 429:
                assert response.json()["error"]["type"] == "rate_limit_error"
                assert "retry-after" in response.headers
            return response.status_code

        started = time.monotonic()
        statuses = Counter(await asyncio.gather(*(one(i) for i in range(n))))
        seconds = time.monotonic() - started
    upstream = len(await mock.arequests())
    return BurstResult(statuses, upstream, seconds)


@pytest.fixture(scope="module")
def rpm_mock() -> Iterator[MockUpstreamProcess]:
    with running_mock_upstream("--rpm-limit", str(RPM), "--limit-window", str(WINDOW)) as mock:
        yield mock


@pytest.fixture(scope="module")
def tpm_mock() -> Iterator[MockUpstreamProcess]:
    with running_mock_upstream("--tpm-limit", str(TPM), "--limit-window", str(WINDOW)) as mock:
        yield mock


async def _compare(
    mock: MockUpstreamProcess, n: int, label: str, **limits: Any
) -> tuple[BurstResult, BurstResult]:
    settings = settings_for(mock.openai_base_url, rate_limit_window_seconds=WINDOW, **limits)
    with serve_app(build_endpoint(settings)) as url:
        without = await _burst(url, mock, n)
    await asyncio.sleep(WINDOW)  # the account's window empties
    with serve_app(limited_app(settings)) as url:
        with_layer = await _burst(url, mock, n)
    print()
    print(without.line(f"{label}, without the limiter"))
    print(with_layer.line(f"{label}, with the limiter"))
    assert sum(without.statuses.values()) == n
    assert sum(with_layer.statuses.values()) == n
    return without, with_layer


async def test_rpm_burst_budget_matches_the_account(rpm_mock: MockUpstreamProcess) -> None:
    without, with_layer = await _compare(
        rpm_mock, 60, f"RPM {RPM}/{WINDOW:g}s, 60 requests", rate_limit_rpm=RPM
    )
    assert without.client_429s >= 15  # the scenario bites
    assert with_layer.client_429s <= without.client_429s // 10
    assert with_layer.upstream_429s <= without.upstream_429s // 4


async def test_tpm_burst_budget_matches_the_account(tpm_mock: MockUpstreamProcess) -> None:
    without, with_layer = await _compare(
        tpm_mock, 80, f"TPM {TPM}/{WINDOW:g}s, 80 requests", rate_limit_tpm=TPM
    )
    assert without.client_429s >= 15
    assert with_layer.client_429s <= without.client_429s // 10


async def test_budget_set_too_high_adapts_to_the_upstream(rpm_mock: MockUpstreamProcess) -> None:
    # The operator configured twice what the account allows: the limiter learns from the upstream's
    # x-ratelimit-remaining headers and 429s (retries included) and backs off.
    without, with_layer = await _compare(
        rpm_mock, 60, f"RPM {RPM}/{WINDOW:g}s, limiter set to {2 * RPM}", rate_limit_rpm=2 * RPM
    )
    # Learning depends on when 429s arrive relative to admissions, which a loaded machine shifts: the
    # bounds are what held under a full parallel test run (typical quiet figures: 40-49 -> 0-5).
    assert with_layer.client_429s <= without.client_429s * 2 // 3
    assert with_layer.upstream_429s <= without.upstream_429s * 2 // 3
