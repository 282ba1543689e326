"""Cascade routing (``policy: cascade`` with a ``cascade_routing`` artefact): the value rule on
hand-made estimates, its isotonic calibration, its artefact, and real calls through a
StepRouter over LiteLLM's mock_response.

(Named ``test_cascade_value`` because tests/integration/test_cascade_routing.py exists: pytest
without packages refuses two test modules of one name.)
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from steproute import RouterConfig, StepRouter
from steproute.evaluation import EvalRow, Outcome, Target
from steproute.evaluation._cascade import CascadeTable
from steproute.evaluation._cascade_routing_train import (
    evaluate_cascade_routing,
    isotonic_knots,
    simulate,
    train_cascade_routing,
)
from steproute.policies._artefact import ArtefactError, load_artefact, save_artefact
from steproute.policies.cascade_value import CascadeRoutingPolicy, accepts, start_tier, start_values
from steproute.policies.confidence import Answer
from steproute.types import StepRequest

COSTS = np.array([0.05, 1.0])


# -- the decision rule on hand-made estimates --------------------------------------------------


def test_a_cheap_tier_sure_to_fail_is_skipped_and_a_likely_one_is_tried():
    sure_to_fail = start_values(np.array([0.02, 0.9]), COSTS, lam=0.2, kappa=0.5)
    assert int(start_tier(sure_to_fail)) == 1
    likely = start_values(np.array([0.85, 0.9]), COSTS, lam=0.2, kappa=0.5)
    assert int(start_tier(likely)) == 0
    # the value of starting strong is its estimate less λ times its cost
    assert sure_to_fail[1] == pytest.approx(0.9 - 0.2 * 1.0)


def test_an_answer_is_kept_when_its_calibrated_estimate_beats_the_net_value_of_escalating():
    values = start_values(np.array([0.85, 0.9]), COSTS, lam=0.2, kappa=0.5)
    assert values[1] == pytest.approx(0.7)
    assert bool(accepts(0.71, values[1])) and not bool(accepts(0.69, values[1]))
    # a dearer strong tier (higher λ) makes the same answer worth keeping
    dear = start_values(np.array([0.85, 0.9]), COSTS, lam=0.5, kappa=0.5)
    assert bool(accepts(0.5, dear[1])) and not bool(accepts(0.5, values[1]))


def test_a_more_informative_check_makes_a_cheap_start_worth_more():
    q = np.array([0.6, 0.9])
    assert start_values(q, COSTS, 0.2, 1.0)[0] > start_values(q, COSTS, 0.2, 0.0)[0]


def test_the_start_never_leaves_min_tier_and_max_tier():
    rng = np.random.default_rng(0)
    q = rng.random((500, 4))
    values = start_values(q, np.array([0.01, 0.1, 0.4, 1.0]), lam=0.3, kappa=0.5)
    for low, high in ((0, 3), (1, 3), (0, 1), (2, 2), (1, 2)):
        chosen = start_tier(values, low, high)
        assert chosen.min() >= low and chosen.max() <= high
    assert set(start_tier(values).tolist()) > {0}  # unbounded, it does start above the cheapest


def _table(quality: list[list[float]], cost: list[list[float]]) -> CascadeTable:
    rows = [EvalRow(str(i), ({"role": "user", "content": "q"},),
                    {"cheap": Outcome(qr[0], cr[0], "a"), "mid": Outcome(qr[1], cr[1], "b"), "strong": Outcome(qr[2], cr[2])})
            for i, (qr, cr) in enumerate(zip(quality, cost, strict=True))]
    return CascadeTable.of(rows, ("cheap", "mid", "strong"))


def test_the_offline_replay_pays_only_the_tiers_it_calls_and_stops_at_max_tier():
    table = _table([[0, 1, 1], [1, 1, 1], [0, 0, 1]], [[1, 10, 100]] * 3)
    costs = np.array([0.01, 0.1, 1.0])
    pre = np.array([[0.05, 0.9, 0.95], [0.9, 0.9, 0.95], [0.9, 0.5, 0.95]])
    post = np.array([[0.0, 0.9], [0.95, 0.9], [0.1, 0.1]])
    point = simulate(pre, post, table, costs, lam=0.1, kappa=0.0)
    # row 0 starts at mid (cheap skipped) and keeps it; row 1 keeps cheap; row 2 climbs to strong
    assert point.cost_usd == 10 + 1 + (1 + 10 + 100)
    assert point.quality == 1.0 and point.skipped_share == pytest.approx(1 / 3)
    capped = simulate(pre, post, table, costs, lam=0.1, kappa=0.0, high=1)
    assert capped.strong_share == 0.0 and capped.cost_usd == 10 + 1 + 11 and capped.quality == pytest.approx(2 / 3)


# -- the calibrated quality model ----------------------------------------------------------------


def test_isotonic_calibration_is_monotone_and_applied_as_stored():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(1)
    raw = rng.random(400)
    quality = (rng.random(400) < raw ** 2).astype(float)
    x, y = isotonic_knots(raw, quality)
    assert np.all(np.diff(y) >= 0) and y.min() >= 0 and y.max() <= 1
    fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, quality)
    probe = np.concatenate([rng.random(200), [-1.0, 0.0, 1.0, 2.0]])
    assert np.allclose(np.interp(probe, x, y), fit.predict(probe))


# -- a trained artefact, on synthetic rows ----------------------------------------------------------


def _rows() -> list[EvalRow]:
    rows = []
    for i in range(60):
        hard = i % 3 == 0
        right = not hard and i % 20 != 1
        question = f"prove the theorem number {i} rigorously" if hard else f"say hi to person {i}"
        cheap = "2 + 2 = 4. The answer is 4." if right else "I'm not sure, maybe 5."
        rows.append(EvalRow(f"q{i}", ({"role": "user", "content": question},),
                            {"cheap": Outcome(float(right), 0.05, cheap), "strong": Outcome(1.0, 1.0, "The answer is 4.")}))
    return rows


def trained_artefact(directory: Path) -> Path:
    """A cascade-routing artefact trained on :func:`_rows` (cheap, strong), saved in ``directory``."""
    artefact = train_cascade_routing(_rows(), ("cheap", "strong"), folds=3, target=Target(quality_ratio=0.9),
                                     embedding_cache=False)
    path = directory / "routing.steproute"
    save_artefact(artefact, path)
    return path


@pytest.fixture(scope="module")
def artefact_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_artefact(tmp_path_factory.mktemp("croute"))


def test_the_artefact_round_trips_and_replays_as_the_policy_runs(artefact_path: Path):
    artefact = load_artefact(artefact_path, "cascade_routing")
    policy = CascadeRoutingPolicy.load(str(artefact_path), ("fast", "strong"))
    assert policy.lam == artefact.meta["lambda"] and np.array_equal(policy.model.costs, artefact.arrays["costs"])
    rows = _rows()
    evaluation = evaluate_cascade_routing(rows, artefact)
    # the offline replay and the runtime policy agree row by row on where each call starts
    starts = [policy.choose(StepRequest("s", list(r.messages))).tier for r in rows]
    skipped = sum(t == "strong" for t in starts) / len(rows)
    assert evaluation.point.skipped_share == pytest.approx(skipped)
    assert skipped > 0 and evaluation.cost_ratio < 1.0


def test_a_bad_artefact_is_refused_naming_the_file_and_the_array(artefact_path: Path, tmp_path: Path):
    with zipfile.ZipFile(artefact_path) as zf:
        meta, arrays = zf.read("meta.json"), zf.read("arrays.npz")
    import io

    loaded = dict(np.load(io.BytesIO(arrays)))
    loaded["post_mix"] = np.zeros((3, 3))
    buffer = io.BytesIO()
    np.savez(buffer, **loaded)  # type: ignore[arg-type]
    bad = tmp_path / "bad.steproute"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("meta.json", meta)
        zf.writestr("arrays.npz", buffer.getvalue())
    with pytest.raises(ArtefactError, match=r"bad\.steproute: arrays of inconsistent shapes: post_mix must be 1 × 3"):
        CascadeRoutingPolicy.load(str(bad))
    loaded["post_mix"] = np.zeros((1, 3))
    del loaded["classifier.coef"]
    buffer = io.BytesIO()
    np.savez(buffer, **loaded)  # type: ignore[arg-type]
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("meta.json", meta)
        zf.writestr("arrays.npz", buffer.getvalue())
    with pytest.raises(ArtefactError, match=r"bad\.steproute: its classifier: arrays\.npz lacks coef"):
        load_artefact(bad)


# -- through a StepRouter -------------------------------------------------------------------------------

TIERS = {
    "fast": {"models": [{"model": "openai/gpt-4o-mini", "mock_response": "I'm not sure, maybe 5.", "api_key": "k"}]},
    "strong": {"models": [{"model": "openai/gpt-4o", "mock_response": "The answer is 4.", "api_key": "k"}]},
}


def _router(path: Path, **step: Any) -> StepRouter:
    return StepRouter(RouterConfig(tiers=TIERS, default="fast",
                                   steps={"s": {"policy": "cascade", "artefact": str(path), "lambda": 0.2, **step}}))


def _ask(text: str) -> StepRequest:
    return StepRequest("s", [{"role": "user", "content": text}])


def test_a_call_sure_to_fail_on_the_cheap_tier_starts_strong_and_says_why(artefact_path: Path):
    result = _router(artefact_path).complete(_ask("prove the theorem number 999 rigorously"))
    d = result.decision
    assert (d.tier, d.attempts) == ("strong", 1)
    assert [a.tier for a in d.cascade] == ["strong"]
    assert "skipped 'fast': estimated quality 0.0" in d.reason and "λ=0.2" in d.reason


def test_a_low_calibrated_estimate_of_the_cheap_answer_escalates_and_says_why(artefact_path: Path):
    result = _router(artefact_path).complete(_ask("say hi to person 999"))
    d = result.decision
    assert (d.tier, d.escalated_from, d.attempts) == ("strong", "fast", 2)
    first = d.cascade[0]
    assert first.accepted is False
    assert "value of escalating to 'strong'" in first.reason and first.reason.endswith("escalate")
    assert result.completion.content == "The answer is 4."


def test_a_confident_cheap_answer_is_kept(artefact_path: Path):
    tiers = {**TIERS, "fast": {"models": [{"model": "openai/gpt-4o-mini", "mock_response": "2 + 2 = 4. The answer is 4.",
                                           "api_key": "k"}]}}
    router = StepRouter(RouterConfig(tiers=tiers, default="fast",
                                     steps={"s": {"policy": "cascade", "artefact": str(artefact_path), "lambda": 0.2}}))
    d = router.complete(_ask("say hi to person 999")).decision
    assert (d.tier, d.attempts) == ("fast", 1)
    assert d.cascade[0].accepted is True and "accepted" in d.cascade[0].reason


def test_min_tier_and_max_tier_still_bound_a_cascade_routing(artefact_path: Path):
    from steproute import Hint

    router = _router(artefact_path)
    capped = router.complete(StepRequest("s", [{"role": "user", "content": "prove the theorem number 9 rigorously"}],
                                         hint=Hint(max_tier="fast"))).decision
    assert (capped.tier, capped.attempts) == ("fast", 1) and "lowered to max_tier 'fast'" in capped.reason


def test_lambda_is_refused_on_a_plain_trained_cascade(tmp_path: Path):
    from steproute.evaluation._cascade import train_cascade

    save_artefact(train_cascade(_rows(), ("cheap", "strong"), target=Target(quality_ratio=0.9)), tmp_path / "c.steproute")
    with pytest.raises(ValueError, match="'lambda' is for a cascade-routing artefact"):
        _router(tmp_path / "c.steproute")


def test_the_judge_without_a_tier_judges_as_the_first_tier(artefact_path: Path):
    policy = CascadeRoutingPolicy.load(str(artefact_path), ("fast", "strong"), lam=0.2)
    verdict = policy.judge(_ask("say hi to person 3"), Answer("I'm not sure, maybe 5."), None)
    assert not verdict.accepted and verdict.confidence is not None and verdict.confidence < 0.5


# -- the command line: train, then calibrate λ for a configured step ---------------------------------------


def test_train_then_calibrate_writes_lambda_into_the_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    import json

    from steproute.cli import main
    from steproute.evaluation import write_rows

    write_rows(_rows(), tmp_path / "rows.jsonl")
    out = tmp_path / "r.steproute"
    assert main(["train", "--policy", "cascade_routing", "--data", str(tmp_path / "rows.jsonl"), "--out", str(out),
                 "--models", "cheap,strong", "--folds", "3", "--quality-ratio", "0.9", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["policy"] == "cascade_routing" and trained["lambda"] >= 0
    assert main(["eval", "--data", str(tmp_path / "rows.jsonl"), "--policy", str(out), "--json"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["lam"] == trained["lambda"] and 0 < replayed["skipped_share"] < 1 and len(replayed["curve"]) > 100
    config = tmp_path / "steproute.yaml"
    config.write_text("tiers:\n  fast: {models: [{model: openai/gpt-4o-mini, api_key: k}]}\n"
                      "  strong: {models: [{model: openai/gpt-4o, api_key: k}]}\ndefault: fast\n"
                      f"steps:\n  s:\n    policy: cascade  # value routing\n    artefact: {out}\n")
    models = ["--model", "fast=cheap", "--model", "strong=strong"]
    code = main(["calibrate", "--data", str(tmp_path / "rows.jsonl"), "--config", str(config), "--step", "s",
                 "--strong-share", "0.5", "--write", "--json", *models])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["strong_share"] <= 0.5 and result["written"] == str(config)
    text = config.read_text()
    assert f"    lambda: {result['lam']:.6g}\n" in text and "# value routing" in text
    assert StepRouter.from_file(config).policy_of("s").lam == pytest.approx(result["lam"], rel=1e-5)  # type: ignore[attr-defined]


def _hand_made(estimates: list[float], scorer_p: float, calls: list[int]) -> CascadeRoutingPolicy:
    """A policy on hand-made estimates: identity calibrators, a scorer that always says ``scorer_p``."""
    from steproute.policies.answer_scorer import FEATURES, AnswerScorer
    from steproute.policies.cascade_value import QualityModel

    class Fixed:
        def scores(self, request: StepRequest) -> np.ndarray:
            calls.append(1)
            return np.array(estimates)

    n = len(FEATURES)
    logit = float(np.log(scorer_p / (1 - scorer_p)))
    scorer = AnswerScorer((0.0,) * n, (1.0,) * n, (0.0,) * n, logit, 0.5, {})
    grid = np.linspace(0, 1, 5)
    model = QualityModel(np.array([0.05, 1.0]), np.array([grid, grid]), np.array([grid, grid]), np.array([grid]),
                         np.array([grid]), np.array([[1.0, 0.0, 0.0]]))
    return CascadeRoutingPolicy(("fast", "strong"), Fixed(), scorer, model, lam=0.2, kappa=0.0)


def test_hand_made_estimates_decide_start_and_verdict_and_are_estimated_once_per_call():
    calls: list[int] = []
    request = _ask("anything")
    sure_to_fail = _hand_made([0.1, 0.9], 0.9, calls).choose(request)
    assert sure_to_fail.tier == "strong" and "skipped 'fast': estimated quality 0.10" in sure_to_fail.reason

    class OnFast:
        tier = "fast"

    likely = _hand_made([0.9, 0.9], 0.69, calls)
    assert likely.choose(request).tier == "fast"
    verdict = likely.judge(request, Answer("some answer"), OnFast())
    assert not verdict.accepted and "< value of escalating to 'strong' 0.70" in verdict.reason  # 0.69 < 0.9 − 0.2
    assert _hand_made([0.9, 0.9], 0.71, calls).judge(request, Answer("some answer"), OnFast()).accepted
    calls.clear()
    fresh = _ask("a new question")
    likely.choose(fresh)
    likely.judge(fresh, Answer("some answer"), OnFast())
    assert len(calls) == 1  # estimated when deciding; judging its answer does not estimate again
    last = likely.judge(_ask("other"), Answer("x"), type("OnStrong", (), {"tier": "strong"})())
    assert last.accepted and last.reason == "last tier: not judged"
