"""The readers of an Anthropic request (ccproxy_asgi.translate.fields): what they return, and the
message each refusal carries. The translation and the token count both go through them; their own
suites, and tests/tokens/test_same_errors_as_translation.py, show the two agree."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from ccproxy_asgi.errors import InvalidRequestError
from ccproxy_asgi.jsonutil import MAX_NESTING, TOO_DEEP
from ccproxy_asgi.translate import fields


def refusal(read: Callable[[], object]) -> str:
    with pytest.raises(InvalidRequestError) as raised:
        read()
    return raised.value.message


def nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


# --- what the readers return ---------------------------------------------------------------------------


def test_top_level_fields() -> None:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "messages": [],
        "stop_sequences": ["END", "STOP", "END"],
        "metadata": {"user_id": ""},
        "temperature": 0.5,
    }
    assert fields.read_model(body) == "claude-sonnet-4-5"
    assert fields.read_max_tokens(body) == 10
    assert fields.read_messages(body) == []
    assert fields.read_stream(body) is False
    assert fields.read_stop_sequences(body) == ("END", "STOP")
    assert fields.read_user_id(body) is None
    assert fields.read_number(body, "temperature") == 0.5
    assert fields.read_integer(body, "top_k") is None
    assert fields.read_tools(body) is None


def test_tools_and_tool_choice() -> None:
    schema = {"type": "object"}
    custom = {"name": "Read", "input_schema": schema, "description": "d", "strict": True}
    assert fields.read_tool(custom, "tools.0") == ("custom", "Read", "d", schema, True)
    assert fields.read_tool({**custom, "type": "custom"}, "tools.0")[0] == "custom"
    assert fields.read_tool({"type": "bash_20250124", "name": "bash"}, "tools.1") == (
        "bash_20250124",
        "bash",
        None,
        None,
        None,
    )
    assert fields.read_tool_choice({"type": "tool", "name": "Read"}) == ("tool", "Read", None)
    assert fields.read_tool_choice({"type": "any", "disable_parallel_tool_use": True}) == ("any", None, True)


def test_thinking_and_output_config() -> None:
    assert fields.read_thinking({"type": "enabled", "budget_tokens": 2048}) == ("enabled", 2048)
    assert fields.read_thinking({"type": "adaptive"}) == ("adaptive", None)
    output_format = {"type": "json_schema", "schema": {"type": "object"}}
    assert fields.read_output_config({"effort": "max", "format": output_format}) == ("max", output_format)
    assert fields.read_output_format(output_format, "output_format") == {"type": "object"}
    assert fields.output_format_of({"output_format": output_format}) == (output_format, "output_format")
    assert fields.output_format_of({"output_config": {"format": output_format}, "output_format": 5}) == (
        output_format,
        "output_config.format",
    )


def test_messages_and_blocks() -> None:
    assert fields.read_message({"role": "user", "content": "hi"}, "messages.0") == ("user", "hi")
    assert fields.read_user_block_type({"type": "tool_result"}, "p") == "tool_result"
    assert (
        fields.read_assistant_block_type({"type": "web_search_tool_result"}, "p") == "web_search_tool_result"
    )
    assert fields.read_text_blocks("one", "system") == ["one"]
    assert fields.read_text_blocks(
        [{"type": "text", "text": "a"}, {"type": "text", "text": ""}], "system"
    ) == [
        "a",
        "",
    ]
    use = {"type": "tool_use", "id": "t", "name": "Read", "input": {"path": "/a"}}
    assert fields.read_tool_use(use, "p") == ("t", "Read", {"path": "/a"})
    assert fields.read_tool_result({"type": "tool_result", "tool_use_id": "t"}, "p") == ("t", None, None)
    file_image = {"type": "image", "source": {"type": "file", "file_id": "f"}}
    assert fields.read_image(file_image, "p") == {"type": "file", "file_id": "f"}
    document = {"type": "document", "source": {"type": "text", "data": "x"}, "title": "T"}
    assert fields.read_document(document, "p") == ("T", None, {"type": "text", "data": "x"})
    search = {"type": "search_result", "source": "s", "content": [{"type": "text", "text": "x"}]}
    assert fields.read_search_result(search, "p") == ("", "s", ["x"])


def test_json_encoding() -> None:
    assert fields.encode_json({"a": [1, "é"]}, "p") == '{"a":[1,"é"]}'.encode()
    # Integers beyond 64 bits are JSON; orjson refuses them and the standard library takes over.
    assert json.loads(fields.encode_json({"n": 2**70}, "p")) == {"n": 2**70}
    assert (
        refusal(lambda: fields.encode_json({"n": {1, 2}}, "m.input")) == "m.input: Input should be valid JSON"
    )
    assert refusal(lambda: fields.encode_json(nested(1000), "m.input")) == f"m.input: {TOO_DEEP}"


def test_input_schema_nesting_limit() -> None:
    at_limit = {"type": "object", "properties": {"a": nested(MAX_NESTING - 2)}}
    assert fields.read_tool({"name": "x", "input_schema": at_limit}, "tools.0")[3] is at_limit
    past = {"type": "object", "properties": {"a": nested(MAX_NESTING - 1)}}
    message = refusal(lambda: fields.read_tool({"name": "x", "input_schema": past}, "tools.0"))
    assert message == f"tools.0.input_schema: {TOO_DEEP}"


# --- refusals ------------------------------------------------------------------------------------------

REFUSALS: list[tuple[Callable[[], object], str]] = [
    (lambda: fields.read_body([]), "body: Input should be a valid dictionary or object"),
    (lambda: fields.read_model({}), "model: Field required"),
    (lambda: fields.read_model({"model": None}), "model: Field required"),
    (lambda: fields.read_model({"model": 5}), "model: Input should be a valid string"),
    (lambda: fields.read_model({"model": ""}), "model: String should have at least 1 character"),
    (
        lambda: fields.read_messages({"messages": []}, min_items=1),
        "messages: List should have at least 1 item",
    ),
    (lambda: fields.read_stream({"stream": "yes"}), "stream: Input should be a valid boolean"),
    (lambda: fields.read_user_id({"metadata": []}), "metadata: Input should be a valid dictionary or object"),
    (
        lambda: fields.read_message({"role": "system", "content": 5}, "messages.2"),
        "messages.2.content: Input should be a valid string or a list of text blocks",
    ),
    (
        lambda: fields.read_message({"role": "user", "content": None}, "messages.2"),
        "messages.2.content: Input should be a valid string or list",
    ),
    (
        lambda: fields.read_text_blocks([5], "system"),
        "system.0: Input should be a valid dictionary or object",
    ),
    (
        lambda: fields.read_text_blocks([{"type": 3}], "system"),
        "system.0.type: Input should be a valid string",
    ),
    (
        lambda: fields.read_user_block_type({"text": "x"}, "m.0"),
        "m.0: Unable to extract tag using discriminator 'type'",
    ),
    (lambda: fields.read_tool(5, "tools.0"), "tools.0: Input should be a valid dictionary or object"),
    (
        lambda: fields.read_tool({"type": 7, "name": "x"}, "tools.0"),
        "tools.0.type: Input should be a valid string",
    ),
    (
        lambda: fields.read_tool({"name": "", "input_schema": {}}, "tools.0"),
        "tools.0.name: String should have at least 1 character",
    ),
    (
        lambda: fields.read_tool({"type": "web_search_20250305"}, "tools.0"),
        "tools.0.name: Field required",
    ),
    (lambda: fields.read_tool_choice({}), "tool_choice.type: Field required"),
    (lambda: fields.read_tool_choice({"type": "tool"}), "tool_choice.name: Field required"),
    (lambda: fields.read_thinking({}), "thinking: Unable to extract tag using discriminator 'type'"),
    (
        lambda: fields.read_thinking({"type": "enabled", "budget_tokens": True}),
        "thinking.enabled.budget_tokens: Input should be a valid integer",
    ),
    (
        lambda: fields.read_output_format({"type": "json_schema", "schema": []}, "output_format"),
        "output_format.schema: Input should be a valid dictionary",
    ),
    (
        lambda: fields.read_image({"type": "image", "source": {"type": "file"}}, "m.0"),
        "m.0.source.file_id: Field required",
    ),
    (
        lambda: fields.read_image({"type": "image", "source": {}}, "m.0"),
        "m.0.source: Unable to extract tag using discriminator 'type'",
    ),
    (
        lambda: fields.read_document({"type": "document", "source": {"type": "url"}}, "m.0"),
        "m.0.source.url: Field required",
    ),
    (
        lambda: fields.read_document(
            {"type": "document", "source": {"type": "content", "content": 5}}, "m.0"
        ),
        "m.0.source.content: Input should be a valid string or list",
    ),
    (
        lambda: fields.read_source_item_type({"type": "document"}, "m.0.source.content.0"),
        "m.0.source.content.0: Input tag 'document' found using 'type' does not match any of the expected "
        "tags: 'text', 'image'",
    ),
    (
        lambda: fields.read_tool_use({"type": "tool_use", "id": "t", "name": "", "input": {}}, "m.0"),
        "m.0.name: String should have at least 1 character",
    ),
    (
        lambda: fields.read_tool_result({"type": "tool_result", "tool_use_id": "t", "is_error": 1}, "m.0"),
        "m.0.is_error: Input should be a valid boolean",
    ),
    (lambda: fields.read_tool_reference({"type": "tool_reference"}, "m.0"), "m.0.tool_name: Field required"),
    (
        lambda: fields.read_search_result({"type": "search_result", "title": 3}, "m.0"),
        "m.0.title: Input should be a valid string",
    ),
    (lambda: fields.read_mid_conv_system({"type": "mid_conv_system"}, "m.0"), "m.0.content: Field required"),
]


@pytest.mark.parametrize(("read", "expected"), REFUSALS, ids=[expected for _, expected in REFUSALS])
def test_refusals_name_the_field(read: Callable[[], object], expected: str) -> None:
    assert refusal(read).startswith(expected)
