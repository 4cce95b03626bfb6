"""Hot paths, compiled with Cython when the build could, pure Python otherwise.

``lru_ops`` (sliding-window request history, LRU cache) and ``dict_ops`` (secret redaction) are the
modules in use: the compiled extensions when both import, else their pure-Python twins
``_lru_ops_py``/``_dict_ops_py``. ``CCPROXY_DISABLE_CYTHON=1`` forces the twins. ``VARIANT`` says
which were chosen; the twins' docstrings document the API both variants share.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Final, Literal

Variant = Literal["compiled", "python"]
ModuleName = Literal["lru_ops", "dict_ops"]

_MODULES: Final[tuple[ModuleName, ...]] = ("lru_ops", "dict_ops")


def load_variant(name: ModuleName, variant: Variant) -> ModuleType:
    """Import one variant of ``name`` by itself, whichever is in use (``ImportError`` if absent).

    For tests and benchmarks that run both side by side.
    """
    module = f"{__name__}.{name}" if variant == "compiled" else f"{__name__}._{name}_py"
    package = sys.modules[__name__]
    selected = package.__dict__.get(name)
    try:
        return importlib.import_module(module)
    finally:
        # Importing a submodule binds it on its package, which would silently swap the variant that
        # `from ccproxy_asgi._cython import lru_ops` hands out.
        if selected is not None:
            setattr(package, name, selected)


def _cython_disabled() -> bool:
    return os.environ.get("CCPROXY_DISABLE_CYTHON", "").strip().lower() not in ("", "0", "false", "no")


def _select() -> Variant:
    if _cython_disabled():
        return "python"
    try:
        for name in _MODULES:
            load_variant(name, "compiled")
    except ImportError:
        return "python"
    return "compiled"


VARIANT: Final[Variant] = _select()

if TYPE_CHECKING:
    # The twins are the typed reference; the extensions have no stubs of their own.
    from . import _dict_ops_py as dict_ops
    from . import _lru_ops_py as lru_ops
else:
    lru_ops = load_variant("lru_ops", VARIANT)
    dict_ops = load_variant("dict_ops", VARIANT)

__all__ = ["VARIANT", "ModuleName", "Variant", "dict_ops", "load_variant", "lru_ops"]
