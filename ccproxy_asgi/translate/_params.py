"""Top-level request fields: sampling, stop sequences, thinking/effort, response_format, user id, system."""

from __future__ import annotations

import hashlib
from typing import Any

from ccproxy_asgi import jsonutil
from ccproxy_asgi.translate._validate import _bad, _bad_tag, _check_nesting, _fail, _join, _text_blocks
from ccproxy_asgi.translate.options import Effort, ModelProfile, TranslationOptions
from ccproxy_asgi.translate.tools import TranslatedTools, strict_compatible

_ANTHROPIC_EFFORTS = ("low", "medium", "high", "xhigh", "max")
_THINKING_TAGS = "'enabled', 'disabled', 'adaptive', 'between_tools'"


# --- top-level fields ----------------------------------------------------------------------------------


def _int_field(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(f"{key}: Input should be a valid integer")
    return value


def _number_field(body: dict[str, Any], key: str) -> float | int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(f"{key}: Input should be a valid number")
    return value


def _object_field(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None or isinstance(value, dict):
        return value
    _fail(f"{key}: Input should be a valid dictionary or object")


def _stop_sequences(body: dict[str, Any]) -> tuple[str, ...]:
    value = body.get("stop_sequences")
    if value is None:
        return ()
    if not isinstance(value, list):
        _fail("stop_sequences: Input should be a valid list")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            _fail(f"stop_sequences.{i}: Input should be a valid string")
        if not item:
            _fail(f"stop_sequences.{i}: String should have at least 1 character")
    return tuple(dict.fromkeys(value))


def _requested_effort(
    body: dict[str, Any], profile: ModelProfile, options: TranslationOptions
) -> Effort | None:
    output_config = _object_field(body, "output_config") or {}
    effort: Effort | None = output_config.get("effort")
    if effort is not None and effort not in _ANTHROPIC_EFFORTS:
        _fail("output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")
    thinking = _object_field(body, "thinking")
    if thinking is None:
        return effort
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int):
            _bad("thinking.enabled.budget_tokens", budget, "a valid integer")
        # An explicit effort says what the client wants more directly than a token budget does.
        return effort or options.effort_thresholds.effort_for_budget(budget)
    if kind in ("adaptive", "between_tools"):
        return effort or options.adaptive_effort
    if kind == "disabled":
        # "none" only where the model can switch reasoning off; else the upstream's default applies.
        return "none" if "none" in profile.efforts else None
    if kind is None:
        _fail("thinking: Unable to extract tag using discriminator 'type'")
    _bad_tag("thinking", kind, _THINKING_TAGS)


def _response_format(body: dict[str, Any], options: TranslationOptions) -> dict[str, Any] | None:
    output_config = body.get("output_config")
    fmt = output_config.get("format") if isinstance(output_config, dict) else None
    path = "output_config.format"
    if fmt is None:
        # The structured-outputs beta used a top-level `output_format` before `output_config` existed.
        fmt, path = body.get("output_format"), "output_format"
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        _fail(f"{path}: Input should be a valid dictionary or object")
    if fmt.get("type") != "json_schema":
        _fail(f"{path}.type: Input should be 'json_schema'")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        _bad(f"{path}.schema", schema, "a valid dictionary")
    _check_nesting(schema, f"{path}.schema")
    strict = strict_compatible(schema)
    return {
        "type": "json_schema",
        "json_schema": {"name": options.response_format_name, "schema": schema, "strict": strict},
    }


def _user_field(body: dict[str, Any]) -> str | None:
    metadata = _object_field(body, "metadata")
    if metadata is None:
        return None
    user_id = metadata.get("user_id")
    if user_id is None or user_id == "":
        return None
    if not isinstance(user_id, str):
        _fail("metadata.user_id: Input should be a valid string")
    if len(user_id) <= 64:
        return user_id
    # OpenAI takes at most 64 characters. Claude Code sends a JSON document whose `session_id` changes
    # every session: only the parts that identify the user (device, account) go into the hash, so it
    # stays stable per user, which is all the field is for.
    identity = user_id
    if user_id.startswith("{"):
        try:
            parsed = jsonutil.loads(user_id)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and ("device_id" in parsed or "account_uuid" in parsed):
            identity = f"{parsed.get('account_uuid') or ''}|{parsed.get('device_id') or ''}"
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()


# Claude Code opens its system prompt with an Anthropic billing line whose suffix changes with every
# conversation; it means nothing to another provider and would defeat the upstream's prefix caching.
_BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"


def _system_text(body: dict[str, Any], tools: TranslatedTools) -> str:
    system = body.get("system")
    blocks = _text_blocks(system, "system") if system is not None else []
    text = _join([block for block in blocks if not block.startswith(_BILLING_HEADER_PREFIX)])
    if tools.long_descriptions:
        sections = [f"## Tool {name}\n{description}" for name, description in tools.long_descriptions]
        appendix = (
            "# Full tool descriptions\nThese tools' descriptions were shortened in the tool list; "
            "here they are in full.\n\n" + "\n\n".join(sections)
        )
        text = _join([text, appendix])
    return text
