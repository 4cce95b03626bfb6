"""Prompt-token counting of an OpenAI Chat Completions request, the way OpenAI bills chat messages.

The rule follows OpenAI's cookbook (`num_tokens_from_messages`) and extends it where the cookbook is
silent:

- every message costs 3 tokens of framing, plus the tokens of each of its string fields (`role`,
  `content`, `tool_call_id`, `refusal`, …); a `name` field costs 1 token more;
- `content` given as parts: each text part counts its text; each image part costs `IMAGE_TOKENS`
  (OpenAI's fixed low-detail price); any other non-text part (audio, file) costs `FILE_TOKENS`;
- an assistant message's `tool_calls`: each call counts its function name and its arguments string;
- 3 tokens prime the reply (`<|start|>assistant<|message|>`);
- tools: each offered tool counts the tokens of the compact JSON of its `function` object (name,
  description, parameters) — OpenAI renders tools into a hidden system preamble of similar size, so
  this is an estimate of the same order, not OpenAI's exact figure.

The encoding comes from `encoding_for_model`, which never downloads; when none is available, every
string is estimated at one token per 4 characters (rounded up).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ccproxy_asgi import jsonutil
from ccproxy_asgi.tokens.encoding import encoding_for_model

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
IMAGE_TOKENS = 85
FILE_TOKENS = 85
# System prompts and tool definitions repeat verbatim across the requests of a conversation; hashing a
# long string is far cheaper than tokenizing it again.
_CACHE_MIN_CHARS = 512
_CACHE_ENTRIES = 256

# Fields whose value is structured and handled explicitly, or metadata that never reaches the model.
_SKIPPED_FIELDS = frozenset({"content", "tool_calls", "name", "function_call", "audio", "cache_control"})


class ChatTokenCounter:
    """Counts tokens of chat requests for one model (its tiktoken encoding, or the 4-chars estimate)."""

    __slots__ = ("_cache", "_encode", "_encoding")

    def __init__(self, model: str) -> None:
        self._cache: dict[str, int] = {}
        self._encoding = encoding_for_model(model)
        # encode_ordinary: user text may contain "<|endoftext|>", which `encode` refuses by default.
        self._encode = self._encoding.encode_ordinary if self._encoding is not None else None

    @property
    def exact(self) -> bool:
        """True when a real tokenizer is used, False when counts are the length/4 estimate."""
        return self._encode is not None

    def text(self, text: str) -> int:
        """Tokens of one string."""
        if not text:
            return 0
        if self._encode is None:
            return (len(text) + 3) // 4
        if len(text) < _CACHE_MIN_CHARS:
            return len(self._encode(text))
        count = self._cache.get(text)
        if count is None:
            if len(self._cache) >= _CACHE_ENTRIES:
                self._cache.clear()  # crude but bounded; the working set is a few prompts and tool lists
            count = self._cache[text] = len(self._encode(text))
        return count

    def head(self, text: str, limit: int) -> tuple[str, int]:
        """The longest prefix of `text` that fits in `limit` tokens, and its token count."""
        if limit <= 0 or not text:
            return "", 0
        if self._encoding is None:
            prefix = text[: limit * 4]
            return prefix, self.text(prefix)
        tokens = self._encoding.encode_ordinary(text)
        if len(tokens) <= limit:
            return text, len(tokens)
        # decode may end in a replacement character when the cut splits a multi-byte character;
        # a real model cut by max_tokens shows the same artefact.
        return str(self._encoding.decode(tokens[:limit])), limit

    def content(self, content: Any) -> int:
        """Tokens of a message `content`: a string, a list of parts, or null."""
        if isinstance(content, str):
            return self.text(content)
        if not isinstance(content, list):
            return 0
        total = 0
        for part in content:
            if not isinstance(part, Mapping):
                continue
            kind = part.get("type")
            if kind == "text" or (kind is None and isinstance(part.get("text"), str)):
                total += self.text(str(part.get("text") or ""))
            elif kind == "refusal":
                total += self.text(str(part.get("refusal") or ""))
            elif kind == "image_url":
                total += IMAGE_TOKENS
            else:
                total += FILE_TOKENS
        return total

    def tool_calls(self, tool_calls: Any) -> int:
        """Tokens of an assistant message's `tool_calls` (function names and argument strings)."""
        if not isinstance(tool_calls, list):
            return 0
        total = 0
        for call in tool_calls:
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                total += self.text(str(function.get("name") or ""))
                total += self.text(str(function.get("arguments") or ""))
        return total

    def message(self, message: Mapping[str, Any]) -> int:
        """Tokens of one message including its framing."""
        total = TOKENS_PER_MESSAGE + self.content(message.get("content"))
        total += self.tool_calls(message.get("tool_calls"))
        name = message.get("name")
        if isinstance(name, str):
            total += self.text(name) + TOKENS_PER_NAME
        for key, value in message.items():
            if key not in _SKIPPED_FIELDS and isinstance(value, str):
                total += self.text(value)
        return total

    def messages(self, messages: Iterable[Mapping[str, Any]]) -> int:
        """Tokens of a message list, including the reply priming."""
        return REPLY_PRIMING_TOKENS + sum(self.message(m) for m in messages if isinstance(m, Mapping))

    def tools(self, tools: Any) -> int:
        """Tokens of the offered tools: the compact JSON of each function definition."""
        if not isinstance(tools, list):
            return 0
        total = 0
        for tool in tools:
            if isinstance(tool, Mapping):
                definition = tool.get("function", tool)
                total += self.text(jsonutil.dumps_str(definition))
        return total

    def request(self, body: Mapping[str, Any]) -> int:
        """Prompt tokens of a whole chat request body (messages and tools)."""
        messages = body.get("messages")
        counted = self.messages(messages) if isinstance(messages, list) else 0
        return counted + self.tools(body.get("tools"))


def count_chat_prompt_tokens(body: Mapping[str, Any], model: str | None = None) -> int:
    """Prompt tokens of an OpenAI chat request body, for `model` (default: the body's own `model`)."""
    return ChatTokenCounter(model or str(body.get("model") or "")).request(body)


def count_text_tokens(text: str, model: str) -> int:
    """Tokens of one string for `model` (used for completion tokens)."""
    return ChatTokenCounter(model).text(text)


__all__ = [
    "FILE_TOKENS",
    "IMAGE_TOKENS",
    "REPLY_PRIMING_TOKENS",
    "TOKENS_PER_MESSAGE",
    "TOKENS_PER_NAME",
    "ChatTokenCounter",
    "count_chat_prompt_tokens",
    "count_text_tokens",
]
