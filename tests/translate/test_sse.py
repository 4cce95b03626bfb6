"""The incremental SSE decoder and our event encoder."""

from __future__ import annotations

import json

from anthropic._streaming import SSEDecoder as SDKDecoder
from hypothesis import given, settings
from hypothesis import strategies as st

from ccproxy_asgi.translate.sse import SSEDecoder, SSEEvent, encode_event

# A stream with everything at once: comments, a retry-only block, `\r\n`, `\r` and `\n` line ends,
# multi-line data, fields without a colon or without the space, ids that persist, multi-byte text.
RECORDED = (
    ": keep-alive comment\r\n"
    "retry: 3000\r\n"
    "\r\n"
    "event: message\r\n"
    "id: 1\r\n"
    'data: {"text":"héllo 🌍 日本"}\r\n'
    "\r\n"
    "data: line one\r\n"
    "data: line two 日本\r\n"
    "retry: 1500\r\n"
    "\r\n"
    "data\r\n"
    "\r\n"
    "data:no-space\n\n"
    "data:  two spaces é\r\r"
    "event: ping\nunknown: field\n: comment\ndata: 🌍\n\n"
    "id\n"
    "data: after empty id\n\n"
    "data: [DONE]\r\n\r\n"
).encode()

EXPECTED = [
    SSEEvent("message", '{"text":"héllo 🌍 日本"}', "1", None),
    SSEEvent(None, "line one\nline two 日本", "1", 1500),
    SSEEvent(None, "", "1", None),
    SSEEvent(None, "no-space", "1", None),
    SSEEvent(None, " two spaces é", "1", None),
    SSEEvent("ping", "🌍", "1", None),
    SSEEvent(None, "after empty id", "", None),
    SSEEvent(None, "[DONE]", "", None),
]


def decode_in_pieces(data: bytes, cuts: list[int]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    last = 0
    for cut in sorted(cuts):
        events += decoder.feed(data[last:cut])
        last = cut
    events += decoder.feed(data[last:])
    events += decoder.close()
    return events


def test_whole_stream() -> None:
    assert decode_in_pieces(RECORDED, []) == EXPECTED


def test_byte_by_byte() -> None:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for i in range(len(RECORDED)):
        events += decoder.feed(RECORDED[i : i + 1])
    assert events == EXPECTED
    assert decoder.close() == []


def test_every_single_split_point() -> None:
    for cut in range(len(RECORDED) + 1):
        assert decode_in_pieces(RECORDED, [cut]) == EXPECTED, cut


@given(st.lists(st.integers(min_value=0, max_value=len(RECORDED)), max_size=40))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    assert decode_in_pieces(RECORDED, cuts) == EXPECTED


def test_crlf_split_across_reads_is_one_line_end() -> None:
    decoder = SSEDecoder()
    # Were the lone `\r` taken as a line end, the `\n` after it would be a blank line and dispatch "a".
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n\r") == []
    assert decoder.feed(b"\n") == [SSEEvent(None, "a\nb")]


def test_cr_only_line_ends() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\rdata: b\r") == [SSEEvent(None, "a")]
    assert decoder.feed(b"\r") == []  # the second `\r` might still be half of `\r\n`
    assert decoder.feed(b"data: c\r\r") == [SSEEvent(None, "b")]
    assert decoder.close() == [SSEEvent(None, "c")]


def test_multibyte_character_split_across_reads() -> None:
    data = "data: 日本🌍\n\n".encode()
    start = data.index("🌍".encode())
    decoder = SSEDecoder()
    assert decoder.feed(data[: start + 2]) == []
    assert decoder.feed(data[start + 2 :]) == [SSEEvent(None, "日本🌍")]


def test_invalid_utf8_becomes_replacement_character() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"data: a\xff\xfeb\n\ndata: \xe6\x97") + decoder.feed(b"\n\n")
    assert events == [SSEEvent(None, "a\ufffd\ufffdb"), SSEEvent(None, "\ufffd")]


def test_leading_bom_is_ignored_once() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef\xbb") == []
    # Only the stream's first BOM is dropped; a later one makes an unknown field name, so no event.
    assert decoder.feed(b"\xbfdata: x\n\n\xef\xbb\xbfdata: y\n\n") == [SSEEvent(None, "x")]


def test_close_flushes_an_unterminated_event_and_resets() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\n\ndata: [DONE]") == [SSEEvent(None, "1")]
    assert decoder.close() == [SSEEvent(None, "[DONE]")]
    assert decoder.close() == []
    decoder.feed(b"data: x\r")
    assert decoder.close() == [SSEEvent(None, "x")]


def test_blocks_without_data_are_not_dispatched() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: only\n\n: comment\n\nretry: 5\n\n\n\n\n") == []
    assert decoder.close() == []


def test_many_events_in_one_read() -> None:
    frames = b"".join(b'data: {"n":%d}\n\n' % i for i in range(100))
    assert [e.data for e in SSEDecoder().feed(frames)] == [f'{{"n":{i}}}' for i in range(100)]


@settings(max_examples=300)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300), max_size=10))
def test_arbitrary_bytes_never_crash(data: bytes, cuts: list[int]) -> None:
    whole = decode_in_pieces(data, [])
    assert decode_in_pieces(data, [c for c in cuts if c <= len(data)]) == whole


_line_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=12
)
_block = st.tuples(
    st.one_of(st.none(), st.text(alphabet="abcdefghij_", min_size=1, max_size=8)),
    st.lists(_line_text, min_size=1, max_size=3),
    st.lists(_line_text, max_size=2),
)


@settings(max_examples=300)
@given(
    st.lists(_block, max_size=6),
    st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1, max_size=5),
    st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_agrees_with_the_anthropic_sdk_decoder(
    blocks: list[tuple[str | None, list[str], list[str]]], endings: list[str], cuts: list[int]
) -> None:
    lines: list[str] = []
    for name, data, comments in blocks:
        lines += [":" + c for c in comments]
        if name is not None:
            lines.append("event: " + name)
        lines += ["data: " + d for d in data]
        lines.append("")
    text = ""
    for i, line in enumerate(lines):
        ending = endings[i % len(endings)]
        if not line and ending == "\n" and text.endswith("\r"):
            ending = "\r\n"  # "\r" then "\n" would be one line end, not a blank line
        text += line + ending
    raw = text.encode()
    pieces = [raw[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(raw)], strict=True)]

    ours = decode_in_pieces(raw, [c for c in cuts if c <= len(raw)])
    sdk = list(SDKDecoder().iter_bytes(iter(pieces)))
    assert [(e.event, e.data) for e in ours] == [(e.event, e.data) for e in sdk]
    assert [(e.event, e.data) for e in ours] == [(name, "\n".join(data)) for name, data, _ in blocks]


def test_encode_event() -> None:
    assert encode_event("ping", {"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'
    payload = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "é\n"}}
    encoded = encode_event("content_block_delta", payload)
    assert encoded == (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"\xc3\xa9\\n"}}\n\n'
    )
    [event] = SSEDecoder().feed(encoded)
    assert event.event == "content_block_delta"
    assert json.loads(event.data) == payload
