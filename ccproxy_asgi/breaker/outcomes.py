"""Which request endings count against an upstream, read from what the provider and endpoint recorded.

Failures (the upstream is unavailable): a connection refused or reset, a timeout, 502/503/504/529, an
overload or a silence after the 200, and a 429 only when the policy says so. Request errors (the upstream
answered but failed this request, maybe for reasons of the request's own): other 5xx, a body or stream
that broke after the 200. Never: a client 4xx (the upstream echoing a bad request), a local rejection (no
upstream attempt at all), a client that went away.

One request is one outcome, judged by its last upstream attempt: retries inside the provider are its
own business, and a request that succeeded on its third attempt was served.
"""

from __future__ import annotations

from collections.abc import Sequence

from ccproxy_asgi.breaker.values import Outcome
from ccproxy_asgi.context import UpstreamAttempt

# Statuses that say the upstream (or the gateway in front of it) cannot serve anyone right now.
_UNAVAILABLE_STATUSES = frozenset({502, 503, 504, 529})
# `ProxyError.error_type` values the endpoint stores as `ctx.stream_error`: an overloaded or
# silent upstream is unavailable; an `api_error` (a cut, a malformed chunk, an error event) broke this
# one response after the upstream had accepted it.
_UNAVAILABLE_STREAM_ERRORS = frozenset({"overloaded_error", "timeout_error"})
_REQUEST_STREAM_ERRORS = frozenset({"api_error"})


def attempt_outcome(attempt: UpstreamAttempt, *, count_429: bool = False) -> Outcome:
    """What one upstream attempt says about the upstream (a 200 says "answered", nothing more)."""
    status = attempt.status
    if status is None:
        # No status and no error: the attempt was cancelled before it ended (client gone). An error
        # without a status is a connection refused or reset, or a timeout: the upstream is unreachable.
        return Outcome.FAILURE if attempt.error is not None else Outcome.NEUTRAL
    if status in _UNAVAILABLE_STATUSES or (status == 429 and count_429):
        return Outcome.FAILURE
    if status >= 500:
        return Outcome.REQUEST_ERROR
    if 200 <= status < 300:
        return Outcome.SUCCESS
    return Outcome.NEUTRAL


def request_outcome(
    attempts: Sequence[UpstreamAttempt],
    *,
    stream_error: object = None,
    error_status: int | None = None,
    completed: bool = True,
    count_429: bool = False,
) -> Outcome:
    """The outcome of a request from its upstream attempts.

    `stream_error` is the Anthropic error type of a failure after a streamed response began;
    `error_status` the status of an error answered after the upstream's 200 (a body cut halfway or not
    JSON: 502, 504, 529); `completed` says whether the response reached its end (False when the client
    left halfway, which proves nothing either way).
    """
    if not attempts:
        return Outcome.NEUTRAL
    outcome = attempt_outcome(attempts[-1], count_429=count_429)
    if outcome is not Outcome.SUCCESS:
        return outcome
    if error_status is not None:
        # Answered after the upstream's 200: 502 for a body cut halfway or not JSON (this response
        # broke), 504 for an upstream gone silent, 529 for an overload it reported in the body.
        if error_status == 502:
            return Outcome.REQUEST_ERROR
        if error_status > 502 or (count_429 and error_status == 429):
            return Outcome.FAILURE
    if isinstance(stream_error, str):
        if stream_error in _UNAVAILABLE_STREAM_ERRORS or (count_429 and stream_error == "rate_limit_error"):
            return Outcome.FAILURE
        if stream_error in _REQUEST_STREAM_ERRORS:
            return Outcome.REQUEST_ERROR
        return Outcome.NEUTRAL
    return Outcome.SUCCESS if completed else Outcome.NEUTRAL


__all__ = ["attempt_outcome", "request_outcome"]
