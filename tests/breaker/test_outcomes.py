"""Which request endings count against the upstream."""

from __future__ import annotations

import pytest

from ccproxy_asgi.breaker import Outcome, attempt_outcome, request_outcome
from ccproxy_asgi.context import UpstreamAttempt

URL = "http://upstream.test/v1/chat/completions"


def attempt(status: int | None = None, error: str | None = None) -> UpstreamAttempt:
    return UpstreamAttempt(url=URL, status=status, error=error)


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (200, None, Outcome.SUCCESS),
        (500, None, Outcome.REQUEST_ERROR),  # answered: maybe the request's own doing
        (501, None, Outcome.REQUEST_ERROR),
        (502, None, Outcome.FAILURE),
        (503, None, Outcome.FAILURE),
        (504, None, Outcome.FAILURE),
        (529, None, Outcome.FAILURE),
        (None, "UpstreamError", Outcome.FAILURE),  # connection refused / reset
        (None, "UpstreamTimeoutError", Outcome.FAILURE),
        (None, None, Outcome.NEUTRAL),  # cancelled mid-call: the client left
        (400, None, Outcome.NEUTRAL),
        (401, None, Outcome.NEUTRAL),
        (404, None, Outcome.NEUTRAL),
        (413, None, Outcome.NEUTRAL),
        (422, None, Outcome.NEUTRAL),
        (429, None, Outcome.NEUTRAL),
    ],
)
def test_attempt_outcome(status: int | None, error: str | None, expected: Outcome) -> None:
    assert attempt_outcome(attempt(status, error)) is expected


def test_429_counts_only_when_configured() -> None:
    assert attempt_outcome(attempt(429), count_429=True) is Outcome.FAILURE
    assert request_outcome([attempt(200)], stream_error="rate_limit_error") is Outcome.NEUTRAL
    assert request_outcome([attempt(200)], stream_error="rate_limit_error", count_429=True) is Outcome.FAILURE


def test_no_attempt_is_no_verdict() -> None:
    # A local rejection (limiter 429, a 400 the endpoint caught) never reached the upstream.
    assert request_outcome([]) is Outcome.NEUTRAL


def test_the_last_attempt_decides() -> None:
    assert request_outcome([attempt(500), attempt(None, "UpstreamError"), attempt(200)]) is Outcome.SUCCESS
    assert request_outcome([attempt(200), attempt(503)]) is Outcome.FAILURE
    assert request_outcome([attempt(500), attempt(400)]) is Outcome.NEUTRAL


@pytest.mark.parametrize("error_type", ["overloaded_error", "timeout_error"])
def test_a_stream_the_upstream_overloaded_or_left_silent_is_a_failure(error_type: str) -> None:
    assert request_outcome([attempt(200)], stream_error=error_type, completed=True) is Outcome.FAILURE


def test_a_stream_that_broke_after_its_start_is_a_request_error() -> None:
    # A cut, a malformed chunk, an error event: this response broke, the upstream is up.
    assert request_outcome([attempt(200)], stream_error="api_error", completed=True) is Outcome.REQUEST_ERROR


def test_other_stream_errors_prove_nothing() -> None:
    assert request_outcome([attempt(200)], stream_error="invalid_request_error") is Outcome.NEUTRAL


def test_an_error_answered_after_the_upstream_200_counts() -> None:
    # The body was cut halfway or was not JSON (502): a request error; the upstream went silent (504)
    # or reported an overload in the body (529): a failure.
    assert request_outcome([attempt(200)], error_status=502) is Outcome.REQUEST_ERROR
    assert request_outcome([attempt(200)], error_status=504) is Outcome.FAILURE
    assert request_outcome([attempt(200)], error_status=529) is Outcome.FAILURE
    assert request_outcome([attempt(200)], error_status=400) is Outcome.SUCCESS


def test_a_response_the_client_abandoned_proves_nothing() -> None:
    assert request_outcome([attempt(200)], completed=False) is Outcome.NEUTRAL
    assert request_outcome([attempt(200)], completed=True) is Outcome.SUCCESS
