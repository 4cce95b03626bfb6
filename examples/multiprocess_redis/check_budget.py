"""Send N requests at once, each on a new connection (so the server spreads them over its workers), and
count the answers. Against run.sh with CCPROXY_RATE_LIMIT_RPM=5 and CCPROXY_RATE_LIMIT_MAX_WAIT_SECONDS=0,
12 requests give five 200s and seven 429s however many workers there are: the budget is shared. With
CCPROXY_STATE_BACKEND=memory each worker would admit five.

    .venv/bin/python examples/multiprocess_redis/check_budget.py [URL] [N]
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter

import httpx

MESSAGE = {
    "model": "claude-haiku-4-5",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Say ok."}],
}


async def one(url: str) -> int:
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:  # a new connection each time
        response = await client.post("/v1/messages", json=MESSAGE, headers={"x-api-key": "demo"})
        return response.status_code


async def main(url: str, count: int) -> Counter[int]:
    return Counter(await asyncio.gather(*(one(url) for _ in range(count))))


if __name__ == "__main__":
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8082"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    statuses = asyncio.run(main(base, n))
    print("statuses:", json.dumps({str(code): statuses[code] for code in sorted(statuses)}))
