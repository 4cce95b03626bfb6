"""docs/architecture.md shows the import graph of the code as it is, and names every package.

The graph is regenerated in memory by `tools/import_graph.py` (outside the package: nothing at runtime
needs it) and compared with the block between the markers of the page.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
COMMAND = "python tools/import_graph.py --write"


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


graph = _load_tool()


def test_the_committed_import_graph_matches_the_code() -> None:
    committed = graph.committed_block(DOC.read_text(encoding="utf-8"))
    fresh = graph.block()
    assert committed == fresh, (
        f"docs/architecture.md: the import graph differs from the code; run `{COMMAND}` and commit the page"
    )


def test_the_page_names_the_command_that_regenerates_the_graph() -> None:
    assert COMMAND in DOC.read_text(encoding="utf-8")


def test_every_package_has_a_line() -> None:
    text = DOC.read_text(encoding="utf-8")
    packages = sorted(path.parent.name for path in (ROOT / "ccproxy_asgi").glob("*/__init__.py"))
    missing = [name for name in packages if not re.search(rf"^\| `{re.escape(name)}`", text, re.M)]
    assert not missing, f"docs/architecture.md has no line for {missing} in its package table"


def test_no_issue_labels() -> None:
    assert not re.search(r"\(issue \d+\)", DOC.read_text(encoding="utf-8"))


def _write(root: Path, files: dict[str, str]) -> None:
    for name, code in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code), encoding="utf-8")


def test_the_graph_reads_every_kind_of_import(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "ccproxy_asgi/__init__.py": "from ccproxy_asgi import _version\n",
            "ccproxy_asgi/_version.py": "",
            "ccproxy_asgi/errors.py": "",
            "ccproxy_asgi/asgi.py": "from ccproxy_asgi.app import create_app\n",
            "ccproxy_asgi/core/__init__.py": "",
            "ccproxy_asgi/core/a.py": """\
                from typing import TYPE_CHECKING

                from ccproxy_asgi import errors
                from . import b

                if TYPE_CHECKING:
                    from ccproxy_asgi.app import Settings


                def later() -> None:
                    from ..store import redis_store
            """,
            "ccproxy_asgi/core/b.py": "import ccproxy_asgi.store.memory\n",
            "ccproxy_asgi/store/__init__.py": "",
            "ccproxy_asgi/store/memory.py": "",
            "ccproxy_asgi/store/redis_store.py": "import redis\n",
            "ccproxy_asgi/app/__init__.py": "from .wiring import build\n",
            "ccproxy_asgi/app/wiring.py": "from ccproxy_asgi.core import a\n",
        },
    )
    edges = {(e.source, e.target, e.deferred) for e in graph.edges(tmp_path)}
    assert edges == {
        ("ccproxy_asgi", "base", False),  # `from package import module` is the module
        ("entry", "app", False),
        ("core", "base", False),
        ("core", "store", False),  # eager through b, so not dotted although `a` imports it late
        ("app", "core", False),
    }


def test_an_import_only_inside_functions_is_dotted(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "ccproxy_asgi/__init__.py": "",
            "ccproxy_asgi/core/__init__.py": "def f():\n    from ccproxy_asgi.store import x\n",
            "ccproxy_asgi/store/__init__.py": "x = 1\n",
        },
    )
    assert graph.edges(tmp_path) == [graph.Edge("core", "store", True)]
    assert "core -.-> store" in graph.mermaid(graph.edges(tmp_path))


def test_the_check_mode_agrees_with_the_test(capsys: pytest.CaptureFixture[str]) -> None:
    assert graph.main(["--check"]) == 0, capsys.readouterr().out
