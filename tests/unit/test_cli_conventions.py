"""The ``steproute`` command's conventions, as a user meets them: ``--version``, a description
and an example on every help page, help on every option, a quiet exit when the reader of its
output goes away, ``steproute feedback``, and a pointer to the right command when a command is
given the wrong kind of file."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import steproute
from steproute import cli
from steproute.cli import main
from steproute.decision_log import read_log

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def steproute_cmd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "steproute", *args], capture_output=True, text=True, env=ENV,
                          timeout=120, cwd=cwd)


def decision(i: int, **extra: object) -> dict:
    return {"type": "decision", "id": f"d-{i}", "step": "plan" if i % 2 else "answer", "tier": "fast",
            "model": "openai/gpt-4o-mini", "cost_usd": 0.001, "baseline_cost_usd": 0.004, "ts": 1_700_000_000.0 + i,
            **extra}


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "decisions.jsonl"
    path.write_text("".join(json.dumps(decision(i)) + "\n" for i in (1, 2, 3)), encoding="utf-8")
    return path


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    row = {"id": "r1", "step": "plan", "messages": [{"role": "user", "content": "hi"}],
           "outcomes": {"a": {"quality": 1, "cost_usd": 0.1}, "b": {"quality": 1, "cost_usd": 0.2}}}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def artefact(tmp_path: Path) -> Path:
    path = tmp_path / "model.steproute"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("meta.json", json.dumps({"format": 1, "policy": "classifier"}))
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "steproute.yaml"
    path.write_text("# tiers\ntiers:\n  fast: {models: [openai/gpt-4o-mini]}\n  strong: {models: [openai/gpt-4o]}\n"
                    "default: fast\nsteps:\n  plan: {policy: fixed, tier: strong}\n", encoding="utf-8")
    return path


# -- --version and help -------------------------------------------------------------------------


def test_version_prints_the_package_version():
    result = steproute_cmd("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"steproute {steproute.__version__}")
    assert "litellm" in result.stdout and "Python" in result.stdout and result.stderr == ""


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _options_without_help(parser: argparse.ArgumentParser) -> list[str]:
    return [(a.option_strings or [a.dest])[0] for a in parser._actions
            if not a.help or a.help == argparse.SUPPRESS]


def test_every_subcommand_has_a_description_an_example_and_help_on_every_option():
    """Walks the real parser, so a subcommand or option added later without help fails here."""
    parser = cli.build_parser()
    assert parser.description and "steproute" in (parser.epilog or "")
    assert _options_without_help(parser) == []
    (sub_action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    listed = {a.dest: a.help for a in sub_action._choices_actions}
    commands = _subcommands(parser)
    assert {"demo", "check", "local", "report", "feedback", "convert", "train", "eval", "calibrate"} <= set(commands)
    for name, sub in commands.items():
        assert listed.get(name), f"{name}: no one-line help in the command list"
        assert sub.description and len(sub.description) > len(listed[name]), f"{name}: no description"
        epilog = sub.epilog or ""
        assert "example" in epilog.lower() and f"steproute {name}" in epilog, f"{name}: no example"
        assert _options_without_help(sub) == [], f"{name}: options without help"


@pytest.mark.parametrize("name", ["report", "convert", "calibrate", "feedback", "train"])
def test_a_help_page_keeps_its_examples_on_their_own_lines(name):
    page = _subcommands(cli.build_parser())[name].format_help()
    example_lines = [line for line in page.splitlines() if line.lstrip().startswith(f"steproute {name}")]
    assert example_lines, page


def test_help_names_the_options_that_had_none():
    commands = _subcommands(cli.build_parser())
    for name, option in (("convert", "--seed"), ("convert", "--from"), ("calibrate", "--json"), ("eval", "--json")):
        (action,) = [a for a in commands[name]._actions if option in a.option_strings]
        assert action.help and len(action.help) > 10, (name, option)


def test_report_help_from_the_command_line():
    result = steproute_cmd("report", "--help")
    assert result.returncode == 0 and "example" in result.stdout.lower()
    assert "  steproute report decisions.jsonl" in result.stdout


# -- a closed pipe --------------------------------------------------------------------------------


def _first_line_then_close(*args: str, stderr_to_stdout: bool = False) -> tuple[str, str, int]:
    proc = subprocess.Popen([sys.executable, "-m", "steproute", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if stderr_to_stdout else subprocess.PIPE, env=ENV, text=True)
    first = proc.stdout.readline()
    proc.stdout.close()  # `| head -1`: the reader goes away after one line
    err = "" if stderr_to_stdout else proc.stderr.read()
    proc.wait(60)
    return first, err, proc.returncode


@pytest.fixture
def long_log(tmp_path: Path) -> Path:
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps({**decision(i), "step": f"step-{i}"}) + "\n" for i in range(3000)),
                    encoding="utf-8")
    return path


def test_report_into_a_pipe_closed_after_one_line_exits_quietly(long_log):
    first, err, code = _first_line_then_close("report", str(long_log))
    assert first.startswith("step")
    assert err == "", err  # no traceback, no message: `head` asked for one line and got it
    assert code == 141  # as a process killed by SIGPIPE: 128 + 13


def test_report_with_stderr_into_the_same_closed_pipe_exits_quietly(long_log):
    first, _, code = _first_line_then_close("report", str(long_log), stderr_to_stdout=True)
    assert first.startswith("step") and code == 141


# -- steproute feedback ---------------------------------------------------------------------------


def test_feedback_is_recorded_and_report_counts_it(log):
    result = steproute_cmd("feedback", "d-2", "0.8", "--log", str(log))
    assert result.returncode == 0, result.stderr
    assert "step answer" in result.stdout and "d-2" not in result.stdout + result.stderr
    contents = read_log(log)
    assert contents.problems == [] and contents.feedback["d-2"]["quality"] == 0.8
    report = steproute_cmd("report", str(log))
    assert report.returncode == 0, report.stderr
    assert "feedback: 1 of 3 decisions rated (mean quality 0.80)" in report.stdout


@pytest.mark.parametrize(("given", "quality"), [("good", 1.0), ("bad", 0.0), ("GOOD", 1.0), ("0", 0.0), ("1", 1.0),
                                                 ("0.25", 0.25), (".5", 0.5), ("1e-1", 0.1)])
def test_feedback_quality_is_a_number_in_0_1_or_good_or_bad(log, capsys, given, quality):
    assert main(["feedback", "d-1", given, "--log", str(log)]) == 0, capsys.readouterr().err
    assert read_log(log).feedback["d-1"]["quality"] == quality


@pytest.mark.parametrize("given", ["1.5", "-0.1", "nan", "inf", "great", "", "0x1", "true"])
def test_a_bad_quality_is_refused_and_nothing_is_written(log, capsys, given):
    before = log.read_bytes()
    assert main(["feedback", "d-1", given, "--log", str(log)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("steproute feedback: QUALITY") and "good" in err[0]
    assert log.read_bytes() == before


def test_feedback_for_an_unknown_decision_is_refused_without_echoing_the_id(log, capsys):
    before = log.read_bytes()
    assert main(["feedback", "d-typo-secretish", "1", "--log", str(log)]) == 1
    err = capsys.readouterr().err
    assert "d-typo-secretish" not in err and "no decision with that id" in err and "--force" in err
    assert log.read_bytes() == before


def test_feedback_for_an_unknown_decision_with_force_is_recorded_with_a_warning(log, capsys):
    assert main(["feedback", "d-elsewhere", "1", "--log", str(log), "--force"]) == 0
    assert "warning:" in capsys.readouterr().err
    assert read_log(log).feedback["d-elsewhere"]["quality"] == 1.0


def test_feedback_again_replaces_the_earlier_one_and_says_so(log, capsys):
    assert main(["feedback", "d-1", "bad", "--log", str(log)]) == 0
    capsys.readouterr()
    assert main(["feedback", "d-1", "good", "--log", str(log)]) == 0
    assert "replaces" in capsys.readouterr().err
    assert read_log(log).feedback["d-1"]["quality"] == 1.0


def test_feedback_for_a_failed_decision_warns_that_convert_skips_it(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(decision(1, error="ProviderError")) + "\n", encoding="utf-8")
    assert main(["feedback", "d-1", "good", "--log", str(path)]) == 0
    assert "failed" in capsys.readouterr().err


def test_feedback_after_a_cut_last_line_starts_on_a_new_line(log, capsys):
    with log.open("a", encoding="utf-8") as fh:
        fh.write('{"type": "decision", "id": "d-9", "st')  # a crash mid-write
    assert main(["feedback", "d-3", "0.5", "--log", str(log)]) == 0
    contents = read_log(log)
    assert contents.feedback["d-3"]["quality"] == 0.5 and len(contents.problems) == 1


def test_feedback_writes_decisions_jsonl_in_the_current_directory_by_default(log):
    result = steproute_cmd("feedback", "d-3", "good", cwd=log.parent)
    assert result.returncode == 0, result.stderr
    assert read_log(log).feedback["d-3"]["quality"] == 1.0


def test_feedback_to_a_missing_log_is_one_line_and_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    assert main(["feedback", "d-1", "good", "--log", str(missing)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not missing.exists()


@pytest.mark.parametrize("kind", ["rows", "artefact", "config"])
def test_feedback_into_a_file_that_is_not_a_decision_log_is_refused(request, capsys, kind):
    path = request.getfixturevalue(kind)
    before = path.read_bytes()
    assert main(["feedback", "d-1", "good", "--log", str(path), "--force"]) == 2
    assert "not a decision log" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_feedback_into_a_log_that_cannot_grow_says_not_recorded(log):
    """The write fails (a file-size limit at the log's size: EFBIG, as a full disk fails it)."""
    import resource

    size = log.stat().st_size
    proc = subprocess.run([sys.executable, "-m", "steproute", "feedback", "d-1", "good", "--log", str(log)],
                          capture_output=True, text=True, env=ENV, timeout=120,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size)))
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("steproute feedback: not recorded: writing to the file failed")
    assert "EFBIG" in lines[0] and log.stat().st_size == size


@pytest.mark.parametrize("kind", ["rows", "config", "tmp_path"])
def test_demo_log_into_a_file_that_is_not_a_decision_log_is_refused_before_running(request, capsys, kind):
    path = request.getfixturevalue(kind)
    before = path.read_bytes() if path.is_file() else None
    assert main(["demo", "--log", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert "--log" in captured.err and (path.read_bytes() if path.is_file() else None) == before


# -- the wrong kind of file ------------------------------------------------------------------------


def test_a_decision_log_given_as_rows_points_at_convert(log, config, tmp_path, capsys):
    assert main(["eval", "--data", str(log), "--policy", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "is a decision log" in err[0] and f"steproute convert --from log {log}" in err[0]


@pytest.mark.parametrize("command", ["train", "calibrate"])
def test_a_decision_log_without_ratings_is_refused_by_train_and_calibrate(log, config, tmp_path, capsys, command):
    # train and calibrate read a decision log (tests/unit/test_train_from_log.py); one nobody rated
    # or shadowed gives no rows, and the error says how to get some
    extra = {"train": ["--out", str(tmp_path / "a.steproute")],
             "calibrate": ["--config", str(config), "--step", "plan"]}[command]
    assert main([command, "--data", str(log), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"steproute {command}: {log}: a decision log with no usable rows (rate decisions with "
                       "steproute feedback, or shadow a step; write the log with messages: true)")
    assert not (tmp_path / "a.steproute").exists()


def test_an_artefact_given_as_rows_points_at_policy(artefact, config, capsys):
    assert main(["eval", "--data", str(artefact), "--policy", str(config)]) == 2
    assert "--policy" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["log", "rows"])
def test_eval_policy_that_is_data_points_at_the_right_option(request, rows, capsys, kind):
    path = request.getfixturevalue(kind)
    assert main(["eval", "--data", str(rows), "--policy", str(path)]) == 2
    err = capsys.readouterr().err
    assert "--policy takes" in err and ("steproute convert" in err if kind == "log" else "--data" in err)


@pytest.mark.parametrize(("kind", "hint"), [("rows", "steproute eval --data"), ("artefact", "steproute eval --policy"),
                                            ("config", "steproute check")])
def test_report_on_a_file_that_is_not_a_decision_log_points_at_the_right_command(request, capsys, kind, hint):
    path = request.getfixturevalue(kind)
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and hint in err[0], err


@pytest.mark.parametrize(("kind", "hint"), [("log", "steproute report"), ("rows", "steproute eval --data"),
                                            ("artefact", "steproute eval --policy")])
def test_check_on_a_file_that_is_not_a_configuration_points_at_the_right_command(request, capsys, kind, hint):
    path = request.getfixturevalue(kind)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and hint in err[0], err


def test_convert_of_a_decision_log_without_from_log_says_add_it(log, tmp_path, capsys):
    assert main(["convert", str(log), "--out", str(tmp_path / "rows.jsonl")]) == 2
    assert "add --from log" in capsys.readouterr().err


def test_convert_of_rows_says_they_are_already_rows(rows, tmp_path, capsys):
    assert main(["convert", "--from", "log", str(rows), "--out", str(tmp_path / "out.jsonl")]) == 2
    assert "already rows" in capsys.readouterr().err


# -- train on rows converted from a log --------------------------------------------------------------


@pytest.fixture
def rows_from_a_log(tmp_path: Path) -> Path:
    """What ``steproute convert --from log`` writes: one outcome per row, the model that answered."""
    path = tmp_path / "from-log.jsonl"
    models = ("openai/gpt-4o-mini", "openai/gpt-4o")
    lines = []
    for i in range(40):
        model = models[i % 2]
        lines.append(json.dumps({"id": f"d-{i}", "step": "answer", "messages": [
            {"role": "user", "content": f"question {i} about {'maths' if i % 3 else 'poetry'}"}],
            "outcomes": {model: {"quality": float(i % 3 != 0 or model.endswith("4o")),
                                 "cost_usd": 0.001 if model.endswith("mini") else 0.01}}}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_train_on_rows_from_a_log_skips_cross_validation_and_says_why(rows_from_a_log, tmp_path, capsys):
    out = tmp_path / "a.steproute"
    assert main(["train", "--data", str(rows_from_a_log), "--out", str(out)]) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert out.exists() and "cross-validation skipped" in captured.err and "one model's outcome" in captured.err


def test_train_on_rows_from_a_log_with_explicit_folds_points_at_folds_0(rows_from_a_log, tmp_path, capsys):
    assert main(["train", "--data", str(rows_from_a_log), "--out", str(tmp_path / "a.steproute"), "--folds", "5"]) == 2
    assert "--folds 0" in capsys.readouterr().err


@pytest.mark.parametrize("policy", ["semantic", "cascade"])
def test_train_semantic_or_cascade_on_rows_from_a_log_points_at_classifier(rows_from_a_log, tmp_path, capsys, policy):
    out = tmp_path / "a.steproute"
    assert main(["train", "--data", str(rows_from_a_log), "--out", str(out), "--policy", policy]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--policy classifier" in err[0] and not out.exists()


@pytest.mark.parametrize("command", ["calibrate", "report"])
def test_a_decision_log_given_as_config_points_at_the_right_command(log, rows, capsys, command):
    args = ["calibrate", "--data", str(rows), "--config", str(log), "--step", "plan"] if command == "calibrate" else [
        "report", str(log), "--config", str(log)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--config {log} is a decision log" in err[0] and f"steproute report {log}" in err[0]
