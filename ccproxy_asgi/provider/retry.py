"""Retry policy for the upstream call: which failures, how long to wait, when to stop, and when to leave the
retrying to the client.

The proxy's retries stack with its client's: Claude Code retries a 429 or 5xx up to 10 times, the
official SDKs twice, and each of those attempts would bring the proxy's own retries with it (3 x 11
upstream attempts for one user request). So the policy is explicit about who retries what:

1. Before any response (connection refused or reset, a stale pooled connection): retried here with
   backoff, whoever the client is. It is the proxy's own connection that failed; a fresh one is cheap.
   A timeout is the exception: waiting a second time is the client's call (rule 2).
2. A client that announces it retries by itself (`x-stainless-retry-count`, which the SDKs and Claude
   Code send on every attempt, 0 on the first; recorded as `RequestContext.client_retry_count`) gets a
   retryable status (408, 409, 429, 5xx, 529) back at once, with the upstream's `retry-after`, and its
   own loop waits: one upstream attempt per client attempt.
3. Any other client (curl, a script, an app without a retry loop): a retryable status is retried here
   only while the upstream's hinted wait is at most `max_retry_after` (a longer one goes to the client
   at once), within the call's time budget (`total_timeout`) and the shared `RetryBudget`.

Retries happen only before the first byte reaches the client (the provider owns that rule). The wait
honours the upstream's own hints first (`retry-after-ms`, then `retry-after` as seconds or an HTTP date,
then for a 429 OpenAI's `x-ratelimit-reset-*`), else exponential backoff with full jitter, so a crowd of
proxies does not retry in lockstep. Whatever is answered, a 429 or 529 carries a wait: the upstream's,
or `RetryPolicy.estimate`, which doubles with the retries already made on both sides.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from ccproxy_asgi.errors import ProxyError, UpstreamTimeoutError
from ccproxy_asgi.headers import Headers
from ccproxy_asgi.log_throttle import ThrottledLog
from ccproxy_asgi.provider.retry_budget import RetryBudget
from ccproxy_asgi.provider.upstream_limits import reset_wait
from ccproxy_asgi.types import Scope

logger = logging.getLogger("ccproxy_asgi.provider.retry")

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
#: The request header in which the official SDKs (and Claude Code) announce their retry count.
CLIENT_RETRY_HEADER = b"x-stainless-retry-count"
# A count past this says nothing more about the wait, and keeps `2 ** n` small.
_MAX_COUNTED_RETRIES = 32
_BUDGET_SPENT = "retry-budget-spent"


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the upstream asks us to wait, or None when it gave no usable hint.

    `retry-after-ms` first, then `retry-after` as seconds, then as an HTTP date (a date in the past is 0).
    Negative, NaN and infinite values are no hint at all. Header names in any spelling.
    """
    fields = Headers.of(headers)
    raw_ms = fields.get("retry-after-ms")
    if raw_ms:
        value = _seconds(raw_ms, scale=1000.0)
        if value is not None:
            return value
    raw = fields.get("retry-after")
    if not raw:
        return None
    value = _seconds(raw, scale=1.0)
    if value is not None:
        return value
    try:
        when = parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when - current)


def upstream_retry_after(
    status: int, headers: Mapping[str, str], *, now: float | None = None
) -> float | None:
    """The wait the upstream's answer asks for: its `retry-after(-ms)`, or for a 429 without one the
    reset of its exhausted `x-ratelimit-*` budget. (Other statuses carry those headers too, on every
    OpenAI response, where they mean nothing about retrying.)"""
    fields = Headers.of(headers)
    hinted = parse_retry_after(fields, now=now)
    if hinted is None and status == 429:
        hinted = reset_wait(fields)
    return hinted


def _seconds(raw: str, *, scale: float) -> float | None:
    try:
        value = float(raw) / scale
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def client_retry_count(scope: Scope) -> int | None:
    """The retry count the client announced in `x-stainless-retry-count`, None when it sent none.

    A value that is not a count still says the client has a retry loop: it reads as 0.
    """
    for name, value in scope.get("headers", ()):
        if name == CLIENT_RETRY_HEADER:
            text = bytes(value).strip()
            return min(int(text), _MAX_COUNTED_RETRIES) if text.isdigit() else 0
    return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts, how long between them, and the limits on retrying at all.

    `total_timeout`: seconds one call may spend, attempts and waits together, before it stops retrying
    (a retry whose wait would end past it is not made; an attempt in flight is bounded by the HTTP
    client's own timeouts, not cut). `budget`: shared by every call of one upstream (see `RetryBudget`).
    `max_retry_after`: the longest upstream hint waited out here; a longer one goes to the client.
    `estimate_base` / `estimate_cap`: the wait told to a client when the upstream gave none (`estimate`).
    `defer_to_retrying_clients`: rule 2 (False: retry statuses for announcing clients too, as for others,
    which hides a transient error from the user at the price of multiplying attempts under a lasting one).
    """

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 8.0
    total_timeout: float | None = None
    budget: RetryBudget | None = field(default=None, compare=False)
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)
    estimate_base: float = 1.0
    estimate_cap: float = 8.0
    defer_to_retrying_clients: bool = True
    # Under load a spent budget is met by every request: one line a minute with a count, not 8,000. No
    # closing line when it has room again: under a storm it flips between spent and not on every request.
    _budget_log: ThrottledLog = field(
        default_factory=lambda: ThrottledLog(logger), init=False, compare=False, repr=False
    )

    def is_retryable(self, status: int, headers: Mapping[str, str]) -> bool:
        hint = Headers.of(headers).get("x-should-retry")
        if hint == "true":
            return True
        if hint == "false":
            return False
        return status in RETRYABLE_STATUSES

    def backoff(self, retries_taken: int) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(max_delay, base_delay * 2**n))."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** min(retries_taken, _MAX_COUNTED_RETRIES)))
        return float(ceiling * self.random())

    def delay(self, retries_taken: int, headers: Mapping[str, str] | None = None) -> float | None:
        """Seconds to sleep before the next attempt, or None if the upstream's hint is too long to wait."""
        if headers is not None:
            hinted = parse_retry_after(headers)
            if hinted is not None:
                return hinted if hinted <= self.max_retry_after else None
        return self.backoff(retries_taken)

    def estimate(self, retries_made: int) -> float:
        """The wait to tell a client when the upstream gave none: `estimate_base` seconds, doubled for each
        retry already made for this request (the client's announced ones and the proxy's), up to
        `estimate_cap`. A constant would flatten the client's own exponential backoff: the SDKs and Claude
        Code wait exactly what `retry-after` says."""
        doublings = min(max(retries_made, 0), _MAX_COUNTED_RETRIES)
        return min(self.estimate_cap, self.estimate_base * float(1 << doublings))

    def start(self, clock: Callable[[], float] = time.monotonic) -> RetryCall:
        """Begin one upstream call: counts it in the budget and starts its clock."""
        if self.budget is not None:
            self.budget.record_request()
        return RetryCall(self, clock)


class RetryCall:
    """The retry decisions of one upstream call, within its time budget and the shared retry budget.

    Every method returning a wait takes a retry from the budget when it returns one (not None), so the
    caller must then retry.
    """

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float]) -> None:
        self._policy = policy
        self._clock = clock
        self._started = clock()

    def elapsed(self) -> float:
        return self._clock() - self._started

    def after_failure(
        self, retries_taken: int, error: ProxyError, *, client_retry_count: int | None = None
    ) -> float | None:
        """Wait before retrying an attempt that got no response (rule 1), or None to raise `error`."""
        if (
            isinstance(error, UpstreamTimeoutError)
            and client_retry_count is not None
            and self._policy.defer_to_retrying_clients
        ):
            return None  # the client already waited once; whether to wait again is its call
        return self._spend(self._policy.backoff(retries_taken))

    def after_status(
        self,
        retries_taken: int,
        status: int,
        headers: Mapping[str, str],
        *,
        should_retry: bool | None = None,
        client_retry_count: int | None = None,
    ) -> float | None:
        """Wait before retrying an attempt answered with the error `status` (rules 2 and 3), or None to
        answer the client with it now. `should_retry` False (quota, a refused key) never retries."""
        policy = self._policy
        if should_retry is False or not policy.is_retryable(status, headers):
            return None
        if client_retry_count is not None and policy.defer_to_retrying_clients:
            return None  # the client retries by itself: one upstream attempt per client attempt
        hinted = upstream_retry_after(status, headers)
        if hinted is not None and hinted > policy.max_retry_after:
            return None
        return self._spend(policy.backoff(retries_taken) if hinted is None else hinted)

    def delay(self, retries_taken: int, headers: Mapping[str, str] | None = None) -> float | None:
        """Seconds to wait before retrying, or None to give up now and raise the last error (the policy's
        hint-or-backoff, without the client rules of `after_failure` / `after_status`)."""
        wait = self._policy.delay(retries_taken, headers)
        return None if wait is None else self._spend(wait)

    def _spend(self, wait: float) -> float | None:
        policy = self._policy
        if policy.total_timeout is not None and self.elapsed() + wait > policy.total_timeout:
            logger.info("not retrying: the call's time budget of %gs would be exceeded", policy.total_timeout)
            return None
        if policy.budget is not None and not policy.budget.try_spend():
            policy._budget_log.warning(
                _BUDGET_SPENT, "not retrying: the retry budget is spent (%r)", policy.budget
            )
            return None
        return wait


__all__ = [
    "CLIENT_RETRY_HEADER",
    "RETRYABLE_STATUSES",
    "RetryCall",
    "RetryPolicy",
    "client_retry_count",
    "parse_retry_after",
    "upstream_retry_after",
]
