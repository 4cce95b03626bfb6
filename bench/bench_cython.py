"""What the compiled hot paths buy: compiled vs pure-Python twin, in ns per operation.

Run from the repository root after `python setup.py build_ext --inplace`:

    PYTHONPATH=. python bench/bench_cython.py [--repeat 7]

Each figure is the best of N runs (the least disturbed one), divided by the operations per run.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ccproxy_asgi._cython import load_variant

WINDOW = 60.0
RPM = 1000
DECISIONS = 100_000


def limiter_decisions(lru_ops: ModuleType, rpm_limit: int, tpm_limit: int) -> Callable[[], int]:
    """A rate limiter's per-request work at 1000 RPM over a 60 s window: prune, check, and for a
    request that fits, reserve and reconcile the reservation with real usage a few requests later."""
    rng = random.Random(1)
    needs = [rng.randint(500, 6000) for _ in range(DECISIONS)]
    actual = [n - rng.randint(0, 400) for n in needs]

    def run() -> int:
        log = lru_ops.WindowLog()
        now, step = 0.0, WINDOW / RPM
        prune, fits, add, adjust = log.prune, log.time_until_fits, log.add, log.adjust
        pending = [(-1, 0)] * 8
        for i in range(DECISIONS):
            prune(now - WINDOW)
            if fits(now, WINDOW, rpm_limit, tpm_limit, needs[i]) == 0.0:
                slot = i & 7
                adjust(*pending[slot])
                pending[slot] = (add(now, needs[i]), actual[i] - needs[i])
            now += step
        return DECISIONS

    return run


def lru_mix(lru_ops: ModuleType) -> Callable[[], int]:
    """Token-count cache: skewed keys (system prompt and tools repeat), get, put on miss."""
    rng = random.Random(2)
    universe = [f"block-{i:06d}-" + "x" * 24 for i in range(16_384)]
    keys = [universe[min(int(rng.paretovariate(1.1)) - 1, len(universe) - 1)] for _ in range(50_000)]
    keys += [rng.choice(universe) for _ in range(50_000)]
    rng.shuffle(keys)

    def run() -> int:
        cache = lru_ops.LRUCache(4096)
        get, put = cache.get, cache.put
        for key in keys:
            if get(key) is None:
                put(key, len(key))
        return len(keys)

    return run


def log_record() -> dict[str, Any]:
    """An access-log record as the proxy would write it at debug level: scope headers, a ~5 KB body."""
    text = "Refactor the module so that the retry policy is injectable. " * 12
    return {
        "request_id": "req_01HZY3J5K8",
        "method": "POST",
        "path": "/v1/messages",
        "status": 200,
        "duration_ms": 812.4,
        "headers": [
            (b"host", b"localhost:8082"),
            (b"user-agent", b"claude-cli/1.0.80 (external, cli)"),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer sk-ant-api03-Zx8AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
            (b"anthropic-version", b"2023-06-01"),
            (b"anthropic-beta", b"prompt-caching-2024-07-31"),
            (b"accept", b"application/json"),
            (b"x-stainless-retry-count", b"0"),
        ],
        "upstream": {
            "base_url": "https://api.openai.com/v1",
            "api_key": "sk-proj-0123456789abcdef",
            "attempts": 1,
        },
        "body": {
            "model": "claude-sonnet-4",
            "max_tokens": 8192,
            "stream": True,
            "system": [
                {"type": "text", "text": "You are Claude Code. " * 20, "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": text}]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Reading the file first."},
                        {
                            "type": "tool_use",
                            "id": "toolu_01",
                            "name": "Read",
                            "input": {"file_path": "/src/retry.py"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": text[:600]}],
                },
            ],
            "tools": [
                {
                    "name": name,
                    "description": f"{name} tool. " * 6,
                    "input_schema": {
                        "type": "object",
                        "properties": {"file_path": {"type": "string"}, "limit": {"type": "integer"}},
                        "required": ["file_path"],
                    },
                }
                for name in ("Read", "Write", "Edit", "Bash", "Grep", "Glob")
            ],
            "metadata": {"user_id": "user_abc"},
        },
        "usage": {"input_tokens": 2211, "output_tokens": 311, "cache_read_input_tokens": 1800},
    }


def redact_record(dict_ops: ModuleType) -> Callable[[], int]:
    record = log_record()
    redact = dict_ops.redact

    def run() -> int:
        for _ in range(200):
            redact(record)
        return 200

    return run


def best_ns_per_op(run: Callable[[], int], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        ops = run()
        best = min(best, (time.perf_counter_ns() - start) / ops)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    variants: dict[str, tuple[ModuleType, ModuleType]] = {
        "python": (load_variant("lru_ops", "python"), load_variant("dict_ops", "python"))
    }
    try:
        variants["compiled"] = (load_variant("lru_ops", "compiled"), load_variant("dict_ops", "compiled"))
    except ImportError as exc:
        print(f"compiled modules missing ({exc}); showing the twin only")

    cases: list[tuple[str, Callable[[ModuleType, ModuleType], Callable[[], int]]]] = [
        (
            "limiter decision, fits (prune+fits+add+adjust)",
            lambda lru, _: limiter_decisions(lru, 1200, 10**9),
        ),
        (
            "limiter decision, TPM-bound (scans to expire)",
            lambda lru, _: limiter_decisions(lru, 1200, 2_000_000),
        ),
        ("LRUCache get, put on miss (4096 of 16k keys)", lambda lru, _: lru_mix(lru)),
        ("redact access-log record (~5 KB body)", lambda _, dct: redact_record(dct)),
    ]
    print(f"{'case':<50} {'python ns/op':>13} {'compiled ns/op':>15} {'speed-up':>9}")
    for label, make in cases:
        figures = {name: best_ns_per_op(make(*mods), args.repeat) for name, mods in variants.items()}
        py, comp = figures["python"], figures.get("compiled")
        comp_text = f"{comp:15.0f}" if comp is not None else f"{'-':>15}"
        ratio = f"{py / comp:8.1f}x" if comp else f"{'-':>9}"
        print(f"{label:<50} {py:13.0f} {comp_text} {ratio}")


if __name__ == "__main__":
    main()
