"""The proxy in front of a mock upstream, both real servers on real sockets, for end-to-end tests.

    from tests.support.mock_process import mock_upstream_fixture
    from tests.support.stack import running_proxy

    mock_upstream = mock_upstream_fixture(scope="module")

    def test_x(mock_upstream):
        with running_proxy(mock_upstream, http_client="httpx") as proxy_url:
            client = anthropic.Anthropic(base_url=proxy_url, api_key="client-key", max_retries=0)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ccproxy_asgi.app import create_app
from ccproxy_asgi.app.settings import Settings
from tests.support.mock_process import MockUpstreamProcess
from tests.support.proxy_server import serve_app

UPSTREAM_KEY = "sk-test-upstream-0123456789abcdef"


def proxy_settings(mock: MockUpstreamProcess, **overrides: Any) -> Settings:
    """Settings pointing at `mock`, with fast retries so tests do not wait on backoff, and no breaker."""
    values: dict[str, Any] = {
        "upstream_base_url": mock.openai_base_url,
        "upstream_api_key": UPSTREAM_KEY,
        "retry_max_backoff_seconds": 0.05,
        # Test proxies are shared between tests that inject upstream failures on purpose; a breaker
        # tripped by one would answer 529 to the next. The breaker's own tests turn it on.
        "breaker_enabled": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.contextmanager
def running_proxy(mock: MockUpstreamProcess, **overrides: Any) -> Iterator[str]:
    """Serve `create_app(settings)` with uvicorn on a free port; yield its base URL."""
    with serve_app(create_app(proxy_settings(mock, **overrides))) as url:
        yield url
