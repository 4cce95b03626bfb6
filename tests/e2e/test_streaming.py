"""End to end: streaming, errors before and after the first byte, retries, pings and client disconnects.

Raw SSE is read with httpx to check the wire itself (`event:` lines, indices, how many deltas); the
official SDK checks that a real client accepts and rebuilds it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.support.e2e import E2E, parse_sse
from tests.support.mock_process import MockUpstreamProcess, running_mock_upstream
from tests.support.stack import running_proxy

MODEL = "claude-sonnet-4-6"
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
        "required": ["city"],
    },
}
CLOCK = {
    "name": "get_time",
    "description": "Local time in a time zone.",
    "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
}
WEATHER_ARGS = {"city": "Oslo", "unit": "C", "note": "a longer argument so that it is split in pieces"}
CLOCK_ARGS = {"tz": "Europe/Oslo"}
TOOLS_PROMPT = (
    f"[[reasoning:reasoning_content]] [[text-then-tool:get_weather {json.dumps(WEATHER_ARGS)}]] "
    f"[[tool:get_time {json.dumps(CLOCK_ARGS)}]] check both"
)


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 1024,
        "stream": True,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "medium"},
        **extra,
    }


def stream_final(client: anthropic.Anthropic, text: str, **extra: Any) -> Any:
    params = {k: v for k, v in body(text, **extra).items() if k != "stream"}
    with client.messages.stream(**params, extra_query={"beta": "true"}) as stream:
        return stream.get_final_message()


def send(client: anthropic.Anthropic, text: str, *, stream: bool) -> Any:
    """One message, streamed to the final message or whole."""
    if stream:
        return stream_final(client, text)
    return client.messages.create(**{k: v for k, v in body(text).items() if k != "stream"})


def check_event_grammar(events: list[tuple[str | None, Any]]) -> list[dict[str, Any]]:
    """Assert the Anthropic stream contract; return the content blocks as started."""
    for name, data in events:
        assert name is not None, "every event needs an `event:` line"
        assert data["type"] == name
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    blocks: list[dict[str, Any]] = []
    open_index: int | None = None
    for name, data in events:
        if name == "content_block_start":
            assert open_index is None, "one block open at a time"
            assert data["index"] == len(blocks), "indices 0, 1, 2, ... in start order"
            open_index = data["index"]
            blocks.append(data["content_block"])
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        elif name in ("message_delta", "message_stop"):
            assert open_index is None
    return blocks


def deltas(events: list[tuple[str | None, Any]], index: int) -> list[dict[str, Any]]:
    return [d["delta"] for n, d in events if n == "content_block_delta" and d["index"] == index]


# ----- the wire ------------------------------------------------------------------------------------------


def test_raw_stream_has_event_lines_ordered_blocks_and_split_tool_arguments(e2e: E2E) -> None:
    raw = e2e.post(
        "/v1/messages?beta=true",
        body(TOOLS_PROMPT, tools=[WEATHER, CLOCK]),
        headers={"accept": "application/json", "anthropic-beta": "fine-grained-tool-streaming-2025-05-14"},
    )
    assert raw.status == 200
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["request-id"].startswith("req_")
    events = raw.events
    blocks = check_event_grammar(events)
    assert [b["type"] for b in blocks] == ["thinking", "text", "tool_use", "tool_use"]
    assert blocks[2]["name"] == "get_weather"
    assert blocks[2]["input"] == {}
    assert blocks[3]["name"] == "get_time"
    assert "".join(d["thinking"] for d in deltas(events, 0) if d["type"] == "thinking_delta").startswith(
        "Considering:"
    )
    assert deltas(events, 0)[-1] == {"type": "signature_delta", "signature": ""}
    assert "".join(d["text"] for d in deltas(events, 1)) == "Let me check."
    for index, expected in ((2, WEATHER_ARGS), (3, CLOCK_ARGS)):
        pieces = deltas(events, index)
        assert all(d["type"] == "input_json_delta" for d in pieces)
        # The mock splits each call's arguments in 3 chunks; they must stream, not be held back.
        assert len(pieces) > 1
        assert json.loads("".join(d["partial_json"] for d in pieces)) == expected
    (start,) = [d for n, d in events if n == "message_start"]
    assert start["message"]["id"].startswith("msg_")
    assert start["message"]["model"] == MODEL
    (delta,) = [d for n, d in events if n == "message_delta"]
    assert delta["delta"]["stop_reason"] == "tool_use"

    upstream = e2e.upstream_body()
    assert [t["function"]["name"] for t in upstream["tools"]] == ["get_weather", "get_time"]
    assert upstream["stream"] is True
    assert upstream["stream_options"] == {"include_usage": True}


def test_parallel_tool_calls_rebuilt_by_the_sdk(e2e: E2E) -> None:
    message = stream_final(e2e.client(), TOOLS_PROMPT, tools=[WEATHER, CLOCK])
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    weather, clock = message.content[2], message.content[3]
    assert (weather.name, weather.input) == ("get_weather", WEATHER_ARGS)
    assert (clock.name, clock.input) == ("get_time", CLOCK_ARGS)
    assert weather.id != clock.id
    assert weather.id.startswith("call_")
    assert message.stop_reason == "tool_use"
    assert "parallel_tool_calls" not in e2e.upstream_body()


def test_message_delta_carries_the_real_usage(e2e: E2E) -> None:
    client = e2e.client()
    text = "usage please [[cached:7]]"
    whole = send(client, text, stream=False)
    raw = e2e.post("/v1/messages", body(text))
    (start,) = raw.of_type("message_start")
    (delta,) = raw.of_type("message_delta")
    usage = delta["usage"]
    assert usage["input_tokens"] == whole.usage.input_tokens > 0
    assert usage["cache_read_input_tokens"] == whole.usage.cache_read_input_tokens == 7
    assert usage["output_tokens"] == whole.usage.output_tokens > 0
    assert start["message"]["usage"]["output_tokens"] == 0
    streamed = stream_final(client, text)
    assert streamed.usage.input_tokens == whole.usage.input_tokens
    assert streamed.usage.cache_read_input_tokens == 7
    assert streamed.usage.output_tokens == whole.usage.output_tokens
    assert [r["body"]["stream"] for r in e2e.upstream_requests()] == [False, True, True]


# ----- errors after the 200 ----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["cut", "error_chunk", "malformed"])
def test_upstream_failure_mid_stream_is_an_error_event(e2e: E2E, fault: str) -> None:
    e2e.mock.queue_faults(f"{fault}:after_chunks=2")
    raw = e2e.post("/v1/messages", body("this will break"))
    assert raw.status == 200
    names = [name for name, _ in raw.events]
    assert names[0] == "message_start"
    assert names[-1] == "error"
    assert "message_stop" not in names
    assert "message_delta" not in names
    error = raw.events[-1][1]
    assert error["error"]["type"] in ("api_error", "overloaded_error")
    assert error["error"]["message"]
    assert error["request_id"] == raw.headers["request-id"]
    assert [r["fault"] for r in e2e.upstream_requests()] == [fault]  # not retried after the 200


def test_cut_stream_raises_in_the_sdk_instead_of_hanging(e2e: E2E) -> None:
    client = e2e.client(timeout=20.0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        stream_final(client, "[[fault:cut]] break it")
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert len(e2e.upstream_requests()) == 1


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
def test_missing_done_after_finish_is_closed_properly(e2e: E2E, http_client: str) -> None:
    # `cut` after every frame but `[DONE]`: finish_reason and usage arrived, then the connection closed.
    e2e.mock.queue_faults("cut:after_chunks=1000")
    raw = e2e.post("/v1/messages", body("no done marker"), base_url=e2e.proxy(http_client=http_client))
    names = [name for name, _ in raw.events]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert raw.of_type("message_delta")[0]["delta"]["stop_reason"] == "end_turn"
    assert raw.of_type("message_delta")[0]["usage"]["output_tokens"] > 0
    assert e2e.upstream_requests()[0]["fault"] == "cut"


@pytest.mark.parametrize("fault", ["cut", "malformed"])
def test_broken_non_streaming_body_is_a_bad_gateway(e2e: E2E, fault: str) -> None:
    e2e.mock.queue_faults(fault)
    with pytest.raises(anthropic.InternalServerError) as caught:
        send(e2e.client(), "half a body", stream=False)
    assert caught.value.status_code == 502
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert [r["fault"] for r in e2e.upstream_requests()] == [fault]


# ----- keep-alive --------------------------------------------------------------------------------------


def test_ping_while_the_upstream_is_silent(e2e: E2E) -> None:
    url = e2e.proxy(ping_interval_seconds=0.15)
    slow = "[[chunk-delay:0.4]] [[reply:slow answer]] [[chunks:1]]"
    raw = e2e.post("/v1/messages", body(slow), base_url=url)
    assert raw.status == 200
    names = [name for name, _ in raw.events]
    assert names.count("ping") >= 2
    assert names.index("ping") > names.index("message_start")
    check_event_grammar(raw.events)
    assert "".join(d["delta"]["text"] for d in raw.of_type("content_block_delta")) == "slow answer"
    # The SDK skips pings and still rebuilds the message.
    message = stream_final(e2e.client(url), slow)
    assert message.content[-1].text == "slow answer"
    assert len(e2e.upstream_requests()) == 2


# ----- errors before the first byte --------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("fault", "status", "exception", "error_type"),
    [
        ({"fault": "429", "retry_after": 3}, 429, anthropic.RateLimitError, "rate_limit_error"),
        ({"fault": "500"}, 500, anthropic.InternalServerError, "api_error"),
        ({"fault": "503"}, 529, anthropic.APIStatusError, "overloaded_error"),
        ({"fault": "400"}, 400, anthropic.BadRequestError, "invalid_request_error"),
        ({"fault": "context_length"}, 400, anthropic.BadRequestError, "invalid_request_error"),
        ({"fault": "quota"}, 429, anthropic.RateLimitError, "rate_limit_error"),
    ],
    ids=["429", "500", "503", "400", "context", "quota"],
)
def test_upstream_error_before_the_first_byte_is_a_real_http_error(
    e2e: E2E, stream: bool, fault: dict[str, Any], status: int, exception: type[Exception], error_type: str
) -> None:
    client = e2e.client(e2e.proxy(retry_max_attempts=1))
    e2e.mock.queue_faults(fault)
    with pytest.raises(exception) as caught:
        send(client, "fail early", stream=stream)
    error = caught.value
    assert isinstance(error, anthropic.APIStatusError)
    assert error.status_code == status
    assert error.response.headers["content-type"].startswith("application/json")
    assert error.body["error"]["type"] == error_type  # type: ignore[index]
    assert error.request_id
    assert error.request_id.startswith("req_")
    if fault["fault"] == "429":
        assert error.response.headers["retry-after"] == "3"
    if fault["fault"] == "quota":
        assert error.response.headers["x-should-retry"] == "false"
    if fault["fault"] == "context_length":
        assert "prompt is too long" in error.body["error"]["message"]  # type: ignore[index]
    assert len(e2e.upstream_requests()) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_retry_before_the_first_byte_then_success(e2e: E2E, stream: bool) -> None:
    client = e2e.client(e2e.proxy(retry_max_attempts=3), announces_retries=False)
    e2e.mock.queue_faults({"fault": "500"}, {"fault": "429", "retry_after": 0.05})
    message = send(client, "eventually", stream=stream)
    assert message.content[-1].text.startswith("Mock reply to: eventually")
    requests = e2e.upstream_requests()
    assert [r["fault"] for r in requests] == ["500", "429", None]
    assert requests[0]["body"] == requests[2]["body"]


@pytest.mark.parametrize("stream", [False, True])
def test_more_failures_than_attempts_gives_the_error(e2e: E2E, stream: bool) -> None:
    client = e2e.client(e2e.proxy(retry_max_attempts=2), announces_retries=False)
    e2e.mock.queue_faults({"fault": "502"}, {"fault": "500"}, {"fault": "500"})
    with pytest.raises(anthropic.InternalServerError) as caught:
        send(client, "never", stream=stream)
    assert caught.value.status_code == 500
    assert [r["fault"] for r in e2e.upstream_requests()] == ["502", "500"]


# ----- client disconnect -------------------------------------------------------------------------------


def _established(port: int) -> tuple[int, int]:
    """(client-side, server-side) ESTABLISHED IPv4 TCP sockets of `port` on this host."""
    client_side = server_side = 0
    hex_port = f"{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if state != "01":
            continue
        if remote.endswith(":" + hex_port):
            client_side += 1
        if local.endswith(":" + hex_port):
            server_side += 1
    return client_side, server_side


def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


@pytest.fixture(scope="module")
def lonely_mock() -> Iterator[MockUpstreamProcess]:
    """A mock of its own, so the only connections to its port are the ones a test opens."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs /proc/net/tcp to watch the upstream connection")
    with running_mock_upstream() as mock:
        yield mock


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
def test_client_disconnect_mid_stream_cancels_the_upstream_request(
    lonely_mock: MockUpstreamProcess, http_client: str
) -> None:
    lonely_mock.reset()
    # About 60 frames 0.25 s apart: left alone the upstream would stream for ~15 s.
    request = body("[[chunk-delay:0.25]] [[words:120]] [[chunks:60]] a long slow answer")
    with running_proxy(lonely_mock, http_client=http_client) as url, httpx.Client(timeout=30.0) as http:
        assert _established(lonely_mock.port) == (0, 0)
        with http.stream("POST", url + "/v1/messages", json=request, headers={"x-api-key": "k"}) as response:
            assert response.status_code == 200
            # Keep the iterator referenced: dropping it would close the connection early.
            chunks = response.iter_bytes()
            first = next(chunks)
            while b"\n\n" not in first:
                first += next(chunks)
            assert parse_sse(first.decode())[0][0] == "message_start"
            # While the stream runs, the proxy holds exactly one upstream connection.
            assert _established(lonely_mock.port) == (1, 1)
            time.sleep(0.6)
            assert _established(lonely_mock.port) == (1, 1)
            started = time.monotonic()
            response.close()  # the client goes away mid-stream
        # The proxy's side and the mock's side of the upstream connection both go away.
        assert _wait_for(lambda: _established(lonely_mock.port) == (0, 0), timeout=5.0), (
            f"upstream connection still open: {_established(lonely_mock.port)}"
        )
        assert time.monotonic() - started < 10.0  # far less than the ~15 s the stream would take
        (recorded,) = lonely_mock.requests()
        assert recorded["body"]["stream"] is True


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
def test_client_disconnect_before_the_upstream_answers_cancels_it(
    lonely_mock: MockUpstreamProcess, http_client: str
) -> None:
    lonely_mock.reset()
    request = {k: v for k, v in body("[[latency:15]] a slow first byte").items() if k != "stream"}
    outcome: list[BaseException] = []

    def call(url: str) -> None:
        try:
            with httpx.Client(timeout=2.0) as http:
                http.post(url + "/v1/messages", json=request, headers={"x-api-key": "k"})
        except BaseException as exc:
            outcome.append(exc)

    with running_proxy(lonely_mock, http_client=http_client) as url:
        caller = threading.Thread(target=call, args=(url,))
        caller.start()
        # The mock holds the request for 15 s before its first byte; the proxy waits on it.
        assert _wait_for(lambda: _established(lonely_mock.port) == (1, 1), timeout=1.5)
        caller.join(10.0)
        assert len(outcome) == 1
        assert isinstance(outcome[0], httpx.ReadTimeout)
        # The client gave up after 2 s; the proxy must drop the upstream request too.
        assert _wait_for(lambda: _established(lonely_mock.port) == (0, 0), timeout=5.0), (
            f"upstream connection still open: {_established(lonely_mock.port)}"
        )
        assert len(lonely_mock.requests()) == 1
