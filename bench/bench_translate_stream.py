"""Per-chunk cost of the stream translator on realistic upstream streams.

Run: PYTHONPATH=. python bench/bench_translate_stream.py [--repeat N]

Streams are shaped like OpenAI's: a role chunk, ~300 text-delta chunks of a few words each (with the
`id`/`object`/`created`/`model` envelope every chunk carries), a finish chunk, a usage chunk and
`[DONE]`; the tool stream has two calls whose arguments arrive in ~150 small fragments each. Bytes are
fed as a server would deliver them: one SSE event per read, and also many events per read.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from ccproxy_asgi.translate.identifiers import ToolNameMap
from ccproxy_asgi.translate.stream import StreamTranslator

_WORDS = [
    *("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog"),
    *("while", "naïve", "café", "owners", "sip", "日本", "tea", "🌍"),
]


def _envelope(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-AbCdEf0123456789",
        "object": "chat.completion.chunk",
        "created": 1767225600,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_0123456789",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


def _usage_chunk() -> dict[str, Any]:
    return {
        "id": "chatcmpl-AbCdEf0123456789",
        "object": "chat.completion.chunk",
        "created": 1767225600,
        "model": "gpt-4o-2024-08-06",
        "choices": [],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500},
    }


def text_stream(n: int = 300) -> list[dict[str, Any]]:
    chunks = [_envelope({"role": "assistant", "content": "", "refusal": None})]
    for i in range(n):
        piece = " ".join(_WORDS[(i + k) % len(_WORDS)] for k in range(1 + i % 3))
        chunks.append(_envelope({"content": " " + piece}))
    chunks.append(_envelope({}, "stop"))
    chunks.append(_usage_chunk())
    return chunks


def tool_stream(fragments: int = 150) -> list[dict[str, Any]]:
    chunks = [_envelope({"role": "assistant", "content": None})]
    for index, call_id in enumerate(("call_Abc123", "call_Def456")):
        args = json.dumps({"path": "/src/" + "x" * 20 + ".py", "content": "print('héllo 🌍')\n" * 40})
        size = max(1, len(args) // fragments)
        pieces = [args[i : i + size] for i in range(0, len(args), size)]
        head = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": "write", "arguments": ""},
        }
        chunks.append(_envelope({"tool_calls": [head]}))
        for piece in pieces:
            chunks.append(_envelope({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    chunks.append(_envelope({}, "tool_calls"))
    chunks.append(_usage_chunk())
    return chunks


def _sse(chunks: list[dict[str, Any]]) -> list[bytes]:
    return [b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\n\n" for c in chunks] + [
        b"data: [DONE]\n\n"
    ]


def _translator() -> StreamTranslator:
    return StreamTranslator(
        requested_model="claude-sonnet-4-5", tool_names=ToolNameMap(), message_id="msg_bench"
    )


def _time(run: Callable[[], None], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def bench(name: str, chunks: list[dict[str, Any]], repeat: int) -> None:
    frames = _sse(chunks)
    joined = [b"".join(frames[i : i + 16]) for i in range(0, len(frames), 16)]

    def via_chunks() -> None:
        t = _translator()
        t.start()
        for chunk in chunks:
            t.feed_chunk(chunk)
        t.finish()

    def via_frames() -> None:
        t = _translator()
        t.start()
        for frame in frames:
            t.feed_sse_bytes(frame)
        t.finish()

    def via_batches() -> None:
        t = _translator()
        t.start()
        for batch in joined:
            t.feed_sse_bytes(batch)
        t.finish()

    n = len(chunks)
    for label, run in (
        ("feed_chunk (parsed dicts)", via_chunks),
        ("feed_sse_bytes, 1 event/read", via_frames),
        ("feed_sse_bytes, 16 events/read", via_batches),
    ):
        seconds = _time(run, repeat)
        print(f"{name:<12} {label:<32} {n:>4} chunks  {seconds / n * 1e6:6.2f} µs/chunk")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    bench("text", text_stream(), args.repeat)
    bench("tool calls", tool_stream(), args.repeat)


if __name__ == "__main__":
    main()
