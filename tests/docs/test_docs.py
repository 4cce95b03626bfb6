"""The docs say only true things about the code: links resolve, every `CCPROXY_*` name is a setting,
every `ccproxy_asgi` import in a code block and every `ccproxy_asgi.…` path in the text exists, and the
code of docs/layers.md compiles."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

from ccproxy_asgi.app.settings import Settings, env_name
from ccproxy_asgi.logs import ACCESS_LOGGER

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
EXAMPLE_PAGES = sorted((ROOT / "examples").glob("**/*.md"))
LINKED_PAGES = [*PAGES, ROOT / "README.md", *EXAMPLE_PAGES]
SETTINGS = frozenset(env_name(field) for field in Settings.model_fields)
# Read by other code than Settings: the Cython switch at import, the mock upstream's own knobs.
NOT_SETTINGS = re.compile(r"CCPROXY_(DISABLE_CYTHON|MOCK_[A-Z0-9_]*)$")
# Importing it builds an app from the environment, which needs an upstream configured.
NOT_IMPORTED = frozenset({"ccproxy_asgi.asgi"})
# Dotted names in the docs that are logger names, not import paths.
LOGGER_NAMES = frozenset({ACCESS_LOGGER})

_FENCE = re.compile(r"^```[^\n]*\n.*?^```[ \t]*$", re.M | re.S)
_PYTHON_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def _ids(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(ROOT)) for path in paths]


def prose(text: str) -> str:
    """`text` without fenced code blocks and inline code (links there are not links)."""
    return re.sub(r"`[^`\n]*`", "", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(heading) for heading in _HEADING.findall(_FENCE.sub("", path.read_text()))}


@pytest.mark.parametrize("page", LINKED_PAGES, ids=_ids(LINKED_PAGES))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in _LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            broken.append(
                f"{target} (no {resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved})"
            )
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"{target} (no heading #{fragment})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


def test_index_links_every_page() -> None:
    linked = {
        Path(target.partition("#")[0]).name for target in _LINK.findall((DOCS / "index.md").read_text())
    }
    missing = [page.name for page in PAGES if page.name != "index.md" and page.name not in linked]
    assert not missing, f"docs/index.md does not link {missing}"


@pytest.mark.parametrize("page", [*PAGES, *EXAMPLE_PAGES], ids=_ids([*PAGES, *EXAMPLE_PAGES]))
def test_every_ccproxy_variable_is_a_setting(page: Path) -> None:
    unknown = set()
    for name, star in re.findall(r"(CCPROXY_[A-Z0-9_]+)(\*?)", page.read_text()):
        if NOT_SETTINGS.match(name):
            continue
        if star:  # a family, e.g. `CCPROXY_RATE_LIMIT_*`
            if not any(setting.startswith(name) for setting in SETTINGS):
                unknown.add(name + "*")
        elif name not in SETTINGS:
            unknown.add(name)
    assert not unknown, f"{page.relative_to(ROOT)} names variables Settings does not have: {sorted(unknown)}"


def import_statements(code: str) -> list[str]:
    """The `from ccproxy_asgi… import …` and `import ccproxy_asgi…` statements of a code block, with
    parenthesised names joined onto one line."""
    statements = []
    lines = iter(code.splitlines())
    for line in lines:
        stripped = line.strip()
        if not re.match(r"(from|import)\s+ccproxy_asgi\b", stripped):
            continue
        if stripped.endswith("(") or ("(" in stripped and ")" not in stripped):
            for more in lines:
                stripped += " " + more.strip()
                if ")" in more:
                    break
        statements.append(stripped)
    return statements


def _python_blocks(page: Path) -> list[str]:
    return _PYTHON_BLOCK.findall(page.read_text())


def test_import_statements_reads_every_form() -> None:
    code = "import os\nfrom ccproxy_asgi.app import (\n    build_proxy,\n    create_app,\n)\n"
    code += "import ccproxy_asgi.errors\n"
    assert import_statements(code) == [
        "from ccproxy_asgi.app import ( build_proxy, create_app, )",
        "import ccproxy_asgi.errors",
    ]


DOC_PAGES = [*PAGES, ROOT / "README.md"]


@pytest.mark.parametrize("page", DOC_PAGES, ids=_ids(DOC_PAGES))
def test_ccproxy_imports_in_code_blocks_work(page: Path) -> None:
    for block in _python_blocks(page):
        for statement in import_statements(block):
            try:
                exec(statement, {})
            except ImportError as exc:
                pytest.fail(f"{page.relative_to(ROOT)}: `{statement}` fails: {exc}")


def resolves(dotted: str) -> bool:
    """Whether `ccproxy_asgi.a.b.Name` (or `module:attribute`) names a real module or attribute."""
    module_name, _, attribute = dotted.partition(":")
    parts = [*module_name.split("."), *filter(None, [attribute])]
    value: object = importlib.import_module(parts[0])
    prefix = parts[0]
    for index, name in enumerate(parts[1:], 1):
        candidate = f"{prefix}.{name}"
        is_module = index < len(module_name.split(".")) and hasattr(value, "__path__")
        if is_module and importlib.util.find_spec(candidate) is not None:
            if candidate in NOT_IMPORTED:
                spec = importlib.util.find_spec(candidate)
                source = Path(spec.origin if spec and spec.origin else "").read_text()
                rest = parts[index + 1 :]
                return all(re.search(rf"^{re.escape(attr)}\b", source, re.M) for attr in rest[:1])
            value = importlib.import_module(candidate)
        elif hasattr(value, name):
            value = getattr(value, name)
        else:
            return False
        prefix = candidate
    return True


def test_resolves_tells_real_paths_from_made_up_ones() -> None:
    assert resolves("ccproxy_asgi.middleware.error_normalization.ErrorNormalizationMiddleware")
    assert resolves("ccproxy_asgi.asgi:app")
    assert not resolves("ccproxy_asgi.middleware.error_normalization.NoSuchLayer")
    assert not resolves("ccproxy_asgi.no_such_module")


@pytest.mark.parametrize("page", [*DOC_PAGES, *EXAMPLE_PAGES], ids=_ids([*DOC_PAGES, *EXAMPLE_PAGES]))
def test_every_ccproxy_asgi_path_in_the_text_exists(page: Path) -> None:
    text = _FENCE.sub("", page.read_text())
    paths = set(re.findall(r"`(ccproxy_asgi(?:\.\w+)+(?::\w+)?)", text))
    missing = sorted(path for path in paths - LOGGER_NAMES if not resolves(path))
    assert not missing, f"{page.relative_to(ROOT)} names what does not exist: {missing}"


def test_layers_code_blocks_compile() -> None:
    blocks = _python_blocks(DOCS / "layers.md")
    assert len(blocks) >= 5
    for number, block in enumerate(blocks, 1):
        compile(block, f"docs/layers.md python block {number}", "exec")
