"""classifier, semantic, llm and chain policies: training, artefacts, decisions, config errors."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from steproute import ConfigError, RouterConfig, StepRequest, StepRouter
from steproute.evaluation import EvalRow, Outcome, Outcomes, summarise
from steproute.evaluation._semantic_train import train_semantic
from steproute.evaluation._train import _fit, _predict, request_of, train_classifier
from steproute.policies import ChainPolicy, LLMRouterPolicy, RulesPolicy
from steproute.policies._artefact import ArtefactError, load_artefact, save_artefact
from steproute.policies.classifier import ClassifierPolicy
from steproute.policies.llm_judge import parse_tier
from steproute.policies.semantic import SemanticPolicy
from tests.conftest import mock_tiers

CAPITALS = ["France", "Spain", "Italy", "Peru", "Chile", "Kenya", "Japan", "Nepal", "Egypt", "Ghana", "Cuba", "Iran"]
HARD = ["Prove that the integral of {f} over the unit square converges and derive its closed form.",
        "Derive the asymptotic expansion of the integral of {f} and prove the error bound.",
        "Prove the series built from {f} converges uniformly and derive its limit function."]
FUNCS = ["x^2 sin(1/x)", "exp(-x y) log(x)", "cos(x)/sqrt(y)", "x^y", "log(1+x^2 y^2)", "sinh(x) tanh(y)"]
MODELS = ("cheap-model", "strong-model")


def synthetic_rows(n: int, seed: int = 0) -> list[EvalRow]:
    """Easy capital-city questions both models answer; proofs only the strong model gets right."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        hard = i % 2 == 1
        if hard:
            text = rng.choice(HARD).format(f=rng.choice(FUNCS))
            cheap, strong = float(rng.random() < 0.1), float(rng.random() < 0.9)
        else:
            text = f"What is the capital of {rng.choice(CAPITALS)}?"
            cheap, strong = float(rng.random() < 0.95), float(rng.random() < 0.97)
        rows.append(EvalRow(f"q{i}", ({"role": "user", "content": text},),
                            {MODELS[0]: Outcome(cheap, 0.0001), MODELS[1]: Outcome(strong, 0.002)}, step="answer"))
    return rows


@pytest.fixture(scope="module")
def classifier_artefact(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("artefacts") / "answer.steproute"
    save_artefact(train_classifier(synthetic_rows(300), MODELS, folds=3), path)
    return path


def ask(text: str) -> StepRequest:
    return StepRequest("answer", [{"role": "user", "content": text}])


EASY = ask("What is the capital of Norway?")
PROOF = ask("Prove that the integral of x^3 over the unit square converges and derive its closed form.")


def test_the_classifier_sends_what_the_cheap_model_fails_to_the_strong_tier(classifier_artefact):
    policy = ClassifierPolicy.load(classifier_artefact, ["fast", "strong"])
    assert policy.choose(EASY).tier == "fast"
    proof = policy.choose(PROOF)
    assert proof.tier == "strong"
    assert proof.reason.startswith("classifier: estimated quality fast=0.") and "threshold" in proof.reason
    scores = policy.scores(PROOF)
    assert scores[1] - scores[0] > 0.5
    # the artefact's cross-validation figures come from out-of-fold estimates
    cv = load_artefact(classifier_artefact).meta["cross_validation"]
    # a router that knows each question's family (not its coin flip) reaches APGR 0.74 here
    assert cv["folds"] == 3 and cv["apgr"] > 0.7 and 0 <= cv["strong_share"] <= 1


def test_the_fast_decision_path_matches_the_scikit_learn_pipeline():
    rows = synthetic_rows(200, seed=4)
    features, coef, intercept = _fit(rows, MODELS, "wordllama-l2-256", 0.3)
    artefact = train_classifier(rows, MODELS, folds=0)
    policy = ClassifierPolicy(artefact)
    test = synthetic_rows(40, seed=9)
    with_context = [EvalRow("c", ({"role": "user", "content": "What is the capital of Peru?"},
                                  {"role": "assistant", "content": "Lima."},
                                  {"role": "user", "content": "Now prove the series converges."}),
                            test[0].outcomes, step="answer", kind="plan")]
    expected = _predict(features, coef, intercept, test + with_context)
    got = np.array([policy.scores(request_of(r)) for r in test + with_context])
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_learned_policies_ignore_the_harness_and_read_the_conversation(classifier_artefact):
    policy = ClassifierPolicy.load(classifier_artefact)
    tools = [{"type": "function", "function": {"name": "prove", "description": "Prove a theorem about integrals",
                                               "parameters": {"type": "object", "properties": {}}}}]
    harnessed = StepRequest("answer", [{"role": "system", "content": "Prove integrals converge. " * 50},
                                       {"role": "user", "content": "What is the capital of Norway?"}], tools=tools)
    np.testing.assert_allclose(policy.scores(harnessed), policy.scores(EASY))



def follow_up(first: str) -> tuple[dict, ...]:
    return ({"role": "user", "content": first}, {"role": "assistant", "content": "Done."},
            {"role": "user", "content": "Now the same for the next one, please."})


def test_the_earlier_turns_count():
    """The same follow-up message is hard or easy depending on what the conversation was about."""
    rows = [EvalRow(f"f{r.id}", follow_up(r.messages[0]["content"]), r.outcomes, step="answer")
            for r in synthetic_rows(300, seed=5)]
    policy = ClassifierPolicy(train_classifier(rows, MODELS, folds=0), ["fast", "strong"], threshold=0.1)
    after_proof = StepRequest("answer", follow_up(PROOF.messages[0]["content"]))
    after_capital = StepRequest("answer", follow_up(EASY.messages[0]["content"]))
    assert [policy.choose(after_capital).tier, policy.choose(after_proof).tier] == ["fast", "strong"]


def test_artefacts_are_checked_on_load(tmp_path, classifier_artefact):
    with pytest.raises(ArtefactError, match="no such artefact file"):
        load_artefact(tmp_path / "missing.steproute")
    (tmp_path / "junk.steproute").write_bytes(b"not a zip")
    with pytest.raises(ArtefactError, match="not a steproute artefact"):
        load_artefact(tmp_path / "junk.steproute")
    with pytest.raises(ArtefactError, match="a 'classifier' artefact, not a 'semantic' one"):
        SemanticPolicy.load(classifier_artefact)
    with pytest.raises(ValueError, match=r"estimates 2 tiers \(cheap-model, strong-model\); 3 given"):
        ClassifierPolicy.load(classifier_artefact, ["a", "b", "c"])


def config_with(step_policy: dict, tiers=None) -> dict:
    return {"tiers": tiers or {k: v for k, v in mock_tiers().items() if k in ("fast", "advanced")},
            "default": "fast", "steps": {"answer": step_policy}}


def test_a_router_runs_the_classifier_from_a_config_file(tmp_path, classifier_artefact):
    import shutil

    import yaml

    shutil.copy(classifier_artefact, tmp_path / "answer.steproute")
    config = tmp_path / "steproute.yaml"
    config.write_text(yaml.safe_dump(config_with({"policy": "classifier", "artefact": "answer.steproute"}), sort_keys=False))
    router = StepRouter.from_file(config)  # the relative path is read from the config's folder
    assert router.decide(EASY).tier == "fast"
    decision = router.decide(PROOF)
    assert (decision.tier, decision.policy) == ("advanced", "classifier")
    assert decision.score is not None
    result = router.complete(PROOF)
    assert result.completion.content == "answer from advanced"


def test_config_errors_name_the_step_and_field(tmp_path, classifier_artefact):
    with pytest.raises(ConfigError) as excinfo:
        StepRouter(RouterConfig(**config_with({"policy": "classifier", "artefact": str(tmp_path / "nope.steproute")})))
    assert "steps.answer.artefact: " in str(excinfo.value) and "no such artefact file" in str(excinfo.value)
    three = mock_tiers()
    with pytest.raises(ConfigError, match=r"steps\.answer\.artefact: the artefact estimates 2 tiers .* say which tier"):
        StepRouter(RouterConfig(**config_with({"policy": "classifier", "artefact": str(classifier_artefact)}, three)))
    with pytest.raises(ConfigError, match=r"steps\.answer\.tiers\[1\]: unknown tier 'gold'"):
        RouterConfig(**config_with({"policy": "classifier", "artefact": "x", "tiers": ["fast", "gold"]}, three))
    with pytest.raises(ConfigError, match=r"steps\.answer\.threshold: Input should be less than or equal to 1"):
        RouterConfig(**config_with({"policy": "classifier", "artefact": "x", "threshold": 7}))
    # naming the tiers maps a two-tier artefact onto a three-tier config
    router = StepRouter(RouterConfig(**config_with(
        {"policy": "classifier", "artefact": str(classifier_artefact), "tiers": ["standard", "advanced"]}, three)))
    assert router.decide(EASY).tier == "standard"


def test_the_semantic_policy_answers_from_the_nearest_references(tmp_path):
    artefact = train_semantic(synthetic_rows(200), MODELS, folds=2)
    path = tmp_path / "semantic.steproute"
    save_artefact(artefact, path)
    policy = SemanticPolicy.load(path, ["fast", "strong"])
    assert policy.choose(EASY).tier == "fast"
    assert policy.choose(PROOF).tier == "strong"
    assert policy.choose(PROOF).reason.startswith("semantic: estimated quality")
    assert artefact.meta["cross_validation"]["apgr"] > 0.7


def test_the_minilm_encoder_runs_offline_from_the_installed_weights():
    rows = synthetic_rows(60)
    artefact = train_semantic(rows, MODELS, folds=0, encoder="all-minilm-l6-v2")
    assert artefact.arrays["embeddings"].shape == (60, 384)
    policy = SemanticPolicy(artefact, ["fast", "strong"], threshold=0.1)
    assert [policy.choose(EASY).tier, policy.choose(PROOF).tier] == ["fast", "strong"]


def test_a_classifier_on_minilm_embeddings_decides_as_it_was_trained():
    rows = synthetic_rows(60, seed=3)
    features, coef, intercept = _fit(rows, MODELS, "all-minilm-l6-v2", 0.3)
    policy = ClassifierPolicy(train_classifier(rows, MODELS, folds=0, encoder="all-minilm-l6-v2"))
    test = synthetic_rows(10, seed=8)
    np.testing.assert_allclose([policy.scores(request_of(r)) for r in test], _predict(features, coef, intercept, test),
                               atol=1e-3)  # batched vs single MiniLM passes differ in the 5th digit


def test_a_learned_policy_beats_random_on_held_out_rows():
    train, test = synthetic_rows(300, seed=1), synthetic_rows(100, seed=2)
    policy = ClassifierPolicy(train_classifier(train, MODELS, folds=0))
    out = Outcomes.of(test, MODELS)
    summary, _ = summarise(policy.scores_many([request_of(r) for r in test]), out, policy.threshold)
    assert summary.apgr > 0.7 and summary.cpt50 < 0.35


# -- llm and chain ----------------------------------------------------------------------------


def test_routing_answers_are_parsed_strictly():
    tiers = ["fast", "strong"]
    assert [parse_tier(a, tiers) for a in ["strong", " Fast.\n", "`strong`", '{"tier": "STRONG"}', '"fast"']] == [
        "strong", "fast", "strong", "strong", "fast"]
    assert [parse_tier(a, tiers) for a in ["", "the strong one", "fast, strong", '{"tier": 3}', "{tier", "medium"]] == [
        None] * 6


def test_the_llm_policy_falls_back_and_counts_what_it_cannot_parse():
    answers = iter(["strong", "I think maybe fast?", RuntimeError("down")])
    seen = []

    def fake_call(tier, messages, max_tokens):
        seen.append((tier, messages, max_tokens))
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    policy = LLMRouterPolicy(fake_call, "fast", {"fast": "lookups", "strong": "proofs"}, "strong")
    request = StepRequest("answer", [{"role": "system", "content": "SECRET HARNESS PROMPT"},
                                     {"role": "user", "content": "Prove it."}], kind="plan")
    assert policy.choose(request).reason == "llm: fast answered 'strong'"
    assert policy.choose(request).reason == "llm: unparsable routing answer (19 chars); fallback 'strong'"
    assert policy.choose(request).reason == "llm: the routing call failed (RuntimeError); fallback 'strong'"
    assert (policy.calls, policy.unparsable, policy.failed) == (3, 1, 1)
    tier, messages, max_tokens = seen[0]
    assert tier == "fast" and max_tokens == 8
    prompt = "\n".join(m["content"] for m in messages)
    assert "SECRET HARNESS PROMPT" not in prompt and "Prove it." in prompt and "- strong: proofs" in prompt
    assert "Step: answer (a plan step)" in prompt


def test_a_chain_records_every_link_it_asked(classifier_artefact):
    from steproute.config import RulesPolicyConfig

    rules = RulesPolicy.from_config(RulesPolicyConfig(rules=[{"tier": "strong", "when": {"has_tools": True}}]))
    chain = ChainPolicy([rules, ClassifierPolicy.load(classifier_artefact, ["fast", "strong"])])
    choice = chain.choose(EASY)
    assert choice.tier == "fast" and choice.reason.startswith("rules: no match → classifier: estimated quality")
    with_tools = StepRequest("answer", EASY.messages, tools=[{"type": "function", "function": {"name": "f"}}])
    assert chain.choose(with_tools).reason == "rules: rule 'rules[0]' matched (has_tools=True)"


def test_a_chain_in_the_config(classifier_artefact):
    router = StepRouter(RouterConfig(**config_with({"policy": "chain", "policies": [
        {"policy": "rules", "rules": [{"tier": "advanced", "when": {"keywords": ["urgent"]}}]},
        {"policy": "classifier", "artefact": str(classifier_artefact)}]})))
    assert router.decide(ask("urgent: the capital of Peru?")).tier == "advanced"
    decision = router.decide(PROOF)
    assert decision.policy == "chain" and decision.tier == "advanced"
    assert decision.reason.startswith("rules: no match → classifier:")


def test_three_tiers_each_get_their_share():
    """With three models the classifier sends each family to the cheapest tier that gets it right."""
    rng = random.Random(7)
    models = ("small", "medium", "large")
    rows = []
    for i in range(450):
        family = i % 3
        if family == 0:
            text, q = f"What is the capital of {rng.choice(CAPITALS)}?", (0.95, 0.97, 0.98)
        elif family == 1:
            text, q = f"Summarise the history of {rng.choice(CAPITALS)} in three paragraphs.", (0.2, 0.9, 0.92)
        else:
            text, q = rng.choice(HARD).format(f=rng.choice(FUNCS)), (0.05, 0.2, 0.9)
        outcomes = {m: Outcome(float(rng.random() < p), cost) for m, p, cost in zip(models, q, (1e-4, 1e-3, 1e-2), strict=True)}
        rows.append(EvalRow(f"t{i}", ({"role": "user", "content": text},), outcomes, step="answer"))
    artefact = train_classifier(rows, models, folds=3)
    policy = ClassifierPolicy(artefact, ["fast", "standard", "advanced"], threshold=0.1)
    assert [policy.choose(ask(t)).tier for t in (
        "What is the capital of Japan?", "Summarise the history of Peru in three paragraphs.", PROOF.messages[0]["content"],
    )] == ["fast", "standard", "advanced"]
    cv = artefact.meta["cross_validation"]
    assert cv["models"] == list(models)
    # above the straight line from always-small to always-large (what a random mix reaches)
    assert cv["aiq"] > (cv["weak_quality"] + cv["strong_quality"]) / 2 + 0.1
