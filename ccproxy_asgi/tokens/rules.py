"""The fixed costs the token counter adds to the tokens of the texts it finds.

The reasoning behind each value is in the `ccproxy_asgi.tokens.counter` module docstring. The framing
constants mirror OpenAI's chat format (the upstream is OpenAI-compatible); the configurable ones are
prices for content the counter does not tokenize (images, PDFs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Chat framing: `<|start|>{role}\n … <|end|>\n` is 3 tokens of framing plus 1 for the role.
MESSAGE_OVERHEAD = 4
# `<|start|>assistant<|message|>` primes the reply.
REPLY_PRIMING = 3
# Joining system text blocks (the translation joins them with a blank line).
SEPARATOR = 1
# The hidden tools preamble (`# Tools … namespace functions { … }`) when any tool is offered.
TOOLS_PREAMBLE = 12
# Per tool definition, beyond the JSON text of the definition.
TOOL_OVERHEAD = 8
# Per tool call in an assistant message, beyond its name and arguments.
TOOL_CALL_OVERHEAD = 3


@dataclass(frozen=True, slots=True)
class CountingRules:
    """Prices of what is not tokenized, and whether thinking history counts.

    `image_tokens`: each image, whatever its size (Anthropic's own estimate is width*height/750, capped
    near 1600 for the largest images it accepts; we do not decode images).
    `pdf_page_tokens`: each page of a base64 PDF (Anthropic quotes 1500-3000 tokens of text per page,
    plus an image of the page).
    `pdf_bytes_per_page`: for a PDF whose pages could not be found, pages = decoded bytes / this
    (text PDFs measured 7-8 KB per page; scans are far larger, so those are overcounted).
    `document_tokens`: a document whose content cannot be seen (URL or file id).
    `count_thinking`: count the text of `thinking` blocks. Off by default: the translation drops them
    and Anthropic itself ignores thinking from previous turns; turn it on when reasoning is echoed
    upstream.
    `scale`: multiplies the total (rounded up), to leave a margin for an upstream whose tokenizer is
    not the tiktoken encoding used here.
    """

    image_tokens: int = 1600
    pdf_page_tokens: int = 2000
    pdf_bytes_per_page: int = 8000
    document_tokens: int = 4000
    count_thinking: bool = False
    scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("image_tokens", "pdf_page_tokens", "document_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.pdf_bytes_per_page < 1:
            raise ValueError("pdf_bytes_per_page must be positive")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError("scale must be a positive finite number")


__all__ = [
    "MESSAGE_OVERHEAD",
    "REPLY_PRIMING",
    "SEPARATOR",
    "TOOLS_PREAMBLE",
    "TOOL_CALL_OVERHEAD",
    "TOOL_OVERHEAD",
    "CountingRules",
]
