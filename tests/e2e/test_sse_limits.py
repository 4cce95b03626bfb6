"""End to end: the proxy, as a process, in front of an upstream whose SSE lines are long or endless.

A 2 MB line is translated like any other; an endless one ends the stream with an Anthropic `error`
event once the decoder's bound is passed, the proxy hangs up on the upstream, and its memory stays put.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.e2e import parse_sse
from tests.support.misbehaving_sse import MisbehavingUpstream, running_misbehaving_upstream
from tests.support.server_process import ServerProcess, running_server


@pytest.fixture(scope="module")
def upstream() -> Iterator[MisbehavingUpstream]:
    with running_misbehaving_upstream() as server:
        yield server


@pytest.fixture(scope="module")
def proxy(upstream: MisbehavingUpstream) -> Iterator[ServerProcess]:
    env = {
        "CCPROXY_UPSTREAM_BASE_URL": upstream.openai_base_url,
        "CCPROXY_UPSTREAM_API_KEY": "sk-misbehaving-upstream-key",
        "CCPROXY_RETRY_MAX_ATTEMPTS": "1",
    }
    with running_server("uvicorn", env=env) as server:
        yield server


def memory_kb(server: ServerProcess, field: str) -> int:
    """`VmRSS` or `VmHWM` (the peak) summed over the server's processes."""
    total = 0
    for pid in server.pids():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                total += int(line.split()[1])
    return total


def stream_events(proxy: ServerProcess) -> list[tuple[str | None, object]]:
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    response = httpx.post(proxy.base_url + "/v1/messages", json=body, headers={"x-api-key": "c"}, timeout=60)
    assert response.status_code == 200, response.text
    return parse_sse(response.text)


def test_2_mb_line_is_translated(upstream: MisbehavingUpstream, proxy: ServerProcess) -> None:
    upstream.mode = "long-line"
    events = stream_events(proxy)
    text = "".join(
        data["delta"]["text"]  # type: ignore[index]
        for name, data in events
        if name == "content_block_delta"
    )
    assert text == "a" * upstream.line_bytes
    assert events[-1][0] == "message_stop"


def test_endless_line_ends_with_an_error_event_and_bounded_memory(
    upstream: MisbehavingUpstream, proxy: ServerProcess
) -> None:
    upstream.mode = "long-line"
    stream_events(proxy)  # warm: the peak below is the endless line's alone
    peak_before = memory_kb(proxy, "VmHWM")
    upstream.mode = "endless-line"
    events = stream_events(proxy)
    grown_mb = (memory_kb(proxy, "VmHWM") - peak_before) / 1024
    # The bound is 8 MiB; reads in flight and the allocator's slack come on top. Unbounded, the proxy
    # held all the upstream sent (96 MiB here), and twice that when it joined the pieces.
    assert grown_mb < 40, f"peak RSS grew {grown_mb:.0f} MB"
    # The proxy hung up on the upstream soon after the bound, instead of reading on.
    assert upstream.sent[-1] < 40 * 1024 * 1024, upstream.sent
    name, data = events[-1]
    assert name == "error"
    assert data["error"]["type"] == "api_error"  # type: ignore[index]
    assert "oversized SSE line" in data["error"]["message"]  # type: ignore[index]
