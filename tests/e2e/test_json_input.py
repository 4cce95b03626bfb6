"""Lone surrogate escapes are valid JSON: the proxy accepts them and sends the upstream valid text.

JavaScript's `JSON.stringify` writes `"\\ud83d"` when text is cut in the middle of an emoji; a client
whose conversation holds one would otherwise get a 400 on every later turn.
"""

from __future__ import annotations

import pytest

from ccproxy_asgi import jsonutil
from tests.support.e2e import E2E

MODEL = "claude-sonnet-4-6"


def body_with_text(escaped: bytes) -> bytes:
    """A Messages body whose one user text is `escaped`, written as raw JSON string content."""
    return (
        b'{"model": "' + MODEL.encode() + b'", "max_tokens": 16, '
        b'"messages": [{"role": "user", "content": "' + escaped + b'"}]}'
    )


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        (rb"cut \ud83d", "cut \ufffd"),
        (rb"pair \ud83d\ude00 ok", "pair \U0001f600 ok"),
        (rb"low first \ude00", "low first \ufffd"),
        (rb"two highs \ud83d\ud83d\ude00", "two highs \ufffd\U0001f600"),
    ],
    ids=["lone-high", "valid-pair", "lone-low", "high-before-pair"],
)
def test_messages_accept_surrogate_escapes_and_forward_valid_text(
    e2e: E2E, escaped: bytes, text: str
) -> None:
    response = e2e.post("/v1/messages?beta=true", body_with_text(escaped))
    assert response.status == 200, response.text
    assert response.json()["type"] == "message"
    # The upstream got UTF-8 it can decode, with U+FFFD where the lone half was.
    forwarded = e2e.upstream_body()["messages"]
    assert forwarded[-1]["content"] == text


def test_count_tokens_accepts_a_lone_surrogate(e2e: E2E) -> None:
    response = e2e.post("/v1/messages/count_tokens", body_with_text(rb"cut \ud83d"))
    assert response.status == 200, response.text
    assert response.json()["input_tokens"] > 0


def test_streaming_request_with_a_lone_surrogate(e2e: E2E) -> None:
    body = body_with_text(rb"cut \udbff").replace(b'"max_tokens"', b'"stream": true, "max_tokens"')
    response = e2e.post("/v1/messages", body)
    assert response.status == 200, response.text
    assert response.events[-1][0] == "message_stop"
    assert e2e.upstream_body()["messages"][-1]["content"] == "cut \ufffd"


@pytest.mark.parametrize(
    "content",
    [
        body_with_text(rb"cut \ud83d")[:-3],  # truncated after the escape
        b'{"model": NaN, "max_tokens": 16, "messages": "\\ud800"}',  # NaN is not JSON
        b'{"messages": "\\ud800"} trailing',
        b"\xed\xa0\xbd raw surrogate bytes are not UTF-8",
    ],
    ids=["truncated", "nan", "trailing", "raw-surrogate-bytes"],
)
def test_invalid_json_with_a_surrogate_escape_is_still_a_400(e2e: E2E, content: bytes) -> None:
    response = e2e.post("/v1/messages", content)
    assert response.status == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert e2e.upstream_requests() == []


# --- the parser itself --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (rb'"\ud800"', "\ufffd"),
        (rb'"\uDBFF\uDFFF"', "\U0010ffff"),  # a valid pair, upper-case hex
        (rb'"\udc00\ud800"', "\ufffd\ufffd"),  # low then high: neither is a pair
        (rb'{"\ud800": [1, "\udfff"]}', {"\ufffd": [1, "\ufffd"]}),  # keys and nested strings
        (rb'"\\ud800"', "\\ud800"),  # an escaped backslash, then plain text: no escape at all
        (rb'"\\\ud800"', "\\\ufffd"),  # an escaped backslash, then a lone escape
        (rb'"a\u0041\ud800"', "aA\ufffd"),
    ],
)
def test_loads_replaces_only_lone_surrogate_escapes(raw: bytes, value: object) -> None:
    assert jsonutil.loads(raw) == value
    assert jsonutil.loads(raw.decode()) == value
    jsonutil.dumps(jsonutil.loads(raw))  # re-encodable: no surrogate left


def test_loads_keeps_the_original_error_when_there_is_nothing_to_repair() -> None:
    with pytest.raises(jsonutil.JSONDecodeError, match="trailing comma"):
        jsonutil.loads(b'{"a": 1,}')
