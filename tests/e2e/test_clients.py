"""End to end over both upstream HTTP clients (aiohttp, the default, and httpx), and Claude-Code-sized requests.

The same conversation driven through a proxy on each client must give the client the same messages and
the upstream the same request bodies.
"""

from __future__ import annotations

import json
import re
from typing import Any

import anthropic
import pytest

from tests.fixtures.claude_code_request import build_claude_code_request
from tests.support.e2e import E2E
from tests.support.sdk import first_text

MODEL = "claude-sonnet-4-6"
CLIENTS = ["aiohttp", "httpx"]
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
SYSTEM = [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}]
VALID_OPENAI_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def send(client: anthropic.Anthropic, params: dict[str, Any], *, stream: bool) -> Any:
    if stream:
        with client.messages.stream(**params) as events:
            return events.get_final_message()
    return client.messages.create(**params)


def normalized(message: Any) -> dict[str, Any]:
    """A message without its random id, for comparing runs."""
    data: dict[str, Any] = message.model_dump(exclude_none=True)
    data.pop("id")
    return data


def conversation(client: anthropic.Anthropic) -> list[dict[str, Any]]:
    """A short Claude-Code-like agent loop: thinking + tool call, the result, a streamed answer."""
    history: list[Any] = [
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": '[[reasoning:reasoning]] [[text-then-tool:get_weather {"city": "Oslo"}]] go',
                }
            ],
        }
    ]
    params: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 2048,
        "system": SYSTEM,
        "tools": [WEATHER],
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "medium"},
        "betas": ["interleaved-thinking-2025-05-14"],
    }
    first = client.beta.messages.create(**params, messages=history)
    call = next(block for block in first.content if block.type == "tool_use")
    history += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"},
                {"type": "text", "text": "[[cached:4]] summarize"},
            ],
        },
    ]
    with client.beta.messages.stream(**params, messages=history) as stream:
        second = stream.get_final_message()
    with client.beta.messages.stream(**params, messages=[*history[:1]]) as stream:
        third = stream.get_final_message()
    return [normalized(first), normalized(second), normalized(third)]


def test_same_conversation_through_aiohttp_and_httpx(e2e: E2E) -> None:
    results: dict[str, list[dict[str, Any]]] = {}
    bodies: dict[str, list[dict[str, Any]]] = {}
    for name in CLIENTS:
        e2e.mock.clear_requests()
        results[name] = conversation(e2e.client(e2e.proxy(http_client=name)))
        bodies[name] = [r["body"] for r in e2e.upstream_requests()]
    assert results["aiohttp"] == results["httpx"]
    assert bodies["aiohttp"] == bodies["httpx"]
    first, second, third = results["aiohttp"]
    assert [b["type"] for b in first["content"]] == ["thinking", "text", "tool_use"]
    assert first["stop_reason"] == "tool_use"
    assert second["content"][-1]["text"] == "Tool get_weather returned: Sunny, 21 C"
    assert second["usage"]["cache_read_input_tokens"] == 4
    assert third == first
    # The upstream got the tool history back: the call as tool_calls, the result as a tool message.
    history = bodies["httpx"][1]["messages"]
    assert [m["role"] for m in history] == ["system", "user", "assistant", "tool", "user"]
    assert history[2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert history[3]["content"] == "Sunny, 21 C"


@pytest.mark.parametrize("http_client", CLIENTS)
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_rate_limit_is_a_real_429_on_both_clients(e2e: E2E, http_client: str, stream: bool) -> None:
    client = e2e.client(e2e.proxy(http_client=http_client, retry_max_attempts=1))
    e2e.mock.queue_faults({"fault": "429", "retry_after": 7})
    params: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "limited"}],
    }
    with pytest.raises(anthropic.RateLimitError) as caught:
        send(client, params, stream=stream)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert [r["fault"] for r in e2e.upstream_requests()] == ["429"]


@pytest.mark.parametrize("http_client", CLIENTS)
def test_retry_then_success_on_both_clients(e2e: E2E, http_client: str) -> None:
    client = e2e.client(e2e.proxy(http_client=http_client, retry_max_attempts=2), announces_retries=False)
    e2e.mock.queue_faults({"fault": "503"})
    with client.messages.stream(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "second time lucky"}]
    ) as events:
        message = events.get_final_message()
    assert first_text(message.content).startswith("Mock reply to: second time lucky")
    assert [r["fault"] for r in e2e.upstream_requests()] == ["503", None]


@pytest.mark.parametrize("http_client", CLIENTS)
def test_cut_stream_is_an_error_event_on_both_clients(e2e: E2E, http_client: str) -> None:
    url = e2e.proxy(http_client=http_client)
    raw = e2e.post(
        "/v1/messages",
        {
            "model": MODEL,
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "[[fault:cut]] x"}],
        },
        base_url=url,
    )
    names = [name for name, _ in raw.events]
    assert names[0] == "message_start"
    assert names[-1] == "error"
    assert "message_stop" not in names
    assert [r["fault"] for r in e2e.upstream_requests()] == ["cut"]


@pytest.mark.parametrize("http_client", CLIENTS)
@pytest.mark.parametrize("stream", [False, True])
def test_claude_code_sized_request(e2e: E2E, http_client: str, stream: bool) -> None:
    request = build_claude_code_request(stream=stream, include_system_message=True)
    request["model"] = MODEL
    known = ("model", "max_tokens", "system", "messages", "tools", "thinking", "output_config", "metadata")
    params = {k: request[k] for k in known}
    extra_body = {k: v for k, v in request.items() if k not in (*known, "stream")}
    client = e2e.client(e2e.proxy(http_client=http_client))
    if stream:
        with client.beta.messages.stream(
            **params, extra_body=extra_body, betas=["claude-code-20250219"]
        ) as events:
            message = events.get_final_message()
    else:
        message = client.beta.messages.create(**params, extra_body=extra_body, betas=["claude-code-20250219"])

    assert message.model == MODEL
    assert message.stop_reason == "end_turn"
    assert message.content[-1].type == "text"
    assert message.content[-1].text
    assert message.usage.input_tokens > 10_000

    upstream = e2e.upstream_body()
    assert upstream["stream"] is stream
    functions = [tool["function"] for tool in upstream["tools"]]
    assert len(functions) == 24
    assert all(VALID_OPENAI_NAME.fullmatch(f["name"]) for f in functions)
    original = {tool["name"]: tool for tool in request["tools"]}
    renamed = [f["name"] for f in functions if f["name"] not in original]
    assert len(renamed) == 1
    assert renamed[0].startswith("mcp__plugin_playwright")
    # The ~19 KB description goes upstream whole (no limit by default) and is not repeated elsewhere.
    bash = next(f for f in functions if f["name"] == "Bash")
    assert len(original["Bash"]["description"]) > 18_000
    assert bash["description"] == original["Bash"]["description"]
    system = upstream["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You are Claude Code, Anthropic's official CLI for Claude.")
    assert original["Bash"]["description"] not in system["content"]
    assert all("$schema" not in f["parameters"] for f in functions)
    roles = [m["role"] for m in upstream["messages"]]
    assert roles.count("system") == 2
    assert roles[-2:] == ["system", "user"]
    assert roles.count("tool") == sum(
        1
        for m in request["messages"]
        if m["role"] == "user"
        for b in m["content"]
        if isinstance(b, dict) and b.get("type") == "tool_result"
    )
    assert len(upstream["user"]) <= 64
    assert "reasoning_effort" not in upstream
    assert upstream["temperature"] == 1
    assert "context_management" not in json.dumps(upstream)
    assert "cache_control" not in json.dumps(upstream)


def test_claude_code_request_to_a_reasoning_model(e2e: E2E) -> None:
    request = build_claude_code_request(stream=True)
    request["model"] = MODEL
    known = ("model", "max_tokens", "system", "messages", "tools", "thinking", "output_config", "metadata")
    params = {k: request[k] for k in known}
    client = e2e.client(e2e.proxy(big_model="gpt-5"))
    with client.beta.messages.stream(
        **params, extra_body={"temperature": 1}, betas=["claude-code-20250219"]
    ) as events:
        message = events.get_final_message()
    assert message.stop_reason == "end_turn"
    upstream = e2e.upstream_body()
    assert upstream["model"] == "gpt-5"
    assert upstream["reasoning_effort"] == "high"  # adaptive thinking with output_config.effort "high"
    assert upstream["max_completion_tokens"] == 32000
    assert "temperature" not in upstream
    assert len(upstream["tools"]) == 24
