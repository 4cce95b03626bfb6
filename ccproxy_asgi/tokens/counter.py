"""Input tokens of an Anthropic Messages request, as the OpenAI-compatible upstream will see them.

`count_tokens` answers and the token rate limiter both need this number, and Claude Code's
auto-compaction is driven by it, so it errs on the side of counting too much: a proxy that counts tools
as zero undercounts a Claude Code request by about 40 %.

Counting rules (tokens come from `encoding_for_model(upstream_model)`; constants in `tokens.rules`):

- 3 tokens prime the reply.
- Every message costs 4 tokens of framing (3 of chat format plus the role) and its content; a string
  content is one text. A non-empty system prompt is one such message; its text blocks are joined with
  one separator token each.
- text: its text. image: `image_tokens` (default 1600) whatever the source; images are not decoded.
- document: title and context texts, plus: base64 PDF → pages * `pdf_page_tokens` (default 2000), pages
  found by a cheap scan of the file or, failing that, decoded bytes / `pdf_bytes_per_page` (8000),
  at least one; text source → its text; content source → its string or blocks; URL or file id →
  `document_tokens` (4000).
- tool_use: its name, the compact JSON of its `input`, and 3 tokens of call framing. The tool-use id
  is not counted (OpenAI chat templates do not render call ids).
- tool_result: becomes an OpenAI `tool` message: 4 tokens of framing, its `tool_use_id` (the message's
  `tool_call_id`), and its content (a string, or blocks counted by these same rules).
- thinking: nothing by default (the translation drops it and Anthropic ignores earlier turns'
  thinking); its text when `CountingRules.count_thinking`. redacted_thinking: nothing, ever.
- mid_conv_system: 4 tokens of framing and its content.
- Server-tool blocks (server_tool_use, web_search_tool_result, container_upload, ...) and search_result,
  also inside a tool result with tool_reference: the compact JSON of the block without `cache_control`.
- tools: 12 tokens of preamble when any tool is offered, then per tool 8 tokens plus the compact
  JSON of its definition without `cache_control` (name, description, input_schema, ...). That is
  somewhat more than OpenAI's TypeScript-like rendering of the same schema: on the safe side.
- tool_choice of type `tool`: the tool's name. thinking: nothing (it only sets reasoning effort).
  output_config.format, or the beta's top-level output_format: its JSON (it becomes `response_format`).
- The total is multiplied by `CountingRules.scale` (default 1) and rounded up.

Shapes. The request is read with `translate.fields`, the readers the translation uses, so a malformed
request raises the `InvalidRequestError` that `/v1/messages` answers with, word for word. Rules across
fields (tool_use / tool_result pairing, unique names, at least one message) are the translation's alone.

Without a local tiktoken encoding, every text is estimated at its UTF-8 bytes / 4, rounded up; fixed
costs are unchanged. Nothing is ever downloaded.

Cache. Claude Code resends the same system prompt and tools every turn, plus a message list that only
grows, so the count of each top-level unit (system, each tool, each message, tool_choice,
output_config, output_format) is cached in a bounded LRU under (encoding name, unit kind, length and hash of the
unit's compact JSON). Only a unit that counted without error is stored, so a hit also stands for a
passed shape check. On a unit miss, texts of 256 characters and more and every PDF are cached too,
under their own length and hash: a message that changed only its `cache_control` (Claude Code moves
that marker every turn) costs a walk, not a re-tokenization. The hash is Python's keyed SipHash
(64 bits, random key per process, plus the length); if `PYTHONHASHSEED` fixes the key, SHA-1 is used
instead so that clients cannot aim for collisions. A body of more units than `max_cached_units` (default
16384, four times the cache) is counted without it: its entries would only evict each other.

Event loop. Keying costs 0.3-1 ns per byte (serialize + hash) while tokenizing costs 40-70 ns per
byte (cl100k, measured by `bench/bench_count_tokens.py`), so `acount_request` keys, looks up and
walks inline, and tokenizes inline only when the texts left to tokenize total at most
`offload_threshold_bytes` (default 16 KiB, about 1 ms of tiktoken, against about 130 us for a
round trip through a worker thread); above that the tokenizing runs in a worker thread, and so does
everything when the body is past `inline_key_bytes` (default 4 MiB, e.g. base64 images) or has more
than `inline_units` top-level units (default 2048 messages and tools: each costs a few microseconds
however small, so 850k one-word messages would hold the loop for seconds). Cache reads and writes are
batched under a lock, so counts may also run in several threads at once.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio.to_thread

from ccproxy_asgi._cython import lru_ops
from ccproxy_asgi.errors import InvalidRequestError
from ccproxy_asgi.tokens.count_steps import Job, count_uncached
from ccproxy_asgi.tokens.encoding import encoding_for_model
from ccproxy_asgi.tokens.rules import CountingRules

logger = logging.getLogger(__name__)

# The cache-key "encoding" of counts made without a tokenizer.
ESTIMATE_ENCODING = "utf8-bytes/4"


class Tokenizer(Protocol):
    """What the counter needs of a tiktoken `Encoding`."""

    @property
    def name(self) -> str: ...

    def encode_ordinary(self, text: str) -> list[int]: ...


class TokenCounterProtocol(Protocol):
    """Counts the input tokens of an Anthropic Messages request for an upstream model."""

    def count_request(self, body: Mapping[str, Any], *, model: str) -> int: ...


class AsyncTokenCounterProtocol(TokenCounterProtocol, Protocol):
    """A counter that can also be awaited without blocking the event loop on large cold counts."""

    async def acount_request(self, body: Mapping[str, Any], *, model: str) -> int: ...


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Lookups of the count cache (units and cached texts together) since creation or the last clear."""

    hits: int
    misses: int
    size: int
    maxsize: int


class TokenCounter:
    """Counts Anthropic request bodies with a per-unit LRU cache; see the module docstring for rules.

    `cache_size`: entries of the LRU. `offload_threshold_bytes`: characters left to tokenize above
    which `acount_request` tokenizes in a worker thread. `inline_key_bytes`: body bytes above which
    `acount_request` does all the work in a worker thread; `inline_units`: the same for the number of
    messages and tools. `max_cached_units`: a body with more messages and tools than this is counted
    without the cache (see `count_steps.count_uncached`). `tokenizer_for`: model -> tokenizer or None (default
    `encoding_for_model`, which never downloads).
    """

    def __init__(
        self,
        *,
        rules: CountingRules | None = None,
        cache_size: int = 4096,
        offload_threshold_bytes: int = 16 * 1024,
        inline_key_bytes: int = 4 * 1024 * 1024,
        inline_units: int = 2048,
        max_cached_units: int = 16384,
        tokenizer_for: Callable[[str], Tokenizer | None] | None = None,
    ) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self._rules = rules if rules is not None else CountingRules()
        self._cache: lru_ops.LRUCache[Hashable, int] = lru_ops.LRUCache(cache_size)
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._offload_threshold = offload_threshold_bytes
        self._inline_key_bytes = inline_key_bytes
        self._inline_units = inline_units
        self._max_cached_units = max_cached_units
        self._tokenizer_for = tokenizer_for

    @property
    def rules(self) -> CountingRules:
        return self._rules

    def cache_stats(self) -> CacheStats:
        """Hits, misses and occupancy of the count cache."""
        with self._lock:
            cache = self._cache
            return CacheStats(cache.hits, cache.misses, len(cache), self._cache_size)

    def clear_cache(self) -> None:
        """Forget every cached count (and reset the hit and miss counters)."""
        with self._lock:
            self._cache.clear()

    def count_request(self, body: Mapping[str, Any], *, model: str) -> int:
        """Input tokens of `body` (an Anthropic Messages or count_tokens request) for the upstream
        `model`. Raises only `InvalidRequestError`, naming the field, when the body is malformed."""
        return self._count(body, self._tokenizer(model))

    async def acount_request(
        self, body: Mapping[str, Any], *, model: str, body_bytes: int | None = None
    ) -> int:
        """`count_request` for async callers: inline when the work is small (typically all cached),
        in a worker thread when it is not. `body_bytes`, the raw body length if known, sends a huge
        body to the thread before any work is done inline, and so do many messages and tools."""
        huge = body_bytes is not None and body_bytes > self._inline_key_bytes
        if huge or _unit_count(body) > self._inline_units:
            # The tokenizer too is resolved there: its first load reads a BPE file (0.1 s and more).
            return await anyio.to_thread.run_sync(functools.partial(self.count_request, body, model=model))
        tokenizer = self._tokenizer(model)
        job = self._new_job(body, tokenizer)
        if not job.key_units(self._inline_key_bytes):
            return await anyio.to_thread.run_sync(self._finish_keying, job, tokenizer)
        self._look_up_units(job)
        if job.miss_bytes > self._inline_key_bytes:
            return await anyio.to_thread.run_sync(self._count_misses, job, tokenizer)
        self._walk_misses(job, tokenizer)
        if job.pending_size > self._offload_threshold:
            encode = tokenizer.encode_ordinary if tokenizer is not None else None
            await anyio.to_thread.run_sync(functools.partial(job.measure, encode, self._rules))
        return self._store(job, tokenizer)

    def _tokenizer(self, model: str) -> Tokenizer | None:
        if not isinstance(model, str):
            raise InvalidRequestError("model: Input should be a valid string")
        # Looked up at call time so that tests can substitute `encoding_for_model`.
        resolve = self._tokenizer_for or encoding_for_model
        try:
            return resolve(model)
        except Exception:  # a broken custom resolver degrades to the estimate, never to a 500
            logger.warning("no tokenizer for model %r; token counts are estimates", model, exc_info=True)
            return None

    def _count(self, body: Mapping[str, Any], tokenizer: Tokenizer | None) -> int:
        if _unit_count(body) > self._max_cached_units:
            encode = tokenizer.encode_ordinary if tokenizer is not None else None
            return self._scaled(count_uncached(body, encode, self._rules))
        job = self._new_job(body, tokenizer)
        job.key_units()
        return self._count_keyed(job, tokenizer)

    def _new_job(self, body: Mapping[str, Any], tokenizer: Tokenizer | None) -> Job:
        return Job(body, tokenizer.name if tokenizer is not None else ESTIMATE_ENCODING)

    def _finish_keying(self, job: Job, tokenizer: Tokenizer | None) -> int:
        job.key_units()
        return self._count_keyed(job, tokenizer)

    def _count_keyed(self, job: Job, tokenizer: Tokenizer | None) -> int:
        self._look_up_units(job)
        return self._count_misses(job, tokenizer)

    def _count_misses(self, job: Job, tokenizer: Tokenizer | None) -> int:
        self._walk_misses(job, tokenizer)
        return self._store(job, tokenizer)

    def _look_up_units(self, job: Job) -> None:
        get = self._cache.get
        total = 0
        with self._lock:
            for index, key in enumerate(job.keys):
                tokens = get(key)
                if tokens is None:
                    job.note_miss(index)
                else:
                    total += tokens
        job.total += total

    def _walk_misses(self, job: Job, tokenizer: Tokenizer | None) -> None:
        """Check and tally the missed units and resolve their long texts and PDFs from the cache."""
        if not job.misses:
            return
        job.walk_misses(self._rules, exact=tokenizer is not None)
        get = self._cache.get
        with self._lock:
            found = [get(key) for key in job.piece_keys]
        for key, (miss, text, is_pdf), tokens in zip(job.piece_keys, job.piece_refs, found, strict=True):
            if tokens is None:
                job.add_pending(miss, key, text, is_pdf)
            else:
                job.miss_tokens[miss] += tokens

    def _store(self, job: Job, tokenizer: Tokenizer | None) -> int:
        """Measure what is still pending, cache the new counts, and return the scaled total."""
        if job.pending:
            job.measure(tokenizer.encode_ordinary if tokenizer is not None else None, self._rules)
        if job.misses:
            put = self._cache.put
            with self._lock:
                for key, tokens in job.results:
                    put(key, tokens)
                for index, tokens in zip(job.misses, job.miss_tokens, strict=True):
                    put(job.keys[index], tokens)
        return self._scaled(job.total + sum(job.miss_tokens))

    def _scaled(self, total: int) -> int:
        scale = self._rules.scale
        return total if scale == 1.0 else math.ceil(total * scale)


def _unit_count(body: Any) -> int:
    """Messages and tools of a body, the top-level units that dominate the work; 0 if it is malformed
    (the count then fails inline, quickly)."""
    if not isinstance(body, Mapping):
        return 0
    return sum(len(part) for part in (body.get("messages"), body.get("tools")) if isinstance(part, list))


__all__ = [
    "ESTIMATE_ENCODING",
    "AsyncTokenCounterProtocol",
    "CacheStats",
    "CountingRules",
    "TokenCounter",
    "TokenCounterProtocol",
    "Tokenizer",
]
