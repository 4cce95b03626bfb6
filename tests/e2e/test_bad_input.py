"""End to end: bad input through the real server gets an Anthropic error envelope, never a 500.

Each answer must carry the right status, `{"type": "error", "error": {"type", "message"}, "request_id"}`,
and the same id in the `request-id` header; nothing may reach the upstream.
"""

from __future__ import annotations

import json
from typing import Any, cast

import anthropic
import pytest

from tests.support.e2e import E2E

MODEL = "claude-sonnet-4-6"
GOOD: dict[str, Any] = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


def assert_envelope(response: Any, status: int, error_type: str, *, mentions: str = "") -> dict[str, Any]:
    assert response.status == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert mentions.lower() in body["error"]["message"].lower()
    assert body["request_id"].startswith("req_")
    assert response.headers["request-id"] == body["request_id"]
    return body


@pytest.mark.parametrize(
    ("content", "mentions"),
    [
        (b'{"model": "claude-sonnet-4-6", "max_tokens": 5,', "json"),
        (b"", "empty"),
        (b"   ", "empty"),
        (b"[1, 2, 3]", "object"),
        (b'"just a string"', "object"),
        (b"\xff\xfe not utf-8", ""),
    ],
    ids=["truncated-json", "empty", "blank", "array", "string", "binary"],
)
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_unparseable_bodies(e2e: E2E, path: str, content: bytes, mentions: str) -> None:
    response = e2e.post(path + "?beta=true", content)
    assert_envelope(response, 400, "invalid_request_error", mentions=mentions)
    assert e2e.upstream_requests() == []


@pytest.mark.parametrize(
    ("change", "mentions"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": "64"}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"model": None}, "model"),
        ({"model": 42}, "model"),
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
        ({"messages": [{"role": "user"}]}, "content"),
        ({"messages": [{"role": "user", "content": [{"type": "hologram"}]}]}, "hologram"),
        ({"stream": "yes"}, "stream"),
        ({"temperature": "hot"}, "temperature"),
        ({"system": 7}, "system"),
        ({"tools": {"name": "x"}}, "tools"),
        ({"tools": [{"name": "x"}]}, "input_schema"),
        (
            {
                "tool_choice": {"type": "sometimes"},
                "tools": [{"name": "x", "input_schema": {"type": "object"}}],
            },
            "tool_choice",
        ),
        ({"thinking": {"type": "enabled"}}, "budget_tokens"),
        ({"metadata": {"user_id": 5}}, "user_id"),
        ({"stop_sequences": "END"}, "stop_sequences"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_invalid_messages_requests(e2e: E2E, change: dict[str, Any], mentions: str, stream: bool) -> None:
    body = {**GOOD, "stream": stream, **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = e2e.post("/v1/messages", body)
    assert_envelope(response, 400, "invalid_request_error", mentions=mentions)
    assert e2e.upstream_requests() == []


def test_invalid_request_through_the_sdk(e2e: E2E) -> None:
    no_content = cast(Any, [{"role": "user"}])  # invalid on purpose: the SDK's types forbid it
    with pytest.raises(anthropic.BadRequestError) as caught:
        e2e.client().messages.create(model=MODEL, max_tokens=64, messages=no_content)
    assert caught.value.status_code == 400
    assert caught.value.request_id
    assert caught.value.request_id.startswith("req_")
    assert e2e.upstream_requests() == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/messages"),
        ("PUT", "/v1/messages"),
        ("DELETE", "/v1/messages"),
        ("GET", "/v1/messages/count_tokens"),
        ("POST", "/v1/models"),
        ("DELETE", "/v1/models/gpt-4o"),
        ("POST", "/"),
    ],
)
def test_wrong_method_is_405(e2e: E2E, method: str, path: str) -> None:
    response = e2e.http().request(method, path, content=json.dumps(GOOD))
    response_like = _Raw(response)
    assert_envelope(response_like, 405, "invalid_request_error", mentions=method)
    assert e2e.upstream_requests() == []


@pytest.mark.parametrize("path", ["/v1/complete", "/v2/messages", "/v1/messages/batches", "/favicon.ico"])
def test_unknown_path_is_404(e2e: E2E, path: str) -> None:
    assert_envelope(e2e.post(path, GOOD), 404, "not_found_error")
    assert_envelope(_Raw(e2e.http().get(path)), 404, "not_found_error")
    assert e2e.upstream_requests() == []


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_oversized_body_is_413(e2e: E2E, path: str) -> None:
    url = e2e.proxy(max_request_bytes=4096)
    big = {**GOOD, "messages": [{"role": "user", "content": "x" * 20_000}]}
    assert_envelope(e2e.post(path, big, base_url=url), 413, "request_too_large", mentions="4096")
    # Under the limit the same proxy serves normally.
    small = e2e.post(path, GOOD, base_url=url)
    assert small.status == 200
    expected = 1 if path == "/v1/messages" else 0
    assert len(e2e.upstream_requests()) == expected


def test_oversized_body_through_the_sdk(e2e: E2E) -> None:
    client = e2e.client(e2e.proxy(max_request_bytes=4096))
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "y" * 10_000}]
        )
    assert caught.value.status_code == 413
    assert caught.value.request_id
    assert caught.value.request_id.startswith("req_")


class _Raw:
    """An httpx response with the attributes `assert_envelope` reads."""

    def __init__(self, response: Any) -> None:
        self.status = response.status_code
        self.headers = response.headers
        self.text = response.text

    def json(self) -> Any:
        return json.loads(self.text)
