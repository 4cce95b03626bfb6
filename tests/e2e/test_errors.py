"""End to end through real servers: upstream failures reach the official SDK as the exception the real API
would raise, with one request id across the response, the access log and the upstream request; retries
observed at the mock upstream; and nothing retried once a byte was streamed.

Also the error table itself (`map_upstream_error`), row by row, for the shapes the mock cannot make.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from ccproxy_asgi import jsonutil
from ccproxy_asgi.errors import (
    ApiError,
    BillingError,
    InvalidRequestError,
    OverloadedError,
    RateLimitError,
    UpstreamTimeoutError,
)
from ccproxy_asgi.logs import ACCESS_LOGGER
from ccproxy_asgi.provider.error_mapping import map_upstream_error, parse_error_body
from tests.support.e2e import E2E
from tests.support.mock_process import MockUpstreamProcess, mock_upstream_fixture
from tests.support.proxy_server import free_port
from tests.support.stack import running_proxy

MODEL = "claude-sonnet-4-6"
MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]
ONE_ATTEMPT = {"retry_max_attempts": 1}

vllm_upstream = mock_upstream_fixture("--error-shape", "vllm", scope="module")


class AccessLog(logging.Handler):
    """The access-log records the proxies in this process write (they run in server threads)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_records:
            self.records.append(record)

    def line_for(self, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The fields of the access record of `request_id`; the server writes it just after the response
        went out, so it may take a moment to appear."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock_records:
                found = [r for r in self.records if getattr(r, "request_id", None) == request_id]
            if found:
                assert len(found) == 1, "one access line per request"
                return dict(vars(found[0]))
            time.sleep(0.01)
        raise AssertionError(f"no access line for {request_id}")


@pytest.fixture
def access_log() -> Iterator[AccessLog]:
    handler = AccessLog()
    logger = logging.getLogger(ACCESS_LOGGER)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def create(client: anthropic.Anthropic, **kwargs: Any) -> Any:
    return client.messages.create(model=MODEL, max_tokens=32, messages=MESSAGES, **kwargs)


def upstream_ids(mock: MockUpstreamProcess) -> list[str | None]:
    return [request["headers"].get("x-request-id") for request in mock.requests()]


# ----- one row of the table per test case ---------------------------------------------------------------

ROWS: list[tuple[Any, dict[str, Any], type[anthropic.APIStatusError], int, str, str]] = [
    ("400", {}, anthropic.BadRequestError, 400, "invalid_request_error", "bad request"),
    ("context_length", {}, anthropic.BadRequestError, 400, "invalid_request_error", "prompt is too long"),
    ("401", {}, anthropic.InternalServerError, 500, "api_error", "upstream credentials rejected"),
    (
        "401",
        {"forward_client_key": True},
        anthropic.AuthenticationError,
        401,
        "authentication_error",
        "api key",
    ),
    ("402", {}, anthropic.PaymentRequiredError, 402, "billing_error", ""),
    (
        "403",
        {"forward_client_key": True},
        anthropic.PermissionDeniedError,
        403,
        "permission_error",
        "country",
    ),
    ("404", {}, anthropic.NotFoundError, 404, "not_found_error", "does not exist"),
    ("408", ONE_ATTEMPT, anthropic.GatewayTimeoutError, 504, "timeout_error", "timed out"),
    ("409", ONE_ATTEMPT, anthropic.InternalServerError, 500, "api_error", "conflict"),
    ("413", {}, anthropic.ContentTooLargeError, 413, "request_too_large", "too large"),
    ("422", {}, anthropic.BadRequestError, 400, "invalid_request_error", "unprocessable"),
    (
        {"fault": "429", "retry_after": 0.05},
        ONE_ATTEMPT,
        anthropic.RateLimitError,
        429,
        "rate_limit_error",
        "rate",
    ),
    ("quota", {}, anthropic.RateLimitError, 429, "rate_limit_error", "quota"),
    ("500", ONE_ATTEMPT, anthropic.InternalServerError, 500, "api_error", "server had an error"),
    ("502", ONE_ATTEMPT, anthropic.InternalServerError, 500, "api_error", "bad gateway"),
    ("503", ONE_ATTEMPT, anthropic.OverloadedError, 529, "overloaded_error", "overloaded"),
    ("504", ONE_ATTEMPT, anthropic.GatewayTimeoutError, 504, "timeout_error", "timed out"),
    ("malformed", {}, anthropic.InternalServerError, 502, "api_error", "invalid upstream response"),
]


@pytest.mark.parametrize(
    ("fault", "settings", "exc_class", "status", "error_type", "mentions"),
    ROWS,
    ids=[
        f"{row[0] if isinstance(row[0], str) else row[0]['fault']}-{row[3]}-{sorted(row[1])}" for row in ROWS
    ],
)
def test_each_upstream_error_is_the_sdk_exception_of_the_real_api(
    e2e: E2E,
    access_log: AccessLog,
    fault: Any,
    settings: dict[str, Any],
    exc_class: type[anthropic.APIStatusError],
    status: int,
    error_type: str,
    mentions: str,
) -> None:
    e2e.mock.queue_faults(fault)
    with pytest.raises(anthropic.APIStatusError) as caught:
        create(e2e.client(e2e.proxy(**settings)))
    exc = caught.value
    assert type(exc) is exc_class
    assert exc.status_code == status
    assert exc.type == error_type
    assert mentions in (exc.api_message or "").lower()
    request_id = exc.request_id
    assert request_id is not None
    assert request_id.startswith("req_")
    assert isinstance(exc.body, dict)
    assert exc.body["request_id"] == request_id
    assert upstream_ids(e2e.mock) == [request_id]
    line = access_log.line_for(request_id)
    assert line["status"] == status
    assert line["model"] == MODEL


def test_rate_limit_keeps_retry_after_and_rate_limit_headers(e2e: E2E) -> None:
    e2e.mock.queue_faults({"fault": "429", "retry_after": 0.25})
    with pytest.raises(anthropic.RateLimitError) as caught:
        create(e2e.client(e2e.proxy(**ONE_ATTEMPT)))
    headers = caught.value.response.headers
    assert headers["retry-after"] == "1"
    assert headers["retry-after-ms"] == "250"
    assert "anthropic-ratelimit-requests-limit" in headers
    assert "x-should-retry" not in headers


def test_quota_exhaustion_tells_the_sdk_not_to_retry(e2e: E2E) -> None:
    e2e.mock.queue_faults("quota", "quota", "quota")
    client = e2e.client(max_retries=2)
    with pytest.raises(anthropic.RateLimitError) as caught:
        create(client)
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(e2e.mock.requests()) == 1, "neither the proxy nor the SDK retried"


def test_rejected_upstream_credentials_tell_the_sdk_not_to_retry(e2e: E2E) -> None:
    # A wrong proxy key is permanent: Claude Code would otherwise retry a 500 for minutes.
    e2e.mock.queue_faults("401", "401", "401")
    client = e2e.client(max_retries=2)
    with pytest.raises(anthropic.InternalServerError) as caught:
        create(client)
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(e2e.mock.requests()) == 1, "neither the proxy nor the SDK retried"


def test_long_upstream_retry_after_goes_to_the_client_at_once(e2e: E2E) -> None:
    e2e.mock.queue_faults({"fault": "429", "retry_after": 12})
    started = time.monotonic()
    with pytest.raises(anthropic.RateLimitError) as caught:
        create(e2e.client(e2e.proxy()))
    assert time.monotonic() - started < 5, "the proxy must not wait out a retry-after longer than its cap"
    assert caught.value.response.headers["retry-after"] == "12"
    assert len(e2e.mock.requests()) == 1


def test_connection_refused_is_a_502_api_error(e2e: E2E) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(anthropic.InternalServerError) as caught:
        create(e2e.client(e2e.proxy(upstream_base_url=dead, **ONE_ATTEMPT)))
    assert caught.value.status_code == 502
    assert caught.value.type == "api_error"
    assert "upstream connection error" in (caught.value.api_message or "")
    assert (caught.value.request_id or "").startswith("req_")


def test_upstream_timeout_is_a_504_timeout_error(e2e: E2E) -> None:
    e2e.mock.queue_faults("hang")
    with pytest.raises(anthropic.GatewayTimeoutError) as caught:
        create(e2e.client(e2e.proxy(http_read_timeout_seconds=0.5, **ONE_ATTEMPT)))
    assert caught.value.status_code == 504
    assert caught.value.type == "timeout_error"


@pytest.mark.parametrize(
    ("fault", "exc_class", "status", "error_type", "mentions"),
    [
        ("context_length", anthropic.BadRequestError, 400, "invalid_request_error", "prompt is too long"),
        ("400", anthropic.BadRequestError, 400, "invalid_request_error", "bad request"),
        ("503", anthropic.OverloadedError, 529, "overloaded_error", "overloaded"),
    ],
)
def test_vllm_error_shape(
    vllm_upstream: MockUpstreamProcess,
    fault: str,
    exc_class: type[anthropic.APIStatusError],
    status: int,
    error_type: str,
    mentions: str,
) -> None:
    vllm_upstream.reset()
    vllm_upstream.queue_faults(fault)
    with running_proxy(vllm_upstream, **ONE_ATTEMPT) as url:
        client = anthropic.Anthropic(base_url=url, api_key="client", max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as caught:
            create(client)
        client.close()
    assert type(caught.value) is exc_class
    assert (caught.value.status_code, caught.value.type) == (status, error_type)
    assert mentions in (caught.value.api_message or "").lower()


# ----- request ids -------------------------------------------------------------------------------------


def test_one_request_id_in_the_response_the_access_log_and_upstream(e2e: E2E, access_log: AccessLog) -> None:
    response = e2e.client().messages.with_raw_response.create(model=MODEL, max_tokens=32, messages=MESSAGES)
    request_id = response.headers["request-id"]
    message = response.parse()
    assert request_id.startswith("req_")
    assert message._request_id == request_id
    assert upstream_ids(e2e.mock) == [request_id]
    line = access_log.line_for(request_id)
    assert (line["status"], line["method"], line["path"]) == (200, "POST", "/v1/messages")
    assert line["input_tokens"] == message.usage.input_tokens
    assert line["output_tokens"] == message.usage.output_tokens
    assert line["upstream_model"]
    assert line["duration_ms"] > 0


@pytest.mark.parametrize("header", ["request-id", "x-request-id"])
def test_client_supplied_request_id_is_kept_end_to_end(e2e: E2E, access_log: AccessLog, header: str) -> None:
    supplied = "req_clientSupplied0123456789"
    response = e2e.client().messages.with_raw_response.create(
        model=MODEL, max_tokens=32, messages=MESSAGES, extra_headers={header: supplied}
    )
    assert response.headers["request-id"] == supplied
    assert upstream_ids(e2e.mock) == [supplied]
    assert access_log.line_for(supplied)["status"] == 200


def test_invalid_client_request_id_is_replaced(e2e: E2E) -> None:
    response = e2e.post("/v1/messages", {"model": MODEL}, headers={"request-id": "not valid!" * 20})
    request_id = response.headers["request-id"]
    assert request_id.startswith("req_")
    assert response.json()["request_id"] == request_id


def test_proxy_own_errors_and_unknown_routes_carry_the_id(e2e: E2E) -> None:
    for response in (
        e2e.post("/v1/messages", b"{not json"),
        e2e.post("/v1/nothing", {}),
        e2e.post("/v1/models", {}),
    ):
        assert 400 <= response.status < 500
        body = response.json()
        assert body["type"] == "error"
        assert body["request_id"] == response.headers["request-id"]


# ----- streams ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault", [{"fault": "cut", "after_chunks": 2}, {"fault": "error_chunk", "after_chunks": 2}]
)
def test_mid_stream_failure_is_an_error_event_and_is_never_retried(
    e2e: E2E, access_log: AccessLog, fault: dict[str, Any]
) -> None:
    e2e.mock.queue_faults(fault)
    seen: list[str] = []
    stream_call = e2e.client().messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES)
    with pytest.raises(anthropic.APIStatusError) as caught, stream_call as stream:  # noqa: PT012
        for event in stream:
            seen.append(event.type)
    exc = caught.value
    assert exc.status_code == 200, "the error came inside the 200 stream"
    assert exc.type == "api_error"
    assert isinstance(exc.body, dict)
    assert exc.body["type"] == "error"
    assert seen[0] == "message_start"
    assert "message_stop" not in seen
    request_id = exc.body["request_id"]
    assert exc.request_id == request_id
    assert upstream_ids(e2e.mock) == [request_id], (
        "exactly one upstream request: no retry after the first byte"
    )
    line = access_log.line_for(request_id)
    assert line["status"] == 200
    assert line["stream_error"] == "api_error"


def test_error_before_the_stream_starts_is_a_real_http_error(e2e: E2E) -> None:
    e2e.mock.queue_faults("503", "503", "503")
    client = e2e.client(announces_retries=False)  # the proxy's own retries: a client that does not retry
    with pytest.raises(anthropic.OverloadedError):  # noqa: SIM117
        with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
            stream.get_final_message()
    assert len(e2e.mock.requests()) == 3, "retried before the first byte"


# ----- retries at the upstream ----------------------------------------------------------------------------


def timestamps(mock: MockUpstreamProcess) -> list[float]:
    return [float(request["timestamp"]) for request in mock.requests()]


def test_retries_honour_retry_after_ms(e2e: E2E) -> None:
    e2e.mock.queue_faults({"fault": "429", "retry_after": 0.3}, {"fault": "429", "retry_after": 0.3})
    message = create(e2e.client(e2e.proxy(retry_max_attempts=3), announces_retries=False))
    assert message.content[0].type == "text"
    times = timestamps(e2e.mock)
    assert len(times) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= 0.28 for gap in gaps), gaps
    assert len(set(upstream_ids(e2e.mock))) == 1, "every attempt carries the same request id"


def test_retries_with_backoff_after_server_errors(e2e: E2E) -> None:
    e2e.mock.queue_faults("500", "502")
    assert create(e2e.client(e2e.proxy(retry_max_attempts=3), announces_retries=False)).stop_reason is not None
    assert [r["fault"] for r in e2e.mock.requests()] == ["500", "502", None]


def test_attempts_stop_at_the_configured_count(e2e: E2E) -> None:
    e2e.mock.queue_faults("500", "500", "500", "500")
    with pytest.raises(anthropic.InternalServerError):
        create(e2e.client(e2e.proxy(retry_max_attempts=2), announces_retries=False))
    assert len(e2e.mock.requests()) == 2


def test_total_time_budget_leaves_the_wait_to_the_client(e2e: E2E) -> None:
    e2e.mock.queue_faults({"fault": "429", "retry_after": 0.5}, {"fault": "429", "retry_after": 0.5})
    with pytest.raises(anthropic.RateLimitError) as caught:
        create(e2e.client(e2e.proxy(retry_total_timeout_seconds=0.2)))
    assert len(e2e.mock.requests()) == 1
    assert caught.value.response.headers["retry-after-ms"] == "500"


def test_retry_budget_protects_a_failing_upstream(e2e: E2E) -> None:
    # One retry per 10 s window and none earned by traffic: the first call retries once, the next not at all.
    url = e2e.proxy(retry_budget_ratio=0.0, retry_budget_min_per_second=0.1, retry_budget_window_seconds=10.0)
    e2e.mock.queue_faults(*["500"] * 6)
    client = e2e.client(url, announces_retries=False)
    for _ in range(2):
        with pytest.raises(anthropic.InternalServerError):
            create(client)
    assert len(e2e.mock.requests()) == 3


# ----- the table itself ----------------------------------------------------------------------------------


def body(**error: Any) -> bytes:
    return jsonutil.dumps({"error": {"message": "m", **error}})


@pytest.mark.parametrize(
    ("status", "headers", "raw", "cls", "wire_status", "check"),
    [
        (400, {}, body(code="context_length_exceeded"), InvalidRequestError, 400, "prompt is too long"),
        (
            400,
            {},
            jsonutil.dumps(
                {"object": "error", "message": "This model's maximum model length is 4096", "code": 400}
            ),
            InvalidRequestError,
            400,
            "prompt is too long",
        ),
        (402, {}, body(message="Insufficient credits", code=402), BillingError, 402, "Insufficient credits"),
        (408, {}, b"", UpstreamTimeoutError, 504, "timed out"),
        (409, {}, body(), ApiError, 500, "conflict"),
        (429, {"retry-after": "7"}, body(code=429, metadata={"provider": "x"}), RateLimitError, 429, "m"),
        (429, {}, body(type="insufficient_quota"), RateLimitError, 429, "quota"),
        (500, {}, b"<html>oops</html>", ApiError, 500, "oops"),
        (503, {}, body(), OverloadedError, 529, "overloaded"),
        (529, {}, body(), OverloadedError, 529, "overloaded"),
        (418, {}, b"teapot", InvalidRequestError, 400, "teapot"),
    ],
)
def test_map_upstream_error_rows(
    status: int, headers: dict[str, str], raw: bytes, cls: type, wire_status: int, check: str
) -> None:
    error = map_upstream_error(status, headers, raw)
    assert type(error) is cls
    assert error.status == wire_status
    assert check in error.message


def test_map_upstream_error_retry_hints() -> None:
    limited = map_upstream_error(429, {"retry-after-ms": "1500", "x-ratelimit-limit-requests": "60"}, body())
    assert limited.retry_after == 1.5
    assert limited.should_retry is None
    assert limited.extra_headers["anthropic-ratelimit-requests-limit"] == "60"
    assert map_upstream_error(429, {}, body(code="insufficient_quota")).should_retry is False


def test_credentials_rejected_is_not_blamed_on_the_client_unless_forwarded() -> None:
    assert type(map_upstream_error(401, {}, body())) is ApiError
    assert map_upstream_error(401, {}, body(), client_key_forwarded=True).status == 401
    assert map_upstream_error(403, {}, body(), client_key_forwarded=True).status == 403


def test_upstream_error_messages_never_carry_a_key() -> None:
    raw = body(message="Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz")
    assert "sk-proj" not in parse_error_body(raw).message
    assert "sk-proj" not in map_upstream_error(401, {}, raw, client_key_forwarded=True).message
