"""Pure parts of the mock upstream: directives, faults, reply planning, limits, wire format."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ccproxy_asgi.mock_upstream import Fault, MockConfig, parse_fault, plan_reply, schema_arguments
from ccproxy_asgi.mock_upstream.config import DefaultToolCall
from ccproxy_asgi.mock_upstream.directives import ToolDirective, parse_directives
from ccproxy_asgi.mock_upstream.faults import FaultPlan, FaultSpecError, parse_fault_list
from ccproxy_asgi.mock_upstream.ratelimit import AccountLimiter, format_duration
from ccproxy_asgi.mock_upstream.reply import default_reply_text
from ccproxy_asgi.mock_upstream.wire import ResponseMeta, split_even, stream_frames
from tests.support.manual_clock import ManualClock

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}},
        },
    }
    for name in ("one", "two")
]


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **extra}


# ----- directives --------------------------------------------------------------------------------------


def test_directives_are_parsed_and_cut_from_the_text() -> None:
    parsed = parse_directives(
        'Go [[tool:Read {"path": "a]]b", "n": [[1]]}]] now [[tool:ls]][[reply: done ]] '
        "[[unknown:x]] [[words:3]]"
    )
    assert parsed.tools == (ToolDirective("Read", {"path": "a]]b", "n": [[1]]}), ToolDirective("ls"))
    assert parsed.values == {"reply": "done", "words": "3"}
    assert parsed.text == "Go  now  [[unknown:x]] "
    assert not parsed.text_then_tool


def test_broken_tool_directive_is_left_as_text() -> None:
    parsed = parse_directives("[[tool:x {not json}]] [[text-then-tool:y]]")
    assert parsed.tools == (ToolDirective("y"),)
    assert parsed.text_then_tool
    assert parsed.text.startswith("[[tool:x {not json}]]")


# ----- faults ------------------------------------------------------------------------------------------


def test_fault_specs() -> None:
    assert parse_fault("429") == Fault("429", retry_after=1.0)
    assert parse_fault("429:retry_after=none") == Fault("429", retry_after=None)
    assert parse_fault("cut:after_chunks=3").after_chunks == 3
    assert parse_fault("error_chunk").after_chunks == 1
    assert parse_fault('{"fault":"slow","delay":1.5}').delay == 1.5
    assert parse_fault({"fault": "quota"}).status == 429
    assert parse_fault("500").retry_after is None
    assert [f.kind for f in parse_fault_list([{"fault": "500"}, "hang"])] == ["500", "hang"]
    for bad in ("explode", "200", "cut:after_chunks", "slow:delay=-1", '{"fault":"500","x":1}'):
        with pytest.raises(FaultSpecError):
            parse_fault(bad)


def test_fault_plan_order() -> None:
    plan = FaultPlan(Fault("500"), rate=1.0)
    plan.queue([Fault("429"), Fault("none")])
    assert plan.choose(Fault("503")) == Fault("503")  # per-request wins and leaves the queue alone
    assert plan.choose(None) == Fault("429")
    assert plan.choose(None) is None  # the queued "none"
    assert plan.choose(None) == Fault("500")  # configured
    sometimes = FaultPlan(Fault("500"), rate=0.5, seed=1)
    hits = sum(sometimes.choose(None) is not None for _ in range(1000))
    assert 400 < hits < 600


# ----- rate limits -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.012, "12ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (60, "1m0s"),
        (360, "6m0s"),
        (3723.25, "1h2m3.25s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_account_limiter_sliding_window_is_honest() -> None:
    clock = ManualClock(0.0)
    limiter = AccountLimiter(rpm=2, tpm=100, window=10, clock=clock)
    assert limiter.acquire(30).allowed
    clock.t = 4
    second = limiter.acquire(30)
    assert second.allowed
    assert second.remaining_requests == 0
    assert second.remaining_tokens == 40
    clock.t = 5
    refused = limiter.acquire(10)
    assert not refused.allowed
    assert refused.exceeded == "requests"
    assert refused.retry_after == pytest.approx(5)  # the first request leaves the window at t=10
    clock.t = 10
    assert limiter.acquire(10).allowed
    clock.t = 11
    both = limiter.acquire(80)  # 2 requests and 40 tokens in the window: the t=4 one leaving frees both
    assert not both.allowed
    assert both.retry_after == pytest.approx(3)


def test_account_limiter_token_wait_frees_just_enough() -> None:
    clock = ManualClock(0.0)
    limiter = AccountLimiter(rpm=0, tpm=100, window=10, clock=clock)
    assert limiter.acquire(60).allowed
    clock.t = 5
    assert limiter.acquire(30).allowed
    clock.t = 6
    small = limiter.acquire(50)  # needs the 60 of t=0 gone: at t=10
    assert not small.allowed
    assert small.exceeded == "tokens"
    assert small.retry_after == pytest.approx(4)
    large = limiter.acquire(80)  # needs both gone: at t=15
    assert large.retry_after == pytest.approx(9)
    assert limiter.acquire(101).retry_after == 10  # never fits: a full window


def test_unlimited_limiter_advertises() -> None:
    decision = AccountLimiter(0, 0, advertised_rpm=50, advertised_tpm=1000).acquire(10)
    assert decision.allowed
    assert decision.headers()["x-ratelimit-remaining-tokens"] == "990"


# ----- replies -----------------------------------------------------------------------------------------


def test_default_reply_text_rule() -> None:
    assert default_reply_text("  hello\n  world ", 6) == "Mock reply to: hello world lorem"
    assert default_reply_text("x" * 50, 0) == "Mock reply to: " + "x" * 40


def test_schema_arguments() -> None:
    schema = {
        "type": "object",
        "required": ["s", "i", "b", "e", "o", "arr", "nullable", "c"],
        "properties": {
            "s": {"type": "string"},
            "i": {"type": "integer"},
            "b": {"type": "boolean"},
            "e": {"enum": ["x", "y"]},
            "o": {"type": "object", "required": ["n"], "properties": {"n": {"type": "number"}}},
            "arr": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "nullable": {"type": ["null", "integer"]},
            "c": {"anyOf": [{"type": "boolean"}]},
            "optional": {"type": "string"},
        },
    }
    assert schema_arguments(schema) == {
        "s": "mock",
        "i": 1,
        "b": True,
        "e": "x",
        "o": {"n": 1},
        "arr": ["mock"],
        "nullable": 1,
        "c": True,
    }


def test_tool_choice_and_parallel_rules() -> None:
    config = MockConfig()
    both = body("[[tool:one]] [[tool:two]]", tools=TOOLS)
    assert [c.name for c in plan_reply(both, config).tool_calls] == ["one", "two"]
    assert [c.name for c in plan_reply({**both, "parallel_tool_calls": False}, config).tool_calls] == ["one"]
    assert plan_reply({**both, "tool_choice": "none"}, config).tool_calls == ()
    forced = plan_reply(body("no directive", tools=TOOLS, tool_choice="required"), config)
    assert [(c.name, c.arguments) for c in forced.tool_calls] == [("one", '{"a":"mock"}')]
    named = plan_reply(
        body("hi", tools=TOOLS, tool_choice={"type": "function", "function": {"name": "two"}}), config
    )
    assert [c.name for c in named.tool_calls] == ["two"]
    defaults = MockConfig(default_tool_calls=(DefaultToolCall("two", {"a": "z"}), DefaultToolCall("absent")))
    assert [c.arguments for c in plan_reply(body("hi", tools=TOOLS), defaults).tool_calls] == ['{"a":"z"}']
    assert plan_reply(body("[[tool:one]]"), config).tool_calls == ()  # no tools offered


def test_call_ids_are_deterministic_and_distinct() -> None:
    first = plan_reply(body("[[tool:one]] [[tool:one]]", tools=TOOLS), MockConfig())
    again = plan_reply(body("[[tool:one]] [[tool:one]]", tools=TOOLS), MockConfig())
    assert [c.id for c in first.tool_calls] == [c.id for c in again.tool_calls]
    assert len({c.id for c in first.tool_calls}) == 2


def test_stop_beats_tool_calls_and_max_tokens_cuts_arguments() -> None:
    config = MockConfig(tool_preamble="Checking STOP now.")
    stopped = plan_reply(body("[[tool:one]]", tools=TOOLS, stop=["STOP", "now"]), config)
    assert (stopped.content, stopped.finish_reason, stopped.stop_reason) == ("Checking ", "stop", "STOP")
    assert stopped.tool_calls == ()
    capped = plan_reply(
        body('[[tool:one {"a": "a long argument value"}]]', tools=TOOLS, max_tokens=4), MockConfig()
    )
    assert capped.finish_reason == "length"
    assert capped.completion_tokens == 4
    assert capped.tool_calls[0].arguments != '{"a":"a long argument value"}'
    assert capped.stop_reason is None


def test_reply_directive_and_cached_tokens() -> None:
    reply = plan_reply(body("[[reply:Exactly this.]] [[cached:1000]]"), MockConfig())
    assert reply.content == "Exactly this."
    assert reply.cached_tokens == reply.prompt_tokens
    assert reply.usage()["prompt_tokens_details"]["cached_tokens"] == reply.prompt_tokens


# ----- wire --------------------------------------------------------------------------------------------


def test_split_even() -> None:
    assert split_even("abcdefg", 3) == ["abc", "de", "fg"]
    assert split_even("ab", 5) == ["a", "b"]
    assert split_even("", 3) == []


def test_stream_frames_are_valid_openai_chunks() -> None:
    reply = plan_reply(body("[[text-then-tool:one]]", tools=TOOLS), MockConfig(reasoning="reasoning"))
    frames = stream_frames(
        reply, ResponseMeta("chatcmpl-1", 123, "gpt-4o", include_usage=True, echo_stop_reason=True)
    )
    assert frames[-1] == b"data: [DONE]\n\n"
    chunks = [json.loads(f.removeprefix(b"data: ")) for f in frames[:-1]]
    assert all(f.startswith(b"data: ") and f.endswith(b"\n\n") for f in frames)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == reply.total_tokens
    final = chunks[-2]["choices"][0]
    assert final == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
        "stop_reason": None,
    }
    fragments = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks[:-1]
        if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert fragments[0] == {
        "index": 0,
        "id": reply.tool_calls[0].id,
        "type": "function",
        "function": {"name": "one", "arguments": ""},
    }
    assert all(set(f) == {"index", "function"} for f in fragments[1:])
    assert "".join(f["function"]["arguments"] for f in fragments) == '{"a":"mock"}'
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning", "") for c in chunks[:-1])
    assert reasoning == reply.reasoning


def test_agent_loops_end_after_tool_results() -> None:
    config = MockConfig(default_tool_calls=(DefaultToolCall("one", {"a": "x"}),))
    first = plan_reply(body("go [[tool:two]]", tools=TOOLS), config)
    assert [c.name for c in first.tool_calls] == ["two"]
    call = first.tool_calls[0]
    history = [
        {"role": "user", "content": "go [[tool:two]]"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": "two", "arguments": call.arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "result text"},
    ]
    after = plan_reply({"model": "gpt-4o", "messages": history, "tools": TOOLS}, config)
    assert (after.content, after.tool_calls) == ("Tool two returned: result text", ())
    # Claude Code's extra text blocks arrive as a user message after the tool results.
    reminder = [*history, {"role": "user", "content": "<system-reminder>stay on task</system-reminder>"}]
    assert (
        plan_reply({"model": "gpt-4o", "messages": reminder, "tools": TOOLS}, config).content == after.content
    )
    # The configured default call is made once, then answered in text.
    default_call = plan_reply(body("hello", tools=TOOLS), config).tool_calls[0]
    answered = [
        {"role": "user", "content": "hello"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": default_call.id,
                    "type": "function",
                    "function": {"name": "one", "arguments": '{"a":"x"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": default_call.id, "content": "done"},
        {"role": "user", "content": "and now?"},
    ]
    assert plan_reply({"model": "gpt-4o", "messages": answered, "tools": TOOLS}, config).tool_calls == ()


def test_trailing_system_messages_do_not_hide_the_users_turn() -> None:
    # Claude Code sends agent/skill listings as a system message after the user's turn.
    request = body("[[tool:one]]", tools=TOOLS)
    request["messages"] = [
        {"role": "system", "content": "You are an agent."},
        *request["messages"],
        {"role": "system", "content": "Available agent types: ..."},
    ]
    assert [c.name for c in plan_reply(request, MockConfig()).tool_calls] == ["one"]
