"""Plain values of the limiter: what a key may spend, what a request costs, and what is left."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Budget:
    """What one limiter key may spend per sliding `window` seconds; `None` means unlimited.

    `tokens` is input plus output, the way OpenAI counts TPM; `input_tokens` and `output_tokens` are
    optional separate budgets (Anthropic-style ITPM/OTPM) checked in addition.
    """

    requests: int | None = None
    tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    window: float = 60.0

    def __post_init__(self) -> None:
        if not (self.window > 0 and math.isfinite(self.window)):
            raise ValueError("window must be a positive number of seconds")
        for name in ("requests", "tokens", "input_tokens", "output_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None for unlimited)")

    @property
    def unlimited(self) -> bool:
        return (
            self.requests is None
            and self.tokens is None
            and self.input_tokens is None
            and self.output_tokens is None
        )

    @property
    def split(self) -> bool:
        """Whether separate input or output budgets apply."""
        return self.input_tokens is not None or self.output_tokens is not None

    def scaled(self, factor: float) -> Budget:
        """The budget times `factor` (the adaptive policy's), each limit at least 1."""
        return Budget(
            requests=_scale(self.requests, factor),
            tokens=_scale(self.tokens, factor),
            input_tokens=_scale(self.input_tokens, factor),
            output_tokens=_scale(self.output_tokens, factor),
            window=self.window,
        )

    def refusal(self, cost: Cost) -> str | None:
        """Why `cost` can never fit this budget, even with the window empty; None if it can."""
        checks = (
            ("tokens", self.tokens, cost.tokens),
            ("input tokens", self.input_tokens, cost.input_tokens),
            ("output tokens", self.output_tokens, cost.output_tokens),
        )
        for label, limit, need in checks:
            if limit is not None and need > limit:
                return (
                    f"this request needs {need} {label} ({cost.input_tokens} of prompt + "
                    f"{cost.output_tokens} of max_tokens) but the budget is {limit} {label} per "
                    f"{self.window:g} s; shorten the prompt or lower max_tokens"
                )
        return None


def _scale(limit: int | None, factor: float) -> int | None:
    return None if limit is None else max(1, int(limit * factor))


@dataclass(frozen=True, slots=True)
class Cost:
    """What a request is charged: prompt tokens and reserved (or, once reconciled, real) output tokens.

    Every request also counts as one request against the RPM budget.
    """

    input_tokens: int
    output_tokens: int

    def __post_init__(self) -> None:
        if self.input_tokens < 0 or self.output_tokens < 0:
            raise ValueError("token counts must be >= 0")

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class WindowView:
    """A key's window as the store saw it at one decision: effective limits (configured limits times
    `factor`), what is left of them, and seconds until the window is empty again (`reset_after`).

    A limit is None when unlimited; its remaining figure is then None too. Read-only by convention (not
    frozen: one is built per decision, and a frozen dataclass costs 1 us more to build).
    """

    limit_requests: int | None
    remaining_requests: int | None
    limit_tokens: int | None
    remaining_tokens: int | None
    limit_input_tokens: int | None = None
    remaining_input_tokens: int | None = None
    limit_output_tokens: int | None = None
    remaining_output_tokens: int | None = None
    reset_after: float = 0.0
    factor: float = 1.0
    paused_for: float = 0.0


__all__ = ["Budget", "Cost", "WindowView"]
