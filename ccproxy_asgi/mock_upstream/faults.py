"""Fault specs and the choice of which fault, if any, a chat request gets.

A fault is written either as a JSON object, `{"fault": "429", "retry_after": 2}`, or as a short string,
`KIND` or `KIND:key=value,key=value` (`429:retry_after=2`, `cut:after_chunks=3`). Kinds:

    400…599          an error response with that status (429 carries retry-after and rate-limit headers)
    quota            429 `insufficient_quota` (no retry-after: retrying is pointless)
    context_length   400 `context_length_exceeded`
    slow             the normal answer, after `delay` seconds before the first byte (default 1)
    hang             never answer; wait until the client gives up
    cut              stream: close the connection after `after_chunks` chunks (default 2), no [DONE];
                     non-stream: close it halfway through the body
    malformed        stream: a chunk of invalid JSON after `after_chunks` chunks (default 2), then the rest;
                     non-stream: a truncated JSON body with status 200
    error_chunk      stream: a `data: {"error":…}` line after `after_chunks` chunks (default 1), then the
                     stream ends without [DONE]; non-stream: a 500
    none             no fault (a queued placeholder that lets one request through)

Keys: `retry_after` (seconds, 429 only; `none` sends no retry-after header), `delay`, `after_chunks`,
`message` (replaces the error message).

A chat request gets, in this order: the fault of its `x-mock-fault` header, else its `[[fault:…]]`
prompt directive, else the next one queued with `POST /mock/faults` (each queued fault is used by exactly
one request), else the configured `--fault` with probability `--fault-rate`.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ccproxy_asgi import jsonutil

NAMED_KINDS = frozenset(
    {"quota", "context_length", "slow", "hang", "cut", "malformed", "error_chunk", "none"}
)
_DEFAULT_AFTER_CHUNKS = {"cut": 2, "malformed": 2, "error_chunk": 1}
_UNSET = object()


class FaultSpecError(ValueError):
    """A fault spec that cannot be understood."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault to inject into one response."""

    kind: str
    retry_after: float | None = 1.0
    delay: float = 1.0
    after_chunks: int = 2
    message: str | None = None

    @property
    def status(self) -> int | None:
        """The HTTP status for an error-response fault, else None."""
        if self.kind.isdigit():
            return int(self.kind)
        return {"quota": 429, "context_length": 400}.get(self.kind)

    def to_json(self) -> dict[str, Any]:
        """The JSON-object form of this fault (what `GET /mock/faults` shows)."""
        return {
            "fault": self.kind,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "after_chunks": self.after_chunks,
            "message": self.message,
        }


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise FaultSpecError(f"fault {key} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise FaultSpecError(f"fault {key} must be a number, got {value!r}") from None
    if number < 0:
        raise FaultSpecError(f"fault {key} must not be negative")
    return number


def fault_from_mapping(spec: Mapping[str, Any]) -> Fault:
    """Build a fault from its JSON-object form, `{"fault": KIND, ...}`."""
    kind = str(spec.get("fault", "")).strip().lower()
    if kind.isdigit():
        if not 400 <= int(kind) <= 599:
            raise FaultSpecError(f"fault status {kind} is not an HTTP error status")
    elif kind not in NAMED_KINDS:
        raise FaultSpecError(f"unknown fault kind {kind!r}")
    unknown = set(spec) - {"fault", "retry_after", "delay", "after_chunks", "message"}
    if unknown:
        raise FaultSpecError(f"unknown fault keys {sorted(unknown)}")
    retry_after: float | None = 1.0
    if kind != "429":
        retry_after = None
    raw_retry = spec.get("retry_after", _UNSET)
    if raw_retry is not _UNSET:
        retry_after = None if raw_retry is None else _number("retry_after", raw_retry)
    message = spec.get("message")
    return Fault(
        kind=kind,
        retry_after=retry_after,
        delay=_number("delay", spec.get("delay", 1.0)),
        after_chunks=int(
            _number("after_chunks", spec.get("after_chunks", _DEFAULT_AFTER_CHUNKS.get(kind, 2)))
        ),
        message=None if message is None else str(message),
    )


def parse_fault(spec: str | Mapping[str, Any]) -> Fault:
    """Parse a fault from a JSON object, its JSON text, or the `KIND:key=value,…` string form."""
    if isinstance(spec, Mapping):
        return fault_from_mapping(spec)
    text = spec.strip()
    if text.startswith("{"):
        try:
            value = jsonutil.loads(text)
        except jsonutil.JSONDecodeError as exc:
            raise FaultSpecError(f"fault spec is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise FaultSpecError("fault spec must be a JSON object")
        return fault_from_mapping(value)
    kind, _, rest = text.partition(":")
    fields: dict[str, Any] = {"fault": kind}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise FaultSpecError(f"fault option {item!r} is not key=value")
        key = key.strip()
        value = value.strip()
        fields[key] = None if value.lower() in ("none", "null") else value
    return fault_from_mapping(fields)


def parse_fault_list(payload: Any) -> list[Fault]:
    """Parse the body of `POST /mock/faults`: one fault object/string or a list of them."""
    items: Iterable[Any] = payload if isinstance(payload, list) else [payload]
    faults = []
    for item in items:
        if not isinstance(item, str | Mapping):
            raise FaultSpecError(f"fault must be an object or a string, got {item!r}")
        faults.append(parse_fault(item))
    return faults


class FaultPlan:
    """Chooses each chat request's fault: per-request spec, queued faults, then the configured one."""

    def __init__(self, configured: Fault | None = None, rate: float = 1.0, seed: int | None = None) -> None:
        self._configured = configured
        self._rate = rate
        self._random = random.Random(seed)
        self._queue: deque[Fault] = deque()

    def queue(self, faults: Iterable[Fault]) -> int:
        """Append faults to the queue; returns the new queue length."""
        self._queue.extend(faults)
        return len(self._queue)

    def clear(self) -> None:
        self._queue.clear()

    def queued(self) -> list[Fault]:
        return list(self._queue)

    def choose(self, per_request: Fault | None) -> Fault | None:
        """The fault for the next chat request (None: answer normally)."""
        fault = per_request
        if fault is None and self._queue:
            fault = self._queue.popleft()
        if (
            fault is None
            and self._configured is not None
            and (self._rate >= 1.0 or self._random.random() < self._rate)
        ):
            fault = self._configured
        if fault is not None and fault.kind == "none":
            return None
        return fault


__all__ = [
    "NAMED_KINDS",
    "Fault",
    "FaultPlan",
    "FaultSpecError",
    "fault_from_mapping",
    "parse_fault",
    "parse_fault_list",
]
