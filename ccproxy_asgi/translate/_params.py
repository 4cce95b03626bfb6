"""Top-level request fields: sampling, stop sequences, thinking/effort, response_format, user id, system."""

from __future__ import annotations

import hashlib
from typing import Any

from ccproxy_asgi import jsonutil
from ccproxy_asgi.translate._content import join_texts
from ccproxy_asgi.translate.fields import (
    output_format_of,
    read_output_config,
    read_output_format,
    read_text_blocks,
    read_thinking,
    read_user_id,
)
from ccproxy_asgi.translate.options import Effort, ModelProfile, TranslationOptions
from ccproxy_asgi.translate.tools import TranslatedTools, strict_compatible

# --- top-level fields ----------------------------------------------------------------------------------


def _requested_effort(
    body: dict[str, Any], profile: ModelProfile, options: TranslationOptions
) -> Effort | None:
    output_config = body.get("output_config")
    effort = read_output_config(output_config)[0] if output_config is not None else None
    thinking = body.get("thinking")
    if thinking is None:
        return effort
    kind, budget = read_thinking(thinking)
    if kind == "enabled":
        assert budget is not None
        # An explicit effort says what the client wants more directly than a token budget does.
        return effort or options.effort_thresholds.effort_for_budget(budget)
    if kind == "disabled":
        # "none" only where the model can switch reasoning off; else the upstream's default applies.
        return "none" if "none" in profile.efforts else None
    return effort or options.adaptive_effort  # adaptive, between_tools


def _response_format(body: dict[str, Any], options: TranslationOptions) -> dict[str, Any] | None:
    value, path = output_format_of(body)
    if value is None:
        return None
    schema = read_output_format(value, path)
    strict = strict_compatible(schema)
    return {
        "type": "json_schema",
        "json_schema": {"name": options.response_format_name, "schema": schema, "strict": strict},
    }


def _user_field(body: dict[str, Any]) -> str | None:
    user_id = read_user_id(body)
    if user_id is None or len(user_id) <= 64:
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
    blocks = read_text_blocks(system, "system") if system is not None else []
    text = join_texts([block for block in blocks if not block.startswith(_BILLING_HEADER_PREFIX)])
    if tools.long_descriptions:
        sections = [f"## Tool {name}\n{description}" for name, description in tools.long_descriptions]
        appendix = (
            "# Full tool descriptions\nThese tools' descriptions were shortened in the tool list; "
            "here they are in full.\n\n" + "\n\n".join(sections)
        )
        text = join_texts([text, appendix])
    return text
