"""`ccproxy_asgi.testing`: the mock upstream client, the in-process ASGI caller and the served mock upstream,
as a user testing their own app would use them."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from ccproxy_asgi import jsonutil
from ccproxy_asgi.app import build_endpoint
from ccproxy_asgi.endpoint.dispatch import AnthropicEndpoint
from ccproxy_asgi.errors import UpstreamError, UpstreamTimeoutError
from ccproxy_asgi.provider.openai import OpenAIProvider
from ccproxy_asgi.provider.retry import RetryPolicy
from ccproxy_asgi.testing import (
    MockConfig,
    MockResponse,
    MockUpstreamClient,
    UpstreamRequest,
    call_asgi,
    disconnect,
    mock_upstream_replies,
    scripted,
    serve_mock_upstream,
)
from ccproxy_asgi.tokens.counter import TokenCounter
from ccproxy_asgi.types import Message, Receive, Scope, Send
from ccproxy_asgi.upstream.base import UpstreamClient, UpstreamResponse
from tests.support.ratelimit_app import settings_for

UPSTREAM = "http://upstream.test/v1"
REQUEST = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}


def endpoint_with(client: MockUpstreamClient) -> AnthropicEndpoint:
    provider = OpenAIProvider(
        base_url=UPSTREAM,
        api_key=None,
        client=client,
        token_counter=TokenCounter(),
        retry=RetryPolicy(max_attempts=1),
    )
    return build_endpoint(settings_for(UPSTREAM), provider=provider)


# ----- the mock upstream client --------------------------------------------------------------------------


async def test_the_proxy_endpoint_answers_from_the_mock_upstreams_replies() -> None:
    client = MockUpstreamClient(mock_upstream_replies())
    endpoint = endpoint_with(client)
    result = await call_asgi(endpoint, "POST", "/v1/messages", json=REQUEST)
    assert result.status == 200, result.body
    message = result.json()
    assert message["type"] == "message"
    assert message["content"][0]["type"] == "text"
    assert message["content"][0]["text"]
    [sent] = client.requests
    assert (sent.method, sent.url) == ("POST", f"{UPSTREAM}/chat/completions")
    assert sent.json()["messages"][-1] == {"role": "user", "content": "hello"}

    streamed = await call_asgi(
        endpoint,
        "POST",
        "/v1/messages",
        json={**REQUEST, "stream": True},
    )
    assert streamed.status == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert b"event: message_stop" in streamed.body
    assert client.requests[1].json()["stream"] is True


async def test_an_upstream_error_and_a_transport_failure_reach_the_client_as_anthropic_errors() -> None:
    overloaded = MockResponse(503, json={"error": {"message": "busy", "type": "server_error"}})
    client = MockUpstreamClient(scripted(overloaded, UpstreamError("upstream connection error: refused")))
    endpoint = endpoint_with(client)
    first = await call_asgi(endpoint, "POST", "/v1/messages", json=REQUEST)
    assert first.status == 529
    assert first.json()["error"]["type"] == "overloaded_error"
    assert overloaded.closed
    second = await call_asgi(endpoint, "POST", "/v1/messages", json=REQUEST)
    assert second.status == 502
    assert len(client.requests) == 2


async def test_the_client_and_its_responses_satisfy_the_protocols() -> None:
    response = MockResponse(200, headers={"Retry-After": "2"}, content=(b"a", b"b"))
    async with MockUpstreamClient(lambda request: response) as client:
        assert isinstance(client, UpstreamClient)
        got = await client.send(
            "POST", "http://u/x", headers={"X-Key": "v"}, content=b"{}", timeout=3.0, first_byte_timeout=1.0
        )
        assert isinstance(got, UpstreamResponse)
        async with got:
            assert got.headers["retry-after"] == "2"
            assert list(got.headers) == ["Retry-After"], "the spelling as sent, as aiohttp keeps it"
            assert [chunk async for chunk in got.aiter_bytes()] == [b"a", b"b"]
            assert await got.read() == b"ab"
        assert response.closed
    assert client.closed
    assert client.requests == [
        UpstreamRequest("POST", "http://u/x", client.requests[0].headers, b"{}", 3.0, 1.0)
    ]
    assert client.requests[0].headers["x-key"] == "v"
    with pytest.raises(RuntimeError, match="closed"):
        await client.send("GET", "http://u/x", headers={})


async def test_a_handler_may_be_async_and_may_raise() -> None:
    async def slow(request: UpstreamRequest) -> MockResponse:
        await asyncio.sleep(0)
        return MockResponse(json={"echo": request.json()})

    answer = await MockUpstreamClient(slow).send("POST", "http://u", headers={}, content=b'{"a": 1}')
    assert answer.headers["content-type"] == "application/json"
    assert jsonutil.loads(await answer.read()) == {"echo": {"a": 1}}

    timing_out = MockUpstreamClient(scripted(UpstreamTimeoutError("read timeout")))
    with pytest.raises(UpstreamTimeoutError):
        await timing_out.send("POST", "http://u", headers={})
    with pytest.raises(AssertionError, match="no scripted answer left"):
        await timing_out.send("POST", "http://u", headers={})


async def test_the_mock_upstream_replies_answer_only_chat_completions() -> None:
    client = MockUpstreamClient(mock_upstream_replies(MockConfig()))
    missing = await client.send("GET", f"{UPSTREAM}/models", headers={})
    assert missing.status == 404


# ----- the in-process ASGI caller ------------------------------------------------------------------------


async def test_call_asgi_sends_the_request_and_records_the_response() -> None:
    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())
        seen.append(await receive())
        headers = [(b"x-a", b"1"), (b"X-A", b"2"), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"ok"', "more_body": True})
        await send({"type": "http.response.body", "body": b": true}"})
        seen.append(await receive())

    result = await call_asgi(
        app, "PUT", "/things", headers=[(b"x-b", b"3")], body=(b"ab", b"c"), query_string=b"q=1"
    )
    assert [m.get("body") for m in seen[:2]] == [b"ab", b"c"]
    assert [m.get("more_body") for m in seen[:2]] == [True, False]
    assert seen[2] == {"type": "http.disconnect"}, "once the response is complete"
    assert result.scope["method"] == "PUT"
    assert result.scope["query_string"] == b"q=1"
    assert result.scope["headers"] == [(b"x-b", b"3")]
    assert result.status == 201
    assert result.headers["x-a"] == "1"
    assert result.header_values("x-a") == ["1", "2"]
    assert result.json() == {"ok": True}
    assert result.complete


async def test_call_asgi_keeps_a_given_scope_and_can_disconnect_at_once() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        scope["after_body"] = (await receive())["type"]

    scope: Scope = {"path": "/given", "marker": 1}
    result = await call_asgi(app, scope=scope, after_body=disconnect)
    assert result.scope is scope
    assert scope["after_body"] == "http.disconnect"
    assert scope["path"] == "/given"
    assert scope["type"] == "http"
    assert not result.started
    assert not result.complete


# ----- the served mock upstream --------------------------------------------------------------------------


async def test_the_mock_upstream_is_served_on_a_free_port() -> None:
    async with serve_mock_upstream() as server, httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.post(
            "/chat/completions", json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert response.status_code == 200
        assert response.json()["object"] == "chat.completion"
        assert len(server.mock.recorder.entries()) == 1
