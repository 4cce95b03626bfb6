"""Lazy exports for package `__init__` modules (PEP 562): a name is imported from its module on first use.

A package whose public names would pull in heavy or optional dependencies (an HTTP library, OpenTelemetry,
tiktoken, redis) lists them in a table instead of importing them, so importing the package stays cheap::

    __getattr__, __dir__ = lazy_exports(__name__, {"RedisStore": "ccproxy_asgi.ratelimit.redis_store"})

Names the package imports eagerly keep working as usual; the table only covers the rest. A resolved name
is stored on the package, so `__getattr__` runs once per name. For type checkers, import the same names
under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level `__getattr__` and `__dir__` for `package`, exporting each `name` of `exports`
    from the module it maps to (`{"name": "dotted.module"}`).

    `__getattr__` raises `AttributeError` for names outside the table, as a module does; an optional
    dependency that is not installed surfaces as the `ImportError` of its module, on first use.
    """
    table = dict(exports)

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *table})

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
