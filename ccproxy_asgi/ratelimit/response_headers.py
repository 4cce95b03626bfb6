"""The `anthropic-ratelimit-*` headers describing a key's window to the client
(docs/protocol.md#rate-limit-headers)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from ccproxy_asgi.ratelimit.budget import WindowView


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ratelimit_headers(view: WindowView, *, now: float | None = None) -> dict[str, str]:
    """`anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}` for
    the limits that apply; reset is when the window is whole again (RFC 3339, UTC)."""
    wall = time.time() if now is None else now
    reset = _rfc3339(wall + max(view.reset_after, view.paused_for))
    out: dict[str, str] = {}
    for kind, limit, remaining in (
        ("requests", view.limit_requests, view.remaining_requests),
        ("tokens", view.limit_tokens, view.remaining_tokens),
        ("input-tokens", view.limit_input_tokens, view.remaining_input_tokens),
        ("output-tokens", view.limit_output_tokens, view.remaining_output_tokens),
    ):
        if limit is None:
            continue
        out[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
        out[f"anthropic-ratelimit-{kind}-remaining"] = str(0 if remaining is None else remaining)
        out[f"anthropic-ratelimit-{kind}-reset"] = reset
    return out


__all__ = ["ratelimit_headers"]
