"""A cheap page count of a base64 PDF, for pricing document blocks per page.

No PDF parser: page dictionaries are found by their `/Type /Page` marker, first in the plain file and,
when there are none (PDF 1.5+ writers such as pdfTeX pack them into compressed object streams), inside
the `/ObjStm` streams. Work is bounded so a hostile document costs at most a few milliseconds more than
its base64 decode.
"""

from __future__ import annotations

import binascii
import re
import zlib

_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_OBJECT_STREAM = re.compile(rb"/Type\s*/ObjStm(?![A-Za-z])")
_STREAM_START = re.compile(rb"stream\r?\n")
_MAX_OBJECT_STREAMS = 256
_MAX_INFLATED_BYTES = 16 * 1024 * 1024


def decode_base64(data: str) -> bytes | None:
    """The decoded bytes, or None when `data` is not base64 at all."""
    try:
        return binascii.a2b_base64(data)
    except ValueError:  # binascii.Error (bad padding) and non-ASCII input both derive from it
        return None


def _pages_in_object_streams(pdf: bytes) -> int:
    pages = 0
    inflated_budget = _MAX_INFLATED_BYTES
    for index, match in enumerate(_OBJECT_STREAM.finditer(pdf)):
        if index >= _MAX_OBJECT_STREAMS or inflated_budget <= 0:
            break
        start = _STREAM_START.search(pdf, match.end())
        if start is None:
            break
        # Slice to the stream's end: the inflater copies unconsumed input, which would make many
        # streams in a large file quadratic.
        end = pdf.find(b"endstream", start.end())
        if end < 0:
            end = len(pdf)
        inflater = zlib.decompressobj()
        try:
            inflated = inflater.decompress(memoryview(pdf)[start.end() : end], inflated_budget)
        except zlib.error:  # not FlateDecode, or damaged: this stream tells us nothing
            continue
        inflated_budget -= len(inflated)
        pages += len(_PAGE.findall(inflated))
    return pages


def count_pdf_pages(pdf: bytes) -> int | None:
    """Pages found in the PDF, or None when no page dictionary could be located."""
    pages = len(_PAGE.findall(pdf))
    if pages == 0:
        pages = _pages_in_object_streams(pdf)
    return pages or None


__all__ = ["count_pdf_pages", "decode_base64"]
