"""How the limiter adapts to what the upstream says: multiplicative decrease on a 429, growth after a run
of successes, a pause until the upstream's `retry-after`, and tightening from `x-ratelimit-remaining-*`.

`AdaptivePolicy` holds the rules and `AdaptiveState` one key's state. The memory store applies the
rules with these methods; the Redis store applies the same rules inside its Lua scripts (kept in step
by a parity test that runs one scenario through both stores).

Rules:
- A 429 from the upstream multiplies the key's factor by `decrease` (not below `min_factor`) and pauses
  admission until the upstream's `retry-after` (else `default_pause`, capped at `max_pause`). One
  decrease per round: a 429 for a request admitted before the last decrease says nothing about the
  limits set since, so it only extends the pause. (A burst of 20 concurrent 429s thus cuts the limits
  once, not 0.8**20 times: the "once per round trip" of TCP's AIMD.)
- `successes_to_increase` consecutive successes (streams included) multiply the factor by `increase`,
  up to 1 (the configured limits).
- `x-ratelimit-remaining-tokens` (or `-requests`) below what the local window thinks is left becomes a
  debt: that many tokens (requests) are treated as spent until the upstream's `x-ratelimit-reset-*`
  (at most one window). It only ever tightens; it never lets more through than the local window does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AdaptivePolicy:
    """The adaptive rules and their knobs; see the module docstring."""

    enabled: bool = True
    decrease: float = 0.8
    min_factor: float = 0.1
    increase: float = 1.1
    successes_to_increase: int = 10
    default_pause: float = 1.0
    max_pause: float = 60.0
    use_headers: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.decrease < 1:
            raise ValueError("decrease must be in (0, 1)")
        if not 0 < self.min_factor <= 1:
            raise ValueError("min_factor must be in (0, 1]")
        if self.increase < 1:
            raise ValueError("increase must be >= 1")
        if self.successes_to_increase < 1:
            raise ValueError("successes_to_increase must be >= 1")
        if self.default_pause < 0 or self.max_pause < 0:
            raise ValueError("pauses must be >= 0")

    def on_rate_limited(
        self, state: AdaptiveState, now: float, retry_after: float | None, admitted_at: float | None
    ) -> bool:
        """Apply one upstream 429 (for a request admitted at `admitted_at`, store time); True when it cut
        the limits."""
        if not self.enabled:
            return False
        decreased = False
        if admitted_at is None or admitted_at > state.last_decrease:
            state.factor = max(self.min_factor, state.factor * self.decrease)
            state.last_decrease = now
            decreased = True
        pause = self.default_pause if retry_after is None else retry_after
        state.pause_until = max(state.pause_until, now + min(max(pause, 0.0), self.max_pause))
        state.successes = 0
        return decreased

    def on_success(self, state: AdaptiveState) -> bool:
        """Count one success; True when this one grew the limits."""
        if not self.enabled:
            return False
        state.successes += 1
        if state.successes < self.successes_to_increase:
            return False
        state.successes = 0
        if state.factor >= 1.0:
            return False
        state.factor = min(1.0, state.factor * self.increase)
        return True

    def on_remaining(
        self,
        state: AdaptiveState,
        now: float,
        *,
        window: float,
        limit_requests: int | None,
        used_requests: int,
        remaining_requests: int | None,
        reset_requests: float | None,
        limit_tokens: int | None,
        used_tokens: int,
        remaining_tokens: int | None,
        reset_tokens: float | None,
    ) -> None:
        """Tighten with the upstream's `remaining` figures; limits are the effective ones."""
        if not (self.enabled and self.use_headers):
            return
        if limit_requests is not None and remaining_requests is not None:
            current = state.debt_requests if now < state.debt_requests_until else 0
            left = limit_requests - used_requests - current
            if remaining_requests < left:
                state.debt_requests = limit_requests - used_requests - max(remaining_requests, 0)
                state.debt_requests_until = now + _debt_span(reset_requests, window)
        if limit_tokens is not None and remaining_tokens is not None:
            current = state.debt_tokens if now < state.debt_tokens_until else 0
            left = limit_tokens - used_tokens - current
            if remaining_tokens < left:
                state.debt_tokens = limit_tokens - used_tokens - max(remaining_tokens, 0)
                state.debt_tokens_until = now + _debt_span(reset_tokens, window)


def _debt_span(reset: float | None, window: float) -> float:
    return window if reset is None else min(max(reset, 0.0), window)


@dataclass(slots=True)
class AdaptiveState:
    """One key's adaptive state, in the store's time base."""

    factor: float = 1.0
    pause_until: float = -math.inf
    successes: int = 0
    last_decrease: float = -math.inf
    debt_requests: int = 0
    debt_requests_until: float = -math.inf
    debt_tokens: int = 0
    debt_tokens_until: float = -math.inf

    def neutral(self, now: float) -> bool:
        """Whether forgetting this state would change nothing."""
        return (
            self.factor >= 1.0
            and self.pause_until <= now
            and self.debt_requests_until <= now
            and self.debt_tokens_until <= now
        )


__all__ = ["AdaptivePolicy", "AdaptiveState"]
