"""`ErrorNormalizationMiddleware` in process, alone around small apps, bare ASGI, Starlette and FastAPI."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from ccproxy_asgi.context import get_context
from ccproxy_asgi.errors import OverloadedError, RateLimitError, error_class_for_status
from ccproxy_asgi.middleware import ErrorNormalizationMiddleware
from ccproxy_asgi.middleware.error_normalization import is_envelope, wire_status
from ccproxy_asgi.testing import ASGIResult, call_asgi, disconnect
from ccproxy_asgi.types import ASGIApp, Message, Receive, Scope, Send

SECRET = "sk-secret-in-an-exception-0123456789"


async def call(
    app: ASGIApp,
    path: str = "/",
    *,
    method: str = "GET",
    body: bytes | Sequence[bytes] = b"",
    headers: Sequence[tuple[bytes, bytes]] = (),
    request_id: str | None = None,
) -> ASGIResult:
    """One HTTP request through `app` from a client that leaves once its body is sent, every message the
    app sends recorded; `request_id` is put on the request's context first."""
    scope: Scope = {}
    if request_id is not None:
        get_context(scope).request_id = request_id
    return await call_asgi(app, method, path, body=body, headers=headers, scope=scope, after_body=disconnect)


def assert_envelope(result: ASGIResult, status: int, error_type: str, request_id: str = "req_test") -> str:
    assert result.status == status
    assert result.headers.get("content-type") == "application/json"
    assert result.headers.get("request-id") == request_id
    assert int(result.headers.get("content-length") or -1) == len(result.body)
    payload = result.json()
    assert is_envelope(payload), payload
    assert payload["error"]["type"] == error_type
    assert payload["request_id"] == request_id
    message: str = payload["error"]["message"]
    return message


# ----- exceptions ----------------------------------------------------------------------------------------


async def test_proxy_error_becomes_its_envelope_with_retry_headers() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RateLimitError(
            "slow down", retry_after=1.5, headers={"anthropic-ratelimit-requests-limit": "5"}
        )

    result = await call(ErrorNormalizationMiddleware(app), request_id="req_test")
    assert assert_envelope(result, 429, "rate_limit_error") == "slow down"
    assert result.headers.get("retry-after") == "2"
    assert result.headers.get("retry-after-ms") == "1500"
    assert result.headers.get("anthropic-ratelimit-requests-limit") == "5"


async def test_unhandled_exception_is_a_500_without_traceback_or_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError(f"boom with key {SECRET}")

    with caplog.at_level(logging.ERROR, logger="ccproxy_asgi.errors"):
        result = await call(ErrorNormalizationMiddleware(app), request_id="req_test")
    assert assert_envelope(result, 500, "api_error") == "internal server error"
    assert SECRET not in result.body.decode()
    assert b"Traceback" not in result.body
    assert b"RuntimeError" not in result.body
    assert any(record.exc_info for record in caplog.records), "the error is logged for the operator"


async def test_generates_a_request_id_when_no_layer_set_one() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise OverloadedError("busy")

    result = await call(ErrorNormalizationMiddleware(app))
    request_id = result.json()["request_id"]
    assert request_id.startswith("req_")
    assert result.headers.get("request-id") == request_id
    assert result.status == 529


# ----- inner error responses -----------------------------------------------------------------------------


async def test_envelope_passes_through_and_gets_request_id() -> None:
    envelope = {"type": "error", "error": {"type": "not_found_error", "message": "no such model"}}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await JSONResponse(envelope, status_code=404, headers={"x-extra": "kept"})(scope, receive, send)

    result = await call(ErrorNormalizationMiddleware(app), request_id="req_test")
    assert assert_envelope(result, 404, "not_found_error") == "no such model"
    assert result.headers.get("x-extra") == "kept"


async def test_envelope_with_request_id_is_kept_as_is() -> None:
    envelope = {"type": "error", "error": {"type": "api_error", "message": "x"}, "request_id": "req_inner"}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await JSONResponse(envelope, status_code=500)(scope, receive, send)

    result = await call(ErrorNormalizationMiddleware(app), request_id="req_inner")
    assert result.json() == envelope


@pytest.mark.parametrize(
    ("inner", "content_type", "body", "status", "error_type", "message"),
    [
        (404, "text/plain", b"Not Found", 404, "not_found_error", "Not Found"),
        (400, "application/json", b'{"detail":"bad thing"}', 400, "invalid_request_error", "bad thing"),
        (401, "application/json", b'{"message":"who are you"}', 401, "authentication_error", "who are you"),
        (402, "text/plain", b"", 402, "billing_error", "Payment Required"),
        (403, "application/json", b'{"error":"forbidden"}', 403, "permission_error", "forbidden"),
        # An inner app's 408 is its client being too slow, as the proxy's own 408 (the status table); the
        # upstream's 408 is the proxy's timeout and becomes a 504 (provider.error_mapping).
        (408, "text/plain", b"", 408, "timeout_error", "Request Timeout"),
        # Anthropic has no 409: it is retried as a 500 api_error, as an upstream's 409 is.
        (409, "text/plain", b"conflict", 500, "api_error", "conflict"),
        (413, "text/plain", b"", 413, "request_too_large", "Request Entity Too Large"),
        (415, "text/plain", b"Unsupported", 400, "invalid_request_error", "Unsupported"),
        (
            422,
            "application/json",
            b'{"detail":[{"loc":["body","messages",0,"role"],"msg":"Input should be user","input":"x"}]}',
            400,
            "invalid_request_error",
            "messages.0.role: Input should be user",
        ),
        (429, "application/json", b'{"error":{"message":"later"}}', 429, "rate_limit_error", "later"),
        (
            500,
            "text/plain",
            b"Traceback (most recent call last): ...",
            500,
            "api_error",
            "Internal Server Error",
        ),
        (502, "text/html", b"<html>bad gateway</html>", 502, "api_error", "Bad Gateway"),
        (503, "text/plain", b"", 529, "overloaded_error", "Service Unavailable"),
        (504, "text/plain", b"", 504, "timeout_error", "Gateway Timeout"),
        (507, "text/plain", b"", 500, "api_error", "Insufficient Storage"),
    ],
)
async def test_non_envelope_error_bodies_are_converted(
    inner: int, content_type: str, body: bytes, status: int, error_type: str, message: str
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": inner, "headers": headers})
        # In two pieces: the layer must hold the whole body before judging it.
        await send({"type": "http.response.body", "body": body[:3], "more_body": True})
        await send({"type": "http.response.body", "body": body[3:]})

    result = await call(ErrorNormalizationMiddleware(app), request_id="req_test")
    assert assert_envelope(result, status, error_type) == message


def test_wire_status_table() -> None:
    assert wire_status(422) == (400, "invalid_request_error")
    assert wire_status(503) == (529, "overloaded_error")
    assert wire_status(418) == (400, "invalid_request_error")
    assert wire_status(599) == (500, "api_error")


@pytest.mark.parametrize("status", range(400, 600))
def test_wire_status_is_the_error_class_of_the_status(status: int) -> None:
    cls = error_class_for_status(status)
    assert wire_status(status) == (cls.status, cls.error_type)


async def test_successful_responses_pass_untouched() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("fine", headers={"x-a": "1"})(scope, receive, send)

    result = await call(ErrorNormalizationMiddleware(app), request_id="req_test")
    assert result.status == 200
    assert result.body == b"fine"
    assert result.headers.get("x-a") == "1"


async def test_secrets_in_an_inner_error_message_are_masked() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await JSONResponse({"detail": f"key {SECRET} refused"}, status_code=401)(scope, receive, send)

    result = await call(ErrorNormalizationMiddleware(app), request_id="req_test")
    assert SECRET not in result.body.decode()
    assert assert_envelope(result, 401, "authentication_error") == "key *** refused"


async def test_head_requests_pass_through() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("", status_code=404)(scope, receive, send)

    result = await call(ErrorNormalizationMiddleware(app), method="HEAD", request_id="req_test")
    assert result.status == 404
    assert result.body == b""


async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    layer = ErrorNormalizationMiddleware(app)

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    await layer({"type": "lifespan"}, receive, send)
    await layer({"type": "websocket", "path": "/"}, receive, send)
    assert seen == ["lifespan", "websocket"]


async def test_app_returning_without_a_response_gets_a_500() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    result = await call(ErrorNormalizationMiddleware(app), request_id="req_test")
    assert_envelope(result, 500, "api_error")


# ----- streams ---------------------------------------------------------------------------------------------

SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8")]
FIRST_EVENT = b'event: message_start\ndata: {"type":"message_start"}\n\n'


def sse_events(body: bytes) -> list[tuple[str, Any]]:
    events = []
    for frame in body.decode().split("\n\n"):
        if frame.strip():
            lines = dict(line.split(": ", 1) for line in frame.split("\n"))
            events.append((lines["event"], json.loads(lines["data"])))
    return events


async def test_exception_after_stream_start_becomes_an_error_event() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await send({"type": "http.response.body", "body": FIRST_EVENT, "more_body": True})
        raise OverloadedError("upstream went away")

    result = await call(ErrorNormalizationMiddleware(app), request_id="req_test")
    assert result.status == 200
    assert result.complete
    events = sse_events(result.body)
    assert [name for name, _ in events] == ["message_start", "error"]
    assert events[-1][1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "upstream went away"},
        "request_id": "req_test",
    }


async def test_unhandled_exception_mid_stream_is_an_api_error_event() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await send({"type": "http.response.body", "body": FIRST_EVENT, "more_body": True})
        raise KeyError(SECRET)

    result = await call(ErrorNormalizationMiddleware(app), request_id="req_test")
    assert sse_events(result.body)[-1][1]["error"] == {
        "type": "api_error",
        "message": "internal server error",
    }
    assert SECRET not in result.body.decode()
    assert result.complete


async def test_stream_left_open_by_the_app_is_ended_with_an_error_event() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await send({"type": "http.response.body", "body": FIRST_EVENT, "more_body": True})

    result = await call(ErrorNormalizationMiddleware(app), request_id="req_test")
    assert [name for name, _ in sse_events(result.body)] == ["message_start", "error"]
    assert result.complete


async def test_second_response_start_never_reaches_the_client() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await send({"type": "http.response.body", "body": FIRST_EVENT, "more_body": True})
        # A careless inner layer answering its own error after the stream began.
        await JSONResponse({"detail": "late"}, status_code=429)(scope, receive, send)

    result = await call(ErrorNormalizationMiddleware(app), request_id="req_test")
    assert [m["type"] for m in result.messages].count("http.response.start") == 1
    assert result.status == 200
    assert [name for name, _ in sse_events(result.body)] == ["message_start", "error"]
    assert result.complete


async def test_finished_stream_is_left_alone() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await send({"type": "http.response.body", "body": FIRST_EVENT, "more_body": False})
        raise RuntimeError("after the end")

    result = await call(ErrorNormalizationMiddleware(app), request_id="req_test")
    assert result.body == FIRST_EVENT


async def test_exception_in_a_started_json_body_aborts_the_connection() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"partial":', "more_body": True})
        raise RuntimeError("mid-body")

    # Ending the body would pass a truncated JSON document off as complete: the server must abort instead.
    with pytest.raises(RuntimeError, match="mid-body"):
        await call(ErrorNormalizationMiddleware(app), request_id="req_test")


# ----- body size -------------------------------------------------------------------------------------------


async def test_declared_oversized_body_is_a_413_without_calling_the_app() -> None:
    called = False

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal called
        called = True

    result = await call(
        ErrorNormalizationMiddleware(app, max_body_bytes=10),
        method="POST",
        body=b"x" * 11,
        headers=[(b"content-length", b"11")],
        request_id="req_test",
    )
    assert not called
    assert "10 bytes" in assert_envelope(result, 413, "request_too_large")


async def test_streamed_oversized_body_is_a_413_whatever_the_app_makes_of_it() -> None:
    async def starlette_endpoint(request: Request) -> JSONResponse:
        return JSONResponse({"size": len(await request.body())})

    # Starlette's own ServerErrorMiddleware answers the failed read with a text 500 and re-raises.
    app = Starlette(routes=[Route("/", starlette_endpoint, methods=["POST"])])
    result = await call(
        ErrorNormalizationMiddleware(app, max_body_bytes=10),
        method="POST",
        body=[b"x" * 6, b"x" * 6],
        request_id="req_test",
    )
    assert_envelope(result, 413, "request_too_large")


async def test_body_within_the_limit_is_read_normally() -> None:
    async def starlette_endpoint(request: Request) -> JSONResponse:
        return JSONResponse({"size": len(await request.body())})

    app = Starlette(routes=[Route("/", starlette_endpoint, methods=["POST"])])
    result = await call(
        ErrorNormalizationMiddleware(app, max_body_bytes=12), method="POST", body=[b"x" * 6, b"x" * 6]
    )
    assert result.status == 200
    assert result.json() == {"size": 12}


# ----- frameworks ----------------------------------------------------------------------------------------


def starlette_app() -> Starlette:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    async def crash(request: Request) -> PlainTextResponse:
        raise RuntimeError(SECRET)

    return Starlette(
        debug=True,  # the debug 500 page is a full HTML traceback: it must never reach a client
        routes=[Route("/hello", hello), Route("/crash", crash)],
        middleware=[Middleware(ErrorNormalizationMiddleware, max_body_bytes=1024)],
    )


async def test_starlette_404_405_and_crash_are_envelopes() -> None:
    app = starlette_app()
    assert (await call(app, "/hello")).body == b"hello"
    assert "Not Found" in assert_envelope(
        await call(app, "/missing", request_id="req_test"), 404, "not_found_error"
    )
    not_allowed = await call(app, "/hello", method="POST", request_id="req_test")
    assert_envelope(not_allowed, 405, "invalid_request_error")
    assert not_allowed.headers.get("allow") is not None
    crash = await call(app, "/crash", request_id="req_test")
    assert assert_envelope(crash, 500, "api_error") == "internal server error"
    assert SECRET not in crash.body.decode()
    assert b"Traceback" not in crash.body


async def test_on_one_route_of_a_starlette_app() -> None:
    async def fails(request: Request) -> PlainTextResponse:
        raise RateLimitError("route limit", retry_after=3)

    async def other(request: Request) -> PlainTextResponse:
        return PlainTextResponse("not normalized", status_code=418)

    app = Starlette(
        routes=[
            Route("/limited", fails, middleware=[Middleware(ErrorNormalizationMiddleware)]),
            Route("/other", other),
        ]
    )
    result = await call(app, "/limited", request_id="req_test")
    assert assert_envelope(result, 429, "rate_limit_error") == "route limit"
    assert result.headers.get("retry-after") == "3"
    assert (await call(app, "/other")).body == b"not normalized"


class Query(BaseModel):
    model: str
    max_tokens: int


def fastapi_app() -> FastAPI:
    api = FastAPI()

    @api.post("/v1/messages")
    async def messages(query: Query) -> dict[str, str]:
        return {"model": query.model}

    @api.get("/forbidden")
    async def forbidden() -> dict[str, str]:
        raise HTTPException(status_code=403, detail="not for you")

    api.add_middleware(ErrorNormalizationMiddleware)
    return api


async def test_fastapi_422_becomes_a_400_naming_the_fields() -> None:
    body = json.dumps({"max_tokens": "many", "secret_input": SECRET}).encode()
    result = await call(
        fastapi_app(),
        "/v1/messages",
        method="POST",
        body=body,
        headers=[(b"content-type", b"application/json")],
        request_id="req_test",
    )
    message = assert_envelope(result, 400, "invalid_request_error")
    assert "model: Field required" in message
    assert "max_tokens: " in message


async def test_fastapi_http_exception_and_404() -> None:
    app = fastapi_app()
    assert assert_envelope(await call(app, "/forbidden", request_id="req_test"), 403, "permission_error") == (
        "not for you"
    )
    assert (
        assert_envelope(await call(app, "/nope", request_id="req_test"), 404, "not_found_error")
        == "Not Found"
    )
    ok = await call(
        app,
        "/v1/messages",
        method="POST",
        body=b'{"model": "m", "max_tokens": 1}',
        headers=[(b"content-type", b"application/json")],
    )
    assert ok.status == 200
    assert ok.json() == {"model": "m"}


async def test_fastapi_invalid_json_is_a_400_that_says_so() -> None:
    result = await call(
        fastapi_app(),
        "/v1/messages",
        method="POST",
        body=b'{"model": ',
        headers=[(b"content-type", b"application/json")],
        request_id="req_test",
    )
    assert assert_envelope(result, 400, "invalid_request_error") == "request body is not valid JSON"
