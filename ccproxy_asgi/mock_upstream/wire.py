"""A planned reply as OpenAI's bytes: the `chat.completion` body or the `chat.completion.chunk` stream.

Stream frames share a per-response prefix and suffix built once, so a chunk costs one small orjson call
for its delta and a join; the mock must stay far cheaper than the proxy it is used to measure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ccproxy_asgi import jsonutil
from ccproxy_asgi.mock_upstream.reply import Reply

SYSTEM_FINGERPRINT = "fp_mock"
DONE_FRAME = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """The identity of one response: id, creation time, model, and wire options."""

    completion_id: str
    created: int
    model: str
    include_usage: bool = False
    echo_stop_reason: bool = False


def split_even(text: str, parts: int) -> list[str]:
    """`text` cut into `parts` pieces of near-equal length (fewer when the text is shorter)."""
    if not text:
        return []
    parts = max(1, min(parts, len(text)))
    size, extra = divmod(len(text), parts)
    pieces = []
    start = 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def completion_body(reply: Reply, meta: ResponseMeta) -> bytes:
    """The non-streaming `chat.completion` JSON."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.content if reply.content or not reply.tool_calls else None,
        "refusal": None,
        "annotations": [],
    }
    if reply.reasoning and reply.reasoning_mode != "none":
        message[reply.reasoning_mode] = reply.reasoning
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in reply.tool_calls
        ]
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": reply.finish_reason,
    }
    if meta.echo_stop_reason:
        choice["stop_reason"] = reply.stop_reason
    return jsonutil.dumps(
        {
            "id": meta.completion_id,
            "object": "chat.completion",
            "created": meta.created,
            "model": meta.model,
            "choices": [choice],
            "usage": reply.usage(),
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "service_tier": "default",
        }
    )


def _deltas(reply: Reply) -> list[dict[str, Any]]:
    knobs = reply.knobs
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    if reply.reasoning and reply.reasoning_mode != "none":
        deltas.extend({reply.reasoning_mode: piece} for piece in split_even(reply.reasoning, knobs.chunks))
    deltas.extend({"content": piece} for piece in split_even(reply.content, knobs.chunks))
    for index, call in enumerate(reply.tool_calls):
        opening = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        deltas.append({"tool_calls": [opening]})
        deltas.extend(
            {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            for piece in split_even(call.arguments, knobs.tool_arg_chunks)
        )
    return deltas


def stream_frames(reply: Reply, meta: ResponseMeta) -> list[bytes]:
    """Every SSE frame of the streamed reply, `data: [DONE]` included."""
    head = (
        b'data: {"id":'
        + jsonutil.dumps(meta.completion_id)
        + b',"object":"chat.completion.chunk","created":'
        + str(meta.created).encode()
        + b',"model":'
        + jsonutil.dumps(meta.model)
        + b',"system_fingerprint":"'
        + SYSTEM_FINGERPRINT.encode()
        + b'","choices":'
    )
    usage_null = b',"usage":null' if meta.include_usage else b""
    open_choice = head + b'[{"index":0,"delta":'
    middle_tail = b',"logprobs":null,"finish_reason":null}]' + usage_null + b"}\n\n"
    frames = [open_choice + jsonutil.dumps(delta) + middle_tail for delta in _deltas(reply)]
    finish = b',"logprobs":null,"finish_reason":' + jsonutil.dumps(reply.finish_reason)
    if meta.echo_stop_reason:
        finish += b',"stop_reason":' + jsonutil.dumps(reply.stop_reason)
    frames.append(open_choice + b"{}" + finish + b"}]" + usage_null + b"}\n\n")
    if meta.include_usage:
        frames.append(head + b'[],"usage":' + jsonutil.dumps(reply.usage()) + b"}\n\n")
    frames.append(DONE_FRAME)
    return frames


def malformed_frame(meta: ResponseMeta) -> bytes:
    """A chunk whose JSON stops short: what a broken upstream or a bad gateway sends."""
    return (
        b'data: {"id":'
        + jsonutil.dumps(meta.completion_id)
        + b',"object":"chat.completion.chunk","choices":[{"del\n\n'
    )


def error_frame(error_json: bytes) -> bytes:
    """A mid-stream error event, `data: {"error": {...}}`."""
    return b"data: " + error_json + b"\n\n"


__all__ = [
    "DONE_FRAME",
    "SYSTEM_FINGERPRINT",
    "ResponseMeta",
    "completion_body",
    "error_frame",
    "malformed_frame",
    "split_even",
    "stream_frames",
]
