"""The ``steproute`` command on hostile input, as a user runs it (a subprocess): every case
exits non-zero with one line on stderr, no traceback and no credential."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-live-7f3c9a1b2d4e6f80aa"
TIERS = "tiers:\n  fast: {models: [{model: openai/gpt-4o-mini, mock_response: ok}]}\n"
BOMB = "".join(f"{c}: &{c} [{','.join([f'*{p}'] * 9) if p else ','.join(['lol'] * 9)}]\n"
               for p, c in zip(["", *"abcdefgh"], "abcdefghi", strict=True))


def steproute(*args: str, timeout: float = 60, close_stdout: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    if close_stdout:
        proc = subprocess.Popen([sys.executable, "-m", "steproute.cli", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, text=True)
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    return subprocess.run([sys.executable, "-m", "steproute.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert SECRET not in result.stderr and SECRET not in result.stdout
    return lines[0]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    def put(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    decision = {"type": "decision", "id": "d1", "step": "plan", "tier": "fast", "cost_usd": 0.001,
                "baseline_cost_usd": 0.002, "ts": 1_700_000_000.0}
    with zipfile.ZipFile(tmp_path / "bad.steproute", "w") as zf:
        zf.writestr("meta.json", json.dumps({"format": 1, "policy": "classifier", "labels": ["a", "b"],
                                             "threshold": 0.1}))
        zf.writestr("arrays.npz", b"")
    return {
        "loop": put("loop.yaml", TIERS + "default: fast\nsteps: &loop\n  plan: *loop\n"),
        "bomb": put("bomb.yaml", TIERS + "default: fast\n" + BOMB),
        "secret": put("secret.yaml", TIERS + f"default: {SECRET}\n{SECRET}: 1\n"),
        "artefact": put("art.yaml", "tiers:\n  fast: {models: [openai/gpt-4o-mini]}\n  strong: {models: [openai/gpt-4o]}\n"
                                    "default: {policy: classifier, artefact: bad.steproute}\n"),
        "valid": put("valid.yaml", TIERS + "default: fast\n"),
        "latin1": put("latin1.jsonl", "{\"type\": \"decision\", \"id\": \"é\"}\n".encode("latin-1")),
        "cost": put("cost.jsonl", json.dumps({**decision, "cost_usd": "lots"}) + "\n"),
        "ts": put("ts.jsonl", json.dumps({**decision, "ts": 1e300}) + "\n"),
        "log": put("log.jsonl", "".join(json.dumps({**decision, "id": f"d{i}"}) + "\n" for i in range(3000))),
        "rows": put("rows.jsonl", json.dumps({"id": "r1", "step": "plan", "messages": [{"role": "user", "content": "hi"}],
                                              "outcomes": {"a": {"quality": 1, "cost_usd": 0.1},
                                                           "b": {"quality": 1, "cost_usd": 0.2}}}) + "\n"),
        "dir": tmp_path,
    }


@pytest.mark.parametrize("case", ["loop", "bomb", "secret", "artefact", "/dev/zero", "dir"])
def test_check_on_hostile_config(files, case):
    path = files.get(case, Path(case))
    result = steproute("check", str(path))
    if case == "secret":  # two problems (an unknown tier, an unknown key): a line each, under a header line
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert SECRET not in result.stderr + result.stdout
        lines = result.stderr.strip().splitlines()
        assert lines[0] == f"steproute check: {path}: 2 problems" and len(lines) == 3, result.stderr
        return
    line = assert_one_line_error(result)
    assert line.startswith("steproute check:") and str(path) in line


@pytest.mark.parametrize("case", ["latin1", "cost", "ts", "/dev/zero", "dir"])
def test_report_on_hostile_log(files, case):
    path = files.get(case, Path(case))
    line = assert_one_line_error(steproute("report", str(path), "--html", str(files["dir"] / "r.html")))
    assert line.startswith("steproute report:")


def test_report_to_an_html_path_that_is_a_directory(files):
    line = assert_one_line_error(steproute("report", str(files["log"]), "--html", str(files["dir"])))
    assert "cannot write --html" in line


def test_report_with_a_recursive_config(files):
    assert "recursive alias" in assert_one_line_error(steproute("report", str(files["log"]), "--config", str(files["loop"])))


@pytest.mark.parametrize("case", ["loop", "bomb", "artefact", "bad.steproute", "/dev/zero"])
def test_eval_on_hostile_policy(files, case):
    path = files.get(case, files["dir"] / case if case.endswith(".steproute") else Path(case))
    line = assert_one_line_error(steproute("eval", "--data", str(files["rows"]), "--policy", str(path)))
    assert line.startswith("steproute eval:")


@pytest.mark.parametrize("case", ["loop", "bomb", "artefact"])
def test_calibrate_on_hostile_config(files, case):
    line = assert_one_line_error(steproute("calibrate", "--data", str(files["rows"]), "--config", str(files[case]),
                                           "--step", "plan"))
    assert line.startswith("steproute calibrate:")


def test_a_closed_stdout_is_a_quiet_exit_not_a_traceback(files):
    result = steproute("report", str(files["log"]), close_stdout=True)
    assert result.returncode == 141 and result.stderr == ""  # as `head` expects: no traceback, no message
