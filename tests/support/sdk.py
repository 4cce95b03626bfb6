"""Readers of what the official SDKs return, typed for the end-to-end tests."""

from __future__ import annotations

from collections.abc import Sequence


def first_text(content: Sequence[object]) -> str:
    """The text of a message's first content block, which must be a text block (`TextBlock`,
    `BetaTextBlock` or a parsed one: the SDK's union of block types has no `text` on the others)."""
    assert content, "the message has no content"
    text = getattr(content[0], "text", None)
    assert isinstance(text, str), f"the first block is not a text block: {content[0]!r}"
    return text


__all__ = ["first_text"]
