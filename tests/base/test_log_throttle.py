"""`ThrottledLog`: the first occurrence at once, then one line per interval with the count, per key."""

from __future__ import annotations

import logging

import pytest

from ccproxy_asgi.log_throttle import ThrottledLog
from tests.support.manual_clock import ManualClock

LOGGER = "tests.log_throttle"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def throttled(clock: ManualClock) -> ThrottledLog:
    return ThrottledLog(logging.getLogger(LOGGER), interval=60.0, clock=clock)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_first_occurrence_is_written_then_repeats_are_counted(
    throttled: ThrottledLog, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    assert throttled.warning("budget", "budget spent: %s", "503") is True
    for _ in range(41):
        clock.advance(1.0)
        assert throttled.warning("budget", "budget spent: %s", "503") is False
    assert lines(caplog) == ["budget spent: 503"]
    assert throttled.suppressed("budget") == 41


def test_after_the_interval_one_line_carries_the_count(
    throttled: ThrottledLog, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    throttled.warning("budget", "budget spent: %s", "503")
    for _ in range(8776):
        throttled.warning("budget", "budget spent: %s", "503")
    clock.advance(62.0)
    assert throttled.warning("budget", "budget spent: %s", "429") is True
    assert lines(caplog) == ["budget spent: 503", "budget spent: 429 (8776 more in the last 62 s)"]
    assert throttled.suppressed("budget") == 0
    # The interval counts from the last line written, not from the first occurrence.
    clock.advance(59.0)
    assert throttled.warning("budget", "budget spent: %s", "503") is False
    clock.advance(1.0)
    assert throttled.warning("budget", "budget spent: %s", "503") is True
    assert lines(caplog)[-1] == "budget spent: 503 (1 more in the last 60 s)"


def test_a_quiet_interval_writes_no_count(
    throttled: ThrottledLog, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    throttled.error("down", "store down")
    clock.advance(600.0)
    throttled.error("down", "store down")
    assert lines(caplog) == ["store down", "store down"]


def test_keys_are_throttled_separately(
    throttled: ThrottledLog, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    for _ in range(3):
        throttled.warning("a", "condition %s", "a")
        throttled.warning("b", "condition %s", "b")
    assert lines(caplog) == ["condition a", "condition b"]
    assert throttled.suppressed("a") == throttled.suppressed("b") == 2


def test_reset_returns_the_unwritten_count_and_rearms(
    throttled: ThrottledLog, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    throttled.error("down", "store down")
    throttled.error("down", "store down")
    throttled.error("down", "store down")
    assert throttled.active("down")
    assert throttled.reset("down") == 2
    assert not throttled.active("down")
    assert throttled.reset("down") == 0
    # A new outage right after: written at once, with no stale count.
    clock.advance(1.0)
    assert throttled.error("down", "store down again") is True
    assert lines(caplog) == ["store down", "store down again"]


def test_levels_and_the_callers_location(throttled: ThrottledLog, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    throttled.debug("d", "debug line")
    throttled.info("i", "info line")
    throttled.warning("w", "warning line")
    throttled.error("e", "error line")
    throttled.log(logging.CRITICAL, "c", "critical line")
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [r.levelno for r in records] == [
        logging.DEBUG,
        logging.INFO,
        logging.WARNING,
        logging.ERROR,
        logging.CRITICAL,
    ]
    # The records point at this test, not at the helper.
    assert {r.funcName for r in records} == {"test_levels_and_the_callers_location"}
    assert {r.pathname for r in records} == {__file__}


def test_exc_info_reaches_the_record(throttled: ThrottledLog, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        throttled.error("x", "it failed", exc_info=True)
    (record,) = [r for r in caplog.records if r.name == LOGGER]
    assert record.exc_info is not None
    assert record.exc_info[0] is RuntimeError


def test_messages_are_formatted_lazily(throttled: ThrottledLog, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)

    class Costly:
        formatted = 0

        def __str__(self) -> str:
            Costly.formatted += 1
            return "costly"

    throttled.warning("k", "value %s", Costly())
    written = Costly.formatted  # by however many handlers there are
    for _ in range(99):
        throttled.warning("k", "value %s", Costly())
    assert Costly.formatted == written  # the counted ones were never formatted
    assert lines(caplog) == ["value costly"]


def test_old_keys_are_forgotten_past_max_keys(clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    throttled = ThrottledLog(logging.getLogger(LOGGER), interval=60.0, clock=clock, max_keys=2)
    throttled.warning("a", "a")
    throttled.warning("b", "b")
    throttled.warning("c", "c")  # forgets "a"
    assert not throttled.active("a")
    assert throttled.active("b")
    assert throttled.active("c")
    throttled.warning("a", "a")  # written again: at most one line early, never an unbounded map
    assert lines(caplog) == ["a", "b", "c", "a"]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="interval"):
        ThrottledLog(logging.getLogger(LOGGER), interval=-1.0)
    with pytest.raises(ValueError, match="max_keys"):
        ThrottledLog(logging.getLogger(LOGGER), max_keys=0)
