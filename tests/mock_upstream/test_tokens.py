"""Prompt-token counting of OpenAI chat requests (`ccproxy_asgi.tokens.openai_chat`)."""

from __future__ import annotations

import pytest

from ccproxy_asgi import jsonutil
from ccproxy_asgi.tokens import openai_chat
from ccproxy_asgi.tokens.openai_chat import (
    FILE_TOKENS,
    IMAGE_TOKENS,
    ChatTokenCounter,
    count_chat_prompt_tokens,
    count_text_tokens,
)

# The example conversation of OpenAI's cookbook "How to count tokens with tiktoken"; the cookbook's
# num_tokens_from_messages gives 129 for gpt-4 (cl100k_base).
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch "
        "base on opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


def test_matches_the_cookbook() -> None:
    assert count_chat_prompt_tokens({"model": "gpt-4", "messages": COOKBOOK_MESSAGES}) == 129


def test_parts_tool_calls_and_tools() -> None:
    counter = ChatTokenCounter("gpt-4o")
    text = counter.text
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "file", "file": {"file_data": "x"}},
        ],
    }
    assert counter.message(message) == 3 + text("user") + text("look") + IMAGE_TOKENS + FILE_TOKENS
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
        ],
    }
    assert counter.message(assistant) == 3 + text("assistant") + text("f") + text('{"a":1}')
    tool = {"role": "tool", "tool_call_id": "call_1", "content": "ok"}
    assert counter.message(tool) == 3 + text("tool") + text("call_1") + text("ok")
    function = {"name": "f", "description": "d", "parameters": {"type": "object"}}
    body = {"model": "gpt-4o", "messages": [message], "tools": [{"type": "function", "function": function}]}
    assert count_chat_prompt_tokens(body) == 3 + counter.message(message) + text(jsonutil.dumps_str(function))


def test_special_token_text_is_counted_not_refused() -> None:
    assert count_text_tokens("<|endoftext|>", "gpt-4o") > 1


def test_estimate_without_an_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai_chat, "encoding_for_model", lambda model: None)
    counter = ChatTokenCounter("anything")
    assert not counter.exact
    assert counter.text("abcdefghi") == 3
    assert counter.head("abcdefghijkl", 2) == ("abcdefgh", 2)
    assert counter.messages([{"role": "user", "content": "abcd", "name": "bob"}]) == 3 + 3 + 1 + 1 + 1 + 1


def test_head_cuts_at_token_boundaries() -> None:
    counter = ChatTokenCounter("gpt-4o")
    text = "one two three four five"
    prefix, used = counter.head(text, 2)
    assert used == 2
    assert text.startswith(prefix)
    assert counter.text(prefix) == 2
    assert counter.head(text, 100) == (text, counter.text(text))
    assert counter.head(text, 0) == ("", 0)
