"""``steproute convert | train | eval | calibrate`` end to end, in process, on files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steproute.cli import main
from steproute.evaluation import read_rows, write_rows
from tests.unit.test_evaluation import DATA
from tests.unit.test_learned_policies import MODELS, synthetic_rows


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("eval")
    write_rows(synthetic_rows(300, seed=1), d / "train.jsonl")
    write_rows(synthetic_rows(120, seed=2), d / "test.jsonl")
    return d


def test_convert_train_eval_on_real_benchmark_rows(tmp_path, capsys):
    code, out, err = run(capsys, "convert", str(DATA / "gsm8k"), "--out", str(tmp_path / "train.jsonl"),
                         "--holdout", "0.3", "--holdout-out", str(tmp_path / "test.jsonl"))
    assert code == 0, err
    assert out.splitlines() == [f"wrote 392 held-out rows to {tmp_path / 'test.jsonl'}",
                                f"wrote 915 rows to {tmp_path / 'train.jsonl'} (12 contaminated prompts dropped)"]
    code, out, err = run(capsys, "train", "--data", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "g.steproute"),
                         "--folds", "0")
    assert code == 0, err
    assert "classifier over mistralai/Mixtral-8x7B-Instruct-v0.1, gpt-4-1106-preview (cheap to strong), 915 rows" in out
    code, out, err = run(capsys, "eval", "--data", str(tmp_path / "test.jsonl"), "--policy", str(tmp_path / "g.steproute"),
                         "--json")
    assert code == 0, err
    result = json.loads(out)
    # rows the classifier never saw: well above a random router's 0.5 (0.67 when this was written)
    assert result["apgr"] > 0.58 and result["cpt50"] < 0.42
    assert result["rows"] == 392 and result["aiq"] is not None


def test_eval_json_and_plot(data, capsys, tmp_path):
    art = tmp_path / "a.steproute"
    code, out, err = run(capsys, "train", "--data", str(data / "train.jsonl"), "--out", str(art), "--folds", "3",
                         "--quality-ratio", "0.97", "--json")
    assert code == 0, err
    trained = json.loads(out)
    assert trained["models"] == list(MODELS) and trained["cross_validation"]["folds"] == 3
    png = tmp_path / "curve.png"
    code, out, err = run(capsys, "eval", "--data", str(data / "test.jsonl"), "--policy", str(art), "--json", "--plot", str(png))
    assert code == 0, err
    result = json.loads(out)
    for key in ("apgr", "cpt50", "cpt80", "strong_share"):
        assert 0.0 <= result[key] <= 1.0, key
    assert {"quality", "cost_usd", "aiq"} <= result.keys()
    assert result["quality"] >= 0.97 * result["strong_quality"] - 0.05  # the target, on unseen rows
    assert result["cost_usd"] < result["strong_cost_usd"]
    from PIL import Image

    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 1000
        colours = image.convert("RGB").getcolors(1 << 20)
    assert len(colours) > 50  # curves, not a blank canvas
    code, out, _ = run(capsys, "eval", "--data", str(data / "test.jsonl"), "--policy", str(art))
    assert code == 0 and "APGR" in out and "CPT(50%)" in out and "always strongest" in out


CONFIG = """\
# tiers for the synthetic rows
tiers:
  fast:
    models: [{model: openai/gpt-4o-mini, mock_response: ok}]
  strong:
    models: [{model: openai/gpt-4o, mock_response: ok}]
default: fast
steps:
  answer:
    policy: classifier   # the trained one
    artefact: a.steproute
  other:
    policy: rules
    rules:
      - tier: strong
        when: {keywords: [prove]}
"""


def test_calibrate_writes_the_threshold_into_the_config(data, capsys, tmp_path):
    assert run(capsys, "train", "--data", str(data / "train.jsonl"), "--out", str(tmp_path / "a.steproute"),
               "--folds", "0")[0] == 0
    config = tmp_path / "steproute.yaml"
    config.write_text(CONFIG)
    models = ["--model", f"fast={MODELS[0]}", "--model", f"strong={MODELS[1]}"]
    code, out, err = run(capsys, "calibrate", "--data", str(data / "test.jsonl"), "--config", str(config),
                         "--step", "answer", "--strong-share", "0.5", "--write", "--json", *models)
    assert code == 0, err
    result = json.loads(out)
    assert result["strong_share"] <= 0.5 and result["written"] == str(config)
    text = config.read_text()
    assert f"    threshold: {result['threshold']:.6g}\n" in text
    assert "# tiers for the synthetic rows" in text and "# the trained one" in text  # comments kept
    # again: the line is replaced, not added twice
    code, _, err = run(capsys, "calibrate", "--data", str(data / "test.jsonl"), "--config", str(config),
                       "--step", "answer", "--quality-ratio", "0.9", "--write", *models)
    assert code == 0, err
    assert config.read_text().count("threshold:") == 1
    # a config step replayed: the rules policy gives one operating point
    code, out, err = run(capsys, "eval", "--data", str(data / "test.jsonl"), "--policy", str(config), "--step", "other",
                         "--json", *models)
    assert code == 0, err
    assert json.loads(out)["strong_share"] == pytest.approx(0.5, abs=0.01)  # the proofs, by keyword
    code, _, err = run(capsys, "calibrate", "--data", str(data / "test.jsonl"), "--config", str(config), "--step", "other",
                       *models)
    assert code == 2 and "step 'other': its policy has no threshold to calibrate" in err


def test_bad_input_gets_clear_errors(data, capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    first = (data / "test.jsonl").read_text().splitlines()[0]
    bad.write_text(first + '\n{"id": "x", "messages": [], "outcomes": {"m": {"quality": "no"}}}\n')
    code, _, err = run(capsys, "train", "--data", str(bad), "--out", str(tmp_path / "x"))
    assert code == 2 and "bad.jsonl: 1 bad row(s):\n  line 2: outcomes.m.quality must be a number, got str 'no'" in err
    assert not (tmp_path / "x").exists()
    code, _, err = run(capsys, "eval", "--data", str(data / "test.jsonl"), "--policy", str(tmp_path / "none"))
    assert code == 2 and "no such artefact or configuration file" in err
    one_model = tmp_path / "one.jsonl"
    rows, _ = read_rows(data / "test.jsonl")
    write_rows([type(r)(r.id, r.messages, {MODELS[0]: r.outcomes[MODELS[0]]}, r.step) for r in rows], one_model)
    code, _, err = run(capsys, "train", "--data", str(one_model), "--out", str(tmp_path / "x"))
    assert code == 2 and "need outcomes of two or more models" in err
    code, _, err = run(capsys, "convert", str(tmp_path), "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and "cannot tell which benchmark" in err
