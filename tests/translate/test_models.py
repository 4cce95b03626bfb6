"""Model mapping (ccproxy_asgi.translate.models) and per-model profiles (ccproxy_asgi.translate.options)."""

from __future__ import annotations

import dataclasses

import pytest

from ccproxy_asgi.translate.models import ModelMapper
from ccproxy_asgi.translate.options import (
    EffortThresholds,
    ModelProfile,
    ProfileResolver,
    TranslationOptions,
    default_profile,
)

# --- ModelMapper ---------------------------------------------------------------------------------------


def test_family_defaults() -> None:
    mapper = ModelMapper(big_model="gpt-5", small_model="gpt-5-mini")
    assert mapper.resolve("claude-opus-4-5") == "gpt-5"
    assert mapper.resolve("claude-sonnet-4-5-20250929") == "gpt-5"
    assert mapper.resolve("claude-3-5-haiku-latest") == "gpt-5-mini"
    assert mapper.resolve("claude-haiku-4-5") == "gpt-5-mini"
    # Newer family names still go to the big model.
    assert mapper.resolve("claude-fable-5") == "gpt-5"
    assert mapper.resolve("Claude-Sonnet-4") == "gpt-5"


def test_non_claude_names_pass_through() -> None:
    mapper = ModelMapper(big_model="gpt-5", small_model="gpt-5-mini")
    assert mapper.resolve("gpt-4o") == "gpt-4o"
    assert mapper.resolve("qwen3-coder:30b") == "qwen3-coder:30b"
    assert not mapper.is_mapped("gpt-4o")


def test_haiku_falls_back_to_the_big_model_and_unconfigured_families_pass_through() -> None:
    assert ModelMapper(big_model="big").resolve("claude-haiku-4-5") == "big"
    assert ModelMapper().resolve("claude-sonnet-4-5") == "claude-sonnet-4-5"
    assert not ModelMapper().is_mapped("claude-sonnet-4-5")


def test_precedence_exact_then_glob_then_family() -> None:
    mapper = ModelMapper(
        big_model="big",
        small_model="small",
        mapping={
            "claude-sonnet-4-5": "exact-target",
            "claude-sonnet-*": "glob-target",
            "claude-*": "catch-all",
            "*haiku*": "glob-haiku",
        },
    )
    assert mapper.resolve("claude-sonnet-4-5") == "exact-target"
    assert mapper.resolve("claude-sonnet-4-6") == "glob-target"  # first matching glob in order
    assert mapper.resolve("claude-opus-4-5") == "catch-all"
    assert mapper.resolve("claude-haiku-4-5") == "catch-all"  # "claude-*" comes before "*haiku*"
    assert mapper.resolve("my-haiku") == "glob-haiku"
    assert mapper.resolve("other") == "other"


def test_exact_is_case_sensitive_and_globs_are_not() -> None:
    mapper = ModelMapper(mapping={"MyModel": "a", "team-?-model": "b"})
    assert mapper.resolve("MyModel") == "a"
    assert mapper.resolve("mymodel") == "mymodel"
    assert mapper.resolve("TEAM-x-MODEL") == "b"


def test_mapping_can_route_a_non_claude_name() -> None:
    assert ModelMapper(mapping={"gpt-4": "gpt-4o"}).resolve("gpt-4") == "gpt-4o"


def test_advertised_names_without_duplicates() -> None:
    mapper = ModelMapper(
        big_model="gpt-5",
        small_model="gpt-5-mini",
        mapping={"claude-opus-4-5": "gpt-5", "claude-3-*": "gpt-4o"},
        advertise=["claude-sonnet-4-5", "claude-haiku-4-5"],
    )
    assert mapper.advertised() == [
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-opus-4-5",
        "gpt-5",
        "gpt-4o",
        "gpt-5-mini",
    ]
    assert mapper.is_mapped("claude-opus-4-5")
    assert mapper.is_mapped("claude-3-opus")


def test_empty_strings_mean_unset() -> None:
    mapper = ModelMapper(big_model="", small_model="")
    assert mapper.resolve("claude-opus-4-5") == "claude-opus-4-5"
    assert mapper.advertised() == []


# --- default profiles ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["o1", "o3", "o3-mini", "o4-mini", "o3-2025-04-16", "openai/o3", "azure/o4-mini"]
)
def test_o_series_is_reasoning(model: str) -> None:
    profile = default_profile(model)
    assert profile.reasoning
    assert profile.max_tokens_field == "max_completion_tokens"
    assert profile.max_stop_sequences == 0
    assert not profile.forward_top_k
    assert profile.efforts == ("low", "medium", "high")


def test_o1_mini_takes_no_reasoning_effort() -> None:
    assert default_profile("o1-mini").reasoning
    assert default_profile("o1-mini").efforts == ()


@pytest.mark.parametrize(
    "model", ["gpt-5", "gpt-5-mini", "gpt-5-nano-2025-08-07", "gpt-5.1", "gpt-5.2-codex"]
)
def test_gpt5_is_reasoning(model: str) -> None:
    profile = default_profile(model)
    assert profile.reasoning
    assert profile.max_tokens_field == "max_completion_tokens"
    assert profile.max_stop_sequences == 0
    assert profile.max_tool_description_chars is None  # OpenAI lifted its 1024-character limit in 2025


def test_gpt5_effort_sets() -> None:
    assert "minimal" in default_profile("gpt-5").efforts
    assert "none" in default_profile("gpt-5.1").efforts
    assert "minimal" not in default_profile("gpt-5-codex").efforts


def test_gpt5_chat_is_not_reasoning() -> None:
    assert not default_profile("gpt-5-chat-latest").reasoning


@pytest.mark.parametrize(
    "model", ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-nano", "gpt-3.5-turbo", "chatgpt-4o-latest"]
)
def test_openai_chat_models(model: str) -> None:
    profile = default_profile(model)
    assert not profile.reasoning
    assert profile.max_tokens_field == "max_completion_tokens"
    assert not profile.forward_top_k
    assert profile.max_stop_sequences == 4


@pytest.mark.parametrize(
    "model", ["qwen3-coder", "meta-llama/Llama-3.3-70B-Instruct", "deepseek-chat", "my-deployment", "o"]
)
def test_unknown_models_are_treated_as_self_hosted(model: str) -> None:
    profile = default_profile(model)
    assert not profile.reasoning
    assert profile.max_tokens_field == "max_tokens"
    assert profile.forward_top_k
    assert profile.max_tool_description_chars is None


# --- effort clamping -----------------------------------------------------------------------------------


def test_clamp_effort() -> None:
    o_series = ModelProfile(reasoning=True, efforts=("low", "medium", "high"))
    assert o_series.clamp_effort("max") == "high"
    assert o_series.clamp_effort("xhigh") == "high"
    assert o_series.clamp_effort("medium") == "medium"
    assert o_series.clamp_effort("minimal") == "low"  # nothing lower: the lowest supported
    full = ModelProfile(reasoning=True, efforts=("none", "minimal", "low", "medium", "high", "xhigh", "max"))
    assert full.clamp_effort("max") == "max"
    assert ModelProfile(reasoning=True, efforts=()).clamp_effort("high") is None


def test_effort_thresholds() -> None:
    thresholds = EffortThresholds()
    assert [thresholds.effort_for_budget(b) for b in (0, 1023, 1024, 2047, 2048, 4095, 4096, 60000)] == [
        "minimal",
        "minimal",
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
    ]
    custom = EffortThresholds(low=100, medium=200, high=300)
    assert custom.effort_for_budget(250) == "medium"


def test_option_defaults() -> None:
    options = TranslationOptions()
    assert options.server_tools == "reject"
    assert options.adaptive_effort == "medium"
    assert options.user_id_field == "user"
    assert options.effort_thresholds == EffortThresholds(1024, 2048, 4096)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.server_tools = "drop"  # type: ignore[misc]


# --- ProfileResolver -----------------------------------------------------------------------------------


def test_resolver_overrides_by_glob_in_order() -> None:
    special = ModelProfile(reasoning=True, max_tokens_field="max_tokens", reasoning_echo="reasoning_content")
    other = ModelProfile(forward_top_k=False)
    resolve = ProfileResolver(overrides=(("deepseek-r*", special), ("deepseek-*", other)))
    assert resolve("DeepSeek-R1") is special
    assert resolve("deepseek-chat") is other
    assert resolve("gpt-4o") == default_profile("gpt-4o")


def test_resolver_from_settings() -> None:
    resolve = ProfileResolver.from_settings(
        reasoning_globs=["qwq*"], max_tokens_field="auto", forward_top_k=None
    )
    qwq = resolve("qwq-32b")
    assert qwq.reasoning
    assert qwq.max_stop_sequences == 0
    assert not qwq.forward_top_k
    assert qwq.max_tokens_field == "max_tokens"  # still a self-hosted model
    assert resolve("gpt-5") == default_profile("gpt-5")

    forced = ProfileResolver.from_settings(max_tokens_field="max_tokens", forward_top_k=False)
    assert forced("gpt-5").max_tokens_field == "max_tokens"
    assert not forced("llama3").forward_top_k
    assert ProfileResolver.from_settings(forward_top_k=True)("llama3").forward_top_k
    # top_k never goes to a reasoning model, whatever the switch says.
    assert not ProfileResolver.from_settings(forward_top_k=True)("o3").forward_top_k


def test_resolver_from_settings_explicit_overrides_win() -> None:
    pinned = ModelProfile(max_stop_sequences=16)
    resolve = ProfileResolver.from_settings(overrides=[("llama*", pinned)], forward_top_k=False)
    assert resolve("llama3") is pinned
