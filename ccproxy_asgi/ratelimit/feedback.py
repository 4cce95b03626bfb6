"""What a finished request tells the limiter: an `Observation` of the upstream's rate-limit signals from
every attempt the provider made (retries included), and a `Settlement` of the reservation.

These read the request context (plain data written by the endpoint), never ASGI messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ccproxy_asgi.context import RequestContext, UpstreamAttempt
from ccproxy_asgi.headers import Headers
from ccproxy_asgi.provider.retry import upstream_retry_after
from ccproxy_asgi.provider.upstream_limits import parse_duration
from ccproxy_asgi.ratelimit.budget import Cost
from ccproxy_asgi.ratelimit.store import Observation, Settlement


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(float(value.strip()))
    except ValueError:
        return None
    # Azure-style gateways send -1 as "not applicable".
    return number if number >= 0 else None


def _duration(value: str | None) -> float | None:
    return None if value is None else parse_duration(value)


def observation_from_attempts(attempts: Sequence[UpstreamAttempt]) -> Observation:
    """The 429s among `attempts`, the longest wait they asked for, and the latest `remaining` figures."""
    rate_limited = 0
    retry_after: float | None = None
    remaining_requests = remaining_tokens = None
    reset_requests = reset_tokens = None
    for attempt in attempts:
        if attempt.status is None or not attempt.headers:
            continue
        # Upstream clients keep the server's spelling (aiohttp: `X-Ratelimit-...`); `Headers` reads any.
        headers = Headers.of(attempt.headers)
        if attempt.status == 429:
            rate_limited += 1
            # retry-after, else the reset of whichever budget is exhausted.
            wait = upstream_retry_after(429, headers)
            if wait is not None:
                retry_after = wait if retry_after is None else max(retry_after, wait)
        requests = _int(headers.get("x-ratelimit-remaining-requests"))
        tokens = _int(headers.get("x-ratelimit-remaining-tokens"))
        if requests is not None:
            remaining_requests = requests
            reset_requests = _duration(headers.get("x-ratelimit-reset-requests"))
        if tokens is not None:
            remaining_tokens = tokens
            reset_tokens = _duration(headers.get("x-ratelimit-reset-tokens"))
    return Observation(
        rate_limited=rate_limited,
        retry_after=retry_after,
        remaining_requests=remaining_requests,
        remaining_tokens=remaining_tokens,
        reset_requests=reset_requests,
        reset_tokens=reset_tokens,
    )


def observation_from_response(status: int, headers: Mapping[str, str]) -> Observation:
    """An `Observation` from the response itself, for inner apps that record no upstream attempts."""
    return observation_from_attempts([UpstreamAttempt(url="", status=status, headers=Headers(headers))])


def settlement_for(ctx: RequestContext, response_status: int | None) -> Settlement:
    """How the reservation of the request in `ctx` ends.

    - Real usage known (`ctx.usage`, set when a response or stream completed): it replaces the estimate.
    - Upstream attempts recorded: none reached the upstream -> cancel; one answered 200 but no usage
      came (a cut stream) -> the estimate stands; all were refused -> no tokens, the request stays.
    - No attempts recorded (an inner app that is not our endpoint): a 2xx keeps the estimate, a 429
      keeps the request without tokens, any other answer cancels, no answer keeps the estimate.
    Retries that reached the upstream are charged as extra requests.
    """
    attempts = ctx.attempts
    reached = sum(1 for a in attempts if a.status is not None)
    extra = max(0, reached - 1)
    if ctx.usage is not None:
        usage = ctx.usage
        prompt = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
        return Settlement(
            actual=Cost(max(prompt, 0), max(usage.output_tokens, 0)), extra_requests=extra, success=True
        )
    if attempts:
        if reached == 0:
            return Settlement(cancel=True)
        if any(a.status is not None and 200 <= a.status < 300 for a in attempts):
            return Settlement(extra_requests=extra)
        return Settlement(actual=Cost(0, 0), extra_requests=extra)
    if response_status is None:
        return Settlement()
    if 200 <= response_status < 300:
        return Settlement(success=True)
    if response_status == 429:
        return Settlement(actual=Cost(0, 0))
    return Settlement(cancel=True)


__all__ = ["observation_from_attempts", "observation_from_response", "settlement_for"]
