"""Tests that kill mutmut mutants of steproute/capabilities.py (see docs/architecture.md, "Mutation testing").

The input tokens are worked out with LiteLLM's own counter on the text the docstrings name: the
messages' text (content parts and tool-call arguments, joined by newlines), 4 tokens a message,
3 for the reply, 85 an image; past ``COUNT_CHARS`` characters, 8 slices of 2,048 characters
spread evenly (the first and the last among them), scaled to the text's bytes (rounded up) and
never below its bytes / 5.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from steproute._litellm import litellm
from steproute.capabilities import (
    CapabilityError,
    CapabilityFilter,
    Facts,
    Needs,
    facts_of,
    missing,
    needs_of,
    phrase,
    tokens_of,
)
from steproute.config import DeploymentConfig


def tokens(text: str) -> int:
    return int(litellm().token_counter(text=text, count_response_tokens=True))


def test_a_capability_error_says_what_fixed_the_tier_only_when_something_did():
    assert str(CapabilityError("describe", "vision", ("fast",), "needs vision")) == (
        "step 'describe' needs vision: no deployment of the tiers it may use ('fast') has it")
    assert str(CapabilityError("describe", "vision", ("fast",), "needs vision", fixed=True)) == (
        "step 'describe' needs vision: no deployment of the tiers it may use ('fast') has it "
        "(its tier is fixed by a hint or a guard)")
    assert str(CapabilityError("describe", "vision", ("fast",), "needs vision", fixed="the PII guard")).endswith(
        "(its tier is fixed by the PII guard)")


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}


def test_the_input_tokens_are_the_texts_count_plus_each_message_the_reply_and_each_image():
    messages = [{"role": "user", "content": [{"type": "text", "text": "hello"}, IMAGE, "a bare string",
                                             {"type": "text", "text": 5}, {"type": "text", "text": "world"}]},
                {"role": "assistant", "content": "ok"}]
    assert needs_of(messages, {}).input_tokens() == tokens("hello\nworld\nok") + 4 * 2 + 3 + 85


def test_tool_calls_arguments_and_a_legacy_function_call_are_counted_with_the_text():
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"city": "Paris"}'}},
             {"id": "c2", "type": "function", "function": {"name": "f", "arguments": '{"city": "Lyon"}'}}]
    messages = [{"role": "assistant", "content": None, "tool_calls": calls},
                {"role": "assistant", "content": None, "function_call": {"name": "g", "arguments": '{"day": 1}'}},
                {"role": "assistant", "content": "done", "tool_calls": 5},  # calls that are no list: none
                {"role": "user", "content": "thanks"}]
    expected = tokens('\n{"city": "Paris"}\n{"city": "Lyon"}\n\n{"day": 1}\ndone\nthanks') + 4 * 4 + 3
    assert needs_of(messages, {}).input_tokens() == expected


def test_the_tools_schemas_are_counted_after_the_messages():
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    needs = needs_of([{"role": "user", "content": "hi"}], {"tools": tools})
    assert needs.input_tokens() == tokens("hi\n" + json.dumps(tools)) + 4 + 3


def long_needs(text: str) -> tuple[int, int]:
    """``text`` as one message: its input tokens, and its bytes."""
    return needs_of([{"role": "user", "content": text}], {}).input_tokens(), len(text.encode())


def test_a_text_of_count_chars_is_counted_whole():
    text = " " * 16_384  # exactly COUNT_CHARS characters, 128 tokens: an estimate would say 16,384 / 5
    assert long_needs(text)[0] == tokens(text) + 4 + 3 == 128 + 7


def test_a_long_text_is_estimated_from_eight_slices_first_and_last_among_them_rounded_up():
    body = "abc" * 7_000  # 23,048 characters in all: slices of 2,048 every 3,000, the first seven alike
    tail = "Ω" * 2_048  # the last slice: two bytes a character
    text = body + tail
    sample = body[:2_048] * 7 + tail
    counted, size = long_needs(text)
    assert counted == -(-tokens(sample) * size // len(sample.encode())) + 4 + 3
    needs = needs_of([{"role": "user", "content": text}], {})
    assert phrase("window", needs) == f"needs a context window of at least {needs.bound // 8:,} tokens"
    needs.input_tokens()
    assert phrase("window", needs) == f"needs a context window of about {counted:,} tokens"


def test_a_long_text_of_few_tokens_counts_at_least_a_token_for_five_bytes():
    text = " " * 30_001  # 128 tokens a sample: far below 6,000
    counted, size = long_needs(text)
    assert counted == size // 5 + 4 + 3 and isinstance(counted, int)
    needs = needs_of([{"role": "user", "content": text}], {"max_tokens": 10})
    needs.input_tokens()
    assert phrase("window", needs) == f"needs a context window of about {size // 5 + 7 + 10:,} tokens"


def test_the_estimate_before_counting_is_the_cheap_bound_over_8_plus_max_tokens():
    needs = needs_of([{"role": "user", "content": "x" * 21}], {"max_tokens": 100})  # bound 28: 3 tokens
    assert needs.estimate() == 103
    assert phrase("window", needs) == "needs a context window of at least 103 tokens"


@pytest.mark.parametrize(("params", "said"), [
    ({"max_tokens": 5000}, "needs max_tokens 5000 (above max_output_tokens)"),
    ({}, "needs max_tokens of its deployment (above max_output_tokens)"),
])
def test_the_output_phrase_names_the_max_tokens_asked(params, said):
    assert phrase("output", needs_of([], params)) == said


def test_each_capability_phrase():
    needs = needs_of([], {})
    assert [phrase(c, needs) for c in ("vision", "audio", "tools", "response_schema")] == [
        "needs vision", "needs audio input", "needs function calling", "needs a JSON-schema response format"]


def test_a_json_tier_has_tools_and_schemas_by_emulation_only():
    lacking = Facts(vision=False, audio=False, tools=False, response_schema=False, known=True)
    f = CapabilityFilter({"json": [lacking], "plain": [lacking]}, ("json",))
    assert (f.tiers_having("tools"), f.tiers_having("response_schema")) == (("json",), ("json",))
    assert (f.tiers_having("vision"), f.tiers_having("audio")) == ((), ())


def test_fits_decides_by_the_cheap_bounds_when_they_can_and_counts_only_between_them():
    def needs():
        return needs_of([{"role": "user", "content": "x" * 96}], {"max_tokens": 10})  # bound 103: 12 to 103 tokens

    n = needs().input_tokens()
    assert 12 + 7 <= n < 103 - 10
    for window, fits, counted in ((113, True, False), (112, True, True), (22, False, True), (21, False, False),
                                  (n + 10, True, True), (n + 9, False, True)):
        asked = needs()
        assert (asked.fits(window), asked.counted is not None) == (fits, counted), window
    asked = needs()
    assert asked.fits(n, output=0) and not asked.fits(n)


def test_a_limit_is_met_exactly_and_a_deployments_own_max_tokens_counts_in_the_window():
    plain = needs_of([{"role": "user", "content": "x" * 96}], {})  # bound 103: the count decides from 13 to 102
    n = plain.input_tokens()
    assert missing(Facts(max_input_tokens=n, known=True), plain, emulated=False) is None  # no max_tokens: nothing added
    asked = needs_of([], {"max_tokens": 5000})
    assert missing(Facts(max_output_tokens=5000, known=True), asked, emulated=False) is None
    assert missing(Facts(max_output_tokens=4999, known=True), asked, emulated=False) == "output"
    own = Facts(max_input_tokens=n + 999, default_output=1000, known=True)  # its own max_tokens: 1000
    assert missing(own, plain, emulated=False) == "window"
    assert missing(Facts(max_input_tokens=n + 1000, default_output=1000, known=True), plain, emulated=False) is None


def test_the_cheap_bound_never_claims_a_fit_the_count_refuses():
    """The bound counts the reply's 3 tokens as the count does: a short message ("hi": 1 token, 2
    bytes) in a window one token short of its count does not fit."""
    needs = needs_of([{"role": "user", "content": "hi"}], {})
    n = needs_of([{"role": "user", "content": "hi"}], {}).input_tokens()
    assert needs.bound >= n
    assert missing(Facts(max_input_tokens=n - 1, known=True), needs, emulated=False) == "window"
    assert missing(Facts(max_input_tokens=n, known=True), needs, emulated=False) is None


def test_a_call_is_trivial_only_when_its_bound_and_max_tokens_fit_the_smallest_window():
    f = CapabilityFilter({"fast": [Facts(max_input_tokens=500, known=True)], "strong": [Facts(known=True)]}, ())
    hi = [{"role": "user", "content": "hi"}]
    assert f.trivial(needs_of(hi, {"max_tokens": 100}))
    assert not f.trivial(needs_of(hi, {"max_tokens": 1000}))
    exact = needs_of(hi, {"max_tokens": 100})
    assert CapabilityFilter({"fast": [Facts(max_input_tokens=exact.bound + 100, known=True)]}, ()).trivial(exact)
    assert CapabilityFilter({"fast": [Facts(max_output_tokens=100, known=True)]}, ()).trivial(exact)


def test_needs_built_by_hand_count_no_tools_unless_given():
    messages = [{"role": "user", "content": "hello"}]
    needs = Needs(messages, False, False, False, False, 0, 100, 0)
    assert needs.input_tokens() == tokens("hello") + 4 + 3


def test_tools_that_are_not_plain_json_are_sized_as_sent_and_unsizable_ones_as_nothing():
    hi = [{"role": "user", "content": "hi"}]
    dated = [{"type": "function", "function": {"name": "f", "parameters": {"default": datetime(2026, 1, 1)}}}]
    assert needs_of(hi, {"tools": dated}).bound == 3 + 4 + 2 + len(json.dumps(dated, default=str))
    circular: list[object] = []
    circular.append(circular)
    assert needs_of(hi, {"tools": circular}).bound == 3 + 4 + 2


def test_a_plain_call_needs_neither_vision_nor_audio():
    needs = needs_of([{"role": "user", "content": "hi"}], {})
    assert needs.vision is False and needs.audio is False


def test_a_legacy_function_calls_arguments_are_in_the_bound():
    legacy = {"role": "assistant", "content": None, "function_call": {"name": "g", "arguments": '{"day": 1}'}}
    assert needs_of([legacy], {}).bound == 3 + 4 + len('{"day": 1}')


def test_the_bound_adds_every_messages_bytes_arguments_and_images():
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"city": "Paris"}'}}
    messages = [{"role": "assistant", "content": "x", "tool_calls": [call]},
                {"role": "user", "content": ["bare", {"type": "text", "text": "ab"}, IMAGE, IMAGE,
                                             {"type": "text", "text": "cdé"}]}]
    needs = needs_of(messages, {})
    assert needs.bound == 3 + (4 + len('{"city": "Paris"}') + 1) + (4 + 2 + 4 + 2 * 85)
    assert needs.images == 2 and needs.vision is True


def test_a_mapped_limit_of_0_is_no_limit_and_one_of_1_is_one():
    assert facts_of(DeploymentConfig(model="openai/omni-moderation-latest")).max_output_tokens is None  # mapped as 0
    # a model registered with LiteLLM (a unique name: the registration lasts the process)
    litellm().register_model({"steproute-test/one-token-model": {
        "max_input_tokens": 1, "max_output_tokens": 1, "litellm_provider": "openai", "mode": "chat",
        "input_cost_per_token": 0.0, "output_cost_per_token": 0.0}})
    facts = facts_of(DeploymentConfig(model="steproute-test/one-token-model"))
    assert (facts.max_input_tokens, facts.max_output_tokens, facts.known) == (1, 1, True)


def test_a_model_mapped_with_audio_input_has_audio():
    # registered, not taken from LiteLLM's map: the map's audio models change between releases
    litellm().register_model({"steproute-test/audio-model": {
        "max_input_tokens": 1000, "max_output_tokens": 100, "litellm_provider": "openai", "mode": "chat",
        "input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "supports_audio_input": True}})
    assert facts_of(DeploymentConfig(model="steproute-test/audio-model")).audio is True
    assert facts_of(DeploymentConfig(model="openai/gpt-4o-mini")).audio is False


def test_a_deployments_own_max_completion_tokens_is_its_default_output():
    assert facts_of(DeploymentConfig(model="openai/gpt-4o-mini", max_completion_tokens=700)).default_output == 700
    assert facts_of(DeploymentConfig(model="openai/gpt-4o-mini", max_tokens=500,
                                     max_completion_tokens=700)).default_output == 500


def test_max_tokens_values_are_read_as_whole_tokens_and_anything_else_as_none():
    assert [tokens_of(v) for v in ("8000", " 8000\n", 512, 512.9)] == [8000, 8000, 512, 512]
    # a separator character str.strip removes but int() alone refuses: stripped first
    assert tokens_of("\x1c8000\x1f") == 8000
    assert [tokens_of(v) for v in (None, True, False, "lots", [5], float("inf"), 0, -5, "-5")] == [0] * 9


def test_a_calls_max_completion_tokens_is_its_output_when_max_tokens_is_not_set():
    hi = [{"role": "user", "content": "hi"}]
    assert needs_of(hi, {"max_completion_tokens": 700}).output_tokens == 700
    assert needs_of(hi, {"max_tokens": 500, "max_completion_tokens": 700}).output_tokens == 500
    assert needs_of(hi, {"max_tokens": 0, "max_completion_tokens": "700"}).output_tokens == 700


def test_a_call_with_no_max_tokens_fills_a_window_to_its_last_token_when_no_deployment_sets_one():
    hi = needs_of([{"role": "user", "content": "hi"}], {})
    assert CapabilityFilter({"fast": [Facts(max_input_tokens=hi.bound, known=True)]}, ()).trivial(hi)
    assert not CapabilityFilter({"fast": [Facts(max_input_tokens=hi.bound - 1, known=True)]}, ()).trivial(hi)
    assert CapabilityFilter({"fast": [Facts(max_output_tokens=0, known=True)]}, ()).trivial(hi)


def test_a_filter_of_no_deployments_finds_every_call_trivial():
    assert CapabilityFilter({}, ()).trivial(needs_of([{"role": "user", "content": "hi"}], {"max_tokens": 10}))


def test_only_a_json_tier_leaves_tools_and_schemas_out_of_what_nobody_knows():
    f = CapabilityFilter({"json": [Facts()], "plain": [Facts()]}, ("json",))
    everything = ("vision", "audio", "tools", "response_schema", "max_input_tokens", "max_output_tokens")
    assert f.unknown("plain", 0) == everything
    assert f.unknown("json", 0) == ("vision", "audio", "max_input_tokens", "max_output_tokens")
