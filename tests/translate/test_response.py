"""Non-streaming OpenAI completion → Anthropic Message (docs/protocol.md#response-message)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from anthropic.types import Message

from ccproxy_asgi.errors import (
    OverloadedError,
    ProxyError,
    RateLimitError,
    UpstreamError,
    UpstreamTimeoutError,
)
from ccproxy_asgi.translate.identifiers import EMPTY_TOOL_NAME_MAP, ToolNameMap
from ccproxy_asgi.translate.response import (
    find_stop_sequence,
    tool_input,
    translate_response,
    usage_from_openai,
)


def completion(
    message: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = "stop",
    usage: dict[str, Any] | None = None,
    **choice_extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello.", **(message or {})},
                "finish_reason": finish_reason,
                **choice_extra,
            }
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def translate(
    body: Any, stop_sequences: Sequence[str] = (), tool_names: ToolNameMap = EMPTY_TOOL_NAME_MAP
) -> dict[str, Any]:
    result = translate_response(
        body, requested_model="claude-sonnet-4-5", tool_names=tool_names, stop_sequences=stop_sequences
    )
    Message.model_validate(result)  # the official type accepts it
    return result


# ----- finish_reason → stop_reason (docs/protocol.md#stop-reasons-and-stop-sequences) -----------------


@pytest.mark.parametrize(
    ("finish_reason", "expected"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("tool_calls", "end_turn"),  # claimed, but no call came: nothing to run
        (None, "end_turn"),
        ("eos", "end_turn"),
    ],
)
def test_finish_reason_without_tool_calls(finish_reason: str | None, expected: str) -> None:
    result = translate(completion(finish_reason=finish_reason))
    assert (result["stop_reason"], result["stop_sequence"]) == (expected, None)


def test_missing_finish_reason_key() -> None:
    body = completion()
    del body["choices"][0]["finish_reason"]
    assert translate(body)["stop_reason"] == "end_turn"


@pytest.mark.parametrize("finish_reason", ["tool_calls", "stop", None, "function_call"])
def test_tool_calls_present_mean_tool_use(finish_reason: str | None) -> None:
    body = completion(
        {"content": None, "tool_calls": [call("call_1", "f", "{}")]}, finish_reason=finish_reason
    )
    assert translate(body)["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("finish_reason", "expected"), [("length", "max_tokens"), ("content_filter", "refusal")]
)
def test_cut_or_filtered_tool_calls_are_not_tool_use(finish_reason: str, expected: str) -> None:
    body = completion({"tool_calls": [call("call_1", "f", '{"a":')]}, finish_reason=finish_reason)
    assert translate(body)["stop_reason"] == expected


def test_deprecated_function_call() -> None:
    body = completion(
        {"content": None, "function_call": {"name": "f", "arguments": '{"x":1}'}},
        finish_reason="function_call",
    )
    result = translate(body)
    assert result["stop_reason"] == "tool_use"
    [block] = result["content"]
    assert block["type"] == "tool_use"
    assert block["id"].startswith("toolu_")
    assert (block["name"], block["input"]) == ("f", {"x": 1})


def test_vllm_stop_reason_naming_a_client_stop_sequence() -> None:
    body = completion({"content": "Count: 1, 2"}, stop_reason="END")
    result = translate(body, stop_sequences=["END", "STOP"])
    assert (result["stop_reason"], result["stop_sequence"]) == ("stop_sequence", "END")
    assert result["content"] == [{"type": "text", "text": "Count: 1, 2"}]


def test_vllm_stop_reason_when_the_upstream_was_told_the_sequences() -> None:
    # The request translator sent the sequences upstream, so the response side gets none to check.
    result = translate(completion(stop_reason="###"))
    assert (result["stop_reason"], result["stop_sequence"]) == ("stop_sequence", "###")


@pytest.mark.parametrize("vllm_stop", [None, 50256, "OTHER", ""])
def test_vllm_stop_reason_not_a_client_sequence(vllm_stop: Any) -> None:
    body = completion(stop_reason=vllm_stop)
    assert translate(body, stop_sequences=["END"])["stop_reason"] == "end_turn"


def test_vllm_stop_reason_needs_finish_reason_stop() -> None:
    body = completion(finish_reason="length", stop_reason="END")
    assert translate(body, stop_sequences=["END"])["stop_reason"] == "max_tokens"


# ----- proxy-side stop sequences (docs/protocol.md#stop-reasons-and-stop-sequences) -------------------


def test_stop_sequence_found_in_text_truncates_it() -> None:
    body = completion({"content": "one two STOP three"}, finish_reason="length")
    result = translate(body, stop_sequences=["STOP"])
    assert result["content"] == [{"type": "text", "text": "one two "}]
    assert (result["stop_reason"], result["stop_sequence"]) == ("stop_sequence", "STOP")


def test_stop_sequence_drops_tool_calls_generated_after_it() -> None:
    body = completion(
        {"content": "Let me look.\n\nHuman: hi", "tool_calls": [call("call_1", "f", "{}")]},
        finish_reason="tool_calls",
    )
    result = translate(body, stop_sequences=["\n\nHuman:"])
    assert result["content"] == [{"type": "text", "text": "Let me look."}]
    assert result["stop_reason"] == "stop_sequence"


def test_stop_sequence_at_the_very_start_leaves_an_empty_text_block() -> None:
    result = translate(completion({"content": "STOP and more"}), stop_sequences=["STOP"])
    assert result["content"] == [{"type": "text", "text": ""}]
    assert result["stop_sequence"] == "STOP"


def test_no_stop_sequence_in_text() -> None:
    result = translate(completion({"content": "all fine"}), stop_sequences=["STOP"])
    assert result["content"] == [{"type": "text", "text": "all fine"}]
    assert result["stop_reason"] == "end_turn"


def test_stop_sequence_that_completes_first_wins() -> None:
    # "bc" is complete at position 3, before "abcd" is; on equal ends the longer (earlier) one wins.
    assert find_stop_sequence("xabcd", ["abcd", "bc"]) == (2, "bc")
    assert find_stop_sequence("xabcd", ["cd", "abcd"]) == (1, "abcd")
    assert find_stop_sequence("xabcd", ["", "zz"]) is None


# ----- blocks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_becomes_a_thinking_block_first(field: str) -> None:
    body = completion(
        {"content": "Answer.", field: "Let me think.", "tool_calls": [call("call_9", "f", '{"q":"x"}')]},
        finish_reason="tool_calls",
    )
    assert translate(body)["content"] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": ""},
        {"type": "text", "text": "Answer."},
        {"type": "tool_use", "id": "call_9", "name": "f", "input": {"q": "x"}},
    ]


def test_reasoning_content_wins_over_reasoning() -> None:
    body = completion({"reasoning_content": "A", "reasoning": "B"})
    assert translate(body)["content"][0]["thinking"] == "A"


def test_refusal_is_text_when_content_is_null() -> None:
    body = completion({"content": None, "refusal": "I can't help with that."}, finish_reason="stop")
    assert translate(body)["content"] == [{"type": "text", "text": "I can't help with that."}]


def test_content_wins_over_refusal() -> None:
    body = completion({"content": "Sure.", "refusal": "no"})
    assert translate(body)["content"] == [{"type": "text", "text": "Sure."}]


def test_nothing_at_all_gives_one_empty_text_block() -> None:
    assert translate(completion({"content": None}))["content"] == [{"type": "text", "text": ""}]
    assert translate(completion({"content": ""}))["content"] == [{"type": "text", "text": ""}]


def test_content_parts_are_joined() -> None:
    body = completion(
        {"content": [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]}
    )
    assert translate(body)["content"] == [{"type": "text", "text": "ab"}]


def test_tool_names_are_mapped_back_and_ids_kept() -> None:
    names = ToolNameMap(to_upstream={"mcp:fs/read": "mcp_fs_read"}, to_client={"mcp_fs_read": "mcp:fs/read"})
    body = completion(
        {
            "content": None,
            "tool_calls": [call("call_A", "mcp_fs_read", '{"p":1}'), call("call_B", "other", "{}")],
        },
        finish_reason="tool_calls",
    )
    blocks = translate(body, tool_names=names)["content"]
    assert [(b["id"], b["name"]) for b in blocks] == [("call_A", "mcp:fs/read"), ("call_B", "other")]


def test_missing_tool_call_id_is_generated() -> None:
    body = completion({"tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]})
    block = translate(body)["content"][1]
    assert block["id"].startswith("toolu_")
    assert len(block["id"]) == 30


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ("", {}),
        ("  ", {}),
        (None, {}),
        ('{"a": [1, {"b": null}]}', {"a": [1, {"b": None}]}),
        ({"already": "parsed"}, {"already": "parsed"}),
        ('{"a": ', {"_raw": '{"a": '}),
        ("[1, 2]", {"_raw": "[1, 2]"}),
        ('"text"', {"_raw": '"text"'}),
        (42, {"_raw": "42"}),
    ],
)
def test_tool_arguments(arguments: Any, expected: dict[str, Any]) -> None:
    assert tool_input(arguments) == expected
    body = completion({"tool_calls": [call("call_1", "f", arguments)]})
    assert translate(body)["content"][-1]["input"] == expected


def test_message_envelope() -> None:
    result = translate_response(
        completion(), requested_model="claude-x", tool_names=EMPTY_TOOL_NAME_MAP, message_id="msg_fixed"
    )
    assert {k: result[k] for k in ("id", "type", "role", "model")} == {
        "id": "msg_fixed",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
    }
    generated = translate(completion())["id"]
    assert generated.startswith("msg_")
    assert len(generated) == 28


# ----- usage (docs/protocol.md#usage) -----------------------------------------------------------------


def test_usage_with_cache_reads_and_writes() -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 300,
        "total_tokens": 1300,
        "prompt_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 120},
    }
    assert translate(completion(usage=usage))["usage"] == {
        "input_tokens": 300,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 600,
        "output_tokens": 300,
        "output_tokens_details": {"thinking_tokens": 120},
    }


def test_usage_plain() -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    assert usage_from_openai(usage) == {
        "input_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 5,
    }


def test_usage_zero_reasoning_tokens_adds_no_details() -> None:
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "completion_tokens_details": {"reasoning_tokens": 0}}
    assert "output_tokens_details" not in usage_from_openai(usage)


def test_usage_deepseek_cache_fields() -> None:
    usage = {
        "prompt_tokens": 900,
        "completion_tokens": 10,
        "prompt_cache_hit_tokens": 700,
        "prompt_cache_miss_tokens": 200,
    }
    result = usage_from_openai(usage)
    assert (result["input_tokens"], result["cache_read_input_tokens"]) == (200, 700)


def test_usage_prefers_openai_cached_tokens_over_deepseek_fields() -> None:
    usage = {
        "prompt_tokens": 900,
        "completion_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 700},
        "prompt_cache_hit_tokens": 700,
        "prompt_cache_miss_tokens": 200,
    }
    result = usage_from_openai(usage)
    assert (result["input_tokens"], result["cache_read_input_tokens"]) == (200, 700)


def test_usage_garbage_values_count_as_zero() -> None:
    usage = {"prompt_tokens": "12", "completion_tokens": None, "prompt_tokens_details": [1], "x": 1}
    assert usage_from_openai(usage)["input_tokens"] == 0
    assert usage_from_openai(None)["output_tokens"] == 0
    assert usage_from_openai({"prompt_tokens": 10.0, "completion_tokens": True})["input_tokens"] == 10


def test_missing_usage_uses_the_estimate() -> None:
    result = translate_response(
        completion({"content": "12345678"}),
        requested_model="m",
        tool_names=EMPTY_TOOL_NAME_MAP,
        input_tokens_estimate=77,
    )
    assert result["usage"] == {
        "input_tokens": 77,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 2,
    }


# ----- invalid bodies --------------------------------------------------------------------------------


def _bad_choices(choices: Any) -> dict[str, Any]:
    return {"id": "x", "choices": choices}


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "text",
        {},
        _bad_choices(None),
        _bad_choices([]),
        _bad_choices({"0": {}}),
        _bad_choices(["x"]),
        _bad_choices([{"index": 0}]),
        _bad_choices([{"message": "hi"}]),
        completion({"content": 5}),
        completion({"tool_calls": {"id": "x"}}),
        completion({"tool_calls": ["x"]}),
        completion({"tool_calls": [{"id": "x", "function": {"arguments": "{}"}}]}),
        completion({"tool_calls": [{"id": "x"}]}),
    ],
)
def test_invalid_bodies_raise_upstream_error(body: Any) -> None:
    with pytest.raises(UpstreamError, match="invalid upstream response"):
        translate_response(body, requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ({"message": "slow down", "type": "rate_limit_exceeded", "code": None}, RateLimitError),
        ({"message": "busy", "code": 429}, RateLimitError),
        ({"message": "busy", "code": "503"}, OverloadedError),
        ({"message": "took too long", "type": "timeout"}, UpstreamTimeoutError),
        ({"message": "boom", "type": "server_error"}, UpstreamError),
        ("plain string error", UpstreamError),
    ],
)
def test_error_body_with_200_is_mapped(error: Any, kind: type[ProxyError]) -> None:
    with pytest.raises(kind) as info:
        translate_response({"error": error}, requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP)
    assert type(info.value) is kind
    assert info.value.message.startswith("upstream error: ")
