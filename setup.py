"""Build hook: compile the Cython hot paths when possible, and install pure Python when not.

Metadata lives in pyproject.toml; this file only adds the optional extensions. Each module in
``ccproxy_asgi/_cython`` has a pure-Python twin that ``ccproxy_asgi._cython`` falls back to, so a
missing Cython, a missing or broken C compiler, or missing Python headers cost speed, never the
install.
"""

from __future__ import annotations

import sys
from typing import Any

# setuptools ships no type information; these ignores go once types-setuptools is a dev dependency.
from setuptools import setup  # type: ignore[import-untyped]
from setuptools.command.build_ext import build_ext  # type: ignore[import-untyped]
from setuptools.errors import CCompilerError, ExecError, PlatformError  # type: ignore[import-untyped]

_PYX = "ccproxy_asgi/_cython/*.pyx"
# What a compiler that is absent, broken or lacking headers raises through setuptools/distutils.
_BUILD_ERRORS = (CCompilerError, ExecError, PlatformError, OSError)


def _warn(what: str, exc: BaseException) -> None:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    print(
        f"WARNING: ccproxy-asgi: {what} not compiled ({reason}); using the pure-Python twin",
        file=sys.stderr,
    )


def _extensions() -> list[Any]:
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        _warn("Cython extensions", exc)
        return []
    try:
        # Per-file directives sit in each .pyx header, so `cython -a` sees the same ones.
        modules = cythonize(_PYX, compiler_directives={"language_level": "3"}, quiet=True)  # type: ignore[no-untyped-call]
        return list(modules)
    except Exception as exc:  # Cython reports syntax and type errors with assorted exception types.
        _warn("Cython extensions", exc)
        return []


class OptionalBuildExt(build_ext):  # type: ignore[misc]
    """``build_ext`` that turns a failed compile into a warning, extension by extension."""

    def run(self) -> None:
        try:
            super().run()
        except _BUILD_ERRORS as exc:  # e.g. no compiler at all for this platform
            _warn("Cython extensions", exc)

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except _BUILD_ERRORS as exc:
            _warn(ext.name, exc)


setup(
    ext_modules=_extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
    # The generated C sources ride along as package data otherwise (about 1 MB): wheels need only
    # the built extensions, and sdists still carry them as extension sources.
    exclude_package_data={"ccproxy_asgi._cython": ["*.c"]},
)
