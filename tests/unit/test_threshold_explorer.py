"""``steproute eval|calibrate --html``: the threshold explorer page (its data, its writing, its errors).

The page in a real browser: tests/integration/test_threshold_explorer_chromium.py."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from steproute.cli import main
from steproute.evaluation import Outcomes, choose_tiers, evaluate, read_rows, write_rows
from steproute.evaluation._train import train_classifier
from steproute.policies._artefact import save_artefact
from steproute.policies.classifier import ClassifierPolicy
from tests.unit.test_evaluation_cli import CONFIG
from tests.unit.test_learned_policies import MODELS, synthetic_rows

TIER_MODELS = ["--model", f"fast={MODELS[0]}", "--model", f"strong={MODELS[1]}"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def embedded(page: Path) -> dict:
    found = re.search(r'<script type="application/json" id="sweep">(.*?)</script>', page.read_text(), re.S)
    assert found, "no embedded sweep"
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("explorer")
    write_rows(synthetic_rows(120, seed=2), d / "test.jsonl")
    save_artefact(train_classifier(synthetic_rows(300, seed=1), MODELS, folds=0), d / "a.steproute")
    (d / "steproute.yaml").write_text(CONFIG)
    return d


def test_eval_html_embeds_the_sweep_point_by_point(files, capsys, tmp_path):
    page = tmp_path / "explorer.html"
    code, out, err = run(capsys, "eval", "--data", str(files / "test.jsonl"), "--policy", str(files / "a.steproute"),
                         "--html", str(page))
    assert code == 0, err
    assert f"wrote {page}" in out
    data = embedded(page)
    rows, _ = read_rows(files / "test.jsonl")
    result = evaluate(rows, files / "a.steproute")
    assert data["tiers"] == list(MODELS) and data["rows"] == 120
    swept = sorted(result.curve.points, key=lambda p: p.threshold)
    assert [p["threshold"] for p in data["points"]] == [p.threshold for p in swept]
    assert [p["quality"] for p in data["points"]] == [p.quality for p in swept]
    assert [p["cost_usd"] for p in data["points"]] == [p.cost_usd for p in swept]
    # the share per tier, recomputed from the policy's own scores at each threshold
    from steproute.policies._artefact import load_artefact

    scorer = ClassifierPolicy(load_artefact(files / "a.steproute"), None, None)
    from steproute.evaluation._evaluate import request_of

    scores = np.array([scorer.scores(request_of(r)) for r in rows])
    outcomes = Outcomes.of(rows, MODELS)
    for p in data["points"][:: max(1, len(data["points"]) // 25)]:
        choice = choose_tiers(scores, p["threshold"])
        assert p["tier_shares"] == [float(np.mean(choice == i)) for i in range(len(MODELS))]
        assert p["quality"] == pytest.approx(outcomes.at(choice)[0])
    # the marked point is the policy's threshold, and the sweep's point there is eval's figures
    s = result.summary
    marked = data["points"][data["marked"]["index"]]
    assert data["marked"]["threshold"] == s.threshold and data["marked"]["label"] == "the policy's threshold"
    assert (marked["quality"], marked["cost_usd"]) == pytest.approx((s.quality, s.cost_usd))
    assert (data["strong_quality"], data["strong_cost_usd"]) == (s.strong_quality, s.strong_cost_usd)
    text = page.read_text()
    assert f'id="slider" min="0" max="{len(swept) - 1}" step="1" value="{data["marked"]["index"]}"' in text
    # self-contained: nothing to fetch, and a policy that forbids fetching anything
    assert not re.search(r"\b(src|href)\s*=", text) and "http://" not in text and "https://" not in text
    assert "default-src 'none'" in text


def test_calibrate_html_marks_the_calibrated_point(files, capsys, tmp_path):
    page = tmp_path / "cal.html"
    code, out, err = run(capsys, "calibrate", "--data", str(files / "test.jsonl"), "--config",
                         str(files / "steproute.yaml"), "--step", "answer", "--strong-share", "0.4", "--json",
                         "--html", str(page), *TIER_MODELS)
    assert code == 0, err
    result = json.loads(out)
    assert result["html"] == str(page)
    data = embedded(page)
    assert data["tiers"] == ["fast", "strong"]
    assert data["marked"]["threshold"] == result["threshold"]
    assert data["marked"]["label"] == "calibrated for at most 40% of calls on stronger tiers"
    marked = data["points"][data["marked"]["index"]]
    assert marked["threshold"] == result["threshold"]
    assert (marked["quality"], marked["cost_usd"], marked["tier_shares"][1]) == (
        result["quality"], result["cost_usd"], result["strong_share"])
    # without --json: one more line naming the page
    code, out, err = run(capsys, "calibrate", "--data", str(files / "test.jsonl"), "--config",
                         str(files / "steproute.yaml"), "--step", "answer", "--html", str(page), *TIER_MODELS)
    assert code == 0, err
    assert out.splitlines()[-1] == f"wrote {page}"


@pytest.mark.parametrize("command", ["eval", "calibrate"])
def test_a_bad_html_path_is_a_one_line_error(files, capsys, tmp_path, command):
    target = ["--policy", str(files / "a.steproute")] if command == "eval" else [
        "--config", str(files / "steproute.yaml"), "--step", "answer", *TIER_MODELS]
    for bad, why in ((tmp_path / "no" / "such" / "dir" / "x.html", "No such file or directory"),
                     (tmp_path, "Is a directory")):
        code, out, err = run(capsys, command, "--data", str(files / "test.jsonl"), *target, "--html", str(bad))
        assert code == 2 and out == ""
        assert err == f"steproute {command}: cannot write --html {bad}: {why}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary file left behind


def test_html_on_a_policy_without_a_threshold_is_refused(files, capsys, tmp_path):
    page = tmp_path / "x.html"
    code, out, err = run(capsys, "eval", "--data", str(files / "test.jsonl"), "--policy", str(files / "steproute.yaml"),
                         "--step", "other", "--html", str(page), *TIER_MODELS)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert "has no threshold to sweep (classifier or semantic needed)" in err
    assert not page.exists()


def test_tier_names_and_title_are_escaped(files, tmp_path):
    from steproute.evaluation._explorer import explorer_data, render_explorer

    rows, _ = read_rows(files / "test.jsonl")
    result = evaluate(rows, files / "a.steproute")
    s = result.summary
    data = explorer_data(result.curve, tiers=("<b>cheap</b>", "strong"), rows=s.rows, strong_quality=s.strong_quality,
                         strong_cost_usd=s.strong_cost_usd, weak_quality=s.weak_quality, weak_cost_usd=s.weak_cost_usd,
                         marked_threshold=s.threshold, marked_label="</script><script>alert(1)</script>",
                         title="<i>t</i>")
    text = render_explorer(data)
    assert "<b>cheap</b>" not in text and "<i>t</i>" not in text
    assert text.count("</script>") == 2  # the data's and the script's: the label cannot close either
    assert html.escape("<b>cheap</b>") in text


def test_three_tiers_each_get_their_share_at_every_swept_threshold():
    from steproute.evaluation import sweep
    from steproute.evaluation._explorer import explorer_data, render_explorer

    rng = np.random.default_rng(3)
    quality = rng.random((60, 3)).round(1)
    outcomes = Outcomes(("a", "b", "c"), quality, np.tile([0.1, 0.5, 2.0], (60, 1)))
    scores = quality + rng.normal(0, 0.2, quality.shape)
    curve = sweep(scores, outcomes)
    for p in curve.points:
        choice = choose_tiers(scores, p.threshold)
        assert p.tier_shares == tuple(float(np.mean(choice == i)) for i in range(3))
        assert p.strong_share == pytest.approx(1 - p.tier_shares[0])
    assert any(0 < p.tier_shares[1] < 1 for p in curve.points)  # the middle tier is used somewhere
    data = explorer_data(curve, tiers=("fast", "standard", "advanced"), rows=60, strong_quality=quality[:, 2].mean(),
                         strong_cost_usd=120.0, weak_quality=quality[:, 0].mean(), weak_cost_usd=6.0,
                         marked_threshold=0.0, marked_label="here")
    text = render_explorer(data)
    assert all(f'id="share-{t}"' in text and f'id="bar-{t}"' in text for t in ("fast", "standard", "advanced"))
