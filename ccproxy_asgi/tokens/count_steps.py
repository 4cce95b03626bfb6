"""One token count, as steps that never touch the cache.

The counter interleaves these with its cache lookups and stores (each batch under its lock), and may
run the costly ones, keying a huge body or tokenizing many uncached texts, in a worker thread. The
order is: `key_units` → (cache: unit lookups) → `walk_misses` → (cache: piece lookups, then
`add_pending` per miss) → `measure` → (cache: `results` and unit counts stored).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ccproxy_asgi.errors import InvalidRequestError
from ccproxy_asgi.tokens._pdf import count_pdf_pages, decode_base64
from ccproxy_asgi.tokens.request_tally import (
    Tally,
    check_thinking,
    json_bytes,
    walk_message,
    walk_output_config,
    walk_output_format,
    walk_system,
    walk_tool,
    walk_tool_choice,
)
from ccproxy_asgi.tokens.rules import REPLY_PRIMING, TOOLS_PREAMBLE, CountingRules
from ccproxy_asgi.translate.fields import output_format_of, read_body, read_messages, read_tools

Key = tuple[object, ...]
Walker = Callable[[Any, str, CountingRules, Tally], None]
# (kind, walker, value, path): one top-level part of a request that is counted and cached as a whole.
Unit = tuple[str, Walker, Any, str]
EncodeFn = Callable[[str], list[int]]

# Below this length tokenizing is about as cheap as a cache lookup, and caching would crowd the LRU.
MIN_CACHED_TEXT = 256


def _hash_is_secret() -> bool:
    seed = os.environ.get("PYTHONHASHSEED", "random")
    return bool(sys.flags.hash_randomization) and seed in ("", "random")


def sha1_fingerprint(data: str | bytes) -> bytes:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return hashlib.sha1(raw, usedforsecurity=False).digest()


# SipHash with the per-process random key is fast (about 4 GB/s) and clients cannot predict it; a
# fixed PYTHONHASHSEED makes it predictable, and then SHA-1 (about 2 GB/s) keeps collisions out of reach.
fingerprint: Callable[[str | bytes], object] = hash if _hash_is_secret() else sha1_fingerprint


def estimate_tokens(text: str) -> int:
    """The no-tokenizer estimate: UTF-8 bytes / 4, rounded up."""
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return -(-size // 4)


def pdf_tokens(data: str, rules: CountingRules) -> int:
    """Pages of a base64 PDF times the per-page price; pages from size when none can be found."""
    pdf = decode_base64(data)
    pages = count_pdf_pages(pdf) if pdf is not None else None
    if pages is None:
        size = len(pdf) if pdf is not None else len(data) * 3 // 4
        pages = max(1, -(-size // rules.pdf_bytes_per_page))
    return pages * rules.pdf_page_tokens


def split_units(body: Any) -> tuple[int, list[Unit]]:
    """Fixed tokens of the request and its top-level units in order, after the top-level checks."""
    fixed, units = iter_units(body)
    return fixed, list(units)


def iter_units(body: Any) -> tuple[int, Iterator[Unit]]:
    """`split_units` with the tools and messages produced one at a time, as they are consumed."""
    if isinstance(body, Mapping) and not isinstance(body, dict):
        body = dict(body)  # a library caller's mapping; the readers take the parsed JSON's dict
    body = read_body(body)
    messages = read_messages(body)
    fixed = REPLY_PRIMING
    head: list[Unit] = []
    system = body.get("system")
    if system is not None:
        # A string and a list of blocks are counted differently, so their keys must never meet.
        head.append(("system-text" if isinstance(system, str) else "system", walk_system, system, "system"))
    tools = read_tools(body)
    if tools:
        fixed += TOOLS_PREAMBLE
    rest: list[Unit] = []
    for name, walker in (("tool_choice", walk_tool_choice), ("output_config", walk_output_config)):
        value = body.get(name)
        if value is not None:
            rest.append((name, walker, value, name))
    output_format, path = output_format_of(body)
    if output_format is not None and path == "output_format":  # the beta's, when output_config has none
        rest.append(("output_format", walk_output_format, output_format, path))
    thinking = body.get("thinking")
    if thinking is not None:
        check_thinking(thinking, "thinking")
    units = itertools.chain(
        head,
        (("tool", walk_tool, tool, f"tools.{index}") for index, tool in enumerate(tools or ())),
        rest,
        (("message", walk_message, message, f"messages.{index}") for index, message in enumerate(messages)),
    )
    return fixed, units


def count_uncached(body: Any, encode: EncodeFn | None, rules: CountingRules) -> int:
    """The whole count of `body`, unit by unit, with no keys, lookups or pieces kept.

    For bodies of far more units than the cache holds: their entries would only evict each other, and
    per-unit state kept for every unit until the end (the units, keys, tallies, pending texts) is
    millions of live objects, whose full garbage collections stall every thread for a tenth of a
    second and more each. Here each unit's state dies as soon as it is counted.
    """
    total, units = iter_units(body)
    for _, walker, value, path in units:
        tally = Tally()
        walker(value, path, rules, tally)
        total += tally.fixed
        for text in tally.texts:
            if encode is None:
                total += estimate_tokens(text)
            elif text:
                total += len(encode(text))
        for data in tally.pdfs:
            total += pdf_tokens(data, rules)
    return total


class Job:
    """The state of one count between its steps."""

    __slots__ = (
        "encoding",
        "keys",
        "miss_bytes",
        "miss_tokens",
        "misses",
        "pending",
        "pending_size",
        "piece_keys",
        "piece_refs",
        "results",
        "sizes",
        "total",
        "units",
    )

    def __init__(self, body: Any, encoding: str) -> None:
        self.encoding = encoding
        self.total, self.units = split_units(body)
        self.keys: list[Key] = []
        self.sizes: list[int] = []  # serialized bytes per keyed unit
        self.misses: list[int] = []  # indexes into units
        self.miss_bytes = 0
        self.miss_tokens: list[int] = []  # per miss, filled in as pieces are resolved
        self.piece_keys: list[Key] = []
        self.piece_refs: list[tuple[int, str, bool]] = []  # (miss, text or PDF data, is PDF)
        self.pending: list[tuple[int, Key | None, str, bool]] = []  # still to measure
        self.pending_size = 0
        self.results: list[tuple[Key, int]] = []  # measured pieces to cache

    def key_units(self, byte_budget: int | None = None) -> bool:
        """Key the units not keyed yet; stop after `byte_budget` bytes. True when all are keyed."""
        keys, units, encoding = self.keys, self.units, self.encoding
        keyed = 0
        for index in range(len(keys), len(units)):
            if byte_budget is not None and keyed > byte_budget:
                return False
            kind, walker, value, path = units[index]
            try:
                data: str | bytes = value if kind == "system-text" else json_bytes(value, path)
            except InvalidRequestError:
                # The unit's walker names the field at fault (`tools.0.input_schema`, not `tools.0`).
                walker(value, path, CountingRules(), Tally())
                raise
            keys.append((encoding, kind, len(data), fingerprint(data)))
            self.sizes.append(len(data))
            keyed += len(data)
        return True

    def note_miss(self, index: int) -> None:
        self.misses.append(index)
        self.miss_bytes += self.sizes[index]

    def walk_misses(self, rules: CountingRules, exact: bool) -> None:
        """Check and tally every missed unit; long texts and PDFs become pieces to look up."""
        encoding = self.encoding
        for miss, index in enumerate(self.misses):
            _, walker, value, path = self.units[index]
            tally = Tally()
            walker(value, path, rules, tally)
            self.miss_tokens.append(tally.fixed)
            for text in tally.texts:
                if exact and len(text) >= MIN_CACHED_TEXT:
                    self.piece_keys.append((encoding, "text", len(text), fingerprint(text)))
                    self.piece_refs.append((miss, text, False))
                else:
                    self.add_pending(miss, None, text, False)
            for data in tally.pdfs:
                self.piece_keys.append((encoding, "pdf", len(data), fingerprint(data)))
                self.piece_refs.append((miss, data, True))

    def add_pending(self, miss: int, key: Key | None, text: str, is_pdf: bool) -> None:
        self.pending.append((miss, key, text, is_pdf))
        self.pending_size += len(text)

    def measure(self, encode: EncodeFn | None, rules: CountingRules) -> None:
        """Tokenize (or estimate) the pending texts and price the pending PDFs."""
        for miss, key, text, is_pdf in self.pending:
            if is_pdf:
                tokens = pdf_tokens(text, rules)
            elif encode is None:
                tokens = estimate_tokens(text)
            else:
                tokens = len(encode(text)) if text else 0
            self.miss_tokens[miss] += tokens
            if key is not None:
                self.results.append((key, tokens))
        self.pending = []


__all__ = [
    "MIN_CACHED_TEXT",
    "Job",
    "Key",
    "count_uncached",
    "estimate_tokens",
    "fingerprint",
    "iter_units",
    "pdf_tokens",
    "split_units",
]
