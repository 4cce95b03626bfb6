"""`FallbackProvider` with scripted providers: order, per-upstream breakers, model mapping, streams."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.breaker import BreakerPolicy, CircuitBreaker, State, upstream_key
from ccproxy_asgi.context import RequestContext, UpstreamAttempt
from ccproxy_asgi.errors import (
    ApiError,
    InvalidRequestError,
    OverloadedError,
    ProxyError,
    RateLimitError,
    UpstreamError,
)
from ccproxy_asgi.provider.fallback import FallbackProvider, UpstreamEntry
from ccproxy_asgi.upstream.base import UpstreamResponse
from tests.support.manual_clock import ManualClock

PRIMARY, SECONDARY, TERTIARY = "http://primary.test/v1", "http://secondary.test/v1", "http://tertiary.test/v1"


class ScriptedProvider:
    """Answers with the next scripted result: a status (recorded as an attempt) or an exception."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.script: list[tuple[int | None, ProxyError | None]] = []
        self.payloads: list[dict[str, Any]] = []
        self.closed = False

    def fail_with(self, status: int | None, error: ProxyError, times: int = 1) -> None:
        self.script.extend([(status, error)] * times)

    def _call(self, payload: dict[str, Any], ctx: RequestContext) -> None:
        self.payloads.append(payload)
        status, error = self.script.pop(0) if self.script else (200, None)
        ctx.attempts.append(
            UpstreamAttempt(url=self.url, status=status, error=type(error).__name__ if status is None else None)
        )
        if error is not None:
            raise error

    async def complete(
        self, payload: dict[str, Any], ctx: RequestContext, *, client_key: str | None = None
    ) -> dict[str, Any]:
        self._call(payload, ctx)
        return {"served_by": self.url}

    @contextlib.asynccontextmanager
    async def stream(
        self, payload: dict[str, Any], ctx: RequestContext, *, client_key: str | None = None
    ) -> AsyncIterator[UpstreamResponse]:
        self._call(payload, ctx)
        yield self.url  # type: ignore[misc]

    async def count_tokens(self, body: dict[str, Any], *, upstream_model: str) -> int:
        return len(self.url)

    async def list_models(self) -> list[str]:
        return [self.url]

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def breaker(clock: ManualClock) -> CircuitBreaker:
    return CircuitBreaker(policy=BreakerPolicy(failure_threshold=2, recovery_seconds=10), clock=clock)


@pytest.fixture
def upstreams() -> list[ScriptedProvider]:
    return [ScriptedProvider(url) for url in (PRIMARY, SECONDARY, TERTIARY)]


def make(upstreams: list[ScriptedProvider], breaker: CircuitBreaker, **kwargs: Any) -> FallbackProvider:
    entries = [
        UpstreamEntry("primary", PRIMARY, upstreams[0]),
        UpstreamEntry("secondary", SECONDARY, upstreams[1], lambda m: f"local-{m}"),
        UpstreamEntry("tertiary", TERTIARY, upstreams[2]),
    ]
    return FallbackProvider(entries, breaker=breaker, **kwargs)


def context() -> RequestContext:
    return RequestContext(requested_model="claude-sonnet-4-5", upstream_model="gpt-4o")


PAYLOAD = {"model": "gpt-4o", "messages": []}


async def test_the_primary_serves_while_healthy(upstreams: list[ScriptedProvider], breaker: CircuitBreaker) -> None:
    ctx = context()
    assert await make(upstreams, breaker).complete(PAYLOAD, ctx) == {"served_by": PRIMARY}
    assert ctx.upstream_name == "primary"
    assert [len(u.payloads) for u in upstreams] == [1, 0, 0]


async def test_an_upstream_failure_before_the_first_byte_moves_on_with_the_mapped_model(
    upstreams: list[ScriptedProvider], breaker: CircuitBreaker
) -> None:
    upstreams[0].fail_with(503, OverloadedError("down"))
    ctx = context()
    assert await make(upstreams, breaker).complete(PAYLOAD, ctx) == {"served_by": SECONDARY}
    assert (ctx.upstream_name, ctx.upstream_model) == ("secondary", "local-claude-sonnet-4-5")
    assert upstreams[1].payloads[0]["model"] == "local-claude-sonnet-4-5"
    assert PAYLOAD["model"] == "gpt-4o"  # the caller's payload is not modified
    stats = breaker.stats()
    assert stats[PRIMARY].failures == 1
    assert stats[SECONDARY].successes == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (None, UpstreamError("refused")),
        (429, RateLimitError("slow down")),
        (401, ApiError("upstream credentials rejected (401)")),
        (200, UpstreamError("invalid upstream response")),
    ],
)
async def test_upstream_faults_fall_back(
    upstreams: list[ScriptedProvider], breaker: CircuitBreaker, status: int | None, error: ProxyError
) -> None:
    upstreams[0].fail_with(status, error)
    assert await make(upstreams, breaker).complete(PAYLOAD, context()) == {"served_by": SECONDARY}


async def test_a_client_error_is_answered_as_is(upstreams: list[ScriptedProvider], breaker: CircuitBreaker) -> None:
    upstreams[0].fail_with(400, InvalidRequestError("prompt is too long"))
    with pytest.raises(InvalidRequestError):
        await make(upstreams, breaker).complete(PAYLOAD, context())
    assert [len(u.payloads) for u in upstreams] == [1, 0, 0]
    assert (await breaker.snapshot(PRIMARY)).consecutive_failures == 0


async def test_an_open_primary_is_skipped_without_a_call_and_probed_after_recovery(
    upstreams: list[ScriptedProvider], breaker: CircuitBreaker, clock: ManualClock
) -> None:
    provider = make(upstreams, breaker)
    upstreams[0].fail_with(503, ApiError("boom"), times=2)
    for _ in range(2):
        await provider.complete(PAYLOAD, context())
    assert (await breaker.snapshot(PRIMARY)).state is State.OPEN
    for _ in range(3):
        ctx = context()
        assert await provider.complete(PAYLOAD, ctx) == {"served_by": SECONDARY}
        assert [a.url for a in ctx.attempts] == [SECONDARY]
    assert len(upstreams[0].payloads) == 2
    clock.advance(10)  # the primary healed: the next request is its probe, and it closes the breaker
    ctx = context()
    assert await provider.complete(PAYLOAD, ctx) == {"served_by": PRIMARY}
    assert (await breaker.snapshot(PRIMARY)).state is State.CLOSED


async def test_every_breaker_open_is_a_529_with_the_shortest_wait(
    upstreams: list[ScriptedProvider], breaker: CircuitBreaker, clock: ManualClock
) -> None:
    provider = make(upstreams, breaker)
    for index, upstream in enumerate(upstreams):
        # The next upstream serves while this one fails (the last one's own errors reach the client).
        upstream.fail_with(503, ApiError("boom"), times=2)
        for _ in range(2):
            with contextlib.suppress(ApiError):
                await provider.complete(PAYLOAD, context())
        clock.advance(2 if index < 2 else 0)
    calls = [len(u.payloads) for u in upstreams]
    ctx = context()
    with pytest.raises(OverloadedError) as caught:
        await provider.complete(PAYLOAD, ctx)
    assert [len(u.payloads) for u in upstreams] == calls
    assert ctx.upstream_name is None
    # Opened at t+0, t+2 and t+4 for 10 s each; now t+4. The primary would probe in 6 s, but the last
    # upstream, with nothing after it, keeps probing while open: its next probe is 1 s after its trip.
    assert caught.value.retry_after == pytest.approx(1)
    clock.advance(1)
    upstreams[2].fail_with(503, ApiError("still down"), times=1)
    with pytest.raises(ApiError):
        await provider.complete(PAYLOAD, context())
    assert len(upstreams[2].payloads) == calls[2] + 1


async def test_the_last_upstream_error_is_raised_when_all_fail(
    upstreams: list[ScriptedProvider], breaker: CircuitBreaker
) -> None:
    upstreams[0].fail_with(503, ApiError("first"))
    upstreams[1].fail_with(503, OverloadedError("second"))
    upstreams[2].fail_with(None, UpstreamError("third"))
    ctx = context()
    with pytest.raises(UpstreamError, match="third"):
        await make(upstreams, breaker).complete(PAYLOAD, ctx)
    assert ctx.upstream_name == "tertiary"
    assert [a.url for a in ctx.attempts] == [PRIMARY, SECONDARY, TERTIARY]


async def test_streams_fall_back_before_the_first_byte_and_report_cuts_after(
    upstreams: list[ScriptedProvider], breaker: CircuitBreaker
) -> None:
    provider = make(upstreams, breaker)
    upstreams[0].fail_with(502, UpstreamError("bad gateway"))
    ctx = context()
    async with provider.stream(PAYLOAD, ctx) as response:
        assert response == SECONDARY  # type: ignore[comparison-overlap]
        ctx.stream_error = "api_error"  # the endpoint saw the upstream cut the stream
    assert ctx.upstream_name == "secondary"
    assert breaker.stats()[SECONDARY].request_errors == 1  # this response broke; the upstream is up
    ctx = context()
    async with provider.stream(PAYLOAD, ctx) as response:
        assert response == PRIMARY  # type: ignore[comparison-overlap]
    assert breaker.stats()[PRIMARY].successes == 1


async def test_a_stream_the_client_abandoned_proves_nothing(
    upstreams: list[ScriptedProvider], breaker: CircuitBreaker
) -> None:
    provider = make(upstreams, breaker)
    with pytest.raises(KeyboardInterrupt):
        async with provider.stream(PAYLOAD, context()):
            raise KeyboardInterrupt  # stands in for the cancellation of a disconnect
    stats = breaker.stats()[PRIMARY]
    assert (stats.successes, stats.failures, stats.neutral) == (0, 0, 1)


async def test_upstream_model_keys(upstreams: list[ScriptedProvider], breaker: CircuitBreaker) -> None:
    provider = make(upstreams, breaker, key_mode="upstream_model")
    upstreams[0].fail_with(503, ApiError("boom"), times=2)
    for _ in range(2):
        await provider.complete(PAYLOAD, context())
    assert (await breaker.snapshot(upstream_key(PRIMARY, "gpt-4o"))).state is State.OPEN
    assert breaker.stats()[upstream_key(SECONDARY, "local-claude-sonnet-4-5")].successes == 2


async def test_count_tokens_models_and_close(upstreams: list[ScriptedProvider], breaker: CircuitBreaker) -> None:
    provider = make(upstreams, breaker)
    assert await provider.count_tokens({}, upstream_model="x") == len(PRIMARY)
    assert await provider.list_models() == [PRIMARY]
    await provider.aclose()
    assert all(u.closed for u in upstreams)


def test_fallback_upstreams_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "CCPROXY_FALLBACK_UPSTREAMS",
        '[{"name": "local", "base_url": "http://127.0.0.1:8000/v1", "api_key": "sk-local-key",'
        ' "model_map": {"claude-*": "qwen"}}]',
    )
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    (item,) = settings.fallback_upstreams
    assert (item.name, item.base_url, item.model_map) == ("local", "http://127.0.0.1:8000/v1", {"claude-*": "qwen"})
    assert "sk-local-key" not in repr(settings)
    monkeypatch.setenv("CCPROXY_FALLBACK_UPSTREAMS", '[{"name": "x", "base_url": "ftp://nope"}]')
    with pytest.raises(ValueError, match="http"):
        Settings(_env_file=None)  # type: ignore[call-arg]
