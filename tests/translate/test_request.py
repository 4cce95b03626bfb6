"""Anthropic Messages request → OpenAI chat.completions body (ccproxy_asgi.translate.request)."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any

import pytest

from ccproxy_asgi.errors import InvalidRequestError
from ccproxy_asgi.translate.options import EffortThresholds, ModelProfile, TranslationOptions, default_profile
from ccproxy_asgi.translate.request import TranslatedRequest, translate_request
from ccproxy_asgi.translate.tools import rewrite_tool_name, upstream_tool_call_id
from tests.fixtures.claude_code_request import build_claude_code_request

PLAIN = ModelProfile()  # not reasoning, max_tokens, no top_k, 4 stop sequences
REASONING = default_profile("gpt-5")
OPTIONS = TranslationOptions()
PNG = "iVBORw0KGgo="


def _body(messages: Any = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": messages if messages is not None else [{"role": "user", "content": "Hello"}],
    }
    body.update(fields)
    return body


def _run(
    body: dict[str, Any],
    profile: ModelProfile = PLAIN,
    options: TranslationOptions = OPTIONS,
    model: str = "upstream-model",
) -> TranslatedRequest:
    return translate_request(body, upstream_model=model, profile=profile, options=options)


def _messages(body: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = _run(body, **kwargs).payload["messages"]
    return messages


def _error(body: Any, **kwargs: Any) -> str:
    with pytest.raises(InvalidRequestError) as info:
        _run(body, **kwargs)
    return info.value.message


def _tool_use(tool_id: str, name: str = "Read", arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": tool_id,
        "name": name,
        "input": arguments if arguments is not None else {},
    }


def _tool_result(tool_id: str, content: Any = "ok", **extra: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": content, **extra}


def _image(data: str = PNG) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}


def _tool_turns(*results: dict[str, Any], calls: tuple[str, ...] = ("t1",)) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": [_tool_use(c) for c in calls]},
        {"role": "user", "content": list(results)},
    ]


# --- basics --------------------------------------------------------------------------------------------


def test_minimal_request() -> None:
    translated = _run(_body())
    assert translated.payload == {
        "model": "upstream-model",
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 1024,
        "stream": False,
    }
    assert translated.requested_model == "claude-sonnet-4-5"
    assert translated.stream is False
    assert translated.stop_sequences == ()
    assert translated.warnings == []


def test_streaming_asks_for_usage() -> None:
    translated = _run(_body(stream=True))
    assert translated.stream is True
    assert translated.payload["stream"] is True
    assert translated.payload["stream_options"] == {"include_usage": True}


def test_input_is_not_modified() -> None:
    body = build_claude_code_request()
    before = copy.deepcopy(body)
    _run(body, profile=REASONING)
    assert body == before


def test_unknown_top_level_fields_are_tolerated_and_not_forwarded() -> None:
    body = _body(
        context_management={"edits": [{"type": "clear_thinking_20251015"}]},
        service_tier="auto",
        container="container_1",
        cache_control={"type": "ephemeral"},
        inference_geo="us",
        mcp_servers=[{"name": "x"}],
        brand_new_field={"anything": [1, 2]},
    )
    payload = _run(body).payload
    assert set(payload) == {"model", "messages", "max_tokens", "stream"}


def test_never_sets_n() -> None:
    payload = _run(build_claude_code_request(), profile=REASONING).payload
    assert "n" not in payload


def test_assistant_first_is_accepted() -> None:
    messages = _messages(
        _body([{"role": "assistant", "content": "How can I help?"}, {"role": "user", "content": "Hi"}])
    )
    assert [m["role"] for m in messages] == ["assistant", "user"]


# --- system --------------------------------------------------------------------------------------------


def test_system_string() -> None:
    assert _messages(_body(system="Be brief."))[0] == {"role": "system", "content": "Be brief."}


def test_system_blocks_are_joined_and_cache_control_dropped() -> None:
    system = [
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Rules.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    assert _messages(_body(system=system))[0] == {
        "role": "system",
        "content": "You are Claude Code.\n\nRules.",
    }


def test_empty_system_is_omitted() -> None:
    assert _messages(_body(system=""))[0]["role"] == "user"
    assert _messages(_body(system=[]))[0]["role"] == "user"


def test_system_role_messages_stay_in_place() -> None:
    messages = _messages(
        _body(
            [
                {"role": "user", "content": "a"},
                {"role": "system", "content": "switch to plan mode"},
                {"role": "assistant", "content": "b"},
                {"role": "system", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]},
                {"role": "user", "content": "c"},
            ],
            system="top",
        )
    )
    assert messages == [
        {"role": "system", "content": "top"},
        {"role": "user", "content": "a"},
        {"role": "system", "content": "switch to plan mode"},
        {"role": "assistant", "content": "b"},
        {"role": "system", "content": "x\n\ny"},
        {"role": "user", "content": "c"},
    ]


def test_mid_conv_system_block_splits_the_user_message() -> None:
    content = [
        {"type": "text", "text": "before"},
        {"type": "mid_conv_system", "content": [{"type": "text", "text": "new instructions"}]},
        {"type": "text", "text": "after"},
    ]
    assert _messages(_body([{"role": "user", "content": content}])) == [
        {"role": "user", "content": "before"},
        {"role": "system", "content": "new instructions"},
        {"role": "user", "content": "after"},
    ]


def test_system_message_between_tool_use_and_result_waits_for_the_results() -> None:
    messages = _messages(
        _body(
            [
                {"role": "user", "content": "Go"},
                {"role": "assistant", "content": [_tool_use("t1")]},
                {"role": "system", "content": "reminder"},
                {"role": "user", "content": [_tool_result("t1"), {"type": "text", "text": "next"}]},
            ]
        )
    )
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "system", "user"]


# --- user content --------------------------------------------------------------------------------------


def test_single_text_block_becomes_a_string_and_several_become_parts() -> None:
    one = _messages(
        _body(
            [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
                }
            ]
        )
    )
    assert one == [{"role": "user", "content": "hi"}]
    two = _messages(
        _body(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "a"},
                        {"type": "text", "text": "b", "citations": []},
                    ],
                }
            ]
        )
    )
    assert two == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_images_base64_and_url() -> None:
    content = [
        _image(),
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "What are these?"},
    ]
    assert _messages(_body([{"role": "user", "content": content}]))[0]["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "What are these?"},
    ]


def test_image_file_source_is_refused_clearly() -> None:
    content = [{"type": "image", "source": {"type": "file", "file_id": "file_1"}}]
    assert "messages.0.content.0.source" in _error(_body([{"role": "user", "content": content}]))


def test_pdf_document_becomes_a_file_part() -> None:
    doc = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
    }
    titled = {**doc, "title": "Q3 report"}
    parts = _messages(_body([{"role": "user", "content": [doc, titled]}]))[0]["content"]
    assert parts == [
        {
            "type": "file",
            "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBERi0="},
        },
        {
            "type": "file",
            "file": {"filename": "Q3 report.pdf", "file_data": "data:application/pdf;base64,JVBERi0="},
        },
    ]


def test_url_pdf_is_a_clear_400() -> None:
    doc = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    message = _error(_body([{"role": "user", "content": [doc]}]))
    assert message.startswith("messages.0.content.0.source:")
    assert "URL PDF" in message
    assert "base64" in message


def test_text_documents_become_text_with_title() -> None:
    plain = {
        "type": "document",
        "title": "notes.txt",
        "context": "from the user",
        "source": {"type": "text", "media_type": "text/plain", "data": "line one"},
    }
    content_source = {
        "type": "document",
        "source": {"type": "content", "content": [{"type": "text", "text": "chunk 1"}, _image()]},
    }
    string_source = {"type": "document", "title": "T", "source": {"type": "content", "content": "whole"}}
    parts = _messages(_body([{"role": "user", "content": [plain, content_source, string_source]}]))[0][
        "content"
    ]
    assert parts == [
        {"type": "text", "text": "Document: notes.txt\nContext: from the user\n\nline one"},
        {"type": "text", "text": "chunk 1"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "text", "text": "Document: T\n\nwhole"},
    ]


def test_search_result_block_becomes_text() -> None:
    block = {
        "type": "search_result",
        "source": "https://example.com/doc",
        "title": "Doc",
        "content": [{"type": "text", "text": "body"}],
    }
    assert _messages(_body([{"role": "user", "content": [block]}]))[0]["content"] == (
        "Search result: Doc\nSource: https://example.com/doc\n\nbody"
    )


# --- tool use and results ------------------------------------------------------------------------------


def test_tool_use_becomes_tool_calls_with_null_content() -> None:
    messages = _messages(_body(_tool_turns(_tool_result("t1")), tools=[_read_tool()]))
    assert messages[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "Read", "arguments": "{}"}}],
    }


def test_tool_use_with_text_keeps_the_text() -> None:
    turns = [
        {"role": "user", "content": "Go"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Reading."},
                _tool_use("t1", arguments={"path": "/a", "n": [1, 2]}),
            ],
        },
        {"role": "user", "content": [_tool_result("t1")]},
    ]
    assistant = _messages(_body(turns))[1]
    assert assistant["content"] == "Reading."
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"path": "/a", "n": [1, 2]}


def test_tool_results_come_right_after_the_call_before_user_content() -> None:
    turns = _tool_turns(
        {"type": "text", "text": "Also look at this"},
        _tool_result("t2", "second"),
        _tool_result("t1", [{"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"}]),
        calls=("t1", "t2"),
    )
    messages = _messages(_body(turns))
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "t2", "content": "second"},
        {"role": "tool", "tool_call_id": "t1", "content": "line 1\n\nline 2"},
        {"role": "user", "content": "Also look at this"},
    ]


def test_tool_result_error_and_empty_content() -> None:
    turns = _tool_turns(
        _tool_result("t1", "file not found", is_error=True),
        {"type": "tool_result", "tool_use_id": "t2"},
        calls=("t1", "t2"),
    )
    messages = _messages(_body(turns))
    assert messages[2]["content"] == "[tool error] file not found"
    assert messages[3] == {"role": "tool", "tool_call_id": "t2", "content": ""}
    custom = TranslationOptions(tool_error_prefix="ERROR: ")
    assert _messages(_body(turns), options=custom)[2]["content"] == "ERROR: file not found"


def test_images_in_tool_results_move_to_a_following_user_message() -> None:
    turns = _tool_turns(
        _tool_result("t1", [{"type": "text", "text": "screenshot taken"}, _image()]),
        _tool_result("t2", [_image("QUJD")]),
        {"type": "text", "text": "what do you see?"},
        calls=("t1", "t2"),
    )
    messages = _messages(_body(turns))
    assert messages[2] == {
        "role": "tool",
        "tool_call_id": "t1",
        "content": "screenshot taken\n\n[attachment follows in the next user message]",
    }
    assert messages[3]["content"] == "[attachment follows in the next user message]"
    assert messages[4] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "Attachments from the result of tool call t1:"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "text", "text": "Attachments from the result of tool call t2:"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
        ],
    }
    assert messages[5] == {"role": "user", "content": "what do you see?"}


def test_documents_and_references_inside_tool_results() -> None:
    pdf = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
    }
    text_doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "inline"}}
    reference = {"type": "tool_reference", "tool_name": "Grep"}
    messages = _messages(_body(_tool_turns(_tool_result("t1", [text_doc, reference, pdf]))))
    assert (
        messages[2]["content"]
        == "inline\n\n[tool reference: Grep]\n\n[attachment follows in the next user message]"
    )
    assert messages[3]["content"][1]["type"] == "file"


def test_long_and_odd_tool_ids_are_rewritten_the_same_way_in_both_places() -> None:
    odd = "toolu_" + "x" * 70
    messages = _messages(_body(_tool_turns(_tool_result(odd), calls=(odd,))))
    rewritten = upstream_tool_call_id(odd)
    assert len(rewritten) <= 64
    assert messages[1]["tool_calls"][0]["id"] == rewritten
    assert messages[2]["tool_call_id"] == rewritten


def test_alnum9_profile_rewrites_every_id() -> None:
    profile = ModelProfile(tool_call_ids="alnum9")
    messages = _messages(
        _body(_tool_turns(_tool_result("toolu_01ABC"), calls=("toolu_01ABC",))), profile=profile
    )
    call_id = messages[1]["tool_calls"][0]["id"]
    assert re.fullmatch(r"[A-Za-z0-9]{9}", call_id)
    assert messages[2]["tool_call_id"] == call_id


def test_tool_names_in_history_use_the_same_rewrite_as_the_tools() -> None:
    tool = {"name": "my.tool", "input_schema": {"type": "object"}}
    turns = [
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": [_tool_use("t1", "my.tool"), _tool_use("t2", "retired:tool")]},
        {"role": "user", "content": [_tool_result("t1"), _tool_result("t2")]},
    ]
    translated = _run(_body(turns, tools=[tool]))
    offered = translated.payload["tools"][0]["function"]["name"]
    calls = translated.payload["messages"][1]["tool_calls"]
    assert offered == rewrite_tool_name("my.tool")
    assert calls[0]["function"]["name"] == offered
    assert translated.tool_names.client_name(offered) == "my.tool"
    assert translated.tool_names.client_name(calls[1]["function"]["name"]) == "retired:tool"


def test_a_system_message_between_split_results_does_not_break_the_pairing() -> None:
    turns = [
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": [_tool_use("t1"), _tool_use("t2")]},
        {"role": "user", "content": [_tool_result("t1")]},
        {"role": "system", "content": "note"},
        {"role": "user", "content": [_tool_result("t2"), {"type": "text", "text": "more"}]},
    ]
    messages = _messages(_body(turns))
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "system", "user"]


def test_results_in_a_second_consecutive_user_message_still_pair() -> None:
    turns = [
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": [_tool_use("t1")]},
        {"role": "user", "content": "typed while the tool ran"},
        {"role": "user", "content": [_tool_result("t1")]},
    ]
    assert [m["role"] for m in _messages(_body(turns))] == ["user", "assistant", "tool", "user"]


# --- assistant history ---------------------------------------------------------------------------------


def _thinking_turns() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Go"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Let me think.", "signature": "sig"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Done."},
            ],
        },
        {"role": "user", "content": "Thanks"},
    ]


def test_thinking_is_dropped_by_default() -> None:
    assert _messages(_body(_thinking_turns()))[1] == {"role": "assistant", "content": "Done."}


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_thinking_is_echoed_per_profile(field: Any) -> None:
    assistant = _messages(_body(_thinking_turns()), profile=ModelProfile(reasoning_echo=field))[1]
    assert assistant == {"role": "assistant", "content": "Done.", field: "Let me think."}


def test_thinking_only_turn_is_skipped_unless_echoed() -> None:
    turns = [
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"}]},
        {"role": "user", "content": "?"},
    ]
    assert [m["role"] for m in _messages(_body(turns))] == ["user", "user"]
    echoed = _messages(_body(turns), profile=ModelProfile(reasoning_echo="reasoning"))
    assert echoed[1] == {"role": "assistant", "content": "", "reasoning": "hm"}


def test_server_tool_artifacts_are_rendered_or_dropped() -> None:
    content = [
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "asgi"}},
        {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_1",
            "content": [
                {
                    "type": "web_search_result",
                    "title": "ASGI spec",
                    "url": "https://asgi.readthedocs.io",
                    "encrypted_content": "x",
                }
            ],
        },
        {
            "type": "code_execution_tool_result",
            "tool_use_id": "srvtoolu_2",
            "content": {
                "type": "code_execution_result",
                "stdout": "42\n",
                "stderr": "",
                "return_code": 0,
                "content": [],
            },
        },
        {"type": "text", "text": "Found it."},
    ]
    turns = [
        {"role": "user", "content": "Search"},
        {"role": "assistant", "content": content},
        {"role": "user", "content": "ok"},
    ]
    text = _messages(_body(turns))[1]["content"]
    assert '[server tool call web_search: {"query":"asgi"}]' in text
    assert "ASGI spec <https://asgi.readthedocs.io>" in text
    assert "stdout: 42" in text
    assert "return_code: 0" in text
    assert text.endswith("Found it.")
    dropped = _messages(_body(turns), options=TranslationOptions(server_tool_artifacts="drop"))[1]
    assert dropped == {"role": "assistant", "content": "Found it."}


def test_consecutive_same_role_messages_are_kept() -> None:
    turns = [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": "d"},
    ]
    assert _messages(_body(turns)) == [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": "d"},
    ]


def test_consecutive_assistant_messages_merge_when_a_tool_call_would_be_cut_off() -> None:
    turns = [
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": [{"type": "text", "text": "First"}, _tool_use("t1")]},
        {"role": "assistant", "content": [{"type": "text", "text": "Second"}, _tool_use("t2")]},
        {"role": "user", "content": [_tool_result("t1"), _tool_result("t2")]},
    ]
    messages = _messages(_body(turns))
    assert messages[1]["content"] == "First\n\nSecond"
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["t1", "t2"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]


def test_trailing_assistant_prefill_is_kept() -> None:
    messages = _messages(
        _body([{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi"}])
    )
    assert messages[-1] == {"role": "assistant", "content": "Hi"}


# --- sampling, limits, stop sequences ------------------------------------------------------------------


def test_max_tokens_field_follows_the_profile_and_is_never_capped() -> None:
    assert _run(_body(max_tokens=128000)).payload["max_tokens"] == 128000
    payload = _run(_body(max_tokens=128000), profile=REASONING).payload
    assert payload["max_completion_tokens"] == 128000
    assert "max_tokens" not in payload


def test_max_tokens_zero_is_refused() -> None:
    assert _error(_body(max_tokens=0)).startswith("max_tokens:")
    assert _error(_body(max_tokens=-5)).startswith("max_tokens:")


def test_sampling_parameters_for_plain_models() -> None:
    payload = _run(
        _body(temperature=0.2, top_p=0.9, top_k=40), profile=ModelProfile(forward_top_k=True)
    ).payload
    assert (payload["temperature"], payload["top_p"], payload["top_k"]) == (0.2, 0.9, 40)
    translated = _run(_body(top_k=40))
    assert "top_k" not in translated.payload
    assert any("top_k" in w for w in translated.warnings)


def test_reasoning_models_drop_temperature_top_p_and_stop() -> None:
    translated = _run(
        _body(temperature=1, top_p=0.5, stop_sequences=["END"]), profile=REASONING, model="gpt-5"
    )
    for key in ("temperature", "top_p", "stop", "top_k"):
        assert key not in translated.payload
    assert translated.stop_sequences == ("END",)
    assert any("temperature" in w and "top_p" in w for w in translated.warnings)


def test_stop_sequences_within_the_limit_go_upstream() -> None:
    translated = _run(_body(stop_sequences=["\n\nHuman:", "END", "END"]))
    assert translated.payload["stop"] == ["\n\nHuman:", "END"]
    assert translated.stop_sequences == ()


def test_too_many_stop_sequences_are_all_detected_by_the_proxy() -> None:
    stops = ["a", "b", "c", "d", "e"]
    translated = _run(_body(stop_sequences=stops))
    assert "stop" not in translated.payload
    assert translated.stop_sequences == tuple(stops)


def test_empty_stop_sequences_list() -> None:
    translated = _run(_body(stop_sequences=[]))
    assert "stop" not in translated.payload
    assert translated.stop_sequences == ()


# --- thinking and effort -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "effort"),
    [(1023, "minimal"), (1024, "low"), (2048, "medium"), (4095, "medium"), (4096, "high"), (31999, "high")],
)
def test_thinking_budget_maps_to_effort(budget: int, effort: str) -> None:
    profile = ModelProfile(reasoning=True, efforts=("minimal", "low", "medium", "high"))
    payload = _run(_body(thinking={"type": "enabled", "budget_tokens": budget}), profile=profile).payload
    assert payload["reasoning_effort"] == effort


def test_thresholds_are_configurable() -> None:
    options = TranslationOptions(effort_thresholds=EffortThresholds(low=10, medium=20, high=30))
    profile = ModelProfile(reasoning=True)
    body = _body(thinking={"type": "enabled", "budget_tokens": 25})
    assert _run(body, profile=profile, options=options).payload["reasoning_effort"] == "medium"


def test_adaptive_thinking_uses_output_config_effort_or_the_default() -> None:
    profile = ModelProfile(reasoning=True)
    assert _run(_body(thinking={"type": "adaptive"}), profile=profile).payload["reasoning_effort"] == "medium"
    body = _body(thinking={"type": "adaptive"}, output_config={"effort": "low"})
    assert _run(body, profile=profile).payload["reasoning_effort"] == "low"
    options = TranslationOptions(adaptive_effort="high")
    assert (
        _run(_body(thinking={"type": "adaptive"}), profile=profile, options=options).payload[
            "reasoning_effort"
        ]
        == "high"
    )


def test_output_config_effort_alone_and_over_a_budget() -> None:
    profile = ModelProfile(reasoning=True)
    assert (
        _run(_body(output_config={"effort": "high"}), profile=profile).payload["reasoning_effort"] == "high"
    )
    body = _body(thinking={"type": "enabled", "budget_tokens": 1024}, output_config={"effort": "high"})
    assert _run(body, profile=profile).payload["reasoning_effort"] == "high"


@pytest.mark.parametrize(("effort", "sent"), [("xhigh", "high"), ("max", "high")])
def test_efforts_beyond_the_model_are_clamped(effort: str, sent: str) -> None:
    payload = _run(_body(output_config={"effort": effort}), profile=default_profile("o3")).payload
    assert payload["reasoning_effort"] == sent


def test_xhigh_and_max_pass_where_supported() -> None:
    profile = ModelProfile(reasoning=True, efforts=("low", "medium", "high", "xhigh", "max"))
    assert _run(_body(output_config={"effort": "max"}), profile=profile).payload["reasoning_effort"] == "max"


def test_disabled_thinking() -> None:
    body = _body(thinking={"type": "disabled"})
    assert "reasoning_effort" not in _run(body, profile=default_profile("o3")).payload
    assert _run(body, profile=default_profile("gpt-5.1")).payload["reasoning_effort"] == "none"


def test_effort_is_only_sent_to_reasoning_models() -> None:
    body = _body(thinking={"type": "enabled", "budget_tokens": 8000}, output_config={"effort": "high"})
    assert "reasoning_effort" not in _run(body).payload
    assert "reasoning_effort" not in _run(body, profile=default_profile("o1-mini")).payload


def test_response_format_from_output_config() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    payload = _run(_body(output_config={"format": {"type": "json_schema", "schema": schema}})).payload
    assert payload["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema, "strict": True},
    }
    loose = {"type": "object", "properties": {"a": {"type": "string"}}}
    payload = _run(_body(output_format={"type": "json_schema", "schema": loose})).payload
    assert payload["response_format"]["json_schema"]["strict"] is False


# --- tools in the request ------------------------------------------------------------------------------


def _read_tool() -> dict[str, Any]:
    return {"name": "Read", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}


def test_tools_and_tool_choice() -> None:
    payload = _run(
        _body(tools=[_read_tool()], tool_choice={"type": "any", "disable_parallel_tool_use": True})
    ).payload
    assert payload["tools"][0]["function"]["name"] == "Read"
    assert payload["tool_choice"] == "required"
    assert payload["parallel_tool_calls"] is False


def test_no_tools_means_no_tool_choice_or_parallel_flag() -> None:
    payload = _run(_body(tools=[], tool_choice={"type": "auto", "disable_parallel_tool_use": True})).payload
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(payload)
    payload = _run(_body(tool_choice={"type": "any"})).payload
    assert "tool_choice" not in payload


def test_dropped_server_tools_leave_no_tool_fields() -> None:
    options = TranslationOptions(server_tools="drop")
    body = _body(tools=[{"type": "web_search_20250305", "name": "web_search"}], tool_choice={"type": "auto"})
    translated = _run(body, options=options)
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(translated.payload)
    assert translated.warnings


def test_server_tools_are_refused_by_default() -> None:
    message = _error(_body(tools=[_read_tool(), {"type": "web_fetch_20250910", "name": "web_fetch"}]))
    assert "tools.1" in message
    assert "web_fetch" in message


def test_long_tool_descriptions_move_to_the_system_prompt() -> None:
    description = "Run a command. " * 200
    tool = {**_read_tool(), "name": "Bash", "description": description}
    profile = ModelProfile(max_tool_description_chars=1024)
    payload = _run(_body(system="Base prompt.", tools=[tool]), profile=profile).payload
    assert len(payload["tools"][0]["function"]["description"]) <= 1024
    system = payload["messages"][0]["content"]
    assert system.startswith("Base prompt.\n\n")
    assert f"## Tool Bash\n{description}" in system


# --- metadata ------------------------------------------------------------------------------------------


def test_short_user_id_is_sent_as_is() -> None:
    assert _run(_body(metadata={"user_id": "user-123"})).payload["user"] == "user-123"


def test_long_user_id_is_hashed_to_64_characters() -> None:
    user_id = "u" * 100
    sent = _run(_body(metadata={"user_id": user_id})).payload["user"]
    assert sent == hashlib.sha256(user_id.encode()).hexdigest()
    assert len(sent) == 64


def test_claude_code_user_id_hash_is_stable_across_sessions() -> None:
    def sent(session: str, device: str = "d" * 64) -> str:
        user_id = json.dumps({"device_id": device, "account_uuid": "", "session_id": session})
        return str(_run(_body(metadata={"user_id": user_id})).payload["user"])

    assert sent("session-one") == sent("session-two")
    assert sent("session-one") != sent("session-one", device="e" * 64)
    assert len(sent("s")) == 64


def test_billing_header_system_block_is_not_sent_upstream() -> None:
    system = [
        {
            "type": "text",
            "text": "x-anthropic-billing-header: cc_version=2.1.197.1c0; cc_entrypoint=sdk-cli;",
        },
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
    ]
    payload = _run(_body(system=system)).payload
    assert payload["messages"][0] == {"role": "system", "content": "You are Claude Code."}


def test_user_id_field_option() -> None:
    body = _body(metadata={"user_id": "u1"})
    assert (
        _run(body, options=TranslationOptions(user_id_field="safety_identifier")).payload["safety_identifier"]
        == "u1"
    )
    payload = _run(body, options=TranslationOptions(user_id_field="none")).payload
    assert "user" not in payload
    assert "safety_identifier" not in payload
    assert "user" not in _run(_body(metadata={"user_id": None})).payload
    assert "user" not in _run(_body(metadata={})).payload


# --- the Claude Code request ---------------------------------------------------------------------------


def test_claude_code_request_translates_for_gpt5() -> None:
    body = build_claude_code_request()
    translated = _run(body, profile=default_profile("gpt-5"), model="gpt-5")
    payload = translated.payload
    assert payload["reasoning_effort"] == "high"
    assert payload["max_completion_tokens"] == 32000
    assert payload["stream"] is True
    assert payload["stream_options"] == {"include_usage": True}
    assert len(payload["tools"]) == 24
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", t["function"]["name"]) for t in payload["tools"])
    # No description limit by default: the 19 KB one goes as it is, and is not repeated in the system.
    assert max(len(t["function"].get("description", "")) for t in payload["tools"]) > 18_000
    assert "## Tool Bash" not in payload["messages"][0]["content"]
    long_name = next(t["name"] for t in body["tools"] if len(t["name"]) > 64)
    assert translated.tool_names.upstream_name(long_name) != long_name
    assert len(payload["user"]) == 64
    assert "temperature" not in payload
    roles = [m["role"] for m in payload["messages"]]
    assert roles[0] == "system"
    assert roles[-1] == "user"
    assert roles.count("tool") == sum(
        1
        for m in body["messages"]
        if isinstance(m["content"], list)
        for b in m["content"]
        if b["type"] == "tool_result"
    )


def test_claude_code_request_with_a_system_message() -> None:
    body = build_claude_code_request(include_system_message=True, n_messages=12)
    roles = [m["role"] for m in _messages(body)]
    assert roles.count("system") == 2


# --- validation ----------------------------------------------------------------------------------------


def _with_message(content: Any, role: str = "user") -> dict[str, Any]:
    return _body([{"role": role, "content": content}])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ([], "body: Input should be a valid dictionary"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens: Field required"),
        ({"model": "m", "max_tokens": 10}, "messages: Field required"),
        (_body(model=5), "model: Input should be a valid string"),
        ({"max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}, "model: Field required"),
        (_body(max_tokens="10"), "max_tokens: Input should be a valid integer"),
        (_body(max_tokens=True), "max_tokens: Input should be a valid integer"),
        (_body(max_tokens=10.5), "max_tokens: Input should be a valid integer"),
        (_body([]), "messages: List should have at least 1 item"),
        (_body(messages={"role": "user"}), "messages: Input should be a valid list"),
        (_body(["hi"]), "messages.0: Input should be a valid dictionary"),
        (_body([{"content": "x"}]), "messages.0.role: Field required"),
        (
            _body([{"role": "bot", "content": "x"}]),
            "messages.0.role: Input should be 'user', 'assistant' or 'system'",
        ),
        (_body([{"role": "user"}]), "messages.0.content: Field required"),
        (_with_message(7), "messages.0.content: Input should be a valid string or list"),
        (_with_message(["x"]), "messages.0.content.0: Input should be a valid dictionary"),
        (
            _with_message([{"text": "x"}]),
            "messages.0.content.0: Unable to extract tag using discriminator 'type'",
        ),
        (
            _with_message([{"type": "foo"}]),
            "messages.0.content.0: Input tag 'foo' found using 'type' does not match",
        ),
        (_with_message([{"type": 3}]), "messages.0.content.0.type: Input should be a valid string"),
        (_with_message([{"type": "text"}]), "messages.0.content.0.text: Field required"),
        (
            _with_message([{"type": "text", "text": 1}]),
            "messages.0.content.0.text: Input should be a valid string",
        ),
        (_with_message([{"type": "image"}]), "messages.0.content.0.source: Field required"),
        (
            _with_message([{"type": "image", "source": {"type": "base64", "data": "x"}}]),
            "messages.0.content.0.source.media_type: Field required",
        ),
        (
            _with_message([{"type": "image", "source": {"type": "ftp"}}]),
            "messages.0.content.0.source: Input tag 'ftp'",
        ),
        (
            _with_message(
                [{"type": "document", "source": {"type": "base64", "media_type": "image/png", "data": "x"}}]
            ),
            "media_type: Input should be 'application/pdf'",
        ),
        (
            _with_message([_tool_use("t1")]),
            "messages.0.content.0: 'tool_use' blocks are only allowed in assistant messages",
        ),
        (
            _with_message([_image()], role="assistant"),
            "messages.0.content.0: 'image' blocks are not allowed in assistant messages",
        ),
        (
            _with_message([{"type": "tool_use", "name": "x", "input": {}}], role="assistant"),
            "messages.0.content.0.id: Field required",
        ),
        (
            _with_message([{"type": "tool_use", "id": "t", "input": {}}], role="assistant"),
            "messages.0.content.0.name: Field required",
        ),
        (
            _with_message([{"type": "tool_use", "id": "", "name": "x", "input": {}}], role="assistant"),
            "messages.0.content.0.id",
        ),
        (
            _with_message([{"type": "tool_use", "id": "t", "name": "x", "input": []}], role="assistant"),
            "messages.0.content.0.input: Input should be a valid dictionary",
        ),
        (
            _with_message([{"type": "tool_use", "id": "t", "name": "x"}], role="assistant"),
            "messages.0.content.0.input: Field required",
        ),
        (
            _with_message([{"type": "thinking"}], role="assistant"),
            "messages.0.content.0.thinking: Field required",
        ),
        (
            _with_message([_tool_result("nope")]),
            "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: nope",
        ),
        (
            _body(_tool_turns({"type": "text", "text": "forgot"})),
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: t1",
        ),
        (
            _body(_tool_turns(_tool_result("t1"))[:2]),
            "messages.1: `tool_use` ids were found without `tool_result`",
        ),
        (
            _body(_tool_turns(_tool_result("t1", is_error="yes"))),
            "messages.2.content.0.is_error: Input should be a valid boolean",
        ),
        (
            _body(_tool_turns(_tool_result("t1", content=5))),
            "messages.2.content.0.content: Input should be a valid string or list",
        ),
        (
            _body(_tool_turns(_tool_result("t1", content=[{"type": "video"}]))),
            "messages.2.content.0.content.0: Input tag 'video'",
        ),
        (_body(_tool_turns(_tool_result("t1"), _tool_result("t1"))), "unexpected `tool_use_id`"),
        (_body(_tool_turns(_tool_result("t1"), calls=("t1", "t1"))), "ids must be unique"),
        (_body(stream="yes"), "stream: Input should be a valid boolean"),
        (_body(temperature="hot"), "temperature: Input should be a valid number"),
        (_body(top_p=[1]), "top_p: Input should be a valid number"),
        (_body(top_k=1.5), "top_k: Input should be a valid integer"),
        (_body(stop_sequences="END"), "stop_sequences: Input should be a valid list"),
        (_body(stop_sequences=["ok", 1]), "stop_sequences.1: Input should be a valid string"),
        (_body(stop_sequences=[""]), "stop_sequences.0: String should have at least 1 character"),
        (_body(system=5), "system: Input should be a valid string or a list of text blocks"),
        (_body(system=[{"type": "image"}]), "system.0: Input tag 'image'"),
        (_body(system=[{"type": "text"}]), "system.0.text: Field required"),
        (_body(thinking="on"), "thinking: Input should be a valid dictionary"),
        (_body(thinking={"type": "sometimes"}), "thinking: Input tag 'sometimes'"),
        (_body(thinking={}), "thinking: Unable to extract tag"),
        (_body(thinking={"type": "enabled"}), "thinking.enabled.budget_tokens: Field required"),
        (
            _body(thinking={"type": "enabled", "budget_tokens": "lots"}),
            "thinking.enabled.budget_tokens: Input should be a valid integer",
        ),
        (_body(output_config={"effort": "extreme"}), "output_config.effort: Input should be"),
        (_body(output_config=[]), "output_config: Input should be a valid dictionary"),
        (
            _body(output_config={"format": {"type": "json_schema"}}),
            "output_config.format.schema: Field required",
        ),
        (
            _body(output_config={"format": {"type": "regex", "schema": {}}}),
            "output_config.format.type: Input should be 'json_schema'",
        ),
        (_body(metadata="me"), "metadata: Input should be a valid dictionary"),
        (_body(metadata={"user_id": 42}), "metadata.user_id: Input should be a valid string"),
        (_body(tools={"name": "x"}), "tools: Input should be a valid list"),
        (_body(tool_choice="auto"), "tool_choice: Input should be a valid dictionary or object"),
        (
            _body(tools=[_read_tool()], tool_choice={"type": "tool", "name": "Write"}),
            "tool_choice.name: tool 'Write'",
        ),
        (
            _body([{"role": "system", "content": 5}]),
            "messages.0.content: Input should be a valid string or a list",
        ),
        (
            _with_message([{"type": "mid_conv_system", "content": [{"type": "image"}]}]),
            "messages.0.content.0.content.0: Input tag 'image'",
        ),
    ],
)
def test_schema_violations_name_the_field(body: Any, expected: str) -> None:
    assert expected in _error(body)


def test_tool_input_beyond_orjson_is_still_exact_json() -> None:
    # JSON allows integers of any size; orjson stops at 64 bits, and the token count already took them.
    turns = _tool_turns(_tool_result("t1"))
    turns[1]["content"][0]["input"] = {"n": 2**70}
    call = _messages(_body(turns))[1]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"n": 2**70}


def test_unencodable_tool_input_is_a_400() -> None:
    turns = _tool_turns(_tool_result("t1"))
    turns[1]["content"][0]["input"] = {"n": {1, 2}}  # not JSON at all: only a Python caller can send it
    assert _error(_body(turns)) == "messages.1.content.0.input: Input should be valid JSON"


# --- system messages after the first -------------------------------------------------------------------

CLAUDE_CODE_TURN = [
    {"role": "user", "content": [{"type": "text", "text": "<system-reminder>date</system-reminder>"}]},
    {"role": "system", "content": "Available agent types: general-purpose"},
]


def test_later_system_messages_stay_system_for_openai_models() -> None:
    payload = _run(_body(CLAUDE_CODE_TURN, system="Base."), profile=default_profile("gpt-4o")).payload
    assert [m["role"] for m in payload["messages"]] == ["system", "user", "system"]


def test_later_system_messages_become_user_text_for_self_hosted_models() -> None:
    payload = _run(_body(CLAUDE_CODE_TURN, system="Base."), profile=default_profile("qwen3-coder")).payload
    messages = payload["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == "Base."
    # Folded into the user turn before it, so roles still alternate.
    assert messages[1]["content"][-1] == {
        "type": "text",
        "text": "<system-reminder>\nAvailable agent types: general-purpose\n</system-reminder>",
    }


def test_a_later_system_message_after_an_assistant_turn_is_its_own_user_message() -> None:
    profile = ModelProfile(mid_conversation_system="user")
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "again"},
    ]
    out = _run(_body(messages), profile=profile).payload["messages"]
    assert [m["role"] for m in out] == ["user", "assistant", "user", "user"]
    assert out[2]["content"] == [{"type": "text", "text": "<system-reminder>\nbe brief\n</system-reminder>"}]
