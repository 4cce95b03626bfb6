"""Which upstream model serves a requested model name.

Precedence, first match wins:

1. an exact name in `mapping` (case-sensitive);
2. a glob key of `mapping` (`*`, `?`, `[…]`; case-insensitive), in the mapping's order;
3. Claude family defaults: a name containing `haiku` → `small_model` (or `big_model` when no small
   model is set); any other Claude name (`opus`, `sonnet`, or starting with `claude`) → `big_model`;
4. anything else passes through unchanged, so a client asking for `gpt-4o` gets `gpt-4o`. A Claude
   name with no model configured for its family passes through too (useful in front of a gateway that
   knows Claude names).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

_GLOB_CHARS = frozenset("*?[")


def _is_glob(key: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(key)


class ModelMapper:
    """Resolves requested model names to upstream model names (see the module docstring for the order).

    `advertise` lists extra names for GET /v1/models (for instance the Claude names clients pick from).
    """

    __slots__ = ("_advertise", "_big", "_exact", "_patterns", "_small")

    def __init__(
        self,
        *,
        big_model: str | None = None,
        small_model: str | None = None,
        mapping: Mapping[str, str] | None = None,
        advertise: Iterable[str] = (),
    ) -> None:
        self._big = big_model or None
        self._small = small_model or None
        self._exact: dict[str, str] = {}
        self._patterns: list[tuple[str, str]] = []
        for key, target in (mapping or {}).items():
            if _is_glob(key):
                self._patterns.append((key.lower(), target))
            else:
                self._exact[key] = target
        self._advertise = tuple(advertise)

    def _rule(self, requested: str) -> str | None:
        target = self._exact.get(requested)
        if target is not None:
            return target
        lowered = requested.lower()
        for pattern, target in self._patterns:
            if fnmatchcase(lowered, pattern):
                return target
        if "haiku" in lowered:
            return self._small or self._big
        if "opus" in lowered or "sonnet" in lowered or lowered.startswith("claude"):
            return self._big
        return None

    def resolve(self, requested: str) -> str:
        """The upstream model for `requested`."""
        target = self._rule(requested)
        return requested if target is None else target

    def is_mapped(self, requested: str) -> bool:
        """Whether a rule (exact, glob or family default) applies, rather than plain pass-through."""
        return self._rule(requested) is not None or requested in self._advertise

    def advertised(self) -> list[str]:
        """Names the proxy accepts, for GET /v1/models: configured extra names, exact mapping keys, then
        the upstream models the rules lead to (they pass through unchanged). No duplicates."""
        names = [*self._advertise, *self._exact, *self._exact.values()]
        names.extend(target for _, target in self._patterns)
        names.extend(m for m in (self._big, self._small) if m is not None)
        return list(dict.fromkeys(names))


__all__ = ["ModelMapper"]
