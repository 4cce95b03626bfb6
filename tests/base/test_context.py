"""The request context: typed fields for what the layers tell each other, `extras` for the application."""

from __future__ import annotations

import ast
from pathlib import Path

from ccproxy_asgi.context import RequestContext, get_context
from ccproxy_asgi.ratelimit import Budget, Cost, RateLimiter
from ccproxy_asgi.ratelimit.limiter import Waiting

PACKAGE = Path(__file__).resolve().parents[2] / "ccproxy_asgi"


def test_the_package_never_reads_or_writes_extras() -> None:
    """`extras` is the application's own: what one module of the package tells another is a typed field."""
    touching: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "context.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "extras":
                touching.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert touching == []


def test_the_typed_fields_start_empty_and_extras_is_per_request() -> None:
    first, second = RequestContext(), RequestContext()
    for name in ("stream_error", "error_type", "breaker_key", "rate_limit", "otel_context", "traceparent"):
        assert getattr(first, name) is None, name
    assert first.first_byte_deadline is None
    first.extras["tenant"] = "acme"
    assert second.extras == {}


async def test_a_reservation_is_what_the_context_shows_of_it() -> None:
    limiter = RateLimiter(budget=Budget(requests=10, tokens=1000, window=60.0))
    reservation = await limiter.try_acquire("client", Cost(input_tokens=10, output_tokens=10))
    assert not isinstance(reservation, Waiting)
    ctx = get_context({"type": "http"})
    ctx.rate_limit = reservation  # type-checked against RateLimitReservation
    assert ctx.rate_limit is not None
    assert (ctx.rate_limit.key, ctx.rate_limit.waited) == ("client", 0.0)
