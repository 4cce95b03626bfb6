"""The upstream SSE buffer is bounded: an endless line ends the stream with an error, a long one works.

An upstream that sends a `data:` line without end used to grow the proxy's buffer, and its memory, for
as long as it kept sending (a 300 MB line: RSS 62 -> 370 MB). End to end: `test_hardening_sse_e2e.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import pytest

from ccproxy_asgi.errors import UpstreamError
from ccproxy_asgi.translate.identifiers import EMPTY_TOOL_NAME_MAP
from ccproxy_asgi.translate.sse import MAX_EVENT_BYTES, SSEDecoder, SSEOverflowError
from ccproxy_asgi.translate.stream import StreamTranslator
from tests.support.e2e import parse_sse

PIECE = 64 * 1024


def test_default_bound_is_8_mib() -> None:
    assert MAX_EVENT_BYTES == 8 * 1024 * 1024


def feed_all(feed: Callable[[bytes], object], pieces: Iterable[bytes], held: list[int] | None = None) -> None:
    for piece in pieces:
        feed(piece)
        if held is not None:
            held.append(len(piece))


def test_endless_line_raises_at_the_bound_and_holds_no_more() -> None:
    decoder = SSEDecoder(max_event_bytes=1_000_000)
    decoder.feed(b"data: start\n\n")
    accepted: list[int] = []
    endless = (b"a" * PIECE for _ in range(1000))
    with pytest.raises(SSEOverflowError, match="1000000 bytes"):
        feed_all(decoder.feed, [b"data: ", *endless], accepted)
    assert sum(accepted) <= 1_000_000  # it gave up with the first read past the bound
    assert decoder.pending_bytes == 0  # and let go of what it held


def test_endless_event_of_short_lines_is_bounded_too() -> None:
    decoder = SSEDecoder(max_event_bytes=100_000)
    with pytest.raises(SSEOverflowError):
        feed_all(decoder.feed, (b"data: more of the same event\n" for _ in range(100_000)))


def test_one_read_past_the_bound_is_refused() -> None:
    with pytest.raises(SSEOverflowError):
        SSEDecoder(max_event_bytes=1000).feed(b"data: " + b"a" * 2000)


def test_complete_events_in_a_big_read_are_not_held() -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    events = decoder.feed(b"data: x\n\n" * 1000)
    assert len(events) == 1000
    assert decoder.pending_bytes == 0


@pytest.mark.parametrize("piece", [1, 7, PIECE])
def test_event_just_under_the_bound_comes_through_whole(piece: int) -> None:
    limit = 20_000
    line = b"data: " + b"b" * (limit - 8) + b"\n\n"
    assert len(line) == limit
    decoder = SSEDecoder(max_event_bytes=limit)
    events = []
    for start in range(0, len(line), piece):
        events += decoder.feed(line[start : start + piece])
    assert [event.data for event in events] == ["b" * (limit - 8)]


def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).encode()


def test_translator_turns_the_overflow_into_an_upstream_error() -> None:
    translator = StreamTranslator(requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP)
    translator.feed_sse_bytes(b"data: " + chunk({"role": "assistant", "content": "hi"}) + b"\n\n")
    endless = (b"a" * PIECE for _ in range(MAX_EVENT_BYTES // PIECE + 2))
    with pytest.raises(UpstreamError, match="oversized SSE line"):
        feed_all(translator.feed_sse_bytes, endless)


def test_translator_takes_a_2_mb_line() -> None:
    translator = StreamTranslator(requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP)
    stream = b"data: " + chunk({"content": "c" * 2_000_000}) + b"\n\n"
    stream += b"data: " + chunk({}, "stop") + b"\n\ndata: [DONE]\n\n"
    out = b"".join(translator.feed_sse_bytes(stream[i : i + PIECE]) for i in range(0, len(stream), PIECE))
    out += translator.finish()
    text = "".join(
        data["delta"]["text"] for name, data in parse_sse(out.decode()) if name == "content_block_delta"
    )
    assert text == "c" * 2_000_000


def test_deeply_nested_upstream_chunk_is_an_upstream_error() -> None:
    # Past orjson's 1024 levels the chunk goes to the stdlib parser, which recurses: a RecursionError
    # there used to escape as a bug, aborting the stream without an error event.
    translator = StreamTranslator(requested_model="m", tool_names=EMPTY_TOOL_NAME_MAP)
    deep = b'{"choices": [{"delta": {"content": "x"}, "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"
    with pytest.raises(UpstreamError, match="invalid upstream stream chunk"):
        translator.feed_sse_bytes(b"data: " + deep + b"\n\n")
