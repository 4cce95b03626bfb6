"""Which variant ccproxy_asgi._cython hands out, that both variants look alike, and that the package
builds and works without a C compiler."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import ccproxy_asgi._cython as cy
from ccproxy_asgi._cython import ModuleName, load_variant

ROOT = Path(__file__).resolve().parents[2]
MODULES: tuple[ModuleName, ...] = ("lru_ops", "dict_ops")
IN_CI = os.environ.get("CI", "").lower() in ("true", "1")


def _compiled(name: ModuleName) -> ModuleType:
    try:
        return load_variant(name, "compiled")
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"the CI build must compile ccproxy_asgi._cython.{name}: {exc}")
        pytest.skip(f"{name} not compiled (python setup.py build_ext --inplace): {exc}")


def _probe(env: dict[str, str], cwd: Path = ROOT, path: str | None = None) -> dict[str, str]:
    """Import ccproxy_asgi._cython in a fresh interpreter and report what it selected."""
    code = (
        "import json, sys\n"
        + (f"sys.path.insert(0, {path!r})\n" if path else "")
        + "import ccproxy_asgi._cython as c\n"
        "log = c.lru_ops.WindowLog(); log.add(1.0, 5)\n"
        "assert c.dict_ops.redact({'api_key': 'k'}) == {'api_key': '***'}\n"
        "print(json.dumps({'variant': c.VARIANT, 'lru_ops': c.lru_ops.__name__,"
        " 'dict_ops': c.dict_ops.__name__, 'file': c.__file__, 'tokens': str(log.tokens)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result


def _env(**changes: str | None) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def test_selected_variant_matches_what_is_importable() -> None:
    disabled = os.environ.get("CCPROXY_DISABLE_CYTHON", "") not in ("", "0")
    if cy.VARIANT == "compiled":
        assert cy.lru_ops.__name__ == "ccproxy_asgi._cython.lru_ops"
        assert cy.dict_ops.__name__ == "ccproxy_asgi._cython.dict_ops"
        return
    assert cy.lru_ops.__name__ == "ccproxy_asgi._cython._lru_ops_py"
    assert cy.dict_ops.__name__ == "ccproxy_asgi._cython._dict_ops_py"
    if not disabled:
        for name in MODULES:
            _compiled(name)  # skips (or fails under CI) when not built
        pytest.fail("compiled modules import, yet the twins were selected")


def test_disable_env_selects_the_twins() -> None:
    got = _probe(_env(CCPROXY_DISABLE_CYTHON="1"))
    assert got["variant"] == "python"
    assert (got["lru_ops"], got["dict_ops"]) == (
        "ccproxy_asgi._cython._lru_ops_py",
        "ccproxy_asgi._cython._dict_ops_py",
    )


def test_compiled_is_selected_by_default() -> None:
    for name in MODULES:
        _compiled(name)
    got = _probe(_env(CCPROXY_DISABLE_CYTHON=None))
    assert got["variant"] == "compiled"
    assert (got["lru_ops"], got["dict_ops"]) == (
        "ccproxy_asgi._cython.lru_ops",
        "ccproxy_asgi._cython.dict_ops",
    )
    assert _probe(_env(CCPROXY_DISABLE_CYTHON="0"))["variant"] == "compiled"


@pytest.mark.parametrize("name", MODULES)
def test_loading_one_variant_does_not_swap_the_selected_one(name: ModuleName) -> None:
    selected = getattr(cy, name)
    load_variant(name, "python")
    with contextlib.suppress(ImportError):
        load_variant(name, "compiled")
    from ccproxy_asgi._cython import dict_ops, lru_ops

    assert {"lru_ops": lru_ops, "dict_ops": dict_ops}[name] is selected


def _parameters(func: Callable[..., Any]) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]


@pytest.mark.parametrize("name", MODULES)
def test_variants_have_the_same_api(name: ModuleName) -> None:
    compiled = _compiled(name)
    twin = load_variant(name, "python")
    assert compiled.__all__ == twin.__all__
    for export in twin.__all__:
        ours, theirs = getattr(twin, export), getattr(compiled, export)
        if inspect.isclass(ours):
            public = {m for m in dir(ours) if not m.startswith("_")}
            assert public == {m for m in dir(theirs) if not m.startswith("_")}
            for member in public:
                if inspect.isfunction(getattr(ours, member)):
                    assert _parameters(getattr(ours, member)) == _parameters(getattr(theirs, member)), member
        elif inspect.isfunction(ours):
            assert _parameters(ours) == _parameters(theirs), export


def _copy_source(dest: Path) -> None:
    shutil.copy2(ROOT / "pyproject.toml", dest)
    shutil.copy2(ROOT / "setup.py", dest)
    readme = ROOT / "README.md"
    # pyproject.toml names a readme; the test needs a buildable tree, not the real text.
    (dest / "README.md").write_text(readme.read_text() if readme.exists() else "ccproxy-asgi\n")
    shutil.copytree(
        ROOT / "ccproxy_asgi",
        dest / "ccproxy_asgi",
        ignore=shutil.ignore_patterns("*.so", "*.c", "*.html", "__pycache__", "*.pyc"),
    )


@pytest.mark.timeout(90)
def test_wheel_builds_and_works_without_a_c_compiler(tmp_path: Path) -> None:
    if shutil.which("false") is None:
        pytest.skip("needs a `false` command to stand in for a broken compiler")
    src, out, site = tmp_path / "src", tmp_path / "wheels", tmp_path / "site"
    src.mkdir()
    _copy_source(src)
    broken = shutil.which("false")
    assert broken is not None
    env = _env(CC=broken, LDSHARED=broken, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(src),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "using the pure-Python twin" in build.stdout + build.stderr

    (wheel,) = out.glob("ccproxy_asgi-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith((".so", ".pyd"))]
    assert "ccproxy_asgi/_cython/_lru_ops_py.py" in names
    assert "ccproxy_asgi/_cython/_dict_ops_py.py" in names

    zipfile.ZipFile(wheel).extractall(site)
    got = _probe(_env(CCPROXY_DISABLE_CYTHON=None), cwd=tmp_path, path=str(site))
    assert got["file"].startswith(str(site))
    assert (got["variant"], got["tokens"]) == ("python", "5")
