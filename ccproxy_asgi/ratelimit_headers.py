"""OpenAI `x-ratelimit-*` headers -> Anthropic `anthropic-ratelimit-*` headers (PROTOCOL.md §6.2-6.3)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime

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


def _rfc3339(seconds_from_now: float, now: float) -> str:
    return datetime.fromtimestamp(now + seconds_from_now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def anthropic_ratelimit_headers(upstream: Mapping[str, str], *, now: float | None = None) -> dict[str, str]:
    """The Anthropic rate-limit headers equivalent to the upstream's, for the client."""
    current = time.time() if now is None else now
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


__all__ = ["anthropic_ratelimit_headers", "parse_duration"]
