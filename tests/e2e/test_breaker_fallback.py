"""Fallback upstreams end to end: the primary (a mock process failing every request) is down, the
secondary (a second mock process) serves, and the response names it in `x-ccproxy-upstream`."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import pytest

from tests.support.breaker_app import breaker_app
from tests.support.breaker_support import distinct_message
from tests.support.mock_process import MockUpstreamProcess, mock_upstream_fixture
from tests.support.proxy_server import serve_app
from tests.support.stack import proxy_settings

primary = mock_upstream_fixture("--fault", "503", "--fault-rate", "1.0", scope="module", name="primary")
secondary = mock_upstream_fixture(scope="module", name="secondary")

SECONDARY_KEY = "sk-secondary-0123456789abcdef"


@pytest.fixture
def client(primary: MockUpstreamProcess, secondary: MockUpstreamProcess) -> Iterator[anthropic.Anthropic]:
    primary.reset()
    secondary.reset()
    settings = proxy_settings(
        primary,
        retry_max_attempts=1,
        upstream_name="primary",
        breaker_failure_threshold=2,
        breaker_recovery_seconds=0.5,
        fallback_upstreams=[
            {
                "name": "secondary",
                "base_url": secondary.openai_base_url,
                "api_key": SECONDARY_KEY,
                "big_model": "local-big",
            }
        ],
    )
    app, _ = breaker_app(settings)
    with serve_app(app) as url, anthropic.Anthropic(base_url=url, api_key="k", max_retries=0, timeout=20) as sdk:
        yield sdk


def test_primary_down_secondary_serves_and_the_header_says_so(
    client: anthropic.Anthropic, primary: MockUpstreamProcess, secondary: MockUpstreamProcess
) -> None:
    # The primary fails before the first byte: the same request goes to the secondary.
    for expected_primary_calls in (1, 2):
        raw = client.messages.with_raw_response.create(**distinct_message())
        assert raw.headers["x-ccproxy-upstream"] == "secondary"
        assert raw.parse().content
        assert len(primary.requests()) == expected_primary_calls
    served = secondary.requests()
    assert [r["body"]["model"] for r in served] == ["local-big", "local-big"]  # its own model mapping
    assert served[0]["headers"]["authorization"] == f"Bearer {SECONDARY_KEY}"

    # Two failures opened the primary's breaker: it is skipped without a call, streams included.
    opened_at = time.monotonic()
    raw = client.messages.with_raw_response.create(**distinct_message())
    assert raw.headers["x-ccproxy-upstream"] == "secondary"
    with client.messages.with_streaming_response.create(**distinct_message(), stream=True) as streamed:
        assert streamed.headers["x-ccproxy-upstream"] == "secondary"
        assert "message_stop" in streamed.text()
    assert len(primary.requests()) == 2
    assert len(secondary.requests()) == 4

    # The primary heals: after the recovery time a probe reaches it, succeeds, and it serves again.
    primary.queue_faults("none", "none")
    time.sleep(max(0.0, opened_at + 0.55 - time.monotonic()))
    raw = client.messages.with_raw_response.create(**distinct_message())
    assert raw.headers["x-ccproxy-upstream"] == "primary"
    raw = client.messages.with_raw_response.create(**distinct_message())
    assert raw.headers["x-ccproxy-upstream"] == "primary"
    assert len(primary.requests()) == 4
    assert len(secondary.requests()) == 4


def test_every_upstream_down_is_an_honest_529(
    client: anthropic.Anthropic, primary: MockUpstreamProcess, secondary: MockUpstreamProcess
) -> None:
    secondary.queue_faults("503", "503")
    for _ in range(2):  # the primary fails, then the secondary: its error reaches the client
        with pytest.raises(anthropic.APIStatusError):
            client.messages.create(**distinct_message())
    with pytest.raises(anthropic.OverloadedError) as refused:
        client.messages.create(**distinct_message())
    assert refused.value.response.headers["retry-after"] == "1"
    assert "x-ccproxy-upstream" not in refused.value.response.headers
    assert (len(primary.requests()), len(secondary.requests())) == (2, 2)
