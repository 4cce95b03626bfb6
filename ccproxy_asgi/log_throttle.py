"""`ThrottledLog`: log lines about a repeating condition, at most one per interval, with a count.

A condition that holds for a while (a store that is down, a budget that is spent, a check that keeps
failing) is met again by every request or probe. One line per occurrence floods the log and buries
everything else; one line in total hides that it is still going on. `ThrottledLog` writes the first
occurrence at once, counts the next ones, and writes at most one more line per `interval` seconds for
the same key, saying how many were not written:

    from ccproxy_asgi.log_throttle import ThrottledLog

    logger = logging.getLogger(__name__)
    budget_log = ThrottledLog(logger, interval=60.0)

    # in the hot path, as often as it happens:
    budget_log.warning("retry-budget", "retry budget is spent: %s not retried", reason)

    # the log then reads, for a condition that lasted two minutes:
    #   retry budget is spent: upstream 503 not retried
    #   retry budget is spent: upstream 503 not retried (8776 more in the last 60 s)
    #   retry budget is spent: upstream 503 not retried (8512 more in the last 60 s)

    # when a condition that lasts is over (a store answers again), `reset` forgets the key, so the next
    # outage is written at once, and returns how many occurrences were never written:
    if (missed := store_log.reset("outage")):
        logger.warning("store reachable again (%d failed calls not logged)", missed)

Do not `reset` on a condition that can flip on every request (a budget that has room for one retry,
then none): each reset re-arms the first line and the flood is back. Let the interval do the work.

`key` names the condition (a constant string, or a name from a small set such as a check's name); the
message and its arguments may differ from one call to the next, and the line written is the one of the
call that got through. `msg` and `args` are `logging`'s: `msg % args`, formatted only when written.
Not thread-safe: use one per event loop (the proxy's own use), or guard it with a lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

_SUFFIX = " (%d more in the last %.0f s)"
#: What `logging` takes as `exc_info` (True: the exception being handled).
_ExcInfo = bool | BaseException | None


@dataclass(slots=True)
class _Condition:
    last_written: float
    suppressed: int = 0


class ThrottledLog:
    """See the module docstring. `interval`: seconds between two lines of one key. `clock`: a
    monotonic clock (inject a manual one in tests). `max_keys`: conditions remembered at once; past it
    the oldest is forgotten, which at worst writes one line early."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1024,
    ) -> None:
        if interval < 0:
            raise ValueError("interval must not be negative")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.logger = logger
        self.interval = interval
        self._clock = clock
        self._max_keys = max_keys
        self._conditions: dict[str, _Condition] = {}

    def log(
        self,
        level: int,
        key: str,
        msg: str,
        *args: object,
        exc_info: _ExcInfo = None,
        stacklevel: int = 1,
    ) -> bool:
        """Write `msg % args` at `level` if `key` was not written in the last `interval` seconds (with
        the count of the occurrences not written since), else count it. True when a line was written."""
        # Counted even when the level is off: turning the level on later must not report a stale count.
        now = self._clock()
        condition = self._conditions.get(key)
        if condition is not None and now - condition.last_written < self.interval:
            condition.suppressed += 1
            return False
        if condition is None:
            if len(self._conditions) >= self._max_keys:
                del self._conditions[next(iter(self._conditions))]
            self._conditions[key] = _Condition(now)
            missed, elapsed = 0, 0.0
        else:
            missed, elapsed = condition.suppressed, now - condition.last_written
            condition.last_written, condition.suppressed = now, 0
        if missed:
            msg, args = msg + _SUFFIX, (*args, missed, elapsed)
        # +1: the line names the caller of `log` (or, through `warning` etc., of that method).
        self.logger.log(level, msg, *args, exc_info=exc_info, stacklevel=stacklevel + 1)
        return True

    def debug(self, key: str, msg: str, *args: object, exc_info: _ExcInfo = None) -> bool:
        return self.log(logging.DEBUG, key, msg, *args, exc_info=exc_info, stacklevel=2)

    def info(self, key: str, msg: str, *args: object, exc_info: _ExcInfo = None) -> bool:
        return self.log(logging.INFO, key, msg, *args, exc_info=exc_info, stacklevel=2)

    def warning(self, key: str, msg: str, *args: object, exc_info: _ExcInfo = None) -> bool:
        return self.log(logging.WARNING, key, msg, *args, exc_info=exc_info, stacklevel=2)

    def error(self, key: str, msg: str, *args: object, exc_info: _ExcInfo = None) -> bool:
        return self.log(logging.ERROR, key, msg, *args, exc_info=exc_info, stacklevel=2)

    def suppressed(self, key: str) -> int:
        """Occurrences of `key` counted but not written since its last line."""
        condition = self._conditions.get(key)
        return 0 if condition is None else condition.suppressed

    def active(self, key: str) -> bool:
        """Whether `key` was logged and not `reset` since."""
        return key in self._conditions

    def reset(self, key: str) -> int:
        """The condition `key` is over: forget it, so its next occurrence is written at once. Returns the
        occurrences that were counted but never written."""
        condition = self._conditions.pop(key, None)
        return 0 if condition is None else condition.suppressed


__all__ = ["ThrottledLog"]
