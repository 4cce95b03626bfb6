"""The code cites its protocol notes in docs/protocol.md only, and every section it cites exists.

Docstrings and comments point at sections as `docs/protocol.md#anchor`, sometimes followed by more
anchors of the same page (`docs/protocol.md#a, #b`, `docs/protocol.md#a and #b`, across a line break).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.docs.test_docs import anchors

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "docs" / "protocol.md"
SOURCES = sorted(
    path
    for folder in ("ccproxy_asgi", "tests", "bench", "examples", "tools")
    for path in (ROOT / folder).glob("**/*.py")
    if path != Path(__file__).resolve()
)
# Private notes of the team, not part of this repository: the product must not cite them.
PRIVATE_NOTES = re.compile(r"\b(PROTOCOL|PEERS|DESIGN|STYLE)\.md\b")
_CITATION = re.compile(r"docs/protocol\.md#[\w-]+(?:(?:,|\s+and)\s*(?:#\s+)?#[\w-]+)*")


def cited_anchors(text: str) -> set[str]:
    """Every anchor of docs/protocol.md that `text` cites."""
    return {anchor for citation in _CITATION.findall(text) for anchor in re.findall(r"#([\w-]+)", citation)}


def test_cited_anchors_reads_every_form() -> None:
    text = (
        "see docs/protocol.md#usage.\n"
        "(docs/protocol.md#errors-status-and-type and\n# #errors-upstream-to-client); more\n"
        "(docs/protocol.md#request-top-level-fields,\n#request-messages).\n"
        "docs/protocol.md#a, #b and #c. Not #d."
    )
    assert cited_anchors(text) == {
        "usage",
        "errors-status-and-type",
        "errors-upstream-to-client",
        "request-top-level-fields",
        "request-messages",
        "a",
        "b",
        "c",
    }


def test_every_cited_section_exists() -> None:
    sections = anchors(PROTOCOL)
    missing = {
        f"{path.relative_to(ROOT)}: #{anchor}"
        for path in SOURCES
        for anchor in cited_anchors(path.read_text())
        if anchor not in sections
    }
    assert not missing, f"docs/protocol.md has no such section: {sorted(missing)}"


def test_the_code_cites_the_protocol_notes() -> None:
    citing = [
        path
        for path in SOURCES
        if path.is_relative_to(ROOT / "ccproxy_asgi") and cited_anchors(path.read_text())
    ]
    assert len(citing) >= 10


def test_no_private_notes_are_cited() -> None:
    pages = [*SOURCES, *sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
    citing = [str(path.relative_to(ROOT)) for path in pages if PRIVATE_NOTES.search(path.read_text())]
    assert not citing, f"these files cite notes this repository does not have: {citing}"
