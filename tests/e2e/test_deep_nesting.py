"""Deeply nested JSON is the client's 400 with the field named, never the proxy's 500.

orjson parses 1024 levels but encodes only about 254, and the standard library recurses; a tool schema
nested 1,000 levels deep used to reach the upstream encoder and come back as a 500 with a traceback.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import orjson
import pytest

from ccproxy_asgi.errors import InvalidRequestError
from ccproxy_asgi.jsonutil import MAX_NESTING
from ccproxy_asgi.tokens.counter import TokenCounter
from ccproxy_asgi.translate.options import TranslationOptions, default_profile
from ccproxy_asgi.translate.request import translate_request
from tests.support.e2e import E2E

MODEL = "claude-sonnet-4-6"
PATHS = ["/v1/messages", "/v1/messages/count_tokens"]


def nested_schema_json(levels: int) -> str:
    """An object schema `levels` objects deep (the schema itself is level 1), as JSON text: the
    standard library cannot encode it past its recursion limit."""
    return '{"type":"object","properties":{"a":' * (levels - 1) + '{"type":"string"}' + "}}" * (levels - 1)


def nested_list_json(levels: int) -> str:
    return "[" * levels + "]" * levels


def body_json(*, tools: str = "", extra: str = "", content: str = '"hi"') -> bytes:
    tools_part = f', "tools": [{tools}]' if tools else ""
    return (
        f'{{"model": "{MODEL}", "max_tokens": 16, "messages": [{{"role": "user", "content": {content}}}]'
        f"{tools_part}{extra}}}"
    ).encode()


def tool_json(schema: str) -> str:
    return f'{{"name": "deep", "description": "d", "input_schema": {schema}}}'


def assert_too_deep(e2e: E2E, path: str, content: bytes, field: str) -> None:
    response = e2e.post(path, content)
    assert response.status == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{field}: nested too deeply"), error["message"]
    assert f"limit {MAX_NESTING}" in error["message"]
    assert response.json()["request_id"].startswith("req_")
    assert e2e.upstream_requests() == []


@pytest.mark.parametrize("path", PATHS)
def test_thousand_level_input_schema_is_a_400(e2e: E2E, path: str) -> None:
    # 2 levels per step: 500 steps = 1,000 levels, under the parser's 1,024.
    schema = nested_schema_json(500)
    assert_too_deep(e2e, path, body_json(tools=tool_json(schema)), "tools.0.input_schema")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("levels", [MAX_NESTING + 1, 250, 1000])
def test_input_schema_past_the_limit_is_a_400(e2e: E2E, path: str, levels: int) -> None:
    # Arrays of arrays under one property: `levels` levels in all, counting the schema and `properties`.
    schema = '{"type":"object","properties":{"a":' + nested_list_json(levels - 2) + "}}"
    tools = tool_json('{"type":"object"}') + ", " + tool_json(schema).replace('"deep"', '"deeper"')
    assert_too_deep(e2e, path, body_json(tools=tools), "tools.1.input_schema")


@pytest.mark.parametrize("path", PATHS)
def test_input_schema_at_the_limit_is_accepted(e2e: E2E, path: str) -> None:
    schema = '{"type":"object","properties":{"a":' + nested_list_json(MAX_NESTING - 2) + "}}"
    response = e2e.post(path, body_json(tools=tool_json(schema)))
    assert response.status == 200, response.text


@pytest.mark.parametrize("path", PATHS)
def test_deep_output_schema_is_a_400(e2e: E2E, path: str) -> None:
    extra = (
        ', "output_config": {"format": {"type": "json_schema", "schema": ' + nested_schema_json(300) + "}}"
    )
    assert_too_deep(e2e, path, body_json(extra=extra), "output_config.format.schema")


@pytest.mark.parametrize("path", PATHS)
def test_tool_input_too_deep_to_encode_is_a_400(e2e: E2E, path: str) -> None:
    content = (
        '[{"type": "tool_use", "id": "toolu_1", "name": "deep", "input": {"a": '
        + nested_list_json(900)
        + "}}]"
    )
    body = (
        f'{{"model": "{MODEL}", "max_tokens": 16, "tools": [{tool_json("{}")}], "messages": ['
        '{"role": "user", "content": "go"}, '
        f'{{"role": "assistant", "content": {content}}}, '
        '{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}'
        "]}"
    ).encode()
    assert_too_deep(e2e, path, body, "messages.1.content.0.input")


@pytest.mark.parametrize("path", PATHS)
def test_body_past_the_parser_depth_is_a_400(e2e: E2E, path: str) -> None:
    response = e2e.post(path, body_json(extra=', "metadata": {"x": ' + nested_list_json(5000) + "}"))
    assert response.status == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert e2e.upstream_requests() == []


# --- every place a deep value can hide, translation and count alike -------------------------------------


def deep(levels: int) -> Any:
    value: Any = {"leaf": 1}
    for index in range(levels - 1):
        value = [value] if index % 2 else {"k": value}
    return value


BASE: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": 16,
    "metadata": {"user_id": "u"},
    "system": [{"type": "text", "text": "sys"}],
    "tools": [{"name": "t", "description": "d", "input_schema": {"type": "object", "properties": {}}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "r"}]},
                {"type": "text", "text": "next"},
            ],
        },
    ],
}

# Where a deep value is put: a path of keys and indexes into BASE, the last one being set.
PLACES: list[tuple[Any, ...]] = [
    ("tools", 0, "input_schema", "properties", "p"),
    ("tools", 0, "input_schema", "$defs"),
    ("tools", 0, "extra"),
    ("messages", 1, "content", 0, "input", "arg"),
    ("messages", 0, "content", 0, "citations"),
    ("messages", 0, "content", 0, "cache_control"),
    ("messages", 2, "content", 0, "content", 0, "extra"),
    ("messages", 2, "content", 0, "extra"),
    ("messages", 0, "extra"),
    ("system", 0, "extra"),
    ("metadata",),
    ("metadata", "user_id"),
    ("tool_choice",),
    ("thinking",),
    ("output_config",),
    ("unknown_top_level",),
    ("stop_sequences",),
]


def with_value_at(place: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    node: Any = body
    for key in place[:-1]:
        node = node[key]
    node[place[-1]] = value
    return body


@pytest.mark.parametrize("levels", [MAX_NESTING + 1, 300, 1000])
@pytest.mark.parametrize("place", PLACES, ids=lambda place: ".".join(map(str, place)))
def test_no_deep_value_escapes_as_anything_but_a_400(place: tuple[Any, ...], levels: int) -> None:
    body = with_value_at(place, deep(levels))
    # Anything but the client's InvalidRequestError (RecursionError, the encoder's TypeError) fails here.
    try:
        translated = translate_request(
            body, upstream_model="gpt-4o", profile=default_profile("gpt-4o"), options=TranslationOptions()
        )
    except InvalidRequestError:
        pass
    else:
        orjson.dumps(translated.payload)  # what goes upstream can be encoded
    with contextlib.suppress(InvalidRequestError):
        TokenCounter().count_request(body, model="gpt-4o")
