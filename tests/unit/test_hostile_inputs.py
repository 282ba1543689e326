"""Hostile input to the loaders: configurations and artefacts built to hang, exhaust memory,
crash, or make an error echo a credential.

Every case must end quickly in a ``ConfigError`` or ``ArtefactError`` (a ``ValueError``) that
names the file and what is wrong, and no credential may reach the message or a log.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steproute import ConfigError, RouterConfig, StepRouter, load_config
from steproute.policies._artefact import ArtefactError, load_artefact

SECRET = "sk-live-7f3c9a1b2d4e6f80aa"
TIERS = "tiers:\n  fast: {models: [{model: openai/gpt-4o-mini, mock_response: ok}]}\n"


def write(tmp_path: Path, text: str, name: str = "steproute.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


def finishes(fn: Any, timeout: float = 10.0) -> Any:
    """``fn()``'s result or exception, or a test failure when it does not finish in time."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed back to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still running after {timeout} s"
    if "error" in out:
        raise out["error"]
    return out.get("value")


# -- YAML aliases --------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    TIERS + "default: fast\nsteps: &loop\n  plan: *loop\n",
    TIERS + "default: fast\nsteps:\n  plan: &loop [*loop]\n",
    TIERS + "default: &loop {policy: fixed, tier: fast, x: *loop}\n",
])
def test_a_recursive_alias_is_a_config_error_naming_file_and_line(tmp_path, text):
    path = write(tmp_path, text)
    err = config_error(path)
    assert str(path) in str(err)
    assert "recursive alias" in str(err) and "line " in str(err)


BOMB = ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
        'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n'
        'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n'
        'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n'
        'f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n'
        'g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n'
        'h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n'
        'i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n')


def test_an_alias_bomb_is_refused_fast(tmp_path):
    path = write(tmp_path, TIERS + "default: fast\n" + BOMB.replace("a: &a", "x: &a"))
    assert len(BOMB) < 500
    start = time.perf_counter()
    err = finishes(lambda: config_error(path))
    took = time.perf_counter() - start
    assert took < 2.0, took
    assert str(path) in str(err) and "alias" in str(err) and "line " in str(err)


def test_aliases_within_the_bound_still_work(tmp_path):
    text = (TIERS.replace("fast: ", "fast: &fast ") + "  strong: *fast\ndefault: fast\n"
            "steps:\n  a: &p {policy: fixed, tier: strong}\n  b: *p\n")
    config = load_config(write(tmp_path, text))
    assert config.tier_names() == ("fast", "strong") and config.steps["b"].tier == "strong"


def test_nesting_too_deep_is_a_config_error(tmp_path):
    path = write(tmp_path, TIERS + "default: fast\nsteps: " + "[" * 5000 + "]" * 5000 + "\n")
    err = finishes(lambda: config_error(path))
    assert "nested" in str(err) and str(path) in str(err)


def test_a_self_referring_mapping_given_in_python_is_a_config_error():
    data: dict[str, Any] = {"tiers": {"fast": {"models": ["openai/gpt-4o-mini"]}}, "default": "fast"}
    data["steps"] = {"plan": data}
    with pytest.raises(ConfigError, match="refers to itself"):
        RouterConfig(**data)


def test_env_references_in_a_shared_subtree_resolve_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HOSTILE_TIER", "fast")
    text = TIERS + "default: fast\nsteps:\n  a: &p {policy: fixed, tier: '${HOSTILE_TIER}'}\n" + "".join(
        f"  s{i}: *p\n" for i in range(200))
    config = load_config(write(tmp_path, text))
    assert config.steps["s199"].tier == "fast"


# -- files that are not files --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory", "too_big"])
def test_a_config_path_that_is_not_a_small_regular_file_is_refused_without_reading_it(tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "c.yaml"
        os.mkfifo(path)
    elif kind == "dev_zero":
        path = Path("/dev/zero")
    elif kind == "directory":
        path = tmp_path
    else:
        path = write(tmp_path, TIERS + "default: fast\n" + "#" * (5 << 20))
    err = finishes(lambda: config_error(path), timeout=5)
    assert str(path) in str(err)
    assert ("not a regular file" in str(err)) if kind != "too_big" else ("larger than" in str(err))


# -- credentials in the wrong place --------------------------------------------------------

PLACES = {
    "tier name": TIERS + f"  {SECRET}: {{models: [oops]}}\ndefault: {SECRET}x\n",
    "tier reference": TIERS + f"default: {SECRET}\n",
    "model": f"tiers:\n  fast: {{models: [{SECRET}]}}\ndefault: fast\n",
    "yaml key": TIERS + f"default: fast\n{SECRET}: 1\n",
    "nested key": TIERS + f"default: fast\ndispatch: {{{SECRET}: 1}}\n",
    "step name": TIERS + f"default: fast\nsteps:\n  {SECRET}: {{policy: fixed, tier: gold}}\n",
    "price": f"tiers:\n  fast: {{models: [{{model: openai/gpt-4o-mini, input_cost_per_token: {SECRET}}}]}}\n"
             "default: fast\n",
    "policy": TIERS + f"default: {{policy: {SECRET}}}\n",
    "duplicate key": TIERS + f"default: fast\n{SECRET}: 1\n{SECRET}: 2\n",
    "pii pattern name": TIERS + f"default: fast\nguards: {{pii: {{tier: fast, patterns: {{{SECRET}: '('}}}}}}\n",
    "llm choices": TIERS + f"default: {{policy: llm, router_tier: fast, fallback: fast, choices: {{{SECRET}: x}}}}\n",
}


@pytest.mark.parametrize("place", sorted(PLACES))
def test_a_credential_in_the_wrong_field_never_reaches_the_error_or_the_log(tmp_path, caplog, place):
    path = write(tmp_path, PLACES[place])
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ConfigError) as info:
            StepRouter.from_file(path)
    text = str(info.value) + repr(info.value) + "".join(str(p) for p in info.value.problems)
    assert SECRET not in text and SECRET[:12] not in text
    assert SECRET not in caplog.text
    assert str(path) in text


def test_a_value_from_the_environment_is_never_echoed(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("HOSTILE_KEY", SECRET)
    for text in (TIERS + "default: ${HOSTILE_KEY}\n",
                 "tiers:\n  fast: {models: [{model: openai/gpt-4o-mini, input_cost_per_token: '${HOSTILE_KEY}'}]}\n"
                 "default: fast\n",
                 "tiers:\n  fast: {models: ['${HOSTILE_KEY}']}\ndefault: fast\n",
                 TIERS + "default: {policy: '${HOSTILE_KEY}'}\n"):
        with caplog.at_level(logging.DEBUG), pytest.raises(ConfigError) as info:
            StepRouter.from_file(write(tmp_path, text))
        assert SECRET not in str(info.value) and SECRET not in caplog.text


def test_a_tier_name_from_the_environment_is_not_shown_even_when_it_looks_like_a_name(tmp_path, monkeypatch):
    monkeypatch.setenv("HOSTILE_TIER", "goldtier")
    err = config_error(write(tmp_path, TIERS + "default: ${HOSTILE_TIER}\n"))
    assert "goldtier" not in str(err) and "default.tier" in str(err)


key_prefixes = st.sampled_from(["sk-", "sk-proj-", "pk_live_", "ghp_", "AKIA", "xoxb-", "rk-"])
key_bodies = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=16,
                     max_size=40)
SLOTS = [
    lambda k: {"tiers": {k: {"models": ["x"]}, "fast": {"models": ["openai/gpt-4o-mini"]}}, "default": k + "1"},
    lambda k: {"tiers": {"fast": {"models": ["openai/gpt-4o-mini"]}}, "default": k},
    lambda k: {"tiers": {"fast": {"models": ["openai/gpt-4o-mini"]}}, "default": "fast", k: 1},
    lambda k: {"tiers": {"fast": {"models": ["openai/gpt-4o-mini"]}}, "default": "fast", "steps": {k: "gold"}},
    lambda k: {"tiers": {"fast": {"models": [k]}}, "default": "fast"},
    lambda k: {"tiers": {"fast": {"models": [{"model": "openai/gpt-4o-mini", "output_cost_per_token": k}]}},
               "default": "fast"},
    lambda k: {"tiers": {"fast": {"models": ["openai/gpt-4o-mini"]}}, "default": {"policy": k}},
    lambda k: {"tiers": {"fast": {"models": ["openai/gpt-4o-mini"]}}, "default": "fast",
               "pinning": {k: {"x": 1}}},
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=key_prefixes, body=key_bodies, slot=st.sampled_from(range(len(SLOTS))))
def test_generated_credentials_in_any_slot_are_never_echoed(prefix, body, slot):
    key = prefix + body
    with pytest.raises(ConfigError) as info:
        RouterConfig.from_dict(SLOTS[slot](key), source="generated.yaml")
    assert key not in str(info.value) and body not in str(info.value)


# -- artefacts -----------------------------------------------------------------------------


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


META = {"format": 1, "policy": "classifier", "labels": ["a", "b"], "threshold": 0.05, "embedding_dim": 2,
        "encoder": "wordllama-l2-256"}


def artefact_file(tmp_path: Path, content: bytes, name: str = "a.steproute") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _meta(policy: str, **changes: Any) -> bytes:
    return json.dumps({**META, "policy": policy, **changes}).encode()


BROKEN = {
    "empty file": lambda p: b"",
    "garbage": lambda p: b"\x00\x01garbage" * 50,
    "no meta.json": lambda p: zipped({"arrays.npz": npz(x=np.zeros(2))}),
    "no arrays.npz": lambda p: zipped({"meta.json": _meta(p)}),
    "meta.json not json": lambda p: zipped({"meta.json": b"{oops", "arrays.npz": npz(x=np.zeros(2))}),
    "meta.json not utf-8": lambda p: zipped({"meta.json": b"\xff\xfe{}", "arrays.npz": npz(x=np.zeros(2))}),
    "meta.json a list": lambda p: zipped({"meta.json": b"[1, 2]", "arrays.npz": npz(x=np.zeros(2))}),
    "labels not strings": lambda p: zipped({"meta.json": _meta(p, labels=[1, None]), "arrays.npz": npz(x=np.zeros(2))}),
    "threshold not a number": lambda p: zipped({"meta.json": _meta(p, threshold="high"),
                                                "arrays.npz": npz(x=np.zeros(2))}),
    "arrays.npz empty": lambda p: zipped({"meta.json": _meta(p), "arrays.npz": b""}),
    "arrays.npz garbage": lambda p: zipped({"meta.json": _meta(p), "arrays.npz": b"PK\x03\x04junk"}),
    "npz missing arrays": lambda p: zipped({"meta.json": _meta(p), "arrays.npz": npz(x=np.zeros(2))}),
    "npz of objects": lambda p: zipped({"meta.json": _meta(p), "arrays.npz": npz(terms=np.array([{"a": 1}], dtype=object))}),
    "arrays of the wrong shape": lambda p: zipped({"meta.json": _meta(p), "arrays.npz": npz(**{
        n: np.zeros((3, 3)) for n in ("terms", "idf", "steps", "hand_mean", "hand_scale", "coef", "intercept",
                                      "embeddings", "quality", "step_ids", "mean", "scale")})}),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
@pytest.mark.parametrize("policy", ["classifier", "semantic", "cascade", "knn", "ensemble"])
def test_a_malformed_artefact_is_an_artefact_error_naming_the_file(tmp_path, case, policy):
    path = artefact_file(tmp_path, BROKEN[case](policy))
    with pytest.raises(ArtefactError) as info:
        load_policy(path, policy)
    assert str(path) in str(info.value)


def load_policy(path: Path, policy: str) -> Any:
    if policy == "classifier":
        from steproute.policies.classifier import ClassifierPolicy

        return ClassifierPolicy.load(path)
    if policy == "semantic":
        from steproute.policies.semantic import SemanticPolicy

        return SemanticPolicy.load(path)
    if policy in ("knn", "ensemble"):
        from steproute.policies.ensemble import EnsemblePolicy
        from steproute.policies.knn import KnnPolicy

        return (KnnPolicy if policy == "knn" else EnsemblePolicy).load(path)
    from steproute.policies.answer_scorer import AnswerScorer

    return AnswerScorer.load(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meta=st.binary(max_size=200) | st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(
    st.sampled_from(["format", "policy", "labels", "threshold", "embedding_dim", "encoder", "neighbours"]),
    st.one_of(st.none(), st.integers(-3, 3), st.floats(), st.text(max_size=5),
              st.lists(st.text(max_size=3), max_size=3)))),
    arrays=st.binary(max_size=200), policy=st.sampled_from(["classifier", "semantic", "cascade", "knn", "ensemble"]))
def test_generated_artefact_content_is_only_ever_an_artefact_error(tmp_path_factory, meta, arrays, policy):
    path = artefact_file(tmp_path_factory.mktemp("a"), zipped({"meta.json": meta, "arrays.npz": arrays}))
    with pytest.raises(ArtefactError):
        load_policy(path, policy)


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory"])
def test_an_artefact_path_that_is_not_a_regular_file_is_refused_without_opening_it(tmp_path, kind):
    path = {"dev_zero": Path("/dev/zero"), "directory": tmp_path}.get(kind, tmp_path / "a.steproute")
    if kind == "fifo":
        os.mkfifo(path)
    try:
        with pytest.raises(ArtefactError, match="not a regular file") as info:
            finishes(lambda: load_artefact(path), timeout=5)
    finally:
        if kind == "fifo":  # release a reader that did block, so no thread is left behind
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
    assert str(path) in str(info.value)


def test_an_artefact_larger_than_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    from steproute.policies import _artefact

    path = artefact_file(tmp_path, b"x" * 2048)
    monkeypatch.setattr(_artefact, "MAX_FILE_BYTES", 1024)
    with pytest.raises(ArtefactError, match="larger than"):
        load_artefact(path)


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    """A ~2.5 MB artefact whose arrays.npz holds one .npy that decompresses to 528 MiB."""
    from steproute.policies import _artefact

    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("terms.npy", "w", force_zip64=True) as f:
            header = io.BytesIO()
            size = 33 * (16 << 20)
            np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (size,)})
            f.write(header.getvalue())
            chunk = bytes(16 << 20)
            for _ in range(33):
                f.write(chunk)
    assert size > _artefact.MAX_ARRAY_BYTES
    path = tmp_path_factory.mktemp("bomb") / "bomb.steproute"
    path.write_bytes(zipped({"meta.json": json.dumps(META).encode(), "arrays.npz": inner.getvalue()}))
    return path


def test_a_zip_bomb_is_refused_before_it_is_decompressed(zip_bomb):
    assert zip_bomb.stat().st_size < 4 << 20
    start = time.perf_counter()
    with pytest.raises(ArtefactError, match="larger than") as info:
        finishes(lambda: load_artefact(zip_bomb), timeout=10)
    assert time.perf_counter() - start < 2.0
    assert str(zip_bomb) in str(info.value)


def test_an_npy_header_that_claims_more_than_its_data_is_refused(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    inner = zipped({"terms.npy": header.getvalue() + bytes(64)})
    path = artefact_file(tmp_path, zipped({"meta.json": json.dumps(META).encode(), "arrays.npz": inner}))
    with pytest.raises(ArtefactError, match="terms"):
        load_artefact(path)


def test_a_member_that_decompresses_past_its_declared_size_is_refused(tmp_path):
    good = zipped({"meta.json": json.dumps(META).encode() + b" " * 4000, "arrays.npz": npz(x=np.zeros(2))})
    data = bytearray(good)
    # the local and central headers' uncompressed size of meta.json: say 10 bytes
    zf = zipfile.ZipFile(io.BytesIO(good))
    info = zf.getinfo("meta.json")
    real = info.file_size.to_bytes(4, "little")
    assert data.count(real) >= 2
    data = data.replace(real, (10).to_bytes(4, "little"))
    path = artefact_file(tmp_path, bytes(data))
    with pytest.raises(ArtefactError):
        load_artefact(path)


def test_a_config_pointing_at_a_malformed_artefact_is_a_config_error(tmp_path):
    artefact_file(tmp_path, BROKEN["npz missing arrays"]("classifier"), "bad.steproute")
    path = write(tmp_path, "tiers:\n  fast: {models: [openai/gpt-4o-mini]}\n  strong: {models: [openai/gpt-4o]}\n"
                           "default: {policy: classifier, artefact: bad.steproute}\n")
    with pytest.raises(ConfigError) as info:
        StepRouter.from_file(path)
    assert "default.artefact" in str(info.value) and "bad.steproute" in str(info.value)
