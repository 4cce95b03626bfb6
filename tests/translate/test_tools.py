"""Tool definitions, names, ids and tool_choice (ccproxy_asgi.translate.tools)."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from ccproxy_asgi.errors import InvalidRequestError
from ccproxy_asgi.translate.options import ModelProfile, TranslationOptions
from ccproxy_asgi.translate.tools import (
    ToolNamer,
    is_valid_openai_name,
    rewrite_tool_name,
    strict_compatible,
    translate_tool_choice,
    translate_tools,
    upstream_tool_call_id,
)

OPENAI_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
PROFILE = ModelProfile()
OPTIONS = TranslationOptions()


def _tool(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "input_schema": {"type": "object", "properties": {}}, **extra}


def _translate(tools: Any, profile: ModelProfile = PROFILE, options: TranslationOptions = OPTIONS) -> Any:
    return translate_tools(tools, namer=ToolNamer(), profile=profile, options=options)


# --- names ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Bash", "mcp__server__tool-name", "a", "x" * 64, "snake_case-1"])
def test_valid_names_are_kept(name: str) -> None:
    namer = ToolNamer()
    assert namer.upstream(name) == name
    assert namer.name_map().to_upstream == {}


@pytest.mark.parametrize(
    "name",
    [
        "my.tool",
        "has space",
        "x" * 65,
        "mcp__plugin_playwright__" + "a" * 80,
        "日本語",
        "tool/with/slashes",
        "ü",
    ],
)
def test_invalid_names_are_rewritten_readably_and_map_back(name: str) -> None:
    namer = ToolNamer()
    upstream = namer.upstream(name)
    assert OPENAI_NAME.fullmatch(upstream)
    assert upstream != name
    assert namer.name_map().client_name(upstream) == name
    assert namer.name_map().upstream_name(name) == upstream
    # Deterministic: a second request rewrites it the same way (upstream prompt caches stay warm).
    assert ToolNamer().upstream(name) == upstream


def test_rewrite_keeps_a_readable_prefix() -> None:
    assert rewrite_tool_name("my.tool").startswith("my_tool_")
    assert rewrite_tool_name("日本語").startswith("tool_")
    long_name = "mcp__plugin_playwright_playwright__browser_take_screenshot_of_the_full_page"
    assert rewrite_tool_name(long_name).startswith(long_name[:55])
    assert len(rewrite_tool_name(long_name)) == 64


def test_names_differing_only_in_invalid_characters_stay_distinct() -> None:
    namer = ToolNamer()
    a, b, c = namer.upstream("a.b"), namer.upstream("a/b"), namer.upstream("a b")
    assert len({a, b, c}) == 3
    names = namer.name_map()
    assert [names.client_name(x) for x in (a, b, c)] == ["a.b", "a/b", "a b"]


def test_rewrite_colliding_with_a_real_name_is_made_unique() -> None:
    namer = ToolNamer()
    taken = rewrite_tool_name("my.tool")
    assert namer.upstream(taken) == taken  # a client tool literally called like the rewrite
    other = namer.upstream("my.tool")
    assert other != taken
    assert OPENAI_NAME.fullmatch(other)
    names = namer.name_map()
    assert names.client_name(other) == "my.tool"
    assert names.client_name(taken) == taken


def test_is_valid_openai_name() -> None:
    assert is_valid_openai_name("Read")
    assert not is_valid_openai_name("")
    assert not is_valid_openai_name("a" * 65)
    assert not is_valid_openai_name("a.b")


# --- tool-call ids -------------------------------------------------------------------------------------


def test_valid_tool_call_ids_are_kept() -> None:
    assert upstream_tool_call_id("toolu_01D7FLrfh4GYq7yT1ULFeyMV") == "toolu_01D7FLrfh4GYq7yT1ULFeyMV"
    assert upstream_tool_call_id("call_abc-123") == "call_abc-123"


@pytest.mark.parametrize("client_id", ["x" * 65, "call:1", "id with space", "ü", "a.b"])
def test_odd_tool_call_ids_are_rewritten_deterministically(client_id: str) -> None:
    upstream = upstream_tool_call_id(client_id)
    assert OPENAI_NAME.fullmatch(upstream)
    assert upstream == upstream_tool_call_id(client_id)
    assert upstream != upstream_tool_call_id(client_id + "x")


def test_alnum9_ids_for_mistral_templates() -> None:
    for client_id in ("toolu_01D7FLrfh4GYq7yT1ULFeyMV", "call_1", "x" * 100):
        upstream = upstream_tool_call_id(client_id, "alnum9")
        assert re.fullmatch(r"[A-Za-z0-9]{9}", upstream)
        assert upstream == upstream_tool_call_id(client_id, "alnum9")
    assert upstream_tool_call_id("abcDEF123", "alnum9") == "abcDEF123"


# --- strict-mode compatibility -------------------------------------------------------------------------


def test_strict_compatible_schemas() -> None:
    closed: dict[str, Any] = {
        "type": "object",
        "properties": {
            "a": {"type": "string"},
            "b": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"c": {"type": "integer"}},
                    "required": ["c"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["a", "b"],
        "additionalProperties": False,
    }
    assert strict_compatible(closed)
    assert not strict_compatible({**closed, "required": ["a"]})
    assert not strict_compatible({k: v for k, v in closed.items() if k != "additionalProperties"})
    nested_open = {
        **closed,
        "properties": {**closed["properties"], "d": {"type": "object", "properties": {}}},
    }
    nested_open["required"] = ["a", "b", "d"]
    assert not strict_compatible(nested_open)
    assert not strict_compatible({**closed, "allOf": [{"type": "object"}]})
    assert not strict_compatible(
        {"type": "object", "properties": {}, "additionalProperties": False, "required": [[1]]}
    )


def test_strict_check_survives_deep_nesting() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(5000):
        schema = {"type": "array", "items": schema}
    assert strict_compatible(schema)


# --- tools ---------------------------------------------------------------------------------------------


def test_custom_tool_becomes_a_function() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"path": {"type": "string"}},
        "required": ["path"],
        "additionalProperties": False,
    }
    tool = {
        "name": "Read",
        "description": "Read a file",
        "input_schema": schema,
        "cache_control": {"type": "ephemeral"},
    }
    out = _translate([tool])
    assert out.tools == [
        {
            "type": "function",
            "function": {
                "name": "Read",
                "description": "Read a file",
                "parameters": {k: v for k, v in schema.items() if k != "$schema"},
            },
        }
    ]
    assert schema["$schema"]  # the client's dict is not modified
    assert out.offered == {"Read"}


def test_type_custom_and_missing_description() -> None:
    out = _translate([{"type": "custom", "name": "x", "input_schema": {"type": "object"}}])
    assert out.tools[0]["function"] == {"name": "x", "parameters": {"type": "object"}}


def test_strict_forwarded_only_when_the_schema_allows_it() -> None:
    closed = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    out = _translate([{"name": "ok", "input_schema": closed, "strict": True}])
    assert out.tools[0]["function"]["strict"] is True
    out = _translate([{"name": "open", "input_schema": {"type": "object", "properties": {}}, "strict": True}])
    assert "strict" not in out.tools[0]["function"]
    assert any("strict" in w for w in out.warnings)
    out = _translate([{"name": "never", "input_schema": closed}])
    assert "strict" not in out.tools[0]["function"]


def test_long_descriptions_are_cut_to_the_profile_limit() -> None:
    description = "word " * 1000
    profile = ModelProfile(max_tool_description_chars=1024)
    out = _translate([_tool("Bash", description=description)], profile=profile)
    short = out.tools[0]["function"]["description"]
    assert len(short) <= 1024
    assert short.startswith("word word")
    assert "system prompt" in short
    assert out.long_descriptions == [("Bash", description)]
    assert (
        _translate([_tool("Bash", description=description)]).tools[0]["function"]["description"]
        == description
    )


@pytest.mark.parametrize(
    ("kind", "name", "required_property"),
    [
        ("bash_20250124", "bash", "command"),
        ("text_editor_20250124", "str_replace_editor", "path"),
        ("text_editor_20250728", "str_replace_based_edit_tool", "path"),
        ("memory_20250818", "memory", "command"),
        ("computer_20250124", "computer", "action"),
    ],
)
def test_client_executed_anthropic_tools_get_a_schema(kind: str, name: str, required_property: str) -> None:
    out = _translate([{"type": kind, "name": name}])
    function = out.tools[0]["function"]
    assert function["name"] == name
    assert function["parameters"]["type"] == "object"
    assert required_property in function["parameters"]["properties"]
    assert function["description"]
    assert out.offered == {name}


def test_bash_schema_has_command_and_restart() -> None:
    properties = _translate([{"type": "bash_20250124", "name": "bash"}]).tools[0]["function"]["parameters"][
        "properties"
    ]
    assert set(properties) == {"command", "restart"}


@pytest.mark.parametrize(
    "kind",
    [
        "web_search_20250305",
        "web_fetch_20250910",
        "code_execution_20250825",
        "tool_search_tool_bm25_20251119",
        "browser_toolset_20260801",
        "something_new_20270101",
    ],
)
def test_server_tools_are_rejected_naming_the_tool(kind: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        _translate([_tool("Read"), {"type": kind, "name": "the_server_tool"}])
    assert "tools.1" in info.value.message
    assert "the_server_tool" in info.value.message
    assert kind in info.value.message


def test_server_tools_are_dropped_with_a_logged_warning(caplog: pytest.LogCaptureFixture) -> None:
    options = TranslationOptions(server_tools="drop")
    with caplog.at_level(logging.WARNING, logger="ccproxy_asgi.translate.tools"):
        out = _translate(
            [_tool("Read"), {"type": "web_search_20250305", "name": "web_search"}], options=options
        )
    assert [t["function"]["name"] for t in out.tools] == ["Read"]
    assert any("web_search" in w for w in out.warnings)
    assert any("web_search" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("tools", "fragment"),
    [
        ("nope", "tools: Input should be a valid list"),
        ([1], "tools.0: Input should be a valid dictionary or object"),
        ([{"input_schema": {"type": "object"}}], "tools.0.name: Field required"),
        ([{"name": "", "input_schema": {"type": "object"}}], "tools.0.name"),
        ([{"name": 3, "input_schema": {"type": "object"}}], "tools.0.name"),
        ([{"name": "x"}], "tools.0.input_schema: Field required"),
        ([{"name": "x", "input_schema": []}], "tools.0.input_schema"),
        ([{"name": "x", "input_schema": {"type": "string"}}], "tools.0.input_schema.type"),
        ([{"name": "x", "input_schema": {"type": "object"}, "description": 5}], "tools.0.description"),
        ([{"name": "x", "input_schema": {"type": "object"}, "strict": "yes"}], "tools.0.strict"),
        ([_tool("x"), _tool("x")], "unique"),
        ([{"type": 7, "name": "x"}], "tools.0.type"),
    ],
)
def test_malformed_tools(tools: Any, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        _translate(tools)
    assert fragment in info.value.message


# --- tool_choice ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, ("auto", None)),
        ({"type": "any"}, ("required", None)),
        ({"type": "none"}, ("none", None)),
        ({"type": "tool", "name": "Read"}, ({"type": "function", "function": {"name": "Read"}}, None)),
        ({"type": "auto", "disable_parallel_tool_use": True}, ("auto", False)),
        ({"type": "any", "disable_parallel_tool_use": True}, ("required", False)),
        (
            {"type": "tool", "name": "Read", "disable_parallel_tool_use": False},
            ({"type": "function", "function": {"name": "Read"}}, None),
        ),
        (None, (None, None)),
    ],
)
def test_tool_choice_mapping(choice: Any, expected: Any) -> None:
    assert translate_tool_choice(choice, namer=ToolNamer(), offered={"Read"}) == expected


def test_tool_choice_uses_the_rewritten_name() -> None:
    namer = ToolNamer()
    upstream = namer.upstream("my.tool")
    choice, _ = translate_tool_choice({"type": "tool", "name": "my.tool"}, namer=namer, offered={"my.tool"})
    assert choice == {"type": "function", "function": {"name": upstream}}


@pytest.mark.parametrize(
    ("choice", "fragment"),
    [
        ("auto", "tool_choice: Input should be a valid dictionary or object"),
        ({"type": "sometimes"}, "Input tag 'sometimes'"),
        ({}, "tool_choice.type: Field required"),
        ({"type": "tool"}, "tool_choice.name: Field required"),
        ({"type": "tool", "name": "Missing"}, "'Missing' is not among"),
        ({"type": "auto", "disable_parallel_tool_use": "yes"}, "disable_parallel_tool_use"),
    ],
)
def test_malformed_tool_choice(choice: Any, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        translate_tool_choice(choice, namer=ToolNamer(), offered={"Read"})
    assert fragment in info.value.message
