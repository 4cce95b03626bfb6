"""OpenAI chat-completion chunks → Anthropic stream events, incrementally
(docs/protocol.md#streaming-translation).

Guarantees on the output: `event:` lines always; `message_start` first and `message_stop` last; block
indices 0, 1, 2, … in start order; one block open at a time; every started block stopped; no delta for
a stopped block; at least one block (an empty text block when the upstream produced nothing).

Choices made where the protocol leaves one:
- Tool calls are keyed by the OpenAI `index` (else by `id`, else the latest call). An index that comes
  back with a different non-empty `id` is a new call (servers that number every call 0).
- The open tool call streams its arguments live. A fragment for another call waits in a buffer while
  the open call's arguments are not yet complete JSON; once they are, the open block is stopped and
  the waiting calls start, each with its buffered arguments as one `input_json_delta`. Calls still
  waiting at the end are emitted then. So interleaved fragments are never lost and never need a
  stopped block reopened; in the usual sequential stream every call streams live.
- Text or reasoning after tool calls ends them (the model has moved on): the open and waiting calls are
  stopped first. A fragment that still arrives for a stopped call is dropped (a stopped block cannot
  be reopened); real servers never send one.
- A thinking block ends with a `signature_delta` carrying `""` (OpenAI servers have no signature; real
  Anthropic streams always send one before the stop, and clients may wait for it).
- Stop sequences (the client's, matched here because the upstream may not have been told them) are
  searched in text only, not in reasoning or tool arguments. Text that could be the start of a match is
  held back; on a match the text is cut, later content is ignored and `done` becomes true.
- `message_delta` goes out only from `finish`, so the usage chunk that follows `finish_reason` is in it.
  Without upstream usage it carries the input estimate and ~4 characters per output token.

End of stream: the endpoint reads until `done` or upstream EOF, calls `feed_eof`, then checks
`ended_cleanly` (a `finish_reason` or `[DONE]` was seen). If not, the upstream was cut off and the
endpoint should send an SSE `error` event instead of `finish()` (docs/protocol.md#errors-during-a-stream).
`finish` itself
always closes the message properly, for callers that prefer a synthesized end.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import orjson

from ccproxy_asgi import jsonutil
from ccproxy_asgi.errors import UpstreamError
from ccproxy_asgi.translate.identifiers import ToolNameMap, new_message_id, new_tool_use_id
from ccproxy_asgi.translate.response import (
    estimated_usage,
    find_stop_sequence,
    map_finish_reason,
    upstream_error,
    usage_from_openai,
)
from ccproxy_asgi.translate.sse import SSEDecoder, SSEOverflowError, encode_event

_NONE, _TEXT, _THINKING, _TOOL = 0, 1, 2, 3

# orjson directly rather than through `jsonutil`: this runs for every chunk, and event bytes are built
# from precomputed prefixes around one serialized string, never by serializing whole events.
_dumps = orjson.dumps
_DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,"delta":{"type":'
_TEXT_DELTA = _DELTA_HEAD + b'"text_delta","text":'
_THINKING_DELTA = _DELTA_HEAD + b'"thinking_delta","thinking":'
_JSON_DELTA = _DELTA_HEAD + b'"input_json_delta","partial_json":'
_SIGNATURE_DELTA = _DELTA_HEAD + b'"signature_delta","signature":""}}\n\n'
_DELTA_TAIL = b"}}\n\n"
_START = b'event: content_block_start\ndata: {"type":"content_block_start","index":%d,"content_block":'
_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
_TEXT_BLOCK = b'{"type":"text","text":""}}\n\n'
_THINKING_BLOCK = b'{"type":"thinking","thinking":"","signature":""}}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
PING_EVENT = b'event: ping\ndata: {"type":"ping"}\n\n'
_SURROGATE = re.compile("[\ud800-\udfff]")


def _loads_lenient(data: str) -> Any:
    """Parse what orjson refused: valid JSON but for a lone surrogate escape (e.g. half an emoji).

    The standard library accepts those; each lone surrogate then becomes U+FFFD so the text can be
    encoded again. Anything else is a malformed chunk.
    """
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # the stdlib parser recurses: a deeply nested chunk exhausts it
        raise UpstreamError(f"invalid upstream stream chunk: {data[:200]!r}") from None
    return _scrub(value)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


class _ToolCall:
    __slots__ = ("args", "checked", "closed", "complete", "id", "index", "name", "upstream_id")

    def __init__(self, upstream_id: str | None, name: str) -> None:
        self.upstream_id = upstream_id
        self.id = upstream_id or new_tool_use_id()
        self.name = name
        self.args: list[str] = []
        self.index = -1  # the Anthropic block index once started
        self.closed = False
        self.complete = False
        self.checked = 0  # len(args) when completeness was last tested

    def is_complete(self) -> bool:
        """Whether the arguments so far are a whole JSON value that no further fragment can extend."""
        if self.complete or self.checked == len(self.args):
            return self.complete
        self.checked = len(self.args)
        try:
            value = orjson.loads("".join(self.args))
        except orjson.JSONDecodeError:
            return False
        # "1" may still become "12"; delimited values and literals cannot grow.
        self.complete = type(value) not in (int, float)
        return self.complete


class StreamTranslator:
    """The state of one streamed response: feed it upstream chunks, send what it returns."""

    def __init__(
        self,
        *,
        requested_model: str,
        tool_names: ToolNameMap,
        stop_sequences: Sequence[str] = (),
        message_id: str | None = None,
        input_tokens_estimate: int = 0,
    ) -> None:
        self.message_id = message_id or new_message_id()
        self._model = requested_model
        self._names = tool_names
        self._stops = tuple(s for s in stop_sequences if s)
        self._input_estimate = input_tokens_estimate
        self._decoder = SSEDecoder()
        self._out: list[bytes] = []
        self._started = False
        self._finished = False
        self._next_index = 0
        self._open = _NONE
        self._open_index = -1
        self._open_tool: _ToolCall | None = None
        self._delta_prefix = b""  # content_block_delta head for the open block
        self._tools_by_key: dict[int, _ToolCall] = {}
        self._tools_by_id: dict[str, _ToolCall] = {}
        self._last_tool: _ToolCall | None = None
        self._waiting: list[_ToolCall] = []
        self._any_tool = False
        self._held = ""
        self._matched: str | None = None
        self._finish_reason: Any = None
        self._upstream_stop: Any = None
        self._raw_usage: Any = None
        self._saw_done = False
        self._saw_finish = False
        self._output_chars = 0
        self._usage: dict[str, Any] | None = None
        self._stop_reason: str | None = None

    # ----- public state -----------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """No further upstream input is wanted: a stop sequence matched or `[DONE]` arrived.

        After a stop-sequence match the upstream is still generating: stop reading and cancel it.
        """
        return self._matched is not None or self._saw_done

    @property
    def saw_done(self) -> bool:
        return self._saw_done

    @property
    def saw_finish(self) -> bool:
        """A chunk carried a non-null `finish_reason`."""
        return self._saw_finish

    @property
    def ended_cleanly(self) -> bool:
        """The upstream signalled its end (`finish_reason` or `[DONE]`); False means it was cut off."""
        return self._saw_finish or self._saw_done

    @property
    def output_started(self) -> bool:
        """A content block has been emitted (more than `message_start`)."""
        return self._next_index > 0

    @property
    def usage(self) -> dict[str, Any] | None:
        """The Anthropic usage from the upstream's own report, once `finish` ran; None if it sent none."""
        return self._usage

    @property
    def stop_reason(self) -> str | None:
        """The `stop_reason` sent by `finish` (None before)."""
        return self._stop_reason

    @property
    def stop_sequence(self) -> str | None:
        """The client stop sequence that ended the message, if one did."""
        return self._matched

    # ----- input ------------------------------------------------------------------------------------

    def start(self) -> bytes:
        """The `message_start` event; send it once the upstream answered 200. Later calls give b""."""
        if self._started:
            return b""
        self._started = True
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self._input_estimate,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 0,
            },
        }
        return encode_event("message_start", {"type": "message_start", "message": message})

    def ping(self) -> bytes:
        """A keep-alive `ping` event (valid anywhere after `message_start`)."""
        return PING_EVENT

    def feed_chunk(self, chunk: dict[str, Any]) -> bytes:
        """Events for one parsed OpenAI chunk (b"" if none). `message_start` first if not yet sent.

        Raises the mapped `ProxyError` for an `{"error": …}` chunk and `UpstreamError` for a chunk
        whose structure is not a chat-completion chunk.
        """
        if not self._started:
            self._out.append(self.start())
        self._chunk(chunk)
        return self._take()

    def feed_data(self, data: str) -> bytes:
        """Events for the `data` of one upstream SSE event: a JSON chunk, `[DONE]`, or nothing."""
        if not self._started:
            self._out.append(self.start())
        self._data(data, None)
        return self._take()

    def feed_sse_bytes(self, data: bytes) -> bytes:
        """Events for raw upstream body bytes, split anywhere (decodes SSE, then `feed_data`).

        Raises `UpstreamError` when the upstream sends an event past the decoder's size limit."""
        if not self._started:
            self._out.append(self.start())
        try:
            events = self._decoder.feed(data)
        except SSEOverflowError as exc:
            raise UpstreamError(f"the upstream sent an oversized SSE line: {exc}") from None
        for event in events:
            self._data(event.data, event.event)
        return self._take()

    def feed_eof(self) -> bytes:
        """Events for a last SSE event the upstream left without its closing blank line."""
        for event in self._decoder.close():
            self._data(event.data, event.event)
        return self._take()

    def finish(self) -> bytes:
        """The closing events: pending text and blocks, `message_delta` (stop reason, usage), `message_stop`.

        Synthesizes a proper end whatever the upstream did; see the module notes for cut streams.
        Later calls give b"".
        """
        if self._finished:
            return b""
        if not self._started:
            self._out.append(self.start())
        for event in self._decoder.close():
            self._data(event.data, event.event)
        self._finished = True
        if self._held:
            self._flush_held()
        self._end_tools()
        self._close_open()
        if self._next_index == 0:
            self._start_block(_TEXT, _TEXT_BLOCK)
            self._close_open()

        stop_reason: str
        stop_sequence: str | None
        if self._matched is not None:
            stop_reason, stop_sequence = "stop_sequence", self._matched
        else:
            stop_reason, stop_sequence = map_finish_reason(
                self._finish_reason,
                has_tool_calls=self._any_tool,
                upstream_stop=self._upstream_stop,
                stop_sequences=self._stops,
            )
        self._stop_reason = stop_reason
        if isinstance(self._raw_usage, dict):
            usage = self._usage = usage_from_openai(self._raw_usage)
        else:
            usage = estimated_usage(self._input_estimate, self._output_chars)
        self._out.append(
            encode_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                    "usage": usage,
                },
            )
        )
        self._out.append(_MESSAGE_STOP)
        return self._take()

    # ----- chunk handling ---------------------------------------------------------------------------

    def _take(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = b"".join(out)
        out.clear()
        return data

    def _data(self, data: str, event: str | None) -> None:
        if not data or self._finished or self.done:
            return
        if data.startswith("[DONE]"):
            self._saw_done = True
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            chunk = _loads_lenient(data)
        if not isinstance(chunk, dict):
            raise UpstreamError(f"invalid upstream stream chunk: {data[:200]!r}")
        if event == "error" and "error" not in chunk:
            raise upstream_error(chunk)
        self._chunk(chunk)

    def _chunk(self, chunk: dict[str, Any]) -> None:
        try:
            usage = chunk.get("usage")
            if usage is not None:
                self._raw_usage = usage
            if self._finished or self._matched is not None:
                return
            choices = chunk.get("choices")
            if not choices:
                if chunk.get("error") is not None:
                    raise upstream_error(chunk["error"])
                if choices is not None and not isinstance(choices, list):
                    raise UpstreamError("invalid upstream stream chunk: choices is not a list")
                return
            choice = choices[0]
            delta = choice.get("delta")
            if delta:
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if reasoning and type(reasoning) is str:
                    self._thinking(reasoning)
                content = delta.get("content")
                if content:
                    self._text(content)
                refusal = delta.get("refusal")
                if refusal:
                    self._text(refusal)
                calls = delta.get("tool_calls")
                if calls and self._matched is None:
                    self._tool_calls(calls)
            finish_reason = choice.get("finish_reason")
            if finish_reason is not None:
                self._finish_reason = finish_reason
                self._saw_finish = True
                self._upstream_stop = choice.get("stop_reason")
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            raise UpstreamError(f"invalid upstream stream chunk: {exc}") from None

    # ----- blocks -----------------------------------------------------------------------------------

    def _start_block(self, kind: int, content_block: bytes) -> int:
        index = self._next_index
        self._next_index = index + 1
        self._out.append(_START % index + content_block)
        self._open = kind
        self._open_index = index
        return index

    def _close_open(self) -> None:
        kind = self._open
        if kind == _NONE:
            return
        if kind == _THINKING:
            self._out.append(_SIGNATURE_DELTA % self._open_index)
        elif kind == _TOOL and self._open_tool is not None:
            self._open_tool.closed = True
            self._open_tool = None
        self._out.append(_STOP % self._open_index)
        self._open = _NONE

    def _text(self, text: Any) -> None:
        if type(text) is not str:
            raise UpstreamError("invalid upstream stream chunk: content is not a string")
        if self._matched is not None:
            return
        if self._stops:
            text = self._scan_stops(text)
            if not text:
                return
        if self._open != _TEXT:
            self._open_text()
        self._output_chars += len(text)
        self._out.append(self._delta_prefix + _dumps(text) + _DELTA_TAIL)

    def _open_text(self) -> None:
        self._end_tools()
        self._close_open()
        index = self._start_block(_TEXT, _TEXT_BLOCK)
        self._delta_prefix = _TEXT_DELTA % index

    def _thinking(self, reasoning: str) -> None:
        if self._held:
            self._flush_held()
        if self._open != _THINKING:
            self._end_tools()
            self._close_open()
            index = self._start_block(_THINKING, _THINKING_BLOCK)
            self._delta_prefix = _THINKING_DELTA % index
        self._output_chars += len(reasoning)
        self._out.append(self._delta_prefix + _dumps(reasoning) + _DELTA_TAIL)

    # ----- stop sequences ---------------------------------------------------------------------------

    def _scan_stops(self, piece: str) -> str:
        """The part of held-back text + `piece` that can go out now; sets the match when one is found."""
        text = self._held + piece
        hit = find_stop_sequence(text, self._stops)
        if hit is not None:
            self._held = ""
            self._matched = hit[1]
            return text[: hit[0]]
        hold = 0
        for seq in self._stops:
            # Longest proper prefix of `seq` that ends the text: it may complete in the next piece.
            for size in range(min(len(seq) - 1, len(text)), hold, -1):
                if text.endswith(seq[:size]):
                    hold = size
                    break
        if hold:
            self._held = text[-hold:]
            return text[:-hold]
        self._held = ""
        return text

    def _flush_held(self) -> None:
        # The text has ended (another kind of content follows, or the stream): the tail cannot match.
        text = self._held
        self._held = ""
        if self._open != _TEXT:
            self._open_text()
        self._output_chars += len(text)
        self._out.append(self._delta_prefix + _dumps(text) + _DELTA_TAIL)

    # ----- tool calls -------------------------------------------------------------------------------

    def _tool_calls(self, calls: Any) -> None:
        if type(calls) is not list:
            raise UpstreamError("invalid upstream stream chunk: tool_calls is not a list")
        if self._held:
            self._flush_held()
        for call in calls:
            tool = self._resolve_tool(call)
            function = call.get("function")
            if not function:
                continue
            name = function.get("name")
            if name and tool.index < 0 and type(name) is str:
                tool.name = name
            args = function.get("arguments")
            if not args:
                continue
            if type(args) is not str:
                args = jsonutil.dumps_str(args)  # an object instead of its JSON text (some servers)
            if tool.closed:
                continue  # cannot reopen a stopped block; see the module notes
            tool.args.append(args)
            self._output_chars += len(args)
            if tool is self._open_tool:
                self._out.append(self._delta_prefix + _dumps(args) + _DELTA_TAIL)
        self._advance_tools()

    def _resolve_tool(self, call: Any) -> _ToolCall:
        index = call.get("index")
        call_id = call.get("id")
        if not call_id or type(call_id) is not str:
            call_id = None
        if type(index) is int:
            tool = self._tools_by_key.get(index)
            if tool is not None and (call_id is None or tool.upstream_id in (None, call_id)):
                return tool
        elif call_id is not None:
            tool = self._tools_by_id.get(call_id)
            if tool is not None:
                return tool
        elif self._last_tool is not None:
            return self._last_tool
        tool = _ToolCall(call_id, "")
        if type(index) is int:
            self._tools_by_key[index] = tool
        if call_id is not None:
            self._tools_by_id[call_id] = tool
        self._last_tool = tool
        self._any_tool = True
        self._waiting.append(tool)
        return tool

    def _advance_tools(self) -> None:
        """Start waiting calls while the open block is not an unfinished tool call."""
        waiting = self._waiting
        while waiting:
            if self._open == _TOOL and self._open_tool is not None and not self._open_tool.is_complete():
                return
            self._close_open()
            self._start_tool(waiting.pop(0))

    def _start_tool(self, tool: _ToolCall) -> None:
        block = _dumps(
            {"type": "tool_use", "id": tool.id, "name": self._names.client_name(tool.name), "input": {}}
        )
        index = self._start_block(_TOOL, block + b"}\n\n")
        tool.index = index
        self._open_tool = tool
        self._delta_prefix = _JSON_DELTA % index
        if tool.args:
            self._out.append(self._delta_prefix + _dumps("".join(tool.args)) + _DELTA_TAIL)

    def _end_tools(self) -> None:
        """Stop the open call and emit every waiting one: the model has moved on from tool calls."""
        if self._open == _TOOL:
            self._close_open()
        while self._waiting:
            self._start_tool(self._waiting.pop(0))
            self._close_open()


__all__ = ["PING_EVENT", "StreamTranslator"]
