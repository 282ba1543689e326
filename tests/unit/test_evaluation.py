"""The evaluation format, the RouteLLM loaders, the metrics and calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from steproute.evaluation import (
    DataError,
    EvalRow,
    Outcome,
    Outcomes,
    Target,
    aiq,
    calibrate,
    choose_tiers,
    from_decision_log,
    load_gsm8k,
    load_mmlu,
    load_mt_bench,
    read_rows,
    split_rows,
    summarise,
    sweep,
    write_rows,
)
from steproute.evaluation._routellm import GPT4, MIXTRAL

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "routellm" / "routellm" / "evals"


def row(i: int, cheap: float, strong: float, step: str = "s") -> EvalRow:
    return EvalRow(f"r{i}", ({"role": "user", "content": f"question {i}"},),
                   {"cheap": Outcome(cheap, 0.001), "strong": Outcome(strong, 0.02)}, step=step)


# -- the format -------------------------------------------------------------------------------


def test_rows_round_trip(tmp_path):
    rows = [row(0, 1.0, 1.0), EvalRow("x", ({"role": "user", "content": "é"},), {"m": Outcome(0.5, 0.1, "ok")},
                                      step="extract", kind="extract", meta={"subject": "a"})]
    path = tmp_path / "rows.jsonl"
    assert write_rows(rows, path) == 2
    back, problems = read_rows(path)
    assert back == rows and problems == []


def test_bad_rows_are_reported_with_their_line_numbers(tmp_path):
    good = json.dumps(row(0, 1, 1).to_json())
    lines = [
        good,
        "{not json",
        json.dumps({"id": "a", "messages": [{"role": "user", "content": "q"}], "outcomes": {}}),
        json.dumps({"id": "b", "messages": [{"role": "user", "content": "q"}], "outcomes": {"m": {"quality": "high"}}}),
        json.dumps({"id": "c", "messages": [{"role": "user", "content": "q"}], "outcomes": {"m": {"quality": 1.5}}}),
        json.dumps({"id": "d", "messages": [{"role": "user", "content": "q"}], "outcomes": {"m": {"cost_usd": 1}}}),
        "",
        good,
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as excinfo:
        read_rows(path)
    assert excinfo.value.problems == [
        "line 2: not JSON (Expecting property name enclosed in double quotes at column 2)",
        "line 3: 'outcomes' is missing or empty",
        "line 4: outcomes.m.quality must be a number, got str 'high'",
        "line 5: outcomes.m.quality must be in [0, 1], got 1.5",
        "line 6: outcomes.m: 'quality' is missing",
        "line 8: duplicate id 'r0'",
    ]
    rows, problems = read_rows(path, skip_bad=True)
    assert [r.id for r in rows] == ["r0"] and len(problems) == 6


def test_unknown_models_are_reported(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_rows([row(0, 1, 1)], path)
    with pytest.raises(DataError, match=r"line 1: outcomes: unknown model 'cheap' \(known: strong\)"):
        read_rows(path, models=["strong"])


# -- RouteLLM loaders -------------------------------------------------------------------------


def test_mmlu_loader_reports_bad_cells_and_missing_columns(tmp_path):
    (tmp_path / "mmlu_astronomy.csv").write_text(
        f'prompt,{MIXTRAL},{GPT4}\n"What is a star?\nA. gas\nAnswer:",True,False\n"Q2",maybe,True\n,True,True\n')
    (tmp_path / "mmlu_law.csv").write_text("prompt,some-model\nQ,True\n")
    loaded = load_mmlu(tmp_path)
    assert [r.id for r in loaded.rows] == ["mmlu-astronomy-0"]
    assert loaded.rows[0].step == "mmlu/astronomy"
    assert loaded.rows[0].outcomes[MIXTRAL].quality == 1.0 and loaded.rows[0].outcomes[GPT4].quality == 0.0
    assert loaded.problems == [
        f"mmlu_astronomy.csv line 5: {MIXTRAL} must be True or False, got 'maybe'",
        "mmlu_astronomy.csv line 6: prompt is empty",
        f"mmlu_law.csv line 1: no column for model(s) {MIXTRAL}, {GPT4} (columns: prompt, some-model)",
    ]


def test_the_shared_routellm_data_loads_with_the_published_figures():
    mmlu, gsm8k, mt = load_mmlu(DATA / "mmlu"), load_gsm8k(DATA / "gsm8k"), load_mt_bench(DATA / "mt_bench")
    assert (len(mmlu.rows), mmlu.contaminated, mmlu.problems) == (9791, 4, [])
    assert (len(gsm8k.rows), gsm8k.contaminated, gsm8k.problems) == (1307, 12, [])
    assert (len(mt.rows), mt.problems) == (144, [])

    def mean(rows, model):
        return float(np.mean([r.outcomes[model].quality for r in rows]))

    # the README's figures for the full decontaminated sets (MMLU here is the 70% development part)
    assert mean(gsm8k.rows, GPT4) == pytest.approx(0.858, abs=0.002)
    assert mean(gsm8k.rows, MIXTRAL) == pytest.approx(0.637, abs=0.002)
    assert mean(mt.rows, GPT4) == pytest.approx(0.921, abs=0.002)
    assert mean(mt.rows, MIXTRAL) == pytest.approx(0.828, abs=0.002)
    assert 0.79 < mean(mmlu.rows, GPT4) < 0.82 and 0.66 < mean(mmlu.rows, MIXTRAL) < 0.70
    assert all(r.outcomes[GPT4].response for r in gsm8k.rows)  # the cascade's material
    second_turn = next(r for r in mt.rows if r.meta["turn"] == 2)
    assert [m["role"] for m in second_turn.messages] == ["user", "assistant", "user"]
    # costs at RouteLLM's prices: the strong model about 22x the weak one per token
    ratio = sum(r.outcomes[GPT4].cost_usd for r in mmlu.rows) / sum(r.outcomes[MIXTRAL].cost_usd for r in mmlu.rows)
    assert ratio == pytest.approx(20 / 0.9, rel=0.01)


def test_split_holds_out_a_share_of_every_step():
    rows = [row(i, 1, 1, step=f"s{i % 3}") for i in range(90)]
    train, test = split_rows(rows, 0.3, seed=1)
    assert len(test) == 27 and len(train) == 63
    assert {r.step for r in test} == {"s0", "s1", "s2"} and not {r.id for r in train} & {r.id for r in test}
    assert split_rows(rows, 0.3, seed=1) == (train, test)


# -- metrics ----------------------------------------------------------------------------------


def outcomes_of(cheap: list[float], strong: list[float]) -> Outcomes:
    return Outcomes.of([row(i, c, s) for i, (c, s) in enumerate(zip(cheap, strong, strict=True))], ["cheap", "strong"])


def test_choose_tiers_picks_the_cheapest_within_the_threshold_of_a_stronger_tier():
    scores = np.array([[0.50, 0.52, 0.90], [0.80, 0.70, 0.82], [0.2, 0.9, 0.91]])
    assert choose_tiers(scores, 0.05).tolist() == [2, 0, 1]
    assert choose_tiers(scores, -1.0).tolist() == [2, 2, 2]
    assert choose_tiers(scores, 1.0).tolist() == [0, 0, 0]


def test_curve_of_a_perfect_and_of_an_uninformed_router():
    rng = np.random.default_rng(0)
    cheap = (rng.random(2000) < 0.6).astype(float)
    strong = np.maximum(cheap, (rng.random(2000) < 0.7)).astype(float)
    out = outcomes_of(list(cheap), list(strong))
    random_summary, _ = summarise(rng.random((2000, 2)), out, 0.0)
    assert random_summary.apgr == pytest.approx(0.5, abs=0.05)
    assert random_summary.cpt50 == pytest.approx(0.5, abs=0.07)
    oracle, curve = summarise(out.oracle_scores(), out, 0.0)
    gain_share = float(((strong - cheap) > 0).mean())
    assert oracle.cpt50 == pytest.approx(gain_share / 2, abs=0.01)
    assert oracle.quality == pytest.approx(strong.mean())  # never worse than always-strong
    assert oracle.apgr == pytest.approx(1 - gain_share / 2, abs=0.01)  # up to the gap, then flat
    assert curve.shares[0] == 0.0 and curve.shares[-1] == 1.0


def test_equal_scores_move_together():
    out = outcomes_of([1, 0, 1, 0], [1, 1, 1, 1])
    curve = sweep(np.array([[0.5, 0.5]] * 4), out)
    assert sorted({p.strong_share for p in curve.points}) == [0.0, 1.0]


def test_aiq_of_a_straight_line_is_its_mean_quality():
    assert aiq(np.array([1.0, 3.0]), np.array([0.6, 0.8]), 1.0, 3.0) == pytest.approx(0.7)
    # a point above the line lifts the hull; points below it do not count
    assert aiq(np.array([1.0, 2.0, 3.0, 2.5]), np.array([0.6, 0.8, 0.8, 0.5]), 1.0, 3.0) == pytest.approx(0.75)


def test_pgr_needs_a_gap():
    out = outcomes_of([1, 1], [1, 0])
    with pytest.raises(ValueError, match="not above the cheapest"):
        summarise(np.zeros((2, 2)), out, 0.0)


def test_calibration_meets_a_share_cap_or_a_quality_floor():
    rng = np.random.default_rng(3)
    cheap = (rng.random(1000) < 0.6).astype(float)
    strong = np.ones(1000)
    out = outcomes_of(list(cheap), list(strong))
    _, curve = summarise(out.oracle_scores() + rng.normal(0, 0.3, (1000, 2)), out, 0.0)
    capped = calibrate(curve, Target(strong_share=0.2), 1.0)
    assert capped.strong_share <= 0.2 and capped.strong_share > 0.15
    floor = calibrate(curve, Target(quality_floor=0.8), 1.0)
    assert floor.quality >= 0.8 and floor.cost_usd == min(p.cost_usd for p in curve.points if p.quality >= 0.8)
    with pytest.raises(ValueError, match=r"no threshold reaches quality >= 100% of the strongest tier \(quality 1.0100\)"):
        calibrate(curve, Target(quality_ratio=1.0), 1.01)
    with pytest.raises(ValueError, match="exactly one target"):
        Target(strong_share=0.2, quality_floor=0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Target(quality_ratio=95)


# -- the decision log as a data source --------------------------------------------------------


def test_a_decision_log_with_feedback_becomes_rows(tmp_path):
    from steproute import RouterConfig, StepRequest, StepRouter
    from steproute.decision_log import JsonlDecisionLog
    from tests.conftest import mock_tiers

    log = tmp_path / "decisions.jsonl"
    router = StepRouter(RouterConfig(tiers=mock_tiers(), default="fast"),
                        decision_log=JsonlDecisionLog(log, include_prompts=True))
    first = router.complete(StepRequest("answer", [{"role": "user", "content": "what is 2+2?"}]))
    router.complete(StepRequest("answer", [{"role": "user", "content": "unlabelled"}]))
    router.feedback(first.decision.id, 1.0)
    router.decision_log.close()
    with open(log, "a") as fh:
        fh.write("{broken\n")
    loaded = from_decision_log(log)
    assert [(r.step, r.messages[-1]["content"], dict(r.outcomes)) for r in loaded.rows] == [
        ("answer", "what is 2+2?", {"openai/gpt-4o-mini": Outcome(1.0, first.cost_usd, "answer from fast")})]
    assert loaded.problems[0].endswith(":4: not JSON (Expecting property name enclosed in double quotes)")
    assert loaded.problems[1] == "1 decision(s) have no feedback or shadow result (or failed) and give no row"


def test_mt_bench_loader_reports_bad_lines(tmp_path):
    (tmp_path / "question.jsonl").write_text(
        '{"question_id": 1, "category": "math", "turns": ["What is 2+2?", "And 3+3?"]}\n'
        '{"question_id": 2, "turns": []}\n'
        '[1, 2]\n')
    grade = {"question_id": 1, "model": MIXTRAL, "turn": 1, "score": 8, "user_prompt": ""}
    lines = [grade, {**grade, "model": GPT4, "score": 10}, {**grade, "score": "good"}, {**grade, "model": "other"},
             {**grade, "question_id": 9}, {**grade, "turn": 3}, {**grade, "turn": 2}]
    (tmp_path / "judgements.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{oops\n")
    loaded = load_mt_bench(tmp_path)
    assert [(r.id, r.step, r.outcomes[GPT4].quality) for r in loaded.rows] == [("mt_bench-1-1", "mt_bench/math", 1.0)]
    assert loaded.problems == [
        "question.jsonl line 2: needs question_id and a non-empty list of turns (strings)",
        "question.jsonl line 3: not a JSON object but list",
        "judgements.jsonl line 3: score must be a number from 1 to 10, got 'good'",
        "judgements.jsonl line 4: unknown model 'other'",
        "judgements.jsonl line 5: question_id 9 is not in question.jsonl",
        "judgements.jsonl line 6: turn must be 1 or 2, got 3",
        "judgements.jsonl line 8: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        f"judgements.jsonl: question 1 turn 2 has no grade for {GPT4}",
    ]
