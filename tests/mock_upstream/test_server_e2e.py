"""The mock upstream as a real process, driven by the official `openai` SDK."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
)

from ccproxy_asgi.mock_upstream import MockConfig, plan_reply
from ccproxy_asgi.mock_upstream.config import DEFAULT_MODELS
from ccproxy_asgi.tokens.openai_chat import count_chat_prompt_tokens
from tests.support.mock_process import MockUpstreamError, MockUpstreamProcess, mock_upstream_fixture

mock_upstream = mock_upstream_fixture("--chunks", "4", scope="module")
knobbed_upstream = mock_upstream_fixture(
    "--tool-call",
    'lookup={"q":"default"}',
    "--stop-reason",
    "--cached-tokens",
    "5",
    "--error-shape",
    "vllm",
    scope="module",
    env={"CCPROXY_MOCK_REASONING": "reasoning", "CCPROXY_MOCK_REPLY_WORDS": "6"},
)

MODEL = "gpt-4o"
WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "unit": {"enum": ["C", "F"]},
            },
            "required": ["city", "days"],
        },
    },
}
LOOKUP_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
}


def client_for(mock: MockUpstreamProcess, **kwargs: Any) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=mock.openai_base_url, api_key="test", max_retries=0, **kwargs)


def user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


def function_calls(completion: ChatCompletion) -> list[ChatCompletionMessageFunctionToolCall]:
    calls = completion.choices[0].message.tool_calls or []
    return [c for c in calls if isinstance(c, ChatCompletionMessageFunctionToolCall)]


def arguments_of(completion: ChatCompletion) -> list[Any]:
    return [json.loads(c.function.arguments) for c in function_calls(completion)]


async def drain(stream: AsyncStream[ChatCompletionChunk], into: list[ChatCompletionChunk]) -> None:
    async for chunk in stream:
        into.append(chunk)


@pytest.fixture(autouse=True)
def _fresh_mocks(request: pytest.FixtureRequest) -> None:
    for name in ("mock_upstream", "knobbed_upstream"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


# ----- replies ----------------------------------------------------------------------------------------


async def test_plain_reply_is_predictable_and_counted(mock_upstream: MockUpstreamProcess) -> None:
    messages = user("Hello there, what is the capital of Norway?")
    body = {"model": MODEL, "messages": messages}
    raw = await client_for(mock_upstream).chat.completions.with_raw_response.create(
        model=MODEL, messages=messages
    )
    completion = raw.parse()
    expected = plan_reply(body, MockConfig())
    assert completion.choices[0].message.content == expected.content
    assert expected.content.startswith("Mock reply to: Hello there, what is the capital of Norw")
    assert len(expected.content.split()) == 12
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == count_chat_prompt_tokens(body) == expected.prompt_tokens
    assert completion.usage.completion_tokens == expected.completion_tokens > 0
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-ratelimit-limit-requests"] == "10000"
    assert raw.headers["x-ratelimit-reset-tokens"] == "0s"


async def test_stream_chunks_usage_and_done(mock_upstream: MockUpstreamProcess) -> None:
    messages = user("Stream this please")
    body = {"model": MODEL, "messages": messages}
    stream = await client_for(mock_upstream).chat.completions.create(
        model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]  # ends only if the SDK saw [DONE]
    first, *middle, final, usage_chunk = chunks
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    assert len(middle) == 4  # --chunks 4
    assert "".join(c.choices[0].delta.content or "" for c in middle) == plan_reply(body, MockConfig()).content
    assert all(c.usage is None for c in chunks[:-1])
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].delta.content is None
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.prompt_tokens == count_chat_prompt_tokens(body)
    assert len({c.id for c in chunks}) == 1


async def test_stream_without_usage_option_has_no_usage_chunk(mock_upstream: MockUpstreamProcess) -> None:
    stream = await client_for(mock_upstream).chat.completions.create(
        model=MODEL, messages=user("hi"), stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None and c.choices for c in chunks)


async def test_parallel_tool_calls_assembled_by_sdk_stream_helper(mock_upstream: MockUpstreamProcess) -> None:
    oslo, rome = '{"city": "Oslo", "days": 2}', '{"city": "Rome", "days": 1}'
    text = f"Both. [[tool:get_weather {oslo}]] [[tool:get_weather {rome}]]"
    async with client_for(mock_upstream).chat.completions.stream(
        model=MODEL, messages=user(text), tools=[WEATHER_TOOL]
    ) as stream:
        argument_deltas = [
            e async for e in stream if e.type == "tool_calls.function.arguments.delta" and e.arguments_delta
        ]
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"city": "Oslo", "days": 2},
        {"city": "Rome", "days": 1},
    ]
    assert all(c.id.startswith("call_") for c in calls)
    assert len(argument_deltas) == 6  # 3 argument pieces per call
    assert not choice.message.content


async def test_tool_directive_without_args_uses_schema(mock_upstream: MockUpstreamProcess) -> None:
    completion = await client_for(mock_upstream).chat.completions.create(
        model=MODEL, messages=user("[[tool:get_weather]]"), tools=[WEATHER_TOOL]
    )
    assert arguments_of(completion) == [{"city": "mock", "days": 1}]
    assert completion.choices[0].message.content is None


async def test_unoffered_tool_directive_is_ignored(mock_upstream: MockUpstreamProcess) -> None:
    completion = await client_for(mock_upstream).chat.completions.create(
        model=MODEL, messages=user("[[tool:delete_everything]] go"), tools=[WEATHER_TOOL]
    )
    assert completion.choices[0].message.tool_calls is None
    assert (
        completion.choices[0].message.content
        == plan_reply(
            {"model": MODEL, "messages": user("[[tool:delete_everything]] go")}, MockConfig()
        ).content
    )


async def test_text_then_tool(mock_upstream: MockUpstreamProcess) -> None:
    completion = await client_for(mock_upstream).chat.completions.create(
        model=MODEL,
        messages=user('[[text-then-tool:get_weather {"city":"Oslo","days":3}]]'),
        tools=[WEATHER_TOOL],
    )
    message = completion.choices[0].message
    assert message.content == "Let me check."
    assert [c.function.name for c in function_calls(completion)] == ["get_weather"]


async def test_tool_result_gets_text_not_another_call(mock_upstream: MockUpstreamProcess) -> None:
    client = client_for(mock_upstream)
    messages = user('[[tool:get_weather {"city":"Oslo","days":1}]]')
    first = await client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    call = (first.choices[0].message.tool_calls or [])[0]
    assert call.type == "function"
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny,   12 C\nwind 3 m/s " + "x" * 80},
    ]
    second = await client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.tool_calls is None
    expected = "Tool get_weather returned: " + ("Sunny, 12 C wind 3 m/s " + "x" * 80)[:60]
    assert second.choices[0].message.content == expected


async def test_stop_and_max_tokens(mock_upstream: MockUpstreamProcess) -> None:
    client = client_for(mock_upstream)
    stopped = await client.chat.completions.create(
        model=MODEL, messages=user("alpha beta END gamma"), stop=["END"]
    )
    assert stopped.choices[0].message.content == "Mock reply to: alpha beta "
    assert stopped.choices[0].finish_reason == "stop"
    capped = await client.chat.completions.create(
        model=MODEL, messages=user("long answer"), max_completion_tokens=3
    )
    assert capped.choices[0].finish_reason == "length"
    assert capped.usage is not None
    assert capped.usage.completion_tokens == 3
    assert capped.choices[0].message.content == "Mock reply to"


async def test_per_request_reasoning_and_words(mock_upstream: MockUpstreamProcess) -> None:
    completion = await client_for(mock_upstream).chat.completions.create(
        model=MODEL,
        messages=user("think [[words:30]]"),
        extra_headers={"x-mock-reasoning": "reasoning_content"},
    )
    message = completion.choices[0].message
    assert (message.model_extra or {})["reasoning_content"] == "Considering: think"
    assert len((message.content or "").split()) == 30
    assert completion.usage is not None
    assert completion.usage.completion_tokens_details is not None
    assert (completion.usage.completion_tokens_details.reasoning_tokens or 0) > 0


async def test_knobs_from_flags_and_environment(knobbed_upstream: MockUpstreamProcess) -> None:
    client = client_for(knobbed_upstream)
    called = await client.chat.completions.create(model=MODEL, messages=user("anything"), tools=[LOOKUP_TOOL])
    assert arguments_of(called) == [{"q": "default"}]
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=user("one two STOP three"),
        stop="STOP",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning") or "" for c in chunks if c.choices
    )
    assert reasoning == "Considering: one two STOP three"
    finals = [c.choices[0] for c in chunks if c.choices and c.choices[0].finish_reason]
    assert (finals[0].model_extra or {})["stop_reason"] == "STOP"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens_details is not None
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 5
    plain = await client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert len((plain.choices[0].message.content or "").split()) == 6


# ----- faults -----------------------------------------------------------------------------------------


async def test_fault_header_429_carries_retry_after(mock_upstream: MockUpstreamProcess) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await client_for(mock_upstream).chat.completions.create(
            model=MODEL, messages=user("hi"), extra_headers={"x-mock-fault": "429:retry_after=2"}
        )
    headers = caught.value.response.headers
    assert headers["retry-after"] == "2"
    assert headers["retry-after-ms"] == "2000"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "2s"
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.request_id is not None


@pytest.mark.parametrize(
    ("spec", "error", "code"),
    [
        ("500", openai.InternalServerError, None),
        ("503", openai.InternalServerError, "server_is_overloaded"),
        ("401", openai.AuthenticationError, "invalid_api_key"),
        ('{"fault":"quota"}', openai.RateLimitError, "insufficient_quota"),
        ("context_length", openai.BadRequestError, "context_length_exceeded"),
        ("error_chunk", openai.InternalServerError, None),
    ],
)
async def test_fault_header_errors(
    mock_upstream: MockUpstreamProcess, spec: str, error: type[openai.APIStatusError], code: str | None
) -> None:
    with pytest.raises(error) as caught:
        await client_for(mock_upstream).chat.completions.create(
            model=MODEL, messages=user("hi"), extra_headers={"x-mock-fault": spec}
        )
    assert caught.value.code == code


async def test_queued_faults_are_consumed_in_order(mock_upstream: MockUpstreamProcess) -> None:
    assert mock_upstream.queue_faults({"fault": "429", "retry_after": 0.5}, {"fault": "500"}, "none") == 3
    client = client_for(mock_upstream)
    with pytest.raises(openai.RateLimitError) as limited:
        await client.chat.completions.create(model=MODEL, messages=user("1"))
    assert limited.value.response.headers["retry-after-ms"] == "500"
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model=MODEL, messages=user("2"))
    await client.chat.completions.create(model=MODEL, messages=user("3"))
    await client.chat.completions.create(model=MODEL, messages=user("4"))
    assert [r["fault"] for r in mock_upstream.requests()] == ["429", "500", None, None]


async def test_sdk_retries_through_queued_faults(mock_upstream: MockUpstreamProcess) -> None:
    mock_upstream.queue_faults({"fault": "503"}, {"fault": "429", "retry_after": 0.05})
    client = AsyncOpenAI(base_url=mock_upstream.openai_base_url, api_key="test", max_retries=2)
    completion = await client.chat.completions.create(model=MODEL, messages=user("retry me"))
    assert completion.choices[0].message.content
    assert [r["headers"].get("x-stainless-retry-count") for r in mock_upstream.requests()] == ["0", "1", "2"]


def test_invalid_fault_is_refused(mock_upstream: MockUpstreamProcess) -> None:
    with pytest.raises(MockUpstreamError, match="400"):
        mock_upstream.queue_faults({"fault": "explode"})
    assert mock_upstream.call("GET", "/mock/faults") == {"faults": []}


async def test_cut_stream_raises_after_some_chunks(mock_upstream: MockUpstreamProcess) -> None:
    mock_upstream.queue_faults({"fault": "cut", "after_chunks": 3})
    received: list[ChatCompletionChunk] = []
    stream = await client_for(mock_upstream).chat.completions.create(
        model=MODEL, messages=user("hi"), stream=True
    )
    with pytest.raises(openai.APIConnectionError):
        await drain(stream, received)
    assert len(received) == 3
    assert all(not c.choices[0].finish_reason for c in received)


async def test_malformed_chunk_raises(mock_upstream: MockUpstreamProcess) -> None:
    stream = await client_for(mock_upstream).chat.completions.create(
        model=MODEL,
        messages=user("hi"),
        stream=True,
        extra_headers={"x-mock-fault": "malformed:after_chunks=2"},
    )
    received: list[ChatCompletionChunk] = []
    with pytest.raises(json.JSONDecodeError):
        await drain(stream, received)
    assert len(received) == 2


async def test_error_chunk_mid_stream_raises_api_error(mock_upstream: MockUpstreamProcess) -> None:
    mock_upstream.queue_faults({"fault": "error_chunk", "after_chunks": 2, "message": "boom"})
    stream = await client_for(mock_upstream).chat.completions.create(
        model=MODEL, messages=user("hi"), stream=True
    )
    with pytest.raises(openai.APIError, match="boom"):
        await drain(stream, [])


async def test_slow_and_hang(mock_upstream: MockUpstreamProcess) -> None:
    client = client_for(mock_upstream)
    mock_upstream.queue_faults({"fault": "slow", "delay": 0.4}, {"fault": "hang"})
    started = time.monotonic()
    await client.chat.completions.create(model=MODEL, messages=user("slow"))
    assert time.monotonic() - started >= 0.4
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model=MODEL, messages=user("hang"), timeout=0.3)
    started = time.monotonic()
    await client.chat.completions.create(model=MODEL, messages=user("fine again"))
    assert time.monotonic() - started < 0.3


async def test_latency_headers(mock_upstream: MockUpstreamProcess) -> None:
    started = time.monotonic()
    stream = await client_for(mock_upstream).chat.completions.create(
        model=MODEL,
        messages=user("hi"),
        stream=True,
        extra_headers={"x-mock-latency": "0.2", "x-mock-chunk-delay": "0.05", "x-mock-chunks": "3"},
    )
    chunks = [c async for c in stream]
    assert len(chunks) == 5
    assert time.monotonic() - started >= 0.2 + 4 * 0.05


def test_vllm_error_shape(knobbed_upstream: MockUpstreamProcess) -> None:
    with pytest.raises(MockUpstreamError) as caught:
        knobbed_upstream.call("POST", "/v1/chat/completions", {"model": MODEL, "messages": []})
    body = json.loads(str(caught.value).split(": ", 1)[1])
    assert body == {
        "object": "error",
        "message": "Invalid 'messages': empty array or not an array.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": 400,
    }


async def test_account_limits_give_honest_retry_after() -> None:
    from tests.support.mock_process import running_mock_upstream

    with running_mock_upstream("--rpm-limit", "2", "--limit-window", "0.6") as mock:
        client = client_for(mock)
        for _ in range(2):
            raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=user("x"))
        assert raw.headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model=MODEL, messages=user("x"))
        wait_ms = int(caught.value.response.headers["retry-after-ms"])
        assert 0 < wait_ms <= 600
        await asyncio.sleep(wait_ms / 1000 + 0.02)
        await client.chat.completions.create(model=MODEL, messages=user("x"))


# ----- models, recording, process -------------------------------------------------------------------


async def test_models(mock_upstream: MockUpstreamProcess) -> None:
    client = client_for(mock_upstream)
    assert [m.id async for m in client.models.list()] == list(DEFAULT_MODELS)
    assert (await client.models.retrieve("gpt-5")).owned_by == "mock-upstream"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("no-such-model")


async def test_recording(mock_upstream: MockUpstreamProcess) -> None:
    client = client_for(mock_upstream)
    messages = user("record me")
    await client.chat.completions.create(
        model=MODEL, messages=messages, temperature=0.5, extra_headers={"x-request-id": "req_abc"}
    )
    (entry,) = await mock_upstream.arequests()
    assert entry["method"] == "POST"
    assert entry["path"] == "/v1/chat/completions"
    assert entry["headers"]["authorization"] == "Bearer test"
    assert entry["headers"]["x-request-id"] == "req_abc"
    assert entry["body"] == {"model": MODEL, "messages": messages, "temperature": 0.5}
    assert entry["timestamp"] > 0
    mock_upstream.clear_requests()
    assert mock_upstream.requests() == []


def test_port_zero_and_clean_stop() -> None:
    from tests.support.mock_process import start_mock_upstream

    mock = start_mock_upstream()
    port = mock.port
    assert port not in (0, 8083)
    assert mock.stop() == 0
    assert mock.process.poll() == 0
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_server_logged_no_errors(
    mock_upstream: MockUpstreamProcess, knobbed_upstream: MockUpstreamProcess
) -> None:
    # Runs last: faults (cut, hang, malformed) must not make the server itself fail or log tracebacks.
    for mock in (mock_upstream, knobbed_upstream):
        assert mock.process.poll() is None
        assert "Traceback" not in mock.output()
        assert "Error handling request" not in mock.output()
