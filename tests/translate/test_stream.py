"""The incremental stream translator (docs/protocol.md#streaming-translation), checked against the SDK."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from anthropic._streaming import SSEDecoder as SDKDecoder
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from ccproxy_asgi.errors import OverloadedError, RateLimitError, UpstreamError
from ccproxy_asgi.translate.identifiers import EMPTY_TOOL_NAME_MAP, ToolNameMap
from ccproxy_asgi.translate.stream import PING_EVENT, StreamTranslator

_EVENT = TypeAdapter(RawMessageStreamEvent)


# ----- helpers shared with the property tests -------------------------------------------------------


def wire_events(data: bytes) -> list[dict[str, Any]]:
    """Our output, frame by frame: each must be exactly `event: <type>` + one `data:` JSON line."""
    if not data:
        return []
    assert data.endswith(b"\n\n")
    events = []
    for frame in data[:-2].split(b"\n\n"):
        head, _, body = frame.partition(b"\ndata: ")
        assert head.startswith(b"event: "), frame
        assert b"\n" not in body, frame
        payload = json.loads(body)
        assert payload["type"] == head[7:].decode(), frame
        events.append(payload)
    return events


def check_structure(events: list[dict[str, Any]]) -> None:
    """message_start first, message_delta then message_stop last; blocks 0..n, one open at a time."""
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("message_start") == kinds.count("message_delta") == kinds.count("message_stop") == 1
    open_index: int | None = None
    next_index = 0
    for event in events[1:-2]:
        kind = event["type"]
        if kind == "ping":
            continue
        if kind == "content_block_start":
            assert open_index is None, "a block started while another is open"
            assert event["index"] == next_index
            open_index, next_index = next_index, next_index + 1
        elif kind == "content_block_delta":
            assert event["index"] == open_index, "delta for a block that is not open"
        elif kind == "content_block_stop":
            assert event["index"] == open_index
            open_index = None
        else:
            raise AssertionError(f"unexpected event {kind}")
    assert open_index is None, "a block was never stopped"
    assert next_index >= 1


def sdk_message(data: bytes) -> Message:
    """Parse with the SDK's own SSE decoder, validate each event, fold with its accumulator."""
    snapshot: Any = None
    json_bufs: dict[int, bytes] = {}
    for sse in SDKDecoder().iter_bytes(iter([data])):
        assert sse.event is not None
        if sse.event == "ping":
            continue
        event = _EVENT.validate_python(sse.json())
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    return Message.model_validate(snapshot.to_dict())


def sse_body(chunks: Sequence[dict[str, Any] | str]) -> bytes:
    return b"".join(
        b"data: " + (c if isinstance(c, str) else json.dumps(c)).encode() + b"\n\n" for c in chunks
    )


def run(
    chunks: Sequence[dict[str, Any] | str],
    *,
    stop_sequences: Sequence[str] = (),
    tool_names: ToolNameMap = EMPTY_TOOL_NAME_MAP,
    done: bool = True,
    step: int = 0,
) -> tuple[bytes, StreamTranslator]:
    """Translate an upstream stream fed as SSE bytes (in `step`-byte reads if set); checks the output."""
    translator = StreamTranslator(
        requested_model="claude-test",
        tool_names=tool_names,
        stop_sequences=stop_sequences,
        message_id="msg_t",
    )
    body = sse_body([*chunks, "[DONE]"] if done else chunks)
    out = translator.start()
    reads = [body[i : i + step] for i in range(0, len(body), step)] if step else [body]
    for read in reads:
        out += translator.feed_sse_bytes(read)
        if translator.done:
            break
    out += translator.feed_eof() + translator.finish()
    check_structure(wire_events(out))
    sdk_message(out)
    return out, translator


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
        **extra,
    }


def tool(index: int | None, args: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"function": {"arguments": args}}
    if index is not None:
        call["index"] = index
    if call_id is not None:
        call["id"] = call_id
        call["type"] = "function"
    if name is not None:
        call["function"]["name"] = name
    return chunk({"tool_calls": [call]})


def blocks(out: bytes) -> list[dict[str, Any]]:
    return [block.to_dict() for block in sdk_message(out).content]


def delta_event(out: bytes) -> dict[str, Any]:
    [event] = [e for e in wire_events(out) if e["type"] == "message_delta"]
    return event


# ----- a worked example: text, two tool calls, then the usage chunk -----------------------------------

WORKED_INPUT = """\
data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}

data: {"choices":[{"index":0,"delta":{"content":"Checking both."},"finish_reason":null}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_A","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\":\\"Oslo\\"}"}}]},"finish_reason":null}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_B","type":"function","function":{"name":"get_weather","arguments":"{\\"city\\":"}}]},"finish_reason":null}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\\"Rome\\"}"}}]},"finish_reason":null}]}

data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}

data: {"choices":[],"usage":{"prompt_tokens":512,"completion_tokens":41,"total_tokens":553,"prompt_tokens_details":{"cached_tokens":384}}}

data: [DONE]

"""  # noqa: E501

# The expected output, byte for byte. Its usage carries the zero cache counters too
# (`cache_creation_input_tokens`, and both counters in message_start): the real API always sends them
# and JavaScript clients add them up, so leaving them out would give NaN there.
WORKED_OUTPUT = """\
event: message_start
data: {"type":"message_start","message":{"id":"msg_7fQ","type":"message","role":"assistant","model":"claude-requested","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking both."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"call_A","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\":\\"Oslo\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"call_B","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"\\"Rome\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":128,"cache_creation_input_tokens":0,"cache_read_input_tokens":384,"output_tokens":41}}

event: message_stop
data: {"type":"message_stop"}

"""  # noqa: E501


@pytest.mark.parametrize("step", [0, 1, 7, 64])
def test_worked_example_exactly(step: int) -> None:
    translator = StreamTranslator(
        requested_model="claude-requested", tool_names=EMPTY_TOOL_NAME_MAP, message_id="msg_7fQ"
    )
    body = WORKED_INPUT.encode()
    out = translator.start()
    for i in range(0, len(body), step or len(body)):
        out += translator.feed_sse_bytes(body[i : i + (step or len(body))])
    assert translator.done
    assert translator.saw_done
    assert translator.ended_cleanly
    out += translator.finish()
    assert out.decode() == WORKED_OUTPUT
    assert translator.stop_reason == "tool_use"
    assert translator.usage == {
        "input_tokens": 128,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 384,
        "output_tokens": 41,
    }
    message = sdk_message(out)
    assert [b.to_dict() for b in message.content] == [
        {"type": "text", "text": "Checking both."},
        {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "call_B", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    assert message.usage.input_tokens == 128
    assert message.usage.cache_read_input_tokens == 384


# ----- shapes -----------------------------------------------------------------------------------------


def test_text_then_tools_then_text() -> None:
    out, _ = run(
        [
            chunk({"role": "assistant", "content": "First."}),
            tool(0, '{"a":1}', "call_1", "f"),
            chunk({"content": "Then more."}),
            chunk(finish="stop"),
        ]
    )
    assert blocks(out) == [
        {"type": "text", "text": "First."},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
        {"type": "text", "text": "Then more."},
    ]
    assert delta_event(out)["delta"]["stop_reason"] == "tool_use"  # finish "stop", but calls were made


def test_parallel_whole_tool_calls_in_one_chunk() -> None:
    calls = [
        {
            "index": i,
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": "f", "arguments": f'{{"n":{i}}}'},
        }
        for i in range(3)
    ]
    out, translator = run([chunk({"tool_calls": calls}), chunk(finish="tool_calls")])
    assert blocks(out) == [
        {"type": "tool_use", "id": f"call_{i}", "name": "f", "input": {"n": i}} for i in range(3)
    ]
    assert translator.stop_reason == "tool_use"


def test_tool_arguments_stream_live() -> None:
    translator = StreamTranslator(requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP)
    translator.start()
    first = translator.feed_chunk(tool(0, '{"path": "/a', "call_1", "read"))
    assert b'"partial_json":"{\\"path\\": \\"/a"' in first
    second = translator.feed_chunk(tool(0, '.txt"}'))
    assert wire_events(second) == [
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": '.txt"}'},
        }
    ]


def test_interleaved_fragments_wait_for_the_open_call() -> None:
    out, _ = run(
        [
            tool(0, '{"a":', "call_A", "f"),
            tool(1, '{"b":', "call_B", "g"),
            tool(0, "1}"),
            tool(1, "2}"),
            chunk(finish="tool_calls"),
        ]
    )
    assert blocks(out) == [
        {"type": "tool_use", "id": "call_A", "name": "f", "input": {"a": 1}},
        {"type": "tool_use", "id": "call_B", "name": "g", "input": {"b": 2}},
    ]
    starts = [e for e in wire_events(out) if e["type"] == "content_block_start"]
    assert [s["content_block"]["id"] for s in starts] == ["call_A", "call_B"]


def test_a_call_without_arguments_lets_the_next_wait_until_the_end() -> None:
    out, _ = run(
        [
            tool(0, "", "call_A", "noargs"),
            tool(1, '{"b":2}', "call_B", "g"),
            chunk(finish="tool_calls"),
        ]
    )
    assert blocks(out) == [
        {"type": "tool_use", "id": "call_A", "name": "noargs", "input": {}},
        {"type": "tool_use", "id": "call_B", "name": "g", "input": {"b": 2}},
    ]


def test_tool_id_repeated_on_every_fragment() -> None:
    out, _ = run(
        [tool(0, '{"q":', "call_X", "f"), tool(0, '"x"}', "call_X", "f"), chunk(finish="tool_calls")]
    )
    assert blocks(out) == [{"type": "tool_use", "id": "call_X", "name": "f", "input": {"q": "x"}}]


def test_missing_index_falls_back_to_id_then_latest_call() -> None:
    out, _ = run(
        [
            tool(None, '{"a":', "call_A", "f"),
            tool(None, "1}", "call_A"),
            tool(None, '{"b":', "call_B", "g"),
            tool(None, "2}"),
            chunk(finish="tool_calls"),
        ]
    )
    assert blocks(out) == [
        {"type": "tool_use", "id": "call_A", "name": "f", "input": {"a": 1}},
        {"type": "tool_use", "id": "call_B", "name": "g", "input": {"b": 2}},
    ]


def test_index_reused_with_a_new_id_is_a_new_call() -> None:
    out, _ = run(
        [tool(0, '{"a":1}', "call_A", "f"), tool(0, '{"b":2}', "call_B", "g"), chunk(finish="tool_calls")]
    )
    assert [b["id"] for b in blocks(out)] == ["call_A", "call_B"]


def test_missing_tool_id_is_generated_and_names_mapped_back() -> None:
    names = ToolNameMap(to_upstream={"mcp:fs/read": "mcp_fs_read"}, to_client={"mcp_fs_read": "mcp:fs/read"})
    out, _ = run([tool(0, "{}", None, "mcp_fs_read"), chunk(finish="tool_calls")], tool_names=names)
    [block] = blocks(out)
    assert block["name"] == "mcp:fs/read"
    assert block["id"].startswith("toolu_")


def test_fragment_for_a_call_closed_by_later_text_is_dropped() -> None:
    out, _ = run(
        [tool(0, '{"a":1}', "call_A", "f"), chunk({"content": "done"}), tool(0, "  "), chunk(finish="stop")]
    )
    assert [b["type"] for b in blocks(out)] == ["tool_use", "text"]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_becomes_thinking_with_a_signature_before_stop(field: str) -> None:
    out, _ = run(
        [
            chunk({"role": "assistant", field: "Let me "}),
            chunk({field: "think."}),
            chunk({"content": "Answer."}),
            chunk(finish="stop"),
        ]
    )
    assert blocks(out) == [
        {"type": "thinking", "thinking": "Let me think.", "signature": ""},
        {"type": "text", "text": "Answer."},
    ]
    kinds = [(e["type"], e.get("delta", {}).get("type")) for e in wire_events(out)]
    assert kinds[1:6] == [
        ("content_block_start", None),
        ("content_block_delta", "thinking_delta"),
        ("content_block_delta", "thinking_delta"),
        ("content_block_delta", "signature_delta"),
        ("content_block_stop", None),
    ]


def test_null_reasoning_fields_beside_content_are_ignored() -> None:
    out, _ = run(
        [chunk({"content": "x", "reasoning_content": None, "reasoning": None}), chunk(finish="stop")]
    )
    assert blocks(out) == [{"type": "text", "text": "x"}]


def test_refusal_deltas_become_text() -> None:
    out, translator = run(
        [
            chunk({"role": "assistant", "content": None, "refusal": "I can't "}),
            chunk({"refusal": "do that."}),
            chunk(finish="content_filter"),
        ]
    )
    assert blocks(out) == [{"type": "text", "text": "I can't do that."}]
    assert translator.stop_reason == "refusal"


def test_empty_content_is_skipped_and_nothing_gives_one_empty_text_block() -> None:
    out, translator = run(
        [chunk({"role": "assistant", "content": ""}), chunk({"content": ""}), chunk(finish="stop")]
    )
    assert blocks(out) == [{"type": "text", "text": ""}]
    assert translator.stop_reason == "end_turn"


@pytest.mark.parametrize(
    ("finish", "expected"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("tool_calls", "end_turn"),
    ],
)
def test_finish_reasons(finish: str, expected: str) -> None:
    _, translator = run([chunk({"content": "x"}), chunk(finish=finish)])
    assert translator.stop_reason == expected


@pytest.mark.parametrize("stop_sequences", [["END", "X"], []])
def test_vllm_stop_reason_string(stop_sequences: list[str]) -> None:
    finish = chunk(finish="stop")
    finish["choices"][0]["stop_reason"] = "END"
    out, _ = run([chunk({"content": "y"}), finish], stop_sequences=stop_sequences)
    assert delta_event(out)["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}


# ----- end of stream and usage -----------------------------------------------------------------------


def test_usage_attached_to_the_finish_chunk() -> None:
    usage = {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}
    out, translator = run([chunk({"content": "hi"}), chunk(finish="stop", usage=usage)])
    assert delta_event(out)["usage"] == {
        "input_tokens": 20,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 3,
    }
    assert translator.usage == delta_event(out)["usage"]


def test_message_delta_waits_for_the_usage_chunk_after_finish() -> None:
    translator = StreamTranslator(requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP)
    out = translator.start() + translator.feed_chunk(chunk({"content": "hi"}))
    out += translator.feed_chunk(chunk(finish="stop"))
    assert b"message_delta" not in out
    out += translator.feed_chunk({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}})
    assert b"message_delta" not in out
    out += translator.finish()
    assert delta_event(out)["usage"]["output_tokens"] == 4


def test_reasoning_tokens_reach_output_tokens_details() -> None:
    usage = {
        "prompt_tokens": 5,
        "completion_tokens": 50,
        "completion_tokens_details": {"reasoning_tokens": 40},
    }
    out, _ = run([chunk({"reasoning": "hm"}), chunk(finish="stop"), {"choices": [], "usage": usage}])
    assert sdk_message(out).usage.output_tokens_details is not None
    assert delta_event(out)["usage"]["output_tokens_details"] == {"thinking_tokens": 40}


def test_without_upstream_usage_the_estimates_are_reported() -> None:
    translator = StreamTranslator(
        requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP, input_tokens_estimate=321
    )
    start = wire_events(translator.start())[0]
    assert start["message"]["usage"]["input_tokens"] == 321
    translator.feed_chunk(chunk({"content": "x" * 40}, finish="stop"))
    out = translator.finish()
    assert delta_event(out)["usage"]["input_tokens"] == 321
    assert delta_event(out)["usage"]["output_tokens"] == 10
    assert translator.usage is None


def test_done_without_finish_reason_ends_cleanly() -> None:
    _, translator = run([chunk({"content": "partial"})])
    assert translator.saw_done
    assert not translator.saw_finish
    assert translator.ended_cleanly
    assert translator.stop_reason == "end_turn"


def test_finish_reason_without_done_ends_cleanly() -> None:
    _, translator = run([chunk({"content": "x"}, finish="stop")], done=False)
    assert translator.ended_cleanly
    assert not translator.saw_done
    assert not translator.done


def test_cut_stream_is_reported_but_finish_still_closes_everything() -> None:
    out, translator = run([tool(0, '{"a":', "call_A", "f")], done=False)
    assert not translator.ended_cleanly
    assert [e["type"] for e in wire_events(out)][-3:] == [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_last_event_without_blank_line_is_read_at_eof() -> None:
    translator = StreamTranslator(requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP)
    translator.start()
    translator.feed_sse_bytes(sse_body([chunk({"content": "x"})]) + b"data: [DONE]")
    assert not translator.ended_cleanly
    assert translator.feed_eof() == b""
    assert translator.ended_cleanly


def test_start_is_sent_once_and_feeding_first_sends_it() -> None:
    translator = StreamTranslator(requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP)
    out = translator.feed_chunk(chunk({"content": "x"}))
    assert out.startswith(b"event: message_start\n")
    assert translator.start() == b""
    out += translator.finish()
    assert translator.finish() == b""
    check_structure(wire_events(out))


def test_ping() -> None:
    translator = StreamTranslator(requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP)
    assert translator.ping() == PING_EVENT == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_garbage_usage_is_ignored() -> None:
    out, translator = run([chunk({"content": "x"}, usage="nonsense"), chunk(finish="stop")])
    assert translator.usage is None
    assert blocks(out) == [{"type": "text", "text": "x"}]


# ----- stop sequences ---------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [0, 1, 13])
def test_stop_sequence_across_chunk_boundaries(step: int) -> None:
    out, translator = run(
        [
            chunk({"content": "Hello wor"}),
            chunk({"content": "ld ST"}),
            chunk({"content": "OP and more"}),
            tool(0, "{}", "call_1", "f"),
            chunk(finish="tool_calls"),
        ],
        stop_sequences=["STOP"],
        step=step,
    )
    assert translator.done
    assert translator.stop_sequence == "STOP"
    assert blocks(out) == [{"type": "text", "text": "Hello world "}]
    assert delta_event(out)["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "STOP"}


def test_stop_sequence_hold_back_only_what_could_match() -> None:
    translator = StreamTranslator(
        requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP, stop_sequences=["STOP", "\n\n"]
    )
    translator.start()
    texts = []
    for piece in ["abc S", "T", "ART\n", "x"]:
        out = translator.feed_chunk(chunk({"content": piece}))
        texts.append(
            "".join(e["delta"]["text"] for e in wire_events(out) if e["type"] == "content_block_delta")
        )
    assert texts == ["abc ", "", "START", "\nx"]
    assert not translator.done


def test_held_back_text_is_flushed_before_tools_and_at_the_end() -> None:
    out, translator = run(
        [
            chunk({"content": "wait S"}),
            tool(0, "{}", "call_1", "f"),
            chunk({"content": "end ST"}),
            chunk(finish="stop"),
        ],
        stop_sequences=["STOP"],
    )
    assert [b.get("text") for b in blocks(out)] == ["wait S", None, "end ST"]
    assert translator.stop_reason == "tool_use"


def test_stop_sequence_split_over_many_chunks_and_text_before_it_kept() -> None:
    pieces = ["The answer", " is 4", "2.", "\n", "\nHu", "man", ": next"]
    out, translator = run([chunk({"content": p}) for p in pieces], stop_sequences=["\n\nHuman:"])
    assert blocks(out) == [{"type": "text", "text": "The answer is 42."}]
    assert translator.stop_sequence == "\n\nHuman:"


def test_stop_at_the_very_start_still_gives_a_text_block() -> None:
    out, _ = run([chunk({"content": "STOP"})], stop_sequences=["STOP"])
    assert blocks(out) == [{"type": "text", "text": ""}]


def test_events_after_the_match_in_the_same_read_are_ignored() -> None:
    translator = StreamTranslator(requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP, stop_sequences=["X"])
    out = translator.start() + translator.feed_sse_bytes(
        sse_body([chunk({"content": "aXb"}), chunk({"content": "more"}), "not json at all"])
    )
    assert translator.done
    out += translator.finish()
    assert blocks(out) == [{"type": "text", "text": "a"}]


# ----- errors -----------------------------------------------------------------------------------------


def test_error_chunk_raises_the_mapped_error() -> None:
    translator = StreamTranslator(requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP)
    translator.start()
    translator.feed_sse_bytes(sse_body([chunk({"content": "x"})]))
    with pytest.raises(RateLimitError, match="upstream error: Rate limit reached"):
        translator.feed_sse_bytes(sse_body([{"error": {"message": "Rate limit reached", "code": 429}}]))


def test_error_event_with_bare_error_object() -> None:
    translator = StreamTranslator(requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP)
    with pytest.raises(OverloadedError, match="busy"):
        translator.feed_sse_bytes(b'event: error\ndata: {"message":"busy","type":"overloaded_error"}\n\n')


@pytest.mark.parametrize(
    "data",
    [
        "{not json",
        '{"choices":[{"delta":{"content":"tr',
        "[1, 2]",
        '"text"',
        '{"choices":"abc"}',
        '{"choices":{"0":{}}}',
        '{"choices":[5]}',
        '{"choices":[{"delta":"x"}]}',
        '{"choices":[{"delta":{"content":5}}]}',
        '{"choices":[{"delta":{"tool_calls":{"index":0}}}]}',
        '{"choices":[{"delta":{"tool_calls":[7]}}]}',
    ],
)
def test_malformed_chunks_raise_upstream_error(data: str) -> None:
    translator = StreamTranslator(requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP)
    translator.start()
    with pytest.raises(UpstreamError, match="invalid upstream stream chunk"):
        translator.feed_sse_bytes(b"data: " + data.encode() + b"\n\n")


def test_lone_surrogate_escape_becomes_replacement_character() -> None:
    out, _ = run(['{"choices":[{"delta":{"content":"half \\ud83c emoji"}}]}'])
    assert blocks(out) == [{"type": "text", "text": "half \ufffd emoji"}]


def test_malformed_final_event_raises_at_eof() -> None:
    translator = StreamTranslator(requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP)
    translator.feed_sse_bytes(b'data: {"choices":[{"delta":{"content":"x"')
    with pytest.raises(UpstreamError):
        translator.feed_eof()
