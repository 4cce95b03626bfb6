"""Time `translate_request` on a Claude-Code-sized request (target: under 1 ms).

Run from the repository root: `PYTHONPATH=. python bench/bench_translate_request.py [iterations]`.
Translation never mutates its input, so the same body is reused for every iteration.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

# Run as a script from anywhere: the repository root holds `tests.fixtures` and `tests.support`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ccproxy_asgi import jsonutil
from ccproxy_asgi.translate.options import TranslationOptions, default_profile
from ccproxy_asgi.translate.request import translate_request
from tests.fixtures.claude_code_request import build_claude_code_request


def _time(label: str, body: dict[str, object], upstream_model: str, iterations: int) -> None:
    profile = default_profile(upstream_model)
    options = TranslationOptions()
    for _ in range(min(200, iterations)):
        translate_request(body, upstream_model=upstream_model, profile=profile, options=options)
    samples = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        translate_request(body, upstream_model=upstream_model, profile=profile, options=options)
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    p99 = samples[int(len(samples) * 0.99) - 1]
    print(
        f"{label:<34} mean {statistics.fmean(samples):8.1f} µs   median {statistics.median(samples):8.1f} µs"
        f"   p99 {p99:8.1f} µs   (n={iterations})"
    )


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    body = build_claude_code_request()
    size = len(jsonutil.dumps(body))
    print(
        f"request: {size / 1024:.1f} KiB JSON, {len(body['messages'])} messages, {len(body['tools'])} tools"
    )
    _time("gpt-5 (reasoning)", body, "gpt-5", iterations)
    _time("gpt-4o", body, "gpt-4o", iterations)
    _time("self-hosted (qwen3-coder)", body, "qwen3-coder", iterations)
    start = time.perf_counter_ns()
    for _ in range(200):
        jsonutil.loads(jsonutil.dumps(body))
    print(f"{'(reference) orjson loads+dumps':<34} mean {(time.perf_counter_ns() - start) / 200_000:8.1f} µs")


if __name__ == "__main__":
    main()
