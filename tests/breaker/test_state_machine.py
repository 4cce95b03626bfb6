"""Every transition of the breaker core, with an injected clock, against both stores.

Each test runs twice: on the in-process store and on the Redis store (a real `redis-server`), so the Lua
script and the Python state machine are held to the same behaviour.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from ccproxy_asgi.breaker import (
    BreakerPolicy,
    BreakerStore,
    CircuitBreaker,
    MemoryBreakerStore,
    Outcome,
    State,
    Ticket,
    Transition,
    upstream_key,
)
from tests.support.manual_clock import ManualClock
from tests.support.redis_server import RedisServer, redis_server_fixture

redis_server = redis_server_fixture()

KEY = "http://upstream.test/v1"
MakeBreaker = Callable[..., CircuitBreaker]


@pytest.fixture(params=["memory", "redis"])
async def make_breaker(request: pytest.FixtureRequest, clock: ManualClock) -> AsyncIterator[MakeBreaker]:
    """A factory of breakers on one store (one per test): `make_breaker(**policy)`."""
    stores: list[BreakerStore] = []
    if request.param == "memory":
        shared: BreakerStore = MemoryBreakerStore()
    else:
        from redis.asyncio import Redis

        from ccproxy_asgi.breaker.redis_store import RedisBreakerStore

        server: RedisServer = request.getfixturevalue("redis_server")
        shared = RedisBreakerStore(Redis.from_url(server.url), prefix=server.unique_prefix() + ":")
    stores.append(shared)
    counter = itertools.count()

    def make(**policy: object) -> CircuitBreaker:
        return CircuitBreaker(
            policy=BreakerPolicy(**policy),  # type: ignore[arg-type]
            store=shared,
            clock=clock,
            token=lambda: f"probe-{next(counter)}",
        )

    yield make
    for store in stores:
        await store.aclose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def fail(breaker: CircuitBreaker, times: int = 1, key: str = KEY) -> list[Ticket]:
    tickets = []
    for _ in range(times):
        ticket = await breaker.acquire(key)
        assert ticket.allowed
        await breaker.record(ticket, Outcome.FAILURE)
        tickets.append(ticket)
    return tickets


async def succeed(breaker: CircuitBreaker, times: int = 1, key: str = KEY) -> None:
    for _ in range(times):
        ticket = await breaker.acquire(key)
        assert ticket.allowed
        await breaker.record(ticket, Outcome.SUCCESS)


async def state(breaker: CircuitBreaker, key: str = KEY) -> State:
    return (await breaker.snapshot(key)).state


async def test_opens_after_n_consecutive_failures(make_breaker: MakeBreaker, clock: ManualClock) -> None:
    breaker = make_breaker(failure_threshold=3, recovery_seconds=10)
    await fail(breaker, 2)
    assert await state(breaker) is State.CLOSED
    assert (await breaker.snapshot(KEY)).consecutive_failures == 2
    await fail(breaker)
    snap = await breaker.snapshot(KEY)
    assert snap.state is State.OPEN
    assert snap.retry_after == pytest.approx(10)
    clock.advance(4)
    refused = await breaker.acquire(KEY)
    assert not refused.allowed
    assert refused.state is State.OPEN
    assert refused.retry_after == pytest.approx(6)


async def test_a_success_resets_the_consecutive_count(make_breaker: MakeBreaker) -> None:
    breaker = make_breaker(failure_threshold=3)
    await fail(breaker, 2)
    await succeed(breaker)
    await fail(breaker, 2)
    assert await state(breaker) is State.CLOSED
    await fail(breaker)
    assert await state(breaker) is State.OPEN


async def test_neutral_outcomes_neither_count_nor_reset(make_breaker: MakeBreaker) -> None:
    breaker = make_breaker(failure_threshold=3)
    await fail(breaker, 2)
    for _ in range(5):
        ticket = await breaker.acquire(KEY)
        await breaker.record(ticket, Outcome.NEUTRAL)
    snap = await breaker.snapshot(KEY)
    assert (snap.state, snap.consecutive_failures, snap.window_requests) == (State.CLOSED, 2, 2)
    await fail(breaker)
    assert await state(breaker) is State.OPEN


async def test_opens_on_failure_ratio_only_with_enough_requests(make_breaker: MakeBreaker) -> None:
    breaker = make_breaker(failure_threshold=100, failure_ratio=0.5, min_requests=6, window_seconds=60)
    for _ in range(2):
        await fail(breaker)
        await succeed(breaker)
    assert await state(breaker) is State.CLOSED  # 2 of 4: below the minimum count
    await fail(breaker)
    await succeed(breaker)
    snap = await breaker.snapshot(KEY)
    assert (snap.window_requests, snap.window_failures, snap.state) == (6, 3, State.CLOSED)
    await fail(breaker)  # 4 of 7 >= 0.5 -- the ratio check runs on failures
    assert await state(breaker) is State.OPEN


async def test_failure_ratio_forgets_outcomes_older_than_the_window(
    make_breaker: MakeBreaker, clock: ManualClock
) -> None:
    breaker = make_breaker(failure_threshold=100, failure_ratio=0.5, min_requests=4, window_seconds=10)
    await fail(breaker, 3)
    clock.advance(11)
    await succeed(breaker, 3)
    await fail(breaker)  # 1 of 4 in the window; 4 of 7 had the old ones counted
    snap = await breaker.snapshot(KEY)
    assert (snap.state, snap.window_requests, snap.window_failures) == (State.CLOSED, 4, 1)


async def test_half_open_after_recovery_then_closes_on_probe_success(
    make_breaker: MakeBreaker, clock: ManualClock
) -> None:
    breaker = make_breaker(failure_threshold=1, recovery_seconds=5)
    await fail(breaker)
    clock.advance(4.9)
    assert not (await breaker.acquire(KEY)).allowed
    clock.advance(0.1)
    assert await state(breaker) is State.HALF_OPEN  # open past its timeout reads half-open
    probe = await breaker.acquire(KEY)
    assert probe.allowed
    assert probe.state is State.HALF_OPEN
    assert probe.probe is not None
    busy = await breaker.acquire(KEY)
    assert not busy.allowed
    assert busy.state is State.HALF_OPEN
    assert busy.retry_after == pytest.approx(1.0)
    await breaker.record(probe, Outcome.SUCCESS)
    assert await state(breaker) is State.CLOSED
    await succeed(breaker, 3)


async def test_probe_failure_reopens_with_growing_capped_recovery(
    make_breaker: MakeBreaker, clock: ManualClock
) -> None:
    breaker = make_breaker(
        failure_threshold=1, recovery_seconds=10, recovery_growth=2, max_recovery_seconds=25
    )
    await fail(breaker)
    waits = []
    for _ in range(3):
        waits.append((await breaker.snapshot(KEY)).retry_after)
        clock.advance(waits[-1])
        probe = await breaker.acquire(KEY)
        assert probe.allowed
        assert probe.probe is not None
        await breaker.record(probe, Outcome.FAILURE)
        assert await state(breaker) is State.OPEN
    waits.append((await breaker.snapshot(KEY)).retry_after)
    assert waits == pytest.approx([10, 20, 25, 25])
    assert (await breaker.snapshot(KEY)).trips == 4
    # Recovery: the upstream healed, a probe succeeds, and the next trip starts from the base again.
    clock.advance(25)
    probe = await breaker.acquire(KEY)
    await breaker.record(probe, Outcome.SUCCESS)
    assert await state(breaker) is State.CLOSED
    await fail(breaker)
    assert (await breaker.snapshot(KEY)).retry_after == pytest.approx(10)


async def test_k_probes_at_most_and_m_successes_to_close(make_breaker: MakeBreaker, clock: ManualClock) -> None:
    breaker = make_breaker(failure_threshold=1, recovery_seconds=1, half_open_max_probes=2, half_open_successes=3)
    await fail(breaker)
    clock.advance(1)
    first, second, third = [await breaker.acquire(KEY) for _ in range(3)]
    assert (first.allowed, second.allowed, third.allowed) == (True, True, False)
    assert first.probe != second.probe
    await breaker.record(first, Outcome.SUCCESS)
    snap = await breaker.snapshot(KEY)
    assert (snap.state, snap.half_open_successes, snap.probes_in_flight) == (State.HALF_OPEN, 1, 1)
    fourth = await breaker.acquire(KEY)  # the freed slot goes to a new probe
    assert fourth.allowed
    assert not (await breaker.acquire(KEY)).allowed
    await breaker.record(second, Outcome.SUCCESS)
    assert await state(breaker) is State.HALF_OPEN
    await breaker.record(fourth, Outcome.SUCCESS)
    assert await state(breaker) is State.CLOSED


async def test_concurrent_acquires_let_exactly_k_probes_through(
    make_breaker: MakeBreaker, clock: ManualClock
) -> None:
    breaker = make_breaker(failure_threshold=1, recovery_seconds=1, half_open_max_probes=3)
    await fail(breaker)
    clock.advance(1)
    tickets = await asyncio.gather(*(breaker.acquire(KEY) for _ in range(25)))
    probes = [t for t in tickets if t.allowed]
    assert len(probes) == 3
    assert len({t.probe for t in probes}) == 3
    assert all(t.state is State.HALF_OPEN for t in tickets)
    # All three end without any upstream verdict: the slots come back, nothing is counted.
    await asyncio.gather(*(breaker.record(t, Outcome.NEUTRAL) for t in probes))
    snap = await breaker.snapshot(KEY)
    assert (snap.state, snap.probes_in_flight, snap.half_open_successes) == (State.HALF_OPEN, 0, 0)
    again = await asyncio.gather(*(breaker.acquire(KEY) for _ in range(10)))
    assert sum(t.allowed for t in again) == 3


async def test_neutral_probe_releases_its_slot_without_deciding(
    make_breaker: MakeBreaker, clock: ManualClock
) -> None:
    breaker = make_breaker(failure_threshold=1, recovery_seconds=1)
    await fail(breaker)
    clock.advance(1)
    for _ in range(5):  # clients that disconnect, or a local limiter that rejected them
        probe = await breaker.acquire(KEY)
        assert probe.allowed
        await breaker.record(probe, Outcome.NEUTRAL)
        assert await state(breaker) is State.HALF_OPEN
    probe = await breaker.acquire(KEY)
    await breaker.record(probe, Outcome.SUCCESS)
    assert await state(breaker) is State.CLOSED


async def test_a_probe_that_never_reports_is_reclaimed_after_its_lease(
    make_breaker: MakeBreaker, clock: ManualClock
) -> None:
    breaker = make_breaker(failure_threshold=1, recovery_seconds=1, probe_lease_seconds=30)
    await fail(breaker)
    clock.advance(1)
    lost = await breaker.acquire(KEY)  # its process dies: never recorded
    assert lost.allowed
    clock.advance(29)
    assert not (await breaker.acquire(KEY)).allowed
    clock.advance(1)
    probe = await breaker.acquire(KEY)
    assert probe.allowed
    await breaker.record(probe, Outcome.SUCCESS)
    assert await state(breaker) is State.CLOSED


async def test_outcomes_of_requests_admitted_before_a_change_are_ignored(
    make_breaker: MakeBreaker, clock: ManualClock
) -> None:
    breaker = make_breaker(failure_threshold=2, recovery_seconds=1)
    slow = [await breaker.acquire(KEY) for _ in range(3)]
    await fail(breaker, 2)
    assert await state(breaker) is State.OPEN
    await breaker.record(slow[0], Outcome.FAILURE)  # no second trip, no longer recovery
    assert (await breaker.snapshot(KEY)).trips == 1
    clock.advance(1)
    probe = await breaker.acquire(KEY)
    await breaker.record(slow[1], Outcome.SUCCESS)  # a pre-trip success does not close it
    assert await state(breaker) is State.HALF_OPEN
    await breaker.record(probe, Outcome.SUCCESS)
    assert await state(breaker) is State.CLOSED
    await breaker.record(slow[2], Outcome.FAILURE)  # nor does a pre-trip failure count afterwards
    assert (await breaker.snapshot(KEY)).consecutive_failures == 0


async def test_refused_tickets_record_nothing(make_breaker: MakeBreaker) -> None:
    breaker = make_breaker(failure_threshold=1)
    await fail(breaker)
    refused = await breaker.acquire(KEY)
    assert not refused.allowed
    await breaker.record(refused, Outcome.SUCCESS)
    assert await state(breaker) is State.OPEN


async def test_keys_are_independent(make_breaker: MakeBreaker) -> None:
    breaker = make_breaker(failure_threshold=1)
    await fail(breaker, key="http://a/v1")
    assert await state(breaker, "http://a/v1") is State.OPEN
    assert (await breaker.acquire("http://b/v1")).allowed
    assert await state(breaker, "http://b/v1") is State.CLOSED


async def test_transitions_are_logged_counted_and_announced(
    make_breaker: MakeBreaker, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = make_breaker(failure_threshold=2, recovery_seconds=3)
    seen: list[Transition] = []
    breaker.add_listener(seen.append)
    caplog.set_level(logging.INFO, logger="ccproxy_asgi.breaker")
    await fail(breaker, 2)
    assert not (await breaker.acquire(KEY)).allowed
    clock.advance(3)
    probe = await breaker.acquire(KEY)
    await breaker.record(probe, Outcome.SUCCESS)
    assert [(t.from_state, t.to_state) for t in seen] == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]
    assert seen[0].reason == "2 consecutive failures"
    assert seen[0].retry_after == pytest.approx(3)
    stats = breaker.stats()[KEY]
    assert stats.state is State.CLOSED
    assert stats.transitions == {"closed->open": 1, "open->half_open": 1, "half_open->closed": 1}
    assert (stats.admitted, stats.rejected, stats.successes, stats.failures) == (3, 1, 1, 2)
    messages = [r.getMessage() for r in caplog.records if r.name == "ccproxy_asgi.breaker"]
    assert any("opened for http://upstream.test/v1 (2 consecutive failures)" in m for m in messages)
    assert any("half-open" in m for m in messages)
    assert any("closed" in m for m in messages)
    assert [s.key for s in await breaker.snapshots()] == [KEY]


async def test_recovery_cycle_after_the_upstream_heals(make_breaker: MakeBreaker, clock: ManualClock) -> None:
    breaker = make_breaker(failure_threshold=3, recovery_seconds=2, half_open_successes=2, half_open_max_probes=1)
    await fail(breaker, 3)
    clock.advance(2)
    probe = await breaker.acquire(KEY)
    await breaker.record(probe, Outcome.FAILURE)  # still down
    assert await state(breaker) is State.OPEN
    clock.advance(2)
    for _ in range(2):  # healed: two sequential probes succeed
        probe = await breaker.acquire(KEY)
        assert probe.allowed
        assert probe.state is State.HALF_OPEN
        await breaker.record(probe, Outcome.SUCCESS)
    assert await state(breaker) is State.CLOSED
    tickets = await asyncio.gather(*(breaker.acquire(KEY) for _ in range(10)))
    assert all(t.allowed and t.probe is None for t in tickets)


def test_policy_validates_and_computes_recovery() -> None:
    policy = BreakerPolicy(recovery_seconds=2, recovery_growth=3, max_recovery_seconds=50)
    assert [policy.recovery_for(n) for n in (1, 2, 3, 4)] == [2, 6, 18, 50]
    for bad, why in (
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_ratio": 1.5}, "failure_ratio"),
        ({"half_open_max_probes": 0}, "half_open_max_probes"),
        ({"recovery_growth": 0.5}, "recovery_growth"),
        ({"recovery_seconds": 10, "max_recovery_seconds": 5}, "max_recovery_seconds"),
    ):
        with pytest.raises(ValueError, match=why):
            BreakerPolicy(**bad)


async def test_the_memory_store_forgets_least_recently_used_closed_keys(clock: ManualClock) -> None:
    store = MemoryBreakerStore(max_keys=3)
    breaker = CircuitBreaker(policy=BreakerPolicy(failure_threshold=1), store=store, clock=clock)
    await fail(breaker, key="open")
    for key in ("a", "b", "c", "d"):
        await breaker.acquire(key)
    assert store.keys() == ["open", "c", "d"]  # an open key is never forgotten
    assert await state(breaker, "open") is State.OPEN


def test_upstream_keys_hide_credentials_and_name_the_model() -> None:
    assert upstream_key("https://user:pw@api.example.com:8443/v1/?key=x#f") == "https://api.example.com:8443/v1"
    assert upstream_key("http://[::1]:8000/v1", "gpt-4o") == "http://[::1]:8000/v1|gpt-4o"


# --- evidence: what counts, and how an upstream with no alternative is probed ------------------------


async def fail_as(breaker: CircuitBreaker, fingerprint: str, *, alone: bool = False) -> Ticket:
    ticket = await breaker.acquire(KEY, fingerprint=fingerprint, alone=alone)
    if ticket.allowed:
        await breaker.record(ticket, Outcome.FAILURE)
    return ticket


async def test_a_request_retried_by_its_client_counts_once(make_breaker: MakeBreaker) -> None:
    breaker = make_breaker(failure_threshold=3)
    for _ in range(10):  # Claude Code retries a 5xx up to ten times, with the same body
        await fail_as(breaker, "poisoned")
    snap = await breaker.snapshot(KEY)
    assert (snap.state, snap.consecutive_failures, snap.window_failures) == (State.CLOSED, 1, 1)
    await fail_as(breaker, "other-1")
    await fail_as(breaker, "other-2")
    assert await state(breaker) is State.OPEN  # distinct failing requests still count


async def test_a_repeat_counts_again_once_forgotten(make_breaker: MakeBreaker, clock: ManualClock) -> None:
    breaker = make_breaker(failure_threshold=2, repeat_memory_seconds=30)
    await fail_as(breaker, "same")
    clock.advance(10)
    await fail_as(breaker, "same")
    assert (await breaker.snapshot(KEY)).consecutive_failures == 1
    clock.advance(31)
    await fail_as(breaker, "same")
    assert await state(breaker) is State.OPEN


async def test_one_request_in_three_failing_keeps_it_closed(make_breaker: MakeBreaker) -> None:
    breaker = make_breaker()  # the defaults
    for index in range(90):
        ticket = await breaker.acquire(KEY, fingerprint=f"request-{index}")
        assert ticket.allowed
        await breaker.record(ticket, Outcome.FAILURE if index % 3 == 0 else Outcome.SUCCESS)
    snap = await breaker.snapshot(KEY)
    assert snap.state is State.CLOSED
    assert snap.trips == 0


async def test_a_short_run_of_failures_among_many_successes_does_not_trip(make_breaker: MakeBreaker) -> None:
    breaker = make_breaker(failure_threshold=5, failure_ratio=0.5, min_requests=20)
    await succeed(breaker, 40)
    for index in range(8):  # eight upstream resets in a row, at high traffic
        await fail_as(breaker, f"reset-{index}")
    snap = await breaker.snapshot(KEY)
    assert (snap.state, snap.consecutive_failures) == (State.CLOSED, 8)


async def test_a_dead_upstream_still_trips_fast_at_any_traffic(make_breaker: MakeBreaker) -> None:
    quiet = make_breaker(failure_threshold=5)
    for index in range(5):
        await fail_as(quiet, f"quiet-{index}")
    assert await state(quiet) is State.OPEN
    busy = make_breaker(failure_threshold=5, failure_ratio=0.5, min_requests=20)
    key = "http://busy.test/v1"
    await succeed(busy, 30, key=key)
    tripped_after = None
    for index in range(40):
        ticket = await busy.acquire(key, fingerprint=f"busy-{index}")
        if not ticket.allowed:
            tripped_after = index
            break
        await busy.record(ticket, Outcome.FAILURE)
    # 30 successes then every request failing: it opens once failures are half of the window.
    assert tripped_after == 30


async def test_alone_an_open_breaker_lets_one_probe_through_per_interval(
    make_breaker: MakeBreaker, clock: ManualClock
) -> None:
    breaker = make_breaker(failure_threshold=2, recovery_seconds=30, open_probe_interval_seconds=1)
    for index in range(2):
        await fail_as(breaker, f"down-{index}")
    refused = await breaker.acquire(KEY, fingerprint="healthy", alone=True)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(1)
    assert not (await breaker.acquire(KEY, fingerprint="healthy")).allowed  # not alone: shed for 30 s
    clock.advance(1)
    probe = await breaker.acquire(KEY, fingerprint="healthy", alone=True)
    assert probe.allowed
    assert probe.probe is not None
    assert probe.state is State.OPEN
    busy = await breaker.acquire(KEY, fingerprint="another", alone=True)
    assert not busy.allowed  # one probe in flight at a time
    await breaker.record(probe, Outcome.SUCCESS)
    snap = await breaker.snapshot(KEY)
    assert (snap.state, snap.trips) == (State.CLOSED, 0)


async def test_alone_a_failed_probe_keeps_it_open_without_growing_the_recovery(
    make_breaker: MakeBreaker, clock: ManualClock
) -> None:
    breaker = make_breaker(failure_threshold=2, recovery_seconds=30, recovery_growth=2.0)
    for index in range(2):
        await fail_as(breaker, f"down-{index}")
    clock.advance(1)
    probe = await fail_as(breaker, "probe-1", alone=True)
    assert probe.allowed
    snap = await breaker.snapshot(KEY)
    assert (snap.state, snap.trips, snap.probes_in_flight) == (State.OPEN, 1, 0)
    assert snap.retry_after == pytest.approx(29)
    clock.advance(0.5)
    assert not (await breaker.acquire(KEY, fingerprint="probe-2", alone=True)).allowed  # interval
    clock.advance(0.5)
    assert (await breaker.acquire(KEY, fingerprint="probe-2", alone=True)).allowed


async def test_a_request_known_to_fail_is_never_a_probe(make_breaker: MakeBreaker, clock: ManualClock) -> None:
    breaker = make_breaker(failure_threshold=2, recovery_seconds=10)
    await fail_as(breaker, "poisoned")
    await fail_as(breaker, "down")
    clock.advance(11)  # half-open now
    refused = await breaker.acquire(KEY, fingerprint="poisoned")
    assert not refused.allowed
    probe = await breaker.acquire(KEY, fingerprint="fresh")
    assert probe.allowed
    assert probe.probe is not None
    await breaker.record(probe, Outcome.SUCCESS)
    assert await state(breaker) is State.CLOSED


async def test_probes_let_through_while_open_carry_over_into_half_open(
    make_breaker: MakeBreaker, clock: ManualClock
) -> None:
    breaker = make_breaker(failure_threshold=1, recovery_seconds=5, open_probe_interval_seconds=1)
    await fail_as(breaker, "down")
    clock.advance(4)
    probe = await breaker.acquire(KEY, fingerprint="slow", alone=True)
    assert probe.allowed
    clock.advance(2)  # the recovery time ends while the probe is still in flight
    assert not (await breaker.acquire(KEY, fingerprint="next")).allowed  # its slot is still taken
    await breaker.record(probe, Outcome.SUCCESS)
    assert await state(breaker) is State.CLOSED


async def test_request_errors_neither_extend_nor_break_a_run(make_breaker: MakeBreaker) -> None:
    breaker = make_breaker(failure_threshold=3)
    for index in range(10):  # the upstream answered 500 to ten different requests: it is up
        ticket = await breaker.acquire(KEY, fingerprint=f"template-error-{index}")
        await breaker.record(ticket, Outcome.REQUEST_ERROR)
    snap = await breaker.snapshot(KEY)
    assert (snap.state, snap.consecutive_failures, snap.window_failures) == (State.CLOSED, 0, 10)
    await fail_as(breaker, "down-1")
    ticket = await breaker.acquire(KEY, fingerprint="template-error-x")
    await breaker.record(ticket, Outcome.REQUEST_ERROR)
    await fail_as(breaker, "down-2")
    assert (await breaker.snapshot(KEY)).consecutive_failures == 2
    await fail_as(breaker, "down-3")
    assert await state(breaker) is State.OPEN


async def test_request_errors_count_toward_the_failure_ratio(make_breaker: MakeBreaker) -> None:
    breaker = make_breaker(failure_threshold=100, failure_ratio=0.5, min_requests=10)
    await succeed(breaker, 5)
    for index in range(5):
        ticket = await breaker.acquire(KEY, fingerprint=f"broken-{index}")
        await breaker.record(ticket, Outcome.REQUEST_ERROR)
    assert await state(breaker) is State.OPEN  # half of ten requests failing: the upstream is sick


async def test_a_probe_ending_in_a_request_error_decides_nothing(
    make_breaker: MakeBreaker, clock: ManualClock
) -> None:
    breaker = make_breaker(failure_threshold=1, recovery_seconds=5)
    await fail_as(breaker, "down")
    clock.advance(6)
    probe = await breaker.acquire(KEY, fingerprint="odd-prompt")
    assert probe.allowed
    await breaker.record(probe, Outcome.REQUEST_ERROR)
    snap = await breaker.snapshot(KEY)
    assert (snap.state, snap.probes_in_flight) == (State.HALF_OPEN, 0)
    await succeed(breaker)
    assert await state(breaker) is State.CLOSED
