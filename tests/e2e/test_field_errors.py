"""End to end: a malformed request gets the same 400, word for word, from `/v1/messages` (whole or
streamed) and from `/v1/messages/count_tokens`, because the translation and the token count read the
request with the same field readers (`ccproxy_asgi.translate.fields`). Nothing reaches the upstream.
"""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tests.support.e2e import E2E

MODEL = "claude-sonnet-4-6"
PNG = "iVBORw0KGgo="
TOOL = {"name": "Read", "description": "Read a file.", "input_schema": {"type": "object"}}


def body(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 64, "messages": messages, **fields}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


HI = [user("hi")]
TAGS = "Input tag {!r} found using 'type' does not match any of the expected tags: "

CASES: list[tuple[dict[str, Any], str]] = [
    (
        body([user("hi"), assistant("hello"), user("again"), assistant([{"type": "text"}])]),
        "messages.3.content.0.text: Field required",
    ),
    (
        body([{"role": "robot", "content": "x"}]),
        "messages.0.role: Input should be 'user', 'assistant' or 'system'",
    ),
    (body([user(7)]), "messages.0.content: Input should be a valid string or list"),
    (body([user([{"type": "hologram"}])]), "messages.0.content.0: " + TAGS.format("hologram") + "'text', "),
    (
        body([user([{"type": "tool_use", "id": "t", "name": "Read", "input": {}}])]),
        "messages.0.content.0: 'tool_use' blocks are only allowed in assistant messages",
    ),
    (
        body(
            [
                assistant(
                    [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]
                )
            ]
        ),
        "messages.0.content.0: 'image' blocks are not allowed in assistant messages",
    ),
    (
        body([user([{"type": "image", "source": {"type": "ftp"}}])]),
        "messages.0.content.0.source: " + TAGS.format("ftp") + "'base64', 'url', 'file'",
    ),
    (
        body(
            [
                user(
                    [
                        {
                            "type": "document",
                            "source": {"type": "base64", "media_type": "text/csv", "data": "x"},
                        }
                    ]
                )
            ]
        ),
        "messages.0.content.0.source.media_type: Input should be 'application/pdf'",
    ),
    (
        body([user([{"type": "tool_result", "tool_use_id": "t", "content": 5}])]),
        "messages.0.content.0.content: Input should be a valid string or list",
    ),
    (
        body([assistant([{"type": "tool_use", "id": "t", "name": "Read", "input": []}])]),
        "messages.0.content.0.input: Input should be a valid dictionary",
    ),
    (body([user([{"type": "redacted_thinking"}])]), "messages.0.content.0.data: Field required"),
    (body(HI, system=[{"type": "image"}]), "system.0: " + TAGS.format("image") + "'text'"),
    (body(HI, tools=[{"name": "Read"}]), "tools.0.input_schema: Field required"),
    (body(HI, tools=[{"type": "bash_20250124"}]), "tools.0.name: Field required"),
    (
        body(HI, tools=[TOOL], tool_choice={"type": "sometimes"}),
        "tool_choice: " + TAGS.format("sometimes") + "'auto', 'any', 'tool', 'none'",
    ),
    (body(HI, thinking={"type": "enabled"}), "thinking.enabled.budget_tokens: Field required"),
    (
        body(HI, output_config={"effort": "extreme"}),
        "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'",
    ),
    (
        body(HI, output_config={"format": {"type": "json_schema"}}),
        "output_config.format.schema: Field required",
    ),
    (body("hi"), "messages: Input should be a valid list"),  # type: ignore[arg-type]
    ({"max_tokens": 64, "messages": HI}, "model: Field required"),
    ({"model": 7, "max_tokens": 64, "messages": HI}, "model: Input should be a valid string"),
    ({"model": "", "max_tokens": 64, "messages": HI}, "model: String should have at least 1 character"),
    ({"model": MODEL, "max_tokens": 64}, "messages: Field required"),
]


def _error(e2e: E2E, path: str, request: dict[str, Any]) -> str:
    response = e2e.post(path, request)
    assert response.status == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    message: str = error["message"]
    return message


@pytest.mark.parametrize(
    ("request_body", "expected"), CASES, ids=[expected.split(":")[0] for _, expected in CASES]
)
def test_the_same_error_on_both_routes(e2e: E2E, request_body: dict[str, Any], expected: str) -> None:
    messages = _error(e2e, "/v1/messages", request_body)
    streamed = _error(e2e, "/v1/messages?beta=true", {**request_body, "stream": True})
    counted = _error(e2e, "/v1/messages/count_tokens?beta=true", request_body)
    assert messages == streamed == counted
    assert messages.startswith(expected), messages
    assert e2e.upstream_requests() == []


def test_the_same_error_through_the_sdk(e2e: E2E) -> None:
    client = e2e.client()
    messages: Any = [user("hi"), assistant([{"type": "tool_use", "id": "t", "name": "Read"}])]
    with pytest.raises(anthropic.BadRequestError) as created:
        client.messages.create(model=MODEL, max_tokens=64, messages=messages)
    with pytest.raises(anthropic.BadRequestError) as counted:
        client.messages.count_tokens(model=MODEL, messages=messages)
    expected = {"type": "invalid_request_error", "message": "messages.1.content.0.input: Field required"}
    assert _error_of(created.value) == _error_of(counted.value) == expected
    assert e2e.upstream_requests() == []


def _error_of(exc: anthropic.BadRequestError) -> Any:
    body: Any = exc.body
    return body["error"]
