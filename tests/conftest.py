"""Fixtures of the end-to-end suites (`tests/e2e/`): one mock upstream process serves the whole
session; proxies (`create_app(Settings)` under uvicorn on a real port) are started once per distinct set
of settings and reused. The `e2e` fixture hands each test a clean mock (no queued faults, no recorded
requests) and closes the SDK clients the test opened. The classes live in `tests/support/e2e.py`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.e2e import E2E, ProxyPool
from tests.support.mock_process import running_mock_upstream


@pytest.fixture(scope="session")
def e2e_pool() -> Iterator[ProxyPool]:
    with running_mock_upstream() as mock:
        pool = ProxyPool(mock)
        try:
            yield pool
        finally:
            pool.close()


@pytest.fixture
def e2e(e2e_pool: ProxyPool) -> Iterator[E2E]:
    e2e_pool.mock.reset()
    stack = E2E(e2e_pool)
    try:
        yield stack
    finally:
        stack.close()
        e2e_pool.mock.clear_faults()
