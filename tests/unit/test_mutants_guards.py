"""Tests that kill mutmut mutants of steproute/guards.py (see docs/architecture.md, "Mutation testing").

Detectors at their boundaries (lengths, checksums, windows), and budgets to the cent: what a
store holds after each reservation and settlement, when a guard admits, caps or refuses.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from typing import Any

import pytest
from langgraph.store.memory import InMemoryStore

from steproute import BudgetExceeded, StepRequest
from steproute.guards import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    BaseStoreBudgetStore,
    BudgetGuard,
    BudgetHold,
    InMemoryBudgetStore,
    PiiGuard,
    estimate_cost,
    iban_ok,
    luhn_ok,
    max_output_tokens,
    normalise,
    request_text,
)
from steproute.pricing import Price


def ask(text: str = "hello", **kw: Any) -> StepRequest:
    return StepRequest(kw.pop("step", "s"), [{"role": "user", "content": text}], **kw)


def fired(text: str) -> tuple[str, ...]:
    return PiiGuard("x").detect(ask(text))


# -- checksums and normalising ----------------------------------------------------------------------


@pytest.mark.parametrize(("digits", "ok"), [
    ("4111111111111111", True), ("4111111111111112", False), ("79927398713", True), ("0", True),
    ("18", True), ("59", True), ("91", True), ("26", True), ("5", False), ("50", False),
])
def test_luhn(digits, ok):
    assert luhn_ok(digits) is ok


@pytest.mark.parametrize(("iban", "ok"), [
    ("GB82 WEST 1234 5698 7654 32", True), ("GB82WEST12345698765432", True), ("GB82 WEST 1234 5698 7654 33", False),
    ("NO9386011117947", True),  # 15 characters: the shortest IBAN
    ("NO938601111794", False),  # 14
    ("LC55HEMM000100010012001200023015", True),  # 32
    ("XX00" + "1" * 31, False),  # 35: too long, whatever its checksum
])
def test_iban(iban, ok):
    assert iban_ok(iban) is ok


def _checked(body: str) -> str:
    """``body`` with the mod-97 check digits that make it pass (as 'MTkk' + body)."""
    moved = int("".join(str(int(c, 36)) for c in body + "MT00"))
    return f"MT{98 - moved % 97:02d}{body}"


def test_the_longest_iban_is_34_characters():
    assert iban_ok(_checked("A" * 30)) and len(_checked("A" * 30)) == 34
    assert not iban_ok(_checked("A" * 31))  # 35 characters with a valid checksum: no IBAN
    assert iban_ok(_checked("1" * 11)) and not iban_ok(_checked("1" * 10))  # 15 and 14


def test_normalise():
    assert normalise("plain ascii") == "plain ascii"
    assert normalise("ann\u200b\uff20example.org 4\u200b111") == "ann@example.org 4111"
    assert normalise("a\u00adb\u180ec\u200cd\u200de\u2060f\ufeffg") == "abcdefg"
    assert normalise("caf\u00e9") == "caf\u00e9"


# -- detectors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "found"), [
    ("ann@example.org", ("email",)),
    ("@example.org", ()),  # nothing before the @
    (" @example.org", ()),
    ("ann@localhost", ()),  # no dot in the domain
    ("ann@example.o", ()),  # a one-letter top-level label
    ("ann@example.12", ()),
    ("x@ y@example.org", ("email",)),  # the second @ is checked too
    ("a+b.c_d%e-f@sub.example.co", ("email",)),
    ("ann@" + "a" * 260 + ".org", ()),  # the domain is read 255 characters past the @
])
def test_email_boundaries(text, found):
    assert fired(text) == found


@pytest.mark.parametrize(("text", "found"), [
    ("4111 1111 1111 1111", ("card",)),
    ("4111.1111.1111.1111", ("card",)),
    ("4111/1111/1111/1111", ("card",)),
    ("4222222222222", ("card",)),  # 13 digits
    ("422222222222", ()),  # 12
    ("4111111111111111112", ()),  # 19 digits, fails Luhn
    ("6011000990139424", ("card",)),
])
def test_card_boundaries(text, found):
    assert fired(text) == found


def test_a_19_digit_card_number_is_found():
    base = "411111111111111111"
    number = next(base + str(d) for d in range(10) if luhn_ok(base + str(d)))
    assert fired(f"card {number}") == ("card",)


@pytest.mark.parametrize(("text", "found"), [
    ("call 020 7946 0958", ("phone",)),
    ("call 12 34 56", ()),  # 6 digits: too few
    ("call 123 456 789", ("phone",)),  # 9 digits
    ("call 12 345 678", ()),  # 8
    ("call +49 123 456 789 0123", ("phone",)),  # 15 digits
    ("call 1234 5678 9012 3456", ()),  # 16 digits: too many (and not a card: fails Luhn)
    ("on 2026-11-22", ()), ("on 22/11/2026", ()), ("on 2026.1.2", ()),
])
def test_phone_boundaries(text, found):
    assert fired(text) == found


def test_a_valid_iban_or_card_is_not_also_a_phone():
    assert fired("GB82 WEST 1234 5698 7654 32") == ("iban",)
    assert fired("4111 1111 1111 1111") == ("card",)


def test_request_text_reads_every_message_and_tool_argument():
    request = StepRequest("s", [
        {"role": "system", "content": "one"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"function": {"name": "f", "arguments": "two"}}, {"function": {"name": "g", "arguments": None}},
            {"function": "not a mapping"}, "not a mapping"]},
        {"role": "user", "content": "three"}])
    assert request_text(request) == "one\n\ntwo\n\nthree"


def test_long_text_is_scanned_in_windows_that_miss_nothing():
    filler = "word " * 40_000  # 200,000 characters: several windows
    for at in (0, 65_530, 65_536 - 10, 131_000, len(filler) - 3):
        text = filler[:at] + " ann@example.org " + filler[at:]
        assert fired(text) == ("email",), at
    no_spaces = "x" * 140_000
    for at in (65_530, 66_550, 131_070):
        text = no_spaces[:at] + " 4111 1111 1111 1111 " + no_spaces[at:]
        assert fired(text) == ("card",), at
    assert fired(filler) == ()


def test_windows_cover_the_text_with_overlaps():
    from steproute.guards import _OVERLAP, _WINDOW, _windows

    assert _windows("short") == ["short"]
    exact = "y" * (_WINDOW + _OVERLAP)
    assert _windows(exact) == [exact]
    text = ("abcd " * 60_000)[:250_000]
    windows = _windows(text)
    assert len(windows) > 2 and windows[0] == text[:len(windows[0])] and text.endswith(windows[-1])
    assert all(len(w) <= _WINDOW + _OVERLAP for w in windows)
    for before, after in itertools.pairwise(windows):  # each window overlaps the one before it
        assert after[:200] in before and before[-200:] in text[text.index(before[-200:]):]
    assert sum(len(w) for w in windows) > len(text)


def test_detect_and_redact():
    guard = PiiGuard("onprem", ("email", "card"), (("employee", re.compile(r"EMP-\d{3}")),))
    assert guard.detect(ask("")) == ()
    assert guard.detect(ask("call 020 7946 0958")) == ()  # phone is not among its detectors
    assert guard.detect(ask("4111 1111 1111 1111 and ann@example.org EMP-123")) == ("email", "card", "employee")
    assert guard.redact("ann@example.org EMP-123") == "[redacted by the PII guard: email, employee]"
    assert guard.redact("nothing here") == "nothing here"


def test_a_pii_guard_from_the_configuration():
    from steproute.config import PiiGuardConfig

    guard = PiiGuard.from_config(PiiGuardConfig(tier="onprem", detectors=["iban"], patterns={"ticket": r"T-\d+"}))
    assert (guard.tier, guard.detectors, [n for n, _ in guard.patterns]) == ("onprem", ("iban",), ["ticket"])
    assert guard.detect(ask("T-12 ann@example.org")) == ("ticket",)
    assert PiiGuard("x").detectors == ("email", "phone", "card", "iban")


# -- budget stores --------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "basestore"])
def store(request):
    return InMemoryBudgetStore() if request.param == "memory" else BaseStoreBudgetStore(InMemoryStore())


def test_a_store_reserves_under_the_limit_and_settles_what_was_spent(store):
    assert store.usage("acme", 5) == (0.0, 0.0)
    assert store.reserve("acme", 5, 0.5, limit=1.0) == 0.0
    assert store.reserve("acme", 5, 0.25, limit=1.0) == 0.0
    assert store.usage("acme", 5) == (0.0, 0.75)
    store.settle("acme", 5, 0.5, 0.125)
    assert store.usage("acme", 5) == (0.125, 0.25)
    assert store.reserve("acme", 5, 0.5, limit=1.0) == 0.125  # 0.375 held + spent: under the limit
    assert store.usage("acme", 5) == (0.125, 0.75)
    assert store.reserve("acme", 5, 0.01, limit=0.875) is None  # spent + reserved reached the limit
    assert store.usage("acme", 5) == (0.125, 0.75)
    store.settle("acme", 5, 2.0, 0.0)  # never below zero reserved
    assert store.usage("acme", 5) == (0.125, 0.0)
    assert store.usage("acme", 6) == (0.0, 0.0) and store.usage("other", 5) == (0.0, 0.0)


def test_the_memory_store_drops_windows_older_than_the_last_one():
    store = InMemoryBudgetStore()
    for window in (1, 2, 3):
        store.reserve("acme", window, 1.0, limit=10.0)
    store.settle("acme", 3, 1.0, 0.5)
    assert store.usage("acme", 1) == (0.0, 0.0)  # dropped
    assert store.usage("acme", 2) == (0.0, 1.0)  # the window before the current one is kept
    assert store.usage("acme", 3) == (0.5, 0.0)


def test_the_basestore_store_keeps_counters_under_encoded_labels_and_survives_a_bad_value():
    backing = InMemoryStore()
    store = BaseStoreBudgetStore(backing)
    assert store.prefix == ("steproute", "budgets") and store.lock is None
    store.reserve("user@x.com", 7, 0.5, limit=1.0)
    assert backing.get(("steproute", "budgets", "user@x%2Ecom"), "7").value == {"spent": 0.0, "reserved": 0.5}
    backing.put(("steproute", "budgets", "bad"), "7", {"spent": "lots"})
    assert store.usage("bad", 7) == (0.0, 0.0)
    backing.put(("steproute", "budgets", "bad"), "8", {"reserved": 0.25})
    assert store.usage("bad", 8) == (0.0, 0.25)
    backing.put(("steproute", "budgets", "bad"), "9", {"spent": 1.5})
    assert store.usage("bad", 9) == (1.5, 0.0)


def test_the_basestore_store_takes_the_lock_per_tenant_and_window():
    import contextlib

    asked: list[tuple[str, str]] = []

    def lock(tenant: str, key: str):
        asked.append((tenant, key))
        return contextlib.nullcontext()

    store = BaseStoreBudgetStore(InMemoryStore(), prefix=("app",), lock=lock)
    store.reserve("acme", 3, 0.5, limit=1.0)
    store.settle("acme", 3, 0.5, 0.25)
    assert asked == [("acme", "budget:3"), ("acme", "budget:3")]
    assert store.usage("acme", 3) == (0.25, 0.0)


# -- holds --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cost", "known", "counted"), [
    (0.125, True, 0.125), (0.125, None, 0.125), (0.0, None, 0.5), (0.0, False, 0.5), (0.75, False, 0.75),
    (0.0, True, 0.0), (0.25, False, 0.5),
])
def test_a_hold_counts_the_cost_or_the_reservation_when_usage_is_unknown(cost, known, counted):
    store = InMemoryBudgetStore()
    store.reserve("acme", 1, 0.5, limit=10.0)
    hold = BudgetHold(store, "acme", 1, 0.5)
    hold.settle(cost, usage_known=known)
    assert store.usage("acme", 1) == (counted, 0.0)
    hold.settle(1.0, usage_known=True)  # settled once only
    assert store.usage("acme", 1) == (counted, 0.0) and hold.settled


@pytest.mark.parametrize("cost", [-1.0, math.nan])
def test_a_negative_or_nan_cost_counts_as_zero_and_is_said_once(cost, caplog):
    store = InMemoryBudgetStore()
    with caplog.at_level(logging.WARNING, logger="steproute"):
        BudgetHold(store, "acme", 1, 0.5).settle(cost, usage_known=True)
        BudgetHold(store, "acme", 1, 0.5).settle(cost)
    assert store.usage("acme", 1) == (0.0, 0.0)
    said = [r.getMessage() for r in caplog.records if r.name == "steproute"]
    assert said == ["steproute: a provider reported negative token usage; the budget counts it as $0 "
                    "(logged once)"]


# -- the guard ----------------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_limits_by_tenant_else_default_and_windows_by_the_clock():
    guard = BudgetGuard({"acme": 1.0, "default": 0.5}, 60.0, InMemoryBudgetStore(), clock=Clock(125.0))
    assert (guard.limit_of("acme"), guard.limit_of("other"), guard.limit_of(None)) == (1.0, 0.5, None)
    assert BudgetGuard({"acme": 1.0}, 60.0, InMemoryBudgetStore()).limit_of("other") is None
    assert guard.window() == (2, 180.0)
    guard.clock = Clock(180.0)
    assert guard.window() == (3, 240.0)
    assert (guard.on_exceed, guard.cap_tier) == ("refuse", None)


def test_admit_reserves_then_refuses_with_what_was_spent():
    store = InMemoryBudgetStore()
    guard = BudgetGuard({"acme": 1.0}, 60.0, store, clock=Clock(125.0))
    assert guard.admit(ask(), 0.5).hold is None  # no tenant
    assert guard.admit(ask(tenant="free"), 0.5).hold is None  # no limit for it
    verdict = guard.admit(ask(tenant="acme"), 0.75)
    assert (verdict.cap_tier, verdict.spent_usd, verdict.limit_usd) == (None, 0.0, 1.0)
    assert (verdict.hold.tenant, verdict.hold.window, verdict.hold.reserved) == ("acme", 2, 0.75)
    verdict.hold.settle(0.5, usage_known=True)
    second = guard.admit(ask(tenant="acme"), 0.5)
    assert second.spent_usd == 0.5
    with pytest.raises(BudgetExceeded) as excinfo:
        guard.admit(ask(step="plan", tenant="acme"), 0.25)
    error = excinfo.value
    assert (error.step, error.tenant, error.limit_usd, error.spent_usd, error.window_ends, error.reserved_usd) == (
        "plan", "acme", 1.0, 0.5, 180.0, 0.5)


def test_cap_holds_an_exhausted_tenant_to_the_cap_tier_and_still_counts_it():
    store = InMemoryBudgetStore()
    guard = BudgetGuard({"acme": 1.0}, 60.0, store, on_exceed="cap", cap_tier="fast", clock=Clock(0.0))
    guard.admit(ask(tenant="acme"), 1.0).hold.settle(1.0, usage_known=True)
    capped = guard.admit(ask(tenant="acme"), 0.5)
    assert (capped.cap_tier, capped.spent_usd, capped.limit_usd, capped.hold.reserved) == ("fast", 1.0, 1.0, 0.0)
    capped.hold.settle(0.25, usage_known=True)
    assert store.usage("acme", 0) == (1.25, 0.0)


def test_a_guard_from_the_configuration():
    from steproute.config import BudgetConfig

    config = BudgetConfig(limits={"acme": 2.0}, window_seconds=30, on_exceed="cap", cap_tier="fast")
    store = InMemoryBudgetStore()
    guard = BudgetGuard.from_config(config, store)
    assert (guard.limits, guard.window_seconds, guard.store, guard.on_exceed, guard.cap_tier) == (
        {"acme": 2.0}, 30, store, "cap", "fast")


# -- estimates ------------------------------------------------------------------------------------------


def test_max_output_tokens():
    assert max_output_tokens("openai/gpt-4o") == 16384
    assert max_output_tokens("acme/unknown") == DEFAULT_MAX_OUTPUT_TOKENS == 32_768
    assert max_output_tokens("ollama/not-a-model-xyz") == DEFAULT_MAX_OUTPUT_TOKENS  # LiteLLM says None


@pytest.mark.parametrize(("params", "output"), [
    ({}, DEFAULT_MAX_OUTPUT_TOKENS), ({"max_tokens": 100}, 100), ({"max_completion_tokens": 50}, 50),
    ({"max_tokens": 100, "max_completion_tokens": 50}, 50), ({"max_tokens": 0}, DEFAULT_MAX_OUTPUT_TOKENS),
    ({"max_tokens": "70"}, 70), ({"max_tokens": 100, "n": 3}, 300), ({"max_tokens": 100, "n": 0}, 100),
    ({"max_tokens": 100, "n": None}, 100), ({"max_tokens": -5, "max_completion_tokens": 9}, 9),
])
def test_estimate_cost_reserves_the_output_limit_per_choice(params, output):
    request = StepRequest("s", [{"role": "user", "content": "x" * 30}, {"role": "assistant", "content": "y" * 3}])
    input_tokens = 33 // 3 + 16 * 2 + 1
    assert estimate_cost(Price(1.0, 0.0), request, params) == input_tokens
    assert estimate_cost(Price(0.0, 1.0), request, params) == output


def test_estimate_cost_with_the_models_output_limit_and_unusable_params():
    request = StepRequest("s", [])
    assert estimate_cost(Price(0.0, 1.0), request, {}, output_tokens=10) == 10
    assert estimate_cost(Price(1.0, 0.0), request, {}) == 1
    assert estimate_cost(Price(0.0, 1.0), request, {"max_tokens": "many"}) == 0.0
    assert estimate_cost(None, request, {}) == 0.0
    assert isinstance(estimate_cost(Price(0, 0), request, {}), float)


def test_settling_a_window_never_reserved_counts_only_the_spend():
    store = InMemoryBudgetStore()
    store.settle("acme", 4, 0.0, 0.25)
    assert store.usage("acme", 4) == (0.25, 0.0)


def test_estimate_cost_counts_whole_tokens_and_a_one_token_limit():
    request = StepRequest("s", [{"role": "user", "content": "x" * 31}])
    assert estimate_cost(Price(1.0, 0.0), request, {}) == 31 // 3 + 16 + 1
    assert estimate_cost(Price(0.0, 1.0), request, {"max_tokens": 1}) == 1


def test_every_at_sign_is_checked_from_the_first():
    assert fired("ann@example.org, then a stray x@") == ("email",)
    assert fired("x@ ann@example.org y@") == ("email",)  # not only the first and the last


def test_a_cards_or_ibans_digits_right_before_a_phone_number_neither_hide_nor_make_one():
    assert fired("4222 222 222 222") == ("card",)  # 13 digits in phone-like groups: a card only
    assert fired("4111 1111 1111 1111+44 20 7946 0958") == ("phone", "card")
    assert fired("GB82WEST12345698765432+44 20 7946 0958") == ("phone", "iban")
    # 9 digits only with the country code: the removed card or IBAN must leave a plain gap before "+"
    assert fired("4111 1111 1111 1111+1 234 567 89") == ("phone", "card")
    assert fired("GB82WEST12345698765432+1 234 567 89") == ("phone", "iban")


@pytest.mark.parametrize(("text", "found"), [
    ("a@example.org", ("email",)),  # a one-character local part at the start of the text
    ("ann@e.org", ("email",)),  # a one-character domain label
    ("ann@" + "a" * 252 + ".ab", ("email",)),  # the top-level label ends 255 characters after the @
    ("ann@" + "a" * 253 + ".ab", ()),  # ... and one further is past the window
])
def test_email_window_edges(text, found):
    assert fired(text) == found


# -- where long text is cut into windows ------------------------------------------------------------
# The first window is text[0:66_560] cut back to the last whitespace in its final 1,024 characters
# (or at 66_560 when there is none); the second starts at the word holding position 64_512 (or at
# 64_512 when no whitespace comes in the 1,024 characters before it). A digit run placed across one
# of those points makes a card number appear only when a window is cut in the wrong place: the
# whole run (20+ digits) is no card, its 16-digit part past or before the cut is.

_CARD_NUMBER = "4111111111111111"


def _long(n: int, sep: str = " ", *, bare: tuple[tuple[int, int], ...] = (), put: tuple[tuple[int, str], ...] = ()) -> str:
    """n characters of "word" + sep, with the spans in ``bare`` free of whitespace and the strings
    of ``put`` written at their positions."""
    chars = list(("word" + sep) * (n // 5 + 1))[:n]
    for a, b in bare:
        chars[a:b] = "x" * (b - a)
    for at, s in put:
        chars[at:at + len(s)] = s
    return "".join(chars)


def _card_ending_at(end: int) -> tuple[int, str]:
    return end - 16, _CARD_NUMBER + "9999"  # 20 digits in all: no card unless a window ends at `end`


@pytest.mark.parametrize("sep", [" ", "\n"])
def test_the_second_window_starts_at_the_start_of_the_word_across_its_cut_point(sep):
    # a 28-digit run starting at 64_500, right after whitespace, across the cut point 64_512: a
    # second window starting at 64_512 (the whitespace search dropped, for spaces or newlines)
    # would read the card number there
    assert fired(_long(140_000, sep, put=((64_500, "9" * 12 + _CARD_NUMBER),))) == ()
    # ... and one starting a character past the word's start (cut + 2) would read "9" + card's tail
    assert fired(_long(140_000, sep, put=((64_500, "9" + _CARD_NUMBER),))) == ()
    # ... and one starting a character before it (cut - 1) would read "5 1234 56 78": 9 digits, a
    # phone number, where "1234 56 78" (8 digits) after "A5" is none
    assert fired(_long(140_000, sep, put=((64_506, " A5 1234 56 78 xx"),))) == ()


@pytest.mark.parametrize("sep", [" ", "\n"])
def test_a_window_ends_at_the_last_whitespace_before_its_end(sep):
    # the card number ends at 66_560 and its word starts at 66_500: the first window must end at
    # the whitespace before that word (not at 66_560, as when the whitespace search finds nothing)
    assert fired(_long(140_000, sep, bare=((66_500, 66_600),), put=(_card_ending_at(66_560),))) == ()


def test_a_window_without_whitespace_near_its_end_ends_at_the_full_length():
    # no whitespace in 64_436..66_760: the first window runs to 66_560, not to 65_536 (where the
    # card number ends), even when there are spaces and a newline earlier in the text
    text = _long(140_000, put=((100, "\n"),), bare=((64_436, 66_760),))
    text = text[:65_520] + _CARD_NUMBER + "9999" + text[65_540:]
    assert len(text) == 140_000 and fired(text) == ()


def test_a_window_ends_at_the_last_whitespace_not_the_first():
    # a run of ten 4-digit groups: no phone number (six groups are 24 digits, four are 16); cut
    # at the first whitespace of the last 1,024 characters it keeps three groups, 12 digits: a phone
    three_before = 65_536 - 14
    text = _long(140_000, put=((three_before - 1, " " + "1111 " * 10),))
    assert text[65_536] == " " and fired(text) == ()
    # a newline first and a newline after the run: cut at the first newline or the last space
    # (not the last newline), the run keeps nine groups and its last match is a 12-digit phone
    text = _long(140_000, bare=((65_537, 66_700),),
                 put=((65_536, "\n" + "1111 " * 9 + "1111\n"),))
    assert fired(text) == ()


def test_a_window_start_moves_only_to_whitespace_within_the_overlap_before_its_cut_point():
    # newlines at 64_012 and 64_412, no space after 64_012: the second window starts at 64_413
    # (the last one) and ends at 130_973, in a whitespace-free run; starting at 64_013 it would end
    # at 130_573, right after the card number
    text = _long(140_000, bare=((64_012, 64_512), (129_449, 131_100)),
                 put=((64_012, "\n"), (64_412, "\n"), _card_ending_at(130_573)))
    assert fired(text) == ()
    # no whitespace in the 1,024 characters before 64_512, a newline long before: the second
    # window starts at 64_512 and ends at 131_072; starting after the newline at 63_000 it would
    # end at 129_561, right after the card number
    text = _long(140_000, bare=((63_488, 64_600), (128_437, 131_200)),
                 put=((63_000, "\n"), _card_ending_at(129_561)))
    assert fired(text) == ()


def test_a_newline_after_the_cut_point_does_not_skip_text():
    # the second window starts near 64_512, not after the text's last newline (190_000)
    filler = _long(200_000, put=((190_000, "\n"),))
    text = filler[:100_000] + " ann@example.org " + filler[100_000:]
    assert fired(text) == ("email",)


def test_the_last_window_is_the_rest_of_the_text_when_it_fits_exactly():
    # the second window starts at 64_510 and the text ends exactly 66_560 later: it is the last
    # window; cut there, a third one would start mid-run at 129_022, on the card number
    length = 64_510 + 66_560
    text = _long(length, bare=((127_900, 129_100),), put=((129_018, "9999" + _CARD_NUMBER),))
    assert len(text) == length and fired(text) == ()


def test_windows_stay_short_when_a_newline_comes_after_their_end():
    from steproute.guards import _OVERLAP, _WINDOW, _windows

    # no behavioural route: a window that ran on to a later newline finds what the short one finds
    # (it is longer, so each regex call holds the interpreter longer, which is what windows prevent)
    text = _long(200_000, put=((150_000, "\n"), (199_000, "\n")))
    windows = _windows(text)
    assert all(len(w) <= _WINDOW + _OVERLAP for w in windows) and len(windows) == 4
