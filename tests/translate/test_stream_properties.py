"""Property tests: whatever OpenAI-shaped chunks arrive, the official SDK accepts what we emit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccproxy_asgi.translate.identifiers import EMPTY_TOOL_NAME_MAP
from ccproxy_asgi.translate.response import find_stop_sequence
from ccproxy_asgi.translate.stream import StreamTranslator
from tests.translate.test_stream import check_structure, sdk_message, sse_body, wire_events

_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], codec="utf-8") | st.sampled_from('é🌍日\n"\\{}'),
    max_size=8,
)
_json_scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json_value = st.recursive(
    _json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_arguments = st.one_of(
    st.just(""),
    st.dictionaries(_text, _json_value, max_size=4).map(lambda obj: json.dumps(obj, ensure_ascii=False)),
    st.dictionaries(_text, _json_value, max_size=4).map(lambda obj: json.dumps(obj, indent=1)),
)


@dataclass
class Scenario:
    chunks: list[dict[str, Any]]
    reasoning: str
    text: str
    tools: dict[str, str]  # call id → the whole arguments string
    finish: str | None
    usage: dict[str, Any] | None
    done: bool


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-p",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _split(draw: st.DrawFn, value: str) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(value)), max_size=6)))
    return [value[a:b] for a, b in zip([0, *cuts], [*cuts, len(value)], strict=True)]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    chunks: list[dict[str, Any]] = [_chunk({"role": "assistant", "content": ""})]
    reasoning = text = ""
    # Reasoning and text, in any mix (servers put reasoning first, but nothing here relies on it).
    for kind, piece in draw(
        st.lists(st.tuples(st.sampled_from(["reasoning_content", "reasoning", "content"]), _text), max_size=8)
    ):
        chunks.append(_chunk({kind: piece}))
        if kind == "content":
            text += piece
        else:
            reasoning += piece

    # Tool calls: each call's arguments cut into fragments, fragments of all calls interleaved.
    arguments = draw(st.lists(_arguments, max_size=4))
    repeat_id = draw(st.booleans())
    queues: list[list[dict[str, Any]]] = []
    tools: dict[str, str] = {}
    for index, args in enumerate(arguments):
        call_id = f"call_{index}"
        tools[call_id] = args
        pieces = _split(draw, args)
        first = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": f"tool_{index}", "arguments": pieces[0]},
        }
        rest = [
            {"index": index, "function": {"arguments": piece}, **({"id": call_id} if repeat_id else {})}
            for piece in pieces[1:]
        ]
        queues.append([first, *rest])
    pending = [q for q in queues if q]
    while pending:
        picks = draw(st.lists(st.integers(0, len(pending) - 1), min_size=1, max_size=3))
        calls = [pending[i].pop(0) for i in dict.fromkeys(picks) if pending[i]]
        chunks.append(_chunk({"tool_calls": calls}))
        pending = [q for q in pending if q]

    for piece in draw(st.lists(_text, max_size=3)):
        chunks.append(_chunk({"content": piece}))
        text += piece

    finish = draw(st.sampled_from([None, "stop", "tool_calls", "length", "content_filter"]))
    usage = draw(
        st.none()
        | st.fixed_dictionaries(
            {"prompt_tokens": st.integers(0, 10**6), "completion_tokens": st.integers(0, 10**5)},
            optional={
                "prompt_tokens_details": st.fixed_dictionaries({"cached_tokens": st.integers(0, 1000)})
            },
        )
    )
    usage_on_finish = draw(st.booleans())
    if finish is not None:
        last = _chunk({}, finish)
        if usage is not None and usage_on_finish:
            last["usage"] = usage
        chunks.append(last)
    if usage is not None and not (usage_on_finish and finish is not None):
        chunks.append({"id": "chatcmpl-p", "choices": [], "usage": usage})
    return Scenario(chunks, reasoning, text, tools, finish, usage, draw(st.booleans()))


def _translate_bytes(scenario: Scenario, cuts: list[int]) -> tuple[bytes, StreamTranslator]:
    translator = StreamTranslator(
        requested_model="claude-p", tool_names=EMPTY_TOOL_NAME_MAP, message_id="msg_p"
    )
    body = sse_body([*scenario.chunks, *(["[DONE]"] if scenario.done else [])])
    out = translator.start()
    bounds = sorted(c % (len(body) + 1) for c in cuts)
    for a, b in zip([0, *bounds], [*bounds, len(body)], strict=True):
        out += translator.feed_sse_bytes(body[a:b])
    out += translator.feed_eof() + translator.finish()
    return out, translator


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios(), st.lists(st.integers(0, 10**6), max_size=12))
def test_sdk_accumulates_our_stream_to_the_upstream_content(scenario: Scenario, cuts: list[int]) -> None:
    out, translator = _translate_bytes(scenario, cuts)
    events = wire_events(out)
    check_structure(events)
    message = sdk_message(out)

    blocks: list[dict[str, Any]] = [b.to_dict() for b in message.content]
    assert "".join(b["text"] for b in blocks if b["type"] == "text") == scenario.text
    assert "".join(b["thinking"] for b in blocks if b["type"] == "thinking") == scenario.reasoning
    tool_blocks = {b["id"]: b for b in blocks if b["type"] == "tool_use"}
    assert set(tool_blocks) == set(scenario.tools)
    for call_id, args in scenario.tools.items():
        assert tool_blocks[call_id]["input"] == (json.loads(args) if args else {})
        assert tool_blocks[call_id]["name"] == "tool_" + call_id.removeprefix("call_")
    if not blocks:
        raise AssertionError("no content block")

    # Thinking blocks open empty, with the empty signature OpenAI servers cannot provide.
    for event in events:
        if event["type"] == "content_block_start" and event["content_block"]["type"] == "thinking":
            assert event["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}

    expected_reason = {"length": "max_tokens", "content_filter": "refusal"}.get(scenario.finish or "")
    if expected_reason is None:
        expected_reason = "tool_use" if scenario.tools else "end_turn"
    assert message.stop_reason == expected_reason == translator.stop_reason
    if scenario.usage is not None:
        assert message.usage.output_tokens == scenario.usage["completion_tokens"]
        cached = scenario.usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
        assert message.usage.cache_read_input_tokens == cached
        assert message.usage.input_tokens == max(scenario.usage["prompt_tokens"] - cached, 0)
    assert translator.ended_cleanly == (scenario.done or scenario.finish is not None)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.lists(st.integers(0, 10**6), max_size=12))
def test_byte_splits_do_not_change_the_output(scenario: Scenario, cuts: list[int]) -> None:
    whole, _ = _translate_bytes(scenario, [])
    split, _ = _translate_bytes(scenario, cuts)
    assert split == whole
    translator = StreamTranslator(
        requested_model="claude-p", tool_names=EMPTY_TOOL_NAME_MAP, message_id="msg_p"
    )
    parsed = (
        translator.start() + b"".join(translator.feed_chunk(c) for c in scenario.chunks) + translator.finish()
    )
    assert parsed == whole


_stop_alphabet = st.text(alphabet="abST\n", max_size=6)


@settings(max_examples=400)
@given(
    st.lists(_stop_alphabet, max_size=10),
    st.lists(st.text(alphabet="abST\n", min_size=1, max_size=4), min_size=1, max_size=3),
)
def test_streamed_stop_detection_matches_the_whole_text_rule(pieces: list[str], stops: list[str]) -> None:
    translator = StreamTranslator(
        requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP, stop_sequences=stops, message_id="msg_s"
    )
    out = translator.start()
    for piece in pieces:
        out += translator.feed_chunk(_chunk({"content": piece}))
        if translator.done:
            break
    out += translator.finish()
    check_structure(wire_events(out))
    message = sdk_message(out)

    full = "".join(pieces)
    hit = find_stop_sequence(full, stops)
    expected_text = full if hit is None else full[: hit[0]]
    assert "".join(b.text for b in message.content if b.type == "text") == expected_text
    if hit is None:
        assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    else:
        assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", hit[1])
