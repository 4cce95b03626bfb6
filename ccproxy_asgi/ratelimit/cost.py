"""What a Messages request costs before it is sent: prompt tokens counted with tiktoken plus its
`max_tokens` reserved, the way OpenAI charges a request against TPM when it arrives."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from ccproxy_asgi.errors import InvalidRequestError
from ccproxy_asgi.ratelimit.budget import Cost
from ccproxy_asgi.tokens.counter import TokenCounter, TokenCounterProtocol

logger = logging.getLogger("ccproxy_asgi.ratelimit")


class CostEstimator:
    """Prices requests. `counter`: the token counter (share the endpoint's, for its per-block cache; one
    with an `acount_request` coroutine is awaited, so large cold counts leave the event loop);
    `default_max_tokens`: the reserve of a request that names no `max_tokens`."""

    def __init__(
        self, *, counter: TokenCounterProtocol | None = None, default_max_tokens: int = 4096
    ) -> None:
        if default_max_tokens < 0:
            raise ValueError("default_max_tokens must be >= 0")
        self.counter: TokenCounterProtocol = counter if counter is not None else TokenCounter()
        self.default_max_tokens = default_max_tokens

    def reserve(self, body: Mapping[str, Any]) -> int:
        """Output tokens to reserve: the request's `max_tokens`."""
        value = body.get("max_tokens")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        return self.default_max_tokens

    async def prompt_tokens(self, body: Mapping[str, Any], *, model: str, body_bytes: int) -> int:
        """Input tokens of `body` for the upstream `model`. A body the counter cannot read is priced at
        one token per 4 bytes: the endpoint will refuse it, but it never goes through unpriced."""
        counter = self.counter
        try:
            if isinstance(counter, TokenCounter):
                return await counter.acount_request(body, model=model, body_bytes=body_bytes)
            acount = getattr(counter, "acount_request", None)
            if acount is not None:
                return int(await acount(body, model=model))
            return counter.count_request(body, model=model)
        except InvalidRequestError as exc:
            logger.debug("pricing an unreadable request by its size: %s", exc.message)
            return math.ceil(body_bytes / 4)

    async def estimate(self, body: Mapping[str, Any], *, model: str, body_bytes: int) -> Cost:
        prompt = await self.prompt_tokens(body, model=model, body_bytes=body_bytes)
        return Cost(prompt, self.reserve(body))


__all__ = ["CostEstimator"]
