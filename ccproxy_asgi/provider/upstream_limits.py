"""OpenAI `x-ratelimit-*` headers -> Anthropic `anthropic-ratelimit-*` headers
(docs/protocol.md#rate-limit-headers), and
the wait they imply when an upstream answers 429 without `retry-after`.

Header mappings may come with any spelling of the names (aiohttp keeps the server's): they are read
through `ccproxy_asgi.headers.Headers`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from ccproxy_asgi.headers import Headers

# Go-style durations such as `1s`, `6m0s`, `12ms`, `1.5s`; `ms` must be tried before `m`.
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration string, or None if it is not one."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return total if position == len(text) else None


def reset_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds until the upstream's exhausted budget refills, from `x-ratelimit-reset-requests` /
    `x-ratelimit-reset-tokens` (OpenAI's durations: `6m0s`, `1s`, `20ms`), or None without either.

    Meant for a 429 that carries no `retry-after`: the budget whose `x-ratelimit-remaining-*` is 0 is the
    one that refused, so the longest of those resets is the wait; when no remaining figure says which,
    the shortest reset given (waiting for the other could be minutes for nothing, and a too-early retry
    only costs one more 429 with a fresh hint).
    """
    fields = Headers.of(headers)
    resets: dict[str, float] = {}
    for kind in ("requests", "tokens"):
        raw = fields.get(f"x-ratelimit-reset-{kind}")
        seconds = None if raw is None else parse_duration(raw)
        if seconds is not None and 0 <= seconds < math.inf:
            resets[kind] = seconds
    if not resets:
        return None
    exhausted = [
        wait
        for kind, wait in resets.items()
        if (fields.get(f"x-ratelimit-remaining-{kind}") or "").strip() == "0"
    ]
    return max(exhausted) if exhausted else min(resets.values())


def _rfc3339(seconds_from_now: float, now: float) -> str:
    return datetime.fromtimestamp(now + seconds_from_now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def anthropic_ratelimit_headers(upstream: Mapping[str, str], *, now: float | None = None) -> dict[str, str]:
    """The Anthropic rate-limit headers equivalent to the upstream's, for the client."""
    current = time.time() if now is None else now
    upstream = Headers.of(upstream)
    out: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        limit = upstream.get(f"x-ratelimit-limit-{kind}")
        remaining = upstream.get(f"x-ratelimit-remaining-{kind}")
        reset = upstream.get(f"x-ratelimit-reset-{kind}")
        if limit is not None:
            out[f"anthropic-ratelimit-{kind}-limit"] = limit
        if remaining is not None:
            out[f"anthropic-ratelimit-{kind}-remaining"] = remaining
        if reset is not None:
            seconds = parse_duration(reset)
            if seconds is not None:
                out[f"anthropic-ratelimit-{kind}-reset"] = _rfc3339(seconds, current)
    return out


__all__ = ["anthropic_ratelimit_headers", "parse_duration", "reset_wait"]
