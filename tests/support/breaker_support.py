"""Requests for the breaker's end-to-end tests."""

from __future__ import annotations

import itertools
from typing import Any

_requests = itertools.count()


def distinct_message(model: str = "claude-sonnet-4-6", max_tokens: int = 32) -> dict[str, Any]:
    """Keyword arguments of `messages.create` for a request no earlier one had: the breaker takes a
    client's retry of a failed request (same body) as no new evidence, so tests that mean to show
    distinct failures must send distinct requests."""
    content = f"hello, request {next(_requests)}"
    return {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": content}]}


__all__ = ["distinct_message"]
