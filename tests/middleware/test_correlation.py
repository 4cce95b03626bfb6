"""`CorrelationMiddleware` in process: the id in, out, in the context and on log records; the access line."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from ccproxy_asgi.context import Usage, get_context
from ccproxy_asgi.errors import RateLimitError
from ccproxy_asgi.logs import ACCESS_LOGGER, JsonFormatter, RequestIdFilter, current_request_id
from ccproxy_asgi.middleware import CorrelationMiddleware, ErrorNormalizationMiddleware, is_valid_request_id
from ccproxy_asgi.testing import call_asgi
from ccproxy_asgi.types import ASGIApp, Message, Receive, Scope, Send

app_logger = logging.getLogger("tests.correlation.app")


class Capture(logging.Handler):
    """Every record, as formatted by the JSON formatter behind the request-id filter."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(RequestIdFilter())
        self.setFormatter(JsonFormatter())
        self.records: list[logging.LogRecord] = []
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(json.loads(self.format(record)))

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["logger"] == ACCESS_LOGGER]


@pytest.fixture
def logs() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def call(
    app: ASGIApp, path: str = "/", *, headers: Sequence[tuple[bytes, bytes]] = (), method: str = "GET"
) -> tuple[int, dict[str, list[str]], bytes]:
    """One request through `app`, a key in its query string: status, headers (name -> every value), body."""
    result = await call_asgi(
        app, method, path, headers=headers, query_string=b"key=sk-in-the-query-0123456789"
    )
    return result.status, {name: result.header_values(name) for name in result.headers}, result.body


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with what it saw: the context's id and the logging contextvar's; logs one line."""
    ctx = get_context(scope)
    app_logger.info("inside the app")
    payload = {"ctx": ctx.request_id, "var": current_request_id()}
    # An inner layer's own request-id header must not end up twice on the response.
    await JSONResponse(payload, headers={"request-id": "inner-value"})(scope, receive, send)


async def test_generates_an_anthropic_style_id_and_puts_it_everywhere(logs: Capture) -> None:
    status, headers, body = await call(CorrelationMiddleware(echo_app))
    request_id = headers["request-id"][0]
    assert status == 200
    assert headers["request-id"] == [request_id]
    assert request_id.startswith("req_")
    assert len(request_id) == 28
    assert json.loads(body) == {"ctx": request_id, "var": request_id}
    inside = [line for line in logs.lines if line["message"] == "inside the app"]
    assert inside[0]["request_id"] == request_id
    assert current_request_id() is None, "the contextvar is reset after the request"


async def test_keeps_a_valid_client_id() -> None:
    _, headers, body = await call(
        CorrelationMiddleware(echo_app), headers=[(b"request-id", b"req_client123")]
    )
    assert headers["request-id"] == ["req_client123"]
    assert json.loads(body)["ctx"] == "req_client123"


async def test_accepts_x_request_id_and_prefers_request_id() -> None:
    layer = CorrelationMiddleware(echo_app)
    _, headers, _ = await call(layer, headers=[(b"x-request-id", b"3f2b8c9e-1d4a-4f6b-9e2a-0c1d2e3f4a5b")])
    assert headers["request-id"] == ["3f2b8c9e-1d4a-4f6b-9e2a-0c1d2e3f4a5b"]
    _, headers, _ = await call(layer, headers=[(b"x-request-id", b"second"), (b"request-id", b"first")])
    assert headers["request-id"] == ["first"]


@pytest.mark.parametrize(
    "value",
    [b"x" * 129, b"bad id with spaces", b"<script>", b"a\x01b", b"-leading-dash", b"", b"caf\xc3\xa9"],
)
async def test_invalid_ids_are_replaced_with_a_warning(value: bytes, logs: Capture) -> None:
    _, headers, _ = await call(CorrelationMiddleware(echo_app), headers=[(b"request-id", value)])
    assert headers["request-id"][0].startswith("req_")
    warnings = [record for record in logs.records if record.levelno == logging.WARNING]
    assert warnings
    assert "invalid request-id header" in warnings[0].getMessage()


def test_validator() -> None:
    assert is_valid_request_id("req_011CUx7ZxTQkqnGbqBBYJpfA")
    assert is_valid_request_id("a" * 128)
    assert not is_valid_request_id("a" * 129)
    assert is_valid_request_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert not is_valid_request_id("a\nb")
    assert not is_valid_request_id("a b")
    assert not is_valid_request_id("")


async def test_custom_header_name_and_generator() -> None:
    layer = CorrelationMiddleware(
        echo_app, header_name="X-Correlation-ID", fallback_header_names=(), generator=lambda: "gen-1"
    )
    _, headers, _ = await call(layer, headers=[(b"x-correlation-id", b"corr-7")])
    assert headers["request-id"] == ["corr-7"]
    assert headers["x-correlation-id"] == ["corr-7"]
    _, headers, _ = await call(layer, headers=[(b"x-request-id", b"ignored")])
    assert headers["request-id"] == ["gen-1"]


async def test_an_id_already_in_the_context_wins() -> None:
    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        get_context(scope).request_id = "req_outer"
        await CorrelationMiddleware(echo_app)(scope, receive, send)

    _, headers, _ = await call(outer, headers=[(b"request-id", b"req_client")])
    assert headers["request-id"] == ["req_outer"]


async def test_unhandled_error_still_answers_with_the_id_and_reraises(logs: Capture) -> None:
    async def crash(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    messages: list[Message] = []
    scope: Scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"request-id", b"req_c1")]}

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        messages.append(message)

    with pytest.raises(RuntimeError):  # the server still logs it
        await CorrelationMiddleware(crash)(scope, receive, send)
    assert messages[0]["status"] == 500
    assert (b"request-id", b"req_c1") in messages[0]["headers"]
    body = json.loads(messages[1]["body"])
    assert body == {
        "type": "error",
        "error": {"type": "api_error", "message": "internal server error"},
        "request_id": "req_c1",
    }
    assert logs.access()[0]["status"] == 500


async def test_proxy_error_without_an_error_layer_gets_its_own_response() -> None:
    async def limited(scope: Scope, receive: Receive, send: Send) -> None:
        raise RateLimitError("later", retry_after=2)

    status, headers, body = await call(CorrelationMiddleware(limited), headers=[(b"request-id", b"req_r")])
    assert status == 429
    assert headers["retry-after"] == ["2"]
    assert headers["request-id"] == ["req_r"]
    assert json.loads(body)["error"]["type"] == "rate_limit_error"


async def test_id_on_error_responses_made_by_an_inner_error_layer() -> None:
    async def crash(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    app = CorrelationMiddleware(ErrorNormalizationMiddleware(crash))
    status, headers, body = await call(app, headers=[(b"request-id", b"req_e2")])
    assert status == 500
    assert headers["request-id"] == ["req_e2"]
    assert json.loads(body)["request_id"] == "req_e2"


async def test_one_access_line_with_model_tokens_and_no_query(logs: Capture) -> None:
    async def served(scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope)
        ctx.requested_model = "claude-sonnet-4-5"
        ctx.upstream_model = "gpt-4o"
        ctx.usage = Usage(input_tokens=12, output_tokens=34)
        await PlainTextResponse("ok", status_code=201)(scope, receive, send)

    await call(
        CorrelationMiddleware(served), "/v1/messages", method="POST", headers=[(b"request-id", b"req_a")]
    )
    (line,) = logs.access()
    assert line["message"].startswith("POST /v1/messages 201 ")
    expected = {"method": "POST", "path": "/v1/messages", "status": 201, "model": "claude-sonnet-4-5"}
    assert {key: line[key] for key in expected} == expected
    assert line["upstream_model"] == "gpt-4o"
    assert (line["input_tokens"], line["output_tokens"], line["request_id"]) == (12, 34, "req_a")
    assert line["duration_ms"] >= 0
    assert "sk-in-the-query" not in json.dumps(line)


async def test_access_log_can_be_switched_off(logs: Capture) -> None:
    await call(CorrelationMiddleware(echo_app, access_log=False))
    assert logs.access() == []


async def test_concurrent_requests_keep_their_own_ids(logs: Capture) -> None:
    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(0.01)
        app_logger.info("after the pause")
        await asyncio.sleep(0)
        await JSONResponse({"var": current_request_id(), "ctx": get_context(scope).request_id})(
            scope, receive, send
        )

    layer = CorrelationMiddleware(slow)
    results = await asyncio.gather(
        *(call(layer, headers=[(b"request-id", f"req_{i}".encode())]) for i in range(20))
    )
    for i, (_, headers, body) in enumerate(results):
        assert headers["request-id"] == [f"req_{i}"]
        assert json.loads(body) == {"var": f"req_{i}", "ctx": f"req_{i}"}
    logged = sorted(line["request_id"] for line in logs.lines if line["message"] == "after the pause")
    assert logged == sorted(f"req_{i}" for i in range(20))


async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    await CorrelationMiddleware(app)({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]


# ----- frameworks ----------------------------------------------------------------------------------------


async def starlette_echo(request: Request) -> JSONResponse:
    app_logger.info("starlette endpoint")
    return JSONResponse({"ctx": get_context(request.scope).request_id, "var": current_request_id()})


async def test_on_one_starlette_route() -> None:
    app = Starlette(
        routes=[
            Route("/with", starlette_echo, middleware=[Middleware(CorrelationMiddleware)]),
            Route("/without", starlette_echo),
        ]
    )
    _, headers, body = await call(app, "/with", headers=[(b"request-id", b"req_route")])
    assert headers["request-id"] == ["req_route"]
    assert json.loads(body) == {"ctx": "req_route", "var": "req_route"}
    _, headers, body = await call(app, "/without")
    assert "request-id" not in headers
    assert json.loads(body)["var"] is None


async def test_as_starlette_app_middleware_including_its_404() -> None:
    app = Starlette(
        routes=[Route("/echo", starlette_echo)],
        middleware=[Middleware(CorrelationMiddleware, header_name="x-request-id")],
    )
    _, headers, body = await call(app, "/echo", headers=[(b"x-request-id", b"req_s")])
    assert headers["request-id"] == ["req_s"]
    assert headers["x-request-id"] == ["req_s"]
    assert json.loads(body)["var"] == "req_s"
    status, headers, _ = await call(app, "/missing")
    assert status == 404
    assert headers["request-id"][0].startswith("req_")


async def test_with_fastapi(logs: Capture) -> None:
    api = FastAPI()

    @api.get("/items/{item}")
    async def item(item: int) -> dict[str, Any]:
        app_logger.info("fastapi endpoint")
        return {"item": item, "var": current_request_id()}

    api.add_middleware(CorrelationMiddleware)
    _, headers, body = await call(api, "/items/3", headers=[(b"request-id", b"req_fast")])
    assert json.loads(body) == {"item": 3, "var": "req_fast"}
    assert headers["request-id"] == ["req_fast"]
    status, headers, _ = await call(api, "/items/notanint", headers=[(b"request-id", b"req_422")])
    assert status == 422
    assert headers["request-id"] == ["req_422"]
    assert [line["request_id"] for line in logs.lines if line["message"] == "fastapi endpoint"] == [
        "req_fast"
    ]
