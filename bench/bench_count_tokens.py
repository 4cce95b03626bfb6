"""Token counting of a Claude-Code-sized request: cold, warm, and the next turn.

Run from the repository root: `PYTHONPATH=. python bench/bench_count_tokens.py [--runs N]`.

Every timed count gets a freshly parsed body (as a server would), so no string hash is reused from an
earlier run. Cold = empty cache (the encoding itself already loaded); warm = the same request again;
next turn = the same request plus an assistant turn and its tool result, with `cache_control` moved to
the new last block, counted on a cache warmed by the previous turn. The target for warm is < 200 us.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import orjson

# Run as a script from anywhere: the repository root holds `tests.fixtures` and `tests.support`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ccproxy_asgi._cython import VARIANT
from ccproxy_asgi.tokens.counter import TokenCounter
from ccproxy_asgi.tokens.encoding import encoding_for_model
from tests.fixtures.claude_code_request import build_claude_code_request

MODEL = "gpt-4o"


def next_turn(body: dict[str, Any]) -> dict[str, Any]:
    """The request Claude Code sends one tool round-trip later."""
    following: dict[str, Any] = orjson.loads(orjson.dumps(body))
    for message in following["messages"]:
        if isinstance(message["content"], list):
            for block in message["content"]:
                block.pop("cache_control", None)
    output = "\n".join(f"    line {n}: value = compute(value, {n})" for n in range(60))
    following["messages"] += [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me read the loader."},
                {
                    "type": "tool_use",
                    "id": "toolu_next",
                    "name": "Read",
                    "input": {"file_path": "/repo/load.py"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_next",
                    "content": output,
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        },
    ]
    return following


def timed(runs: int, prepare: Callable[[], Any], action: Callable[[Any], object]) -> list[float]:
    """Microseconds of `action(prepare())`, the preparation untimed."""
    samples = []
    for _ in range(runs):
        state = prepare()
        start = time.perf_counter()
        action(state)
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def report(label: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9)]
    print(f"{label:<44} min {ordered[0]:9.1f}  median {statistics.median(ordered):9.1f}  p90 {p90:9.1f} us")


def throughput(raw_text: str) -> None:
    """ns per byte of tokenizing versus keying (serialize + hash): the basis of the offload threshold."""
    encoding = encoding_for_model(MODEL)
    assert encoding is not None
    size = len(raw_text.encode())
    start = time.perf_counter()
    for _ in range(20):
        encoding.encode_ordinary(raw_text + " ")  # a new string each time
    tokenize = (time.perf_counter() - start) / 20 / size * 1e9
    value = {"text": raw_text}
    start = time.perf_counter()
    for _ in range(200):
        hash(orjson.dumps(value))
    keying = (time.perf_counter() - start) / 200 / size * 1e9
    print(f"tokenize {tokenize:.1f} ns/byte; key {keying:.2f} ns/byte ({size} bytes of tool description)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    runs: int = args.runs

    body = build_claude_code_request(n_tools=24, system_bytes=6000, n_messages=40)
    raw = orjson.dumps(body)
    following_raw = orjson.dumps(next_turn(body))
    print(f"lru_ops variant: {VARIANT}; request {len(raw)} bytes, {len(body['tools'])} tools, ", end="")
    print(f"{len(body['messages'])} messages; next turn {len(following_raw)} bytes")

    TokenCounter().count_request(orjson.loads(raw), model=MODEL)  # load the encoding once, untimed
    tokens = TokenCounter().count_request(orjson.loads(raw), model=MODEL)
    print(f"count: {tokens} tokens")

    def fresh_counter() -> tuple[TokenCounter, Any]:
        return TokenCounter(), orjson.loads(raw)

    def warm_counter() -> tuple[TokenCounter, Any]:
        counter = TokenCounter()
        counter.count_request(orjson.loads(raw), model=MODEL)
        return counter, orjson.loads(raw)

    def warm_for_next() -> tuple[TokenCounter, Any]:
        counter, _ = warm_counter()
        return counter, orjson.loads(following_raw)

    def count(state: tuple[TokenCounter, Any]) -> int:
        counter, request = state
        return counter.count_request(request, model=MODEL)

    warm = TokenCounter()
    warm.count_request(orjson.loads(raw), model=MODEL)
    cold_runs = max(10, runs // 10)
    report("cold (empty cache)", timed(cold_runs, fresh_counter, count))
    report("warm (same request again)", timed(runs, lambda: (warm, orjson.loads(raw)), count))
    report("next turn (+2 messages, cache_control moved)", timed(cold_runs, warm_for_next, count))

    async def async_runs() -> tuple[list[float], list[float]]:
        inline: list[float] = []
        offloaded: list[float] = []
        for _ in range(runs):
            request = orjson.loads(raw)
            start = time.perf_counter()
            await warm.acount_request(request, model=MODEL)
            inline.append((time.perf_counter() - start) * 1e6)
        for _ in range(cold_runs):
            counter, request = fresh_counter()
            start = time.perf_counter()
            await counter.acount_request(request, model=MODEL)
            offloaded.append((time.perf_counter() - start) * 1e6)
        return inline, offloaded

    inline, offloaded = anyio.run(async_runs)
    report("async warm (inline)", inline)
    report("async cold (tokenized in a worker thread)", offloaded)
    throughput(max((tool["description"] for tool in body["tools"]), key=len))


if __name__ == "__main__":
    main()
