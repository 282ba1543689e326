"""``irt``: a query's latent difficulty against each tier's latent ability, fitted jointly over tiers."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from steproute import ConfigError, RouterConfig, StepRequest, StepRouter
from steproute.cli import main
from steproute.evaluation import EvalRow, Outcome, write_rows
from steproute.evaluation._irt_train import train_irt
from steproute.evaluation._train import request_of, train_classifier
from steproute.policies._artefact import ArtefactError, load_artefact, save_artefact
from steproute.policies.irt import IrtPolicy
from tests.conftest import mock_tiers

TOPICS = ["greeting", "weather", "colour", "animal", "fruit", "city", "river", "mountain", "planet", "holiday", "song",
          "recipe", "integral", "theorem", "matrix", "eigenvalue", "manifold", "topology", "lemma", "polynomial",
          "derivative", "proof", "tensor", "lattice", "sequence", "garden", "bicycle", "coffee", "painting", "poem"]
TIERS3 = ("cheap", "mid", "strong")
ABILITY = np.array([-1.0, 0.0, 1.2])


def irt_rows(n: int, seed: int, mid_every: int = 1) -> tuple[list[EvalRow], np.ndarray]:
    """Queries of three topic words; each word has a difficulty, a query's is their mean (scaled to sd ≈ 1).

    Tier t answers well with probability sigmoid(1.7 · (ability_t − difficulty)). The middle tier's
    outcome is kept on one row in ``mid_every`` only.
    """
    rng = np.random.default_rng(seed)
    word_difficulty = np.random.default_rng(99).normal(size=len(TOPICS)) * 1.7
    rows, truth = [], []
    for i in range(n):
        picked = rng.choice(len(TOPICS), size=3, replace=False)
        b = float(word_difficulty[picked].mean())
        text = "tell me about the " + " and the ".join(TOPICS[j] for j in picked)
        p = 1.0 / (1.0 + np.exp(-1.7 * (ABILITY - b)))
        won = rng.random(3) < p
        outcomes = {m: Outcome(float(w), c) for m, w, c in zip(TIERS3, won, (0.001, 0.005, 0.02), strict=True)
                    if m != "mid" or i % mid_every == 0}
        rows.append(EvalRow(f"q{i}", ({"role": "user", "content": text},), outcomes, step="answer"))
        truth.append(b)
    return rows, np.array(truth)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, list[EvalRow], np.ndarray]:
    rows, truth = irt_rows(600, seed=0, mid_every=15)  # the middle tier: 40 outcomes, the others 600
    path = tmp_path_factory.mktemp("irt") / "answer-irt.steproute"
    save_artefact(train_irt(rows, TIERS3, folds=0, cache=False), path)
    return path, rows, truth


def test_the_fit_recovers_the_abilities_order_and_the_difficulties(fitted):
    path, _, _ = fitted
    policy = IrtPolicy.load(path)
    assert list(policy.ability) == sorted(policy.ability)  # cheap < mid < strong, though mid has 40 outcomes
    held_out, held_truth = irt_rows(300, seed=1)
    fitted_b = np.array([policy.difficulty(request_of(r)) for r in held_out])
    assert np.corrcoef(fitted_b, held_truth)[0, 1] > 0.8
    estimates = policy.scores_many([request_of(r) for r in held_out])
    assert estimates.shape == (300, 3) and ((estimates >= 0) & (estimates <= 1)).all()
    # harder queries get lower estimates on every tier: one difficulty shared by all of them
    for t in range(3):
        assert np.corrcoef(estimates[:, t], held_truth)[0, 1] < -0.7


def test_a_tier_with_few_outcomes_borrows_the_difficulty_from_the_others(fitted):
    path, rows, _ = fitted
    irt = IrtPolicy.load(path)
    alone = train_classifier([EvalRow(r.id, r.messages, {"mid": r.outcomes["mid"]}, step=r.step)
                              for r in rows if "mid" in r.outcomes], ("mid",), folds=0, embedding_cache=False)
    from steproute.policies.classifier import ClassifierPolicy

    mid_alone = ClassifierPolicy(alone)
    held_out, truth = irt_rows(300, seed=2)
    true_p = 1.0 / (1.0 + np.exp(-1.7 * (ABILITY[1] - truth)))
    requests = [request_of(r) for r in held_out]
    irt_mid = irt.scores_many(requests)[:, 1]
    alone_mid = mid_alone.scores_many(requests)[:, 0]
    assert np.corrcoef(irt_mid, true_p)[0, 1] > 0.8
    assert np.abs(irt_mid - true_p).mean() < np.abs(alone_mid - true_p).mean()
    assert np.corrcoef(irt_mid, true_p)[0, 1] > np.corrcoef(alone_mid, true_p)[0, 1] + 0.1


def test_the_artefact_round_trips_and_reports_the_hardest_steps(fitted, tmp_path):
    path, rows, _ = fitted
    artefact = load_artefact(path, "irt")
    assert artefact.labels == TIERS3 and artefact.meta["outcomes"] == {"cheap": 600, "mid": 40, "strong": 600}
    assert artefact.meta["hardest_steps"][0][0] == "answer"
    assert list(artefact.meta["abilities"]) == list(TIERS3)
    again = tmp_path / "again.steproute"
    save_artefact(artefact, again)
    request = request_of(rows[0])
    assert IrtPolicy.load(again).scores(request).tolist() == IrtPolicy.load(path).scores(request).tolist()
    choice = IrtPolicy.load(path, threshold=0.1).choose(request)
    assert choice.reason.startswith("irt: difficulty ") and "threshold 0.1" in choice.reason


def _rewrite(src: Path, dst: Path, drop: str | None = None, replace: dict | None = None) -> None:
    with zipfile.ZipFile(src) as zf:
        meta, arrays = zf.read("meta.json"), zf.read("arrays.npz")
    import io

    loaded = dict(np.load(io.BytesIO(arrays)))
    if drop:
        loaded.pop(drop)
    loaded.update(replace or {})
    buffer = io.BytesIO()
    np.savez(buffer, **loaded)
    with zipfile.ZipFile(dst, "w") as zf:
        zf.writestr("meta.json", meta)
        zf.writestr("arrays.npz", buffer.getvalue())


def test_a_bad_artefact_is_a_clear_error_naming_the_field(fitted, tmp_path):
    path, _, _ = fitted
    _rewrite(path, tmp_path / "a.steproute", drop="difficulty")
    with pytest.raises(ArtefactError, match=r"a\.steproute: arrays\.npz lacks difficulty \(needed by a irt artefact\)"):
        IrtPolicy.load(tmp_path / "a.steproute")
    _rewrite(path, tmp_path / "b.steproute", replace={"ability": np.zeros(2)})
    with pytest.raises(ArtefactError, match=r"b\.steproute: .*ability and discrimination must have 3 values"):
        IrtPolicy.load(tmp_path / "b.steproute")
    _rewrite(path, tmp_path / "c.steproute", replace={"difficulty": np.zeros(5, dtype=np.float32)})
    with pytest.raises(ArtefactError, match=r"c\.steproute: .*difficulty must have one weight a feature"):
        IrtPolicy.load(tmp_path / "c.steproute")
    with pytest.raises(ArtefactError, match="not a 'classifier' one"):
        load_artefact(path, "classifier")


def test_a_config_with_policy_irt_routes_through_a_real_router(fitted, tmp_path):
    path, _, _ = fitted
    shutil.copy(path, tmp_path / "answer-irt.steproute")
    config = tmp_path / "steproute.yaml"
    config.write_text(yaml.safe_dump({"tiers": mock_tiers(), "default": "fast",
                                      "steps": {"answer": {"policy": "irt", "artefact": "answer-irt.steproute",
                                                           "threshold": 0.05}}}, sort_keys=False))
    router = StepRouter.from_file(config)
    easy = StepRequest("answer", [{"role": "user", "content": "tell me about the greeting and the weather"}])
    word_difficulty = np.random.default_rng(99).normal(size=len(TOPICS)) * 1.7
    hardest = [TOPICS[j] for j in np.argsort(-word_difficulty)[:3]]
    hard = StepRequest("answer", [{"role": "user", "content": "tell me about the " + " and the ".join(hardest)}])
    policy = router.policy_of("answer")
    assert isinstance(policy, IrtPolicy) and policy.difficulty(hard) > policy.difficulty(easy) + 1
    decisions = {router.decide(r).tier for r in (easy, hard)}
    assert len(decisions) == 2  # the two requests do not go to the same tier
    result = router.complete(hard)
    assert result.decision.policy == "irt" and result.decision.reason.startswith("irt: difficulty +")
    assert result.completion.content == f"answer from {result.decision.tier}"
    with pytest.raises(ConfigError, match=r"steps\.answer\.artefact: .*no such artefact file"):
        StepRouter(RouterConfig(tiers=mock_tiers(), default="fast",
                                steps={"answer": {"policy": "irt", "artefact": str(tmp_path / "nope.steproute")}}))


def test_steproute_train_policy_irt_writes_an_artefact_that_eval_reads(tmp_path, capsys):
    rows, _ = irt_rows(180, seed=3)
    write_rows(rows[:120], tmp_path / "train.jsonl")
    write_rows(rows[120:], tmp_path / "test.jsonl")
    art = tmp_path / "irt.steproute"
    code = main(["train", "--data", str(tmp_path / "train.jsonl"), "--out", str(art), "--policy", "irt", "--folds", "2",
                 "--models", ",".join(TIERS3), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    trained = json.loads(out)
    assert trained["policy"] == "irt" and trained["cross_validation"]["folds"] == 2
    assert load_artefact(art, "irt").meta["rows"] == 120
    code = main(["eval", "--data", str(tmp_path / "test.jsonl"), "--policy", str(art), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["rows"] == 60 and 0.0 <= result["quality"] <= 1.0 and result["aiq"] is not None


def test_train_policy_irt_learns_from_rows_with_some_outcomes_missing(tmp_path, capsys):
    rows, _ = irt_rows(120, seed=4, mid_every=4)
    write_rows(rows, tmp_path / "partial.jsonl")
    code = main(["train", "--data", str(tmp_path / "partial.jsonl"), "--out", str(tmp_path / "p.steproute"),
                 "--policy", "irt", "--models", ",".join(TIERS3)])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert "cross-validation skipped" in err and load_artefact(tmp_path / "p.steproute").meta["outcomes"]["mid"] == 30
