"""The import rules of the package, read from the source with `ast` (nothing is imported):

1. The cores (`translate`, `ratelimit`, `breaker`, `tokens`, `observability`, `provider`, `upstream`) and the
   shared base, every module at the top of the package (`types`, `errors`, `context`, ...) but the entry
   points (`asgi`, `__main__`) and the test doubles (`testing`), import neither the app assembly
   (`ccproxy_asgi.app`: `Settings`, `create_app`, the wiring, the CLI), nor a middleware
   (`ccproxy_asgi.middleware`), nor the endpoint (`ccproxy_asgi.endpoint`), nor the package's public face
   (`ccproxy_asgi/__init__.py`, which exports the app).
2. No import cycle between the package's modules.

Every import statement counts, wherever it is: at the top, inside a function (a lazy import), under
`if TYPE_CHECKING:`, in a `try`. A lazy import that breaks a cycle at run time is still a cycle in the
design. One kind of edge is left out on purpose: importing `a.b.c` runs `a/__init__.py` and
`a/b/__init__.py` first, but that implicit step is no dependency of the importer's; counting it would put
every package whose `__init__` re-exports its modules in a cycle with each of them. `from a.b import c`
counts as an import of the module `a.b.c` when there is one, else of `a.b` (a name its `__init__` defines).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "ccproxy_asgi"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

CORE_PACKAGES = ("translate", "ratelimit", "breaker", "tokens", "observability", "provider", "upstream")
# The top-level modules that sit above everything rather than below it; every other one is the shared base,
# so a new module at the top is held to the rule without being listed.
NOT_BASE = {
    "asgi": "the entry point for servers: builds the app",
    "__main__": "the entry point of `python -m ccproxy_asgi`: runs the CLI",
    "testing": "test doubles for users' tests: may build the app around a mock upstream",
}
# Named here so that a rename cannot silently take one out of the base.
KNOWN_BASE = (
    "types",
    "errors",
    "context",
    "ids",
    "jsonutil",
    "logs",
    "headers",
    "log_throttle",
    "redis_client",
)
FORBIDDEN_FOR_CORES = ("app", "middleware", "endpoint")


@dataclass(frozen=True, slots=True, order=True)
class Import:
    importer: str
    imported: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported} (line {self.line})"


def package_modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under `root` (a package directory named `package`), by dotted name."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def base_modules(root: Path) -> tuple[str, ...]:
    """The modules at the top of the package that form the shared base."""
    return tuple(
        sorted(
            path.stem for path in root.glob("*.py") if path.stem != "__init__" and path.stem not in NOT_BASE
        )
    )


def _imported_names(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        module = ".".join([*base, node.module] if node.module else base)
    else:
        module = node.module or ""
    for alias in node.names:
        yield f"{module}.{alias.name}" if alias.name != "*" else module
    yield module  # the `from` module itself, resolved below with the names


def imports_of(root: Path, package: str) -> list[Import]:
    """Every import of one of the package's modules by another, wherever the statement is."""
    modules = package_modules(root, package)
    found: set[Import] = set()
    for importer, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = list(_imported_names(node, importer, is_package))
            if isinstance(node, ast.ImportFrom):
                module = names.pop()
                # `from m import x`: the submodule m.x when there is one, else a name defined by m.
                targets = [name if name in modules else module for name in names]
            else:
                targets = names
            for target in targets:
                if target in modules and target != importer:
                    found.add(Import(importer, target, node.lineno))
    return sorted(found)


def _within(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def layer_violations(
    imports: Iterable[Import],
    package: str,
    *,
    cores: Iterable[str],
    forbidden: Iterable[str] = FORBIDDEN_FOR_CORES,
) -> list[Import]:
    """Imports by a core or base module of the app, a middleware, the endpoint or the package's face."""
    core_prefixes = [f"{package}.{name}" for name in cores]
    forbidden_prefixes = [f"{package}.{name}" for name in forbidden]
    return [
        imp
        for imp in imports
        if _within(imp.importer, core_prefixes)
        and (imp.imported == package or _within(imp.imported, forbidden_prefixes))
    ]


def import_cycles(imports: Iterable[Import]) -> list[list[Import]]:
    """The strongly connected components of the import graph with more than one module, each as the
    imports between its members (Tarjan's algorithm, iterative)."""
    edges: dict[str, list[Import]] = {}
    for imp in imports:
        edges.setdefault(imp.importer, []).append(imp)
        edges.setdefault(imp.imported, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, int]] = [(start, 0)]
        while work:
            node, next_edge = work.pop()
            if next_edge == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            out = edges[node]
            if next_edge < len(out):
                work.append((node, next_edge + 1))
                target = out[next_edge].imported
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return [
        sorted(imp for member in sorted(component) for imp in edges[member] if imp.imported in component)
        for component in components
    ]


def _report(lines: Iterable[object]) -> str:
    return "\n".join(f"  {line}" for line in lines)


# --- the package ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return imports_of(ROOT, PACKAGE)


def test_the_rules_name_what_exists(imports: list[Import]) -> None:
    # A renamed core or base module must not silently drop out of the rules.
    modules = package_modules(ROOT, PACKAGE)
    for name in CORE_PACKAGES + FORBIDDEN_FOR_CORES + tuple(NOT_BASE):
        assert f"{PACKAGE}.{name}" in modules, f"{PACKAGE}.{name} is named by the rules but does not exist"
    assert set(KNOWN_BASE) <= set(base_modules(ROOT)), "a base module was renamed or moved: update the rules"
    assert len(imports) > 200, "the checker should see the package's imports"


def test_cores_import_neither_the_app_nor_a_layer_nor_the_endpoint(imports: list[Import]) -> None:
    violations = layer_violations(imports, PACKAGE, cores=CORE_PACKAGES + base_modules(ROOT))
    assert not violations, (
        "a core or base module imports the app assembly, a middleware, the endpoint or the package face; "
        "take a value object instead and let ccproxy_asgi.app.wiring build it:\n" + _report(violations)
    )


def test_no_import_cycles(imports: list[Import]) -> None:
    cycles = import_cycles(imports)
    assert not cycles, "import cycles (each block: the imports between the modules of one cycle):\n" + (
        "\n\n".join(_report(cycle) for cycle in cycles)
    )


# --- the checker itself, on a synthetic package -----------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for name, source in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return package


SYNTHETIC = {
    "__init__.py": "from pkg.app import create_app\n",
    "errors.py": "",
    "app/__init__.py": "from pkg.app.settings import Settings\ndef create_app(): ...\n",
    "app/settings.py": "class Settings: ...\n",
    "middleware/__init__.py": "",
    "middleware/layer.py": "from pkg import errors\n",
    "endpoint/__init__.py": "",
    "endpoint/dispatch.py": "",
    "breaker/__init__.py": "from pkg.breaker.core import Breaker\n",
    # Only under TYPE_CHECKING: still a dependency on Settings.
    "breaker/core.py": (
        "from typing import TYPE_CHECKING\n"
        "from pkg.breaker import helpers\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.app.settings import Settings\n"
        "class Breaker: ...\n"
    ),
    "breaker/helpers.py": "",
    # Inside a function, and relative.
    "ratelimit/__init__.py": "",
    "ratelimit/limiter.py": "def build():\n    import pkg.middleware.layer\n    from ..endpoint import dispatch\n",
    # A base module importing the package face.
    "ids.py": "from pkg import create_app\n",
    # An entry point: above everything, it may import the app.
    "asgi.py": "from pkg.app import create_app\napp = create_app()\n",
    # A cycle closed by a lazy import.
    "provider/__init__.py": "",
    "provider/a.py": "from pkg.provider.b import thing\n",
    "provider/b.py": "thing = 1\ndef later():\n    from . import a\n",
    "tokens/__init__.py": "",
    "tokens/fine.py": "from pkg import errors\nfrom pkg.breaker import Breaker\n",
}


def test_checker_resolves_absolute_relative_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    found = {(i.importer, i.imported) for i in imports_of(_tree(tmp_path, SYNTHETIC), "pkg")}
    assert ("pkg.breaker.core", "pkg.app.settings") in found  # under TYPE_CHECKING
    assert ("pkg.breaker.core", "pkg.breaker.helpers") in found  # `from package import submodule`
    assert ("pkg.tokens.fine", "pkg.breaker") in found  # `from package import name`: its __init__
    assert ("pkg.tokens.fine", "pkg.errors") in found
    assert ("pkg.ratelimit.limiter", "pkg.middleware.layer") in found  # inside a function
    assert ("pkg.ratelimit.limiter", "pkg.endpoint.dispatch") in found  # relative, two levels
    assert ("pkg.provider.b", "pkg.provider.a") in found  # relative, one level
    assert ("pkg.app", "pkg.app.settings") in found
    assert not any(importer == imported for importer, imported in found)


def test_checker_reports_each_forbidden_import(tmp_path: Path) -> None:
    imports = imports_of(_tree(tmp_path, SYNTHETIC), "pkg")
    cores = ("breaker", "ratelimit", "provider", "tokens", *base_modules(tmp_path / "pkg"))
    assert base_modules(tmp_path / "pkg") == ("errors", "ids"), "`asgi` is an entry point, not the base"
    violations = {(i.importer, i.imported) for i in layer_violations(imports, "pkg", cores=cores)}
    assert violations == {
        ("pkg.breaker.core", "pkg.app.settings"),
        ("pkg.ratelimit.limiter", "pkg.middleware.layer"),
        ("pkg.ratelimit.limiter", "pkg.endpoint.dispatch"),
        ("pkg.ids", "pkg"),
    }


def test_checker_reports_cycles_and_only_cycles(tmp_path: Path) -> None:
    imports = imports_of(_tree(tmp_path, SYNTHETIC), "pkg")
    cycles = [{(i.importer, i.imported) for i in cycle} for cycle in import_cycles(imports)]
    # pkg -> pkg.app -> ... has no way back; `ids` imports the face but nothing imports `ids`.
    assert cycles == [{("pkg.provider.a", "pkg.provider.b"), ("pkg.provider.b", "pkg.provider.a")}]
    # The face importing a module that imports the face closes a cycle through three modules.
    longer = _tree(tmp_path / "longer", {**SYNTHETIC, "app/settings.py": "from pkg import ids\n"})
    members = [{i.importer for i in cycle} for cycle in import_cycles(imports_of(longer, "pkg"))]
    assert {"pkg", "pkg.app", "pkg.app.settings", "pkg.ids"} in members
    clean = {name: source for name, source in SYNTHETIC.items() if name != "provider/b.py"}
    clean["provider/b.py"] = "thing = 1\n"
    assert import_cycles(imports_of(_tree(tmp_path / "clean", clean), "pkg")) == []
