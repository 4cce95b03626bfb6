"""End to end: tools, tool_choice, tool_use/tool_result history and tool names, both ways through the proxy."""

from __future__ import annotations

import json
import re
from typing import Any

import anthropic
import pytest

from tests.support.e2e import E2E

MODEL = "claude-sonnet-4-6"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
CLOCK = {
    "name": "get_time",
    "description": "Local time in a time zone.",
    "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
}
LONG_NAME = "mcp__plugin_playwright_playwright__browser_take_screenshot_of_the_full_page_now"
ODD = {"name": "my.tool name", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}
LONG = {"name": LONG_NAME, "input_schema": {"type": "object", "properties": {"full": {"type": "boolean"}}}}
VALID_OPENAI_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def create(client: anthropic.Anthropic, stream: bool, **params: Any) -> Any:
    params.setdefault("model", MODEL)
    params.setdefault("max_tokens", 1024)
    params.setdefault(
        "system", [{"type": "text", "text": "Use tools.", "cache_control": {"type": "ephemeral"}}]
    )
    if stream:
        with client.beta.messages.stream(**params) as events:
            return events.get_final_message()
    return client.beta.messages.create(**params)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def function_names(body: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools", [])]


@pytest.mark.parametrize("stream", [False, True])
def test_tools_become_functions_and_tool_calls_come_back_as_tool_use(e2e: E2E, stream: bool) -> None:
    prompt = '[[text-then-tool:get_weather {"city": "Oslo"}]] [[tool:get_time {"tz": "UTC"}]] go'
    message = create(e2e.client(), stream, tools=[WEATHER, CLOCK], messages=[user(prompt)])
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[0].text == "Let me check."
    assert (message.content[1].name, message.content[1].input) == ("get_weather", {"city": "Oslo"})
    assert (message.content[2].name, message.content[2].input) == ("get_time", {"tz": "UTC"})
    assert message.stop_reason == "tool_use"
    upstream = e2e.upstream_body()
    weather, clock = upstream["tools"]
    assert weather == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
    assert clock["function"]["name"] == "get_time"
    assert clock["function"]["parameters"] == CLOCK["input_schema"]
    assert "tool_choice" not in upstream
    assert "parallel_tool_calls" not in upstream


@pytest.mark.parametrize("stream", [False, True])
def test_tool_history_becomes_tool_calls_and_tool_messages(e2e: E2E, stream: bool) -> None:
    messages = [
        user("weather and time in Oslo?"),
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "I need two tools.", "signature": "c2ln"},
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {"tz": "Europe/Oslo"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "Sunny, 21 C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01B",
                    "is_error": True,
                    "content": [{"type": "text", "text": "clock"}, {"type": "text", "text": "unavailable"}],
                },
            ],
        },
    ]
    message = create(e2e.client(), stream, tools=[WEATHER, CLOCK], messages=messages)
    # The mock answers tool results by name, so the results reached it paired with the right calls.
    assert message.content[-1].text == (
        "Tool get_weather returned: Sunny, 21 C\nTool get_time returned: [tool error] clock unavailable"
    )
    assert message.stop_reason == "end_turn"
    upstream_messages = e2e.upstream_body()["messages"]
    assert [m["role"] for m in upstream_messages] == ["system", "user", "assistant", "tool", "tool"]
    assistant = upstream_messages[2]
    assert assistant["content"] == "Checking both."
    assert [(c["id"], c["type"], c["function"]["name"]) for c in assistant["tool_calls"]] == [
        ("toolu_01A", "function", "get_weather"),
        ("toolu_01B", "function", "get_time"),
    ]
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Oslo"}
    assert json.loads(assistant["tool_calls"][1]["function"]["arguments"]) == {"tz": "Europe/Oslo"}
    assert "I need two tools" not in json.dumps(upstream_messages)
    assert upstream_messages[3] == {"role": "tool", "tool_call_id": "toolu_01A", "content": "Sunny, 21 C"}
    assert upstream_messages[4]["tool_call_id"] == "toolu_01B"
    assert upstream_messages[4]["content"] == "[tool error] clock\n\nunavailable"


def test_tool_only_turn_has_null_content_and_result_images_follow_the_tool_messages(e2e: E2E) -> None:
    messages = [
        user("take a screenshot"),
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_02",
                    "content": [
                        {"type": "text", "text": "screenshot attached"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                    ],
                },
                {"type": "text", "text": "what do you see?"},
            ],
        },
    ]
    message = create(e2e.client(), False, tools=[WEATHER], messages=messages)
    assert message.content[-1].type == "text"
    upstream_messages = e2e.upstream_body()["messages"]
    assert [m["role"] for m in upstream_messages] == ["system", "user", "assistant", "tool", "user", "user"]
    assistant, tool, attachments, own = upstream_messages[2:]
    assert assistant["content"] is None
    assert assistant["tool_calls"][0]["function"]["arguments"] == "{}"
    assert tool["role"] == "tool"
    assert tool["tool_call_id"] == "toolu_02"
    assert tool["content"].startswith("screenshot attached")
    image_parts = [p for p in attachments["content"] if p["type"] == "image_url"]
    assert image_parts == [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]
    assert own == {"role": "user", "content": "what do you see?"}


@pytest.mark.parametrize("stream", [False, True])
def test_odd_tool_names_are_rewritten_and_mapped_back(e2e: E2E, stream: bool) -> None:
    messages = [
        user("earlier"),
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_03", "name": LONG_NAME, "input": {"full": True}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_03", "content": "done"}]},
        {"role": "assistant", "content": "Took it."},
        user("now search"),
    ]
    message = create(
        e2e.client(),
        stream,
        tools=[WEATHER, ODD, LONG],
        tool_choice={"type": "tool", "name": "my.tool name"},
        messages=messages,
    )
    (call,) = [b for b in message.content if b.type == "tool_use"]
    assert call.name == "my.tool name"
    upstream = e2e.upstream_body()
    names = function_names(upstream)
    assert names[0] == "get_weather"
    assert all(VALID_OPENAI_NAME.fullmatch(name) for name in names)
    assert names[1] != ODD["name"]
    assert names[2] != LONG_NAME
    assert upstream["tool_choice"] == {"type": "function", "function": {"name": names[1]}}
    # The history uses the same rewritten name as the tool list.
    history_call = next(m for m in upstream["messages"] if m.get("tool_calls"))
    assert history_call["tool_calls"][0]["function"]["name"] == names[2]


@pytest.mark.parametrize(
    ("choice", "expected", "called"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", "get_weather"),
        (
            {"type": "tool", "name": "get_time"},
            {"type": "function", "function": {"name": "get_time"}},
            "get_time",
        ),
        ({"type": "none"}, "none", None),
    ],
    ids=["auto", "any", "tool", "none"],
)
@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_mapping(
    e2e: E2E, choice: dict[str, Any], expected: Any, called: str | None, stream: bool
) -> None:
    message = create(e2e.client(), stream, tools=[WEATHER, CLOCK], tool_choice=choice, messages=[user("hi")])
    upstream = e2e.upstream_body()
    assert upstream["tool_choice"] == expected
    assert "parallel_tool_calls" not in upstream
    tool_uses = [b.name for b in message.content if b.type == "tool_use"]
    assert tool_uses == ([called] if called else [])
    assert message.stop_reason == ("tool_use" if called else "end_turn")


def test_disable_parallel_tool_use_only_with_tools(e2e: E2E) -> None:
    client = e2e.client()
    prompt = '[[tool:get_weather {"city": "Rome"}]] [[tool:get_time {"tz": "CET"}]] both'
    message = create(
        client,
        False,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        messages=[user(prompt)],
    )
    assert [b.name for b in message.content if b.type == "tool_use"] == ["get_weather"]
    with_tools = e2e.upstream_requests()[0]["body"]
    assert with_tools["parallel_tool_calls"] is False
    assert with_tools["tool_choice"] == "auto"

    e2e.mock.clear_requests()
    no_tools: tuple[list[Any], None] = ([], None)
    for tools in no_tools:
        extra: dict[str, Any] = {} if tools is None else {"tools": tools}
        create(
            client,
            False,
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
            messages=[user("no tools here")],
            **extra,
        )
    for request in e2e.upstream_requests():
        body = request["body"]
        for absent in ("tools", "tool_choice", "parallel_tool_calls"):
            assert absent not in body


def test_empty_tools_list_is_not_forwarded(e2e: E2E) -> None:
    message = create(e2e.client(), True, tools=[], messages=[user("plain")])
    assert message.content[-1].text.startswith("Mock reply to: plain")
    assert "tools" not in e2e.upstream_body()


@pytest.mark.parametrize(
    "server_tool",
    [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"type": "code_execution_20250825", "name": "code_execution"},
        {"type": "web_fetch_20250910", "name": "web_fetch"},
    ],
    ids=["web_search", "code_execution", "web_fetch"],
)
def test_server_tools_refused_or_dropped(e2e: E2E, server_tool: dict[str, Any]) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        create(e2e.client(), False, tools=[WEATHER, server_tool], messages=[user("search")])
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error"
    assert server_tool["type"] in error["message"]
    assert "server tool" in error["message"]
    assert e2e.upstream_requests() == []

    dropping = e2e.client(e2e.proxy(server_tools="drop"))
    message = create(dropping, True, tools=[WEATHER, server_tool], messages=[user("search")])
    assert message.content[-1].type == "text"
    assert function_names(e2e.upstream_body()) == ["get_weather"]


def test_client_executed_anthropic_tools_become_functions(e2e: E2E) -> None:
    tools = [
        {"type": "bash_20250124", "name": "bash"},
        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
    ]
    message = create(
        e2e.client(), False, tools=tools, messages=[user('[[tool:bash {"command": "ls -la"}]] list files')]
    )
    (call,) = [b for b in message.content if b.type == "tool_use"]
    assert (call.name, call.input) == ("bash", {"command": "ls -la"})
    upstream_tools = e2e.upstream_body()["tools"]
    assert function_names(e2e.upstream_body()) == ["bash", "str_replace_based_edit_tool"]
    assert upstream_tools[0]["function"]["parameters"]["properties"]["command"]["type"] == "string"
