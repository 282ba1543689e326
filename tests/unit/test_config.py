from pathlib import Path

import pytest

from steproute import ConfigError, RouterConfig, StepRouter, load_config

VALID_YAML = """
tiers:
  fast:
    models:
      - openai/gpt-4o-mini
  standard:
    models:
      - model: openai/gpt-4.1-mini
        api_key: ${STEPROUTE_TEST_KEY}
        timeout: 30
      - {model: openai/gpt-4.1, input_cost_per_token: 0.000001, output_cost_per_token: 0.000004}
  advanced:
    models: [openai/gpt-4o]
baseline: advanced
default: fast
steps:
  plan: {policy: fixed, tier: advanced, kind: plan}
  answer:
    policy: rules
    min_tier: standard
    rules:
      - name: long
        when: {min_input_tokens: 500}
        tier: advanced
      - when: {keywords: [prove, derive], metadata: {tenant.plan: enterprise}}
        tier: advanced
    fallback: standard
"""


def write(tmp_path: Path, text: str, name: str = "steproute.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(excinfo: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(p) for p in excinfo.value.problems]


def test_valid_file_loads_with_order_env_and_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPROUTE_TEST_KEY", "sk-live-secret-123")
    cfg = load_config(write(tmp_path, VALID_YAML))
    assert cfg.tier_names() == ("fast", "standard", "advanced")
    assert cfg.baseline_tier() == "advanced"
    standard = cfg.tiers["standard"].models
    assert standard[0].litellm_params() == {"model": "openai/gpt-4.1-mini", "api_key": "sk-live-secret-123", "timeout": 30}
    assert standard[1].input_cost_per_token == 1e-6
    assert cfg.policy_for("plan").tier == "advanced"
    assert cfg.policy_for("unknown-step").tier == "fast"  # default shorthand
    # a step without an entry of its own is governed by its kind's entry, then by default
    assert cfg.policy_for("make_plan", kind="plan").tier == "advanced"
    assert cfg.kind_of("plan") == "plan" and cfg.kind_of("plan", "custom") == "custom"


def test_secret_never_in_repr_str_or_router_repr(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPROUTE_TEST_KEY", "sk-live-secret-123")
    cfg = load_config(write(tmp_path, VALID_YAML))
    assert "sk-live-secret-123" not in repr(cfg)
    assert "sk-live-secret-123" not in str(cfg)
    assert "sk-live-secret-123" not in cfg.model_dump_json()
    assert "sk-live-secret-123" not in repr(StepRouter(cfg))


def test_literal_api_key_is_hidden_too():
    cfg = RouterConfig(tiers={"t": {"models": [{"model": "openai/gpt-4o", "api_key": "sk-inline"}]}}, default="t")
    assert "sk-inline" not in repr(cfg)
    assert cfg.tiers["t"].models[0].litellm_params()["api_key"] == "sk-inline"


def test_missing_env_var_is_reported_with_path_and_no_value(tmp_path, monkeypatch):
    monkeypatch.delenv("STEPROUTE_TEST_KEY", raising=False)
    with pytest.raises(ConfigError) as excinfo:
        load_config(write(tmp_path, VALID_YAML))
    assert problems_of(excinfo) == [
        "tiers.standard.models[0].api_key: environment variable STEPROUTE_TEST_KEY is not set"]
    assert str(tmp_path) in str(excinfo.value)


def test_env_default_syntax(monkeypatch):
    monkeypatch.delenv("NOPE_STEPROUTE", raising=False)
    cfg = RouterConfig(tiers={"t": {"models": [{"model": "openai/gpt-4o", "api_base": "${NOPE_STEPROUTE:-http://127.0.0.1:1}"}]}},
                       default="t")
    assert cfg.tiers["t"].models[0].litellm_params()["api_base"] == "http://127.0.0.1:1"


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as excinfo:
        RouterConfig(
            tiers={"fast": {"models": ["openai/a"]}, "standard": {"models": ["openai/b"]}, "advanced": {"models": ["openai/c"]}},
            default="fast",
            baseline="platinum",
            steps={
                "plan": {"policy": "fixed", "tier": "gold"},
                "answer": {"policy": "fixed", "tier": "fast", "min_tier": "advanced", "max_tier": "standard"},
                "route": {"policy": "rules", "rules": [{"tier": "bronze", "when": {"regex": "("}}]},
            },
        )
    assert problems_of(excinfo) == [
        "baseline: unknown tier 'platinum' (known: fast, standard, advanced)",
        "steps.plan.tier: unknown tier 'gold' (known: fast, standard, advanced)",
        "steps.answer: min_tier 'advanced' is above max_tier 'standard'",
        "steps.answer.tier: tier 'fast' is below the entry's min_tier 'advanced': the two contradict",
        "steps.route.rules[0].tier: unknown tier 'bronze' (known: fast, standard, advanced)",
        "steps.route.rules[0].when.regex: invalid regular expression: missing ), unterminated subpattern at position 0",
    ]


def test_structural_problems_name_paths_and_valid_policies():
    with pytest.raises(ConfigError) as excinfo:
        RouterConfig(
            tiers={"fast": {"models": []}, "x": {"models": ["openai/a"], "colour": "red"}},
            default={"policy": "magic"},
            steps={"plan": {"policy": "rules"}},
        )
    assert problems_of(excinfo) == [
        "tiers.fast.models: List should have at least 1 item after validation, not 0",
        "tiers.x.colour: unknown key",
        "default: unknown policy 'magic' (known: fixed, rules, classifier, semantic, knn, ensemble, irt, llm, chain, "
        "cascade, bandit)",
        "steps.plan.rules: required key is missing",
    ]


def test_empty_tiers_and_missing_default():
    with pytest.raises(ConfigError) as excinfo:
        RouterConfig(tiers={})
    assert problems_of(excinfo) == [
        "tiers: Dictionary should have at least 1 item after validation, not 0",
        "default: required key is missing",
    ]


def test_duplicate_yaml_keys_are_errors_with_lines(tmp_path):
    text = "tiers:\n  fast: {models: [openai/a]}\n  fast: {models: [openai/b]}\ndefault: fast\n"
    with pytest.raises(ConfigError) as excinfo:
        load_config(write(tmp_path, text))
    assert problems_of(excinfo) == ["line 3: duplicate key 'fast' (first defined on line 2)"]


def test_yaml_syntax_error_names_the_line(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        load_config(write(tmp_path, "tiers:\n  fast: [unclosed\ndefault: fast\n"))
    assert problems_of(excinfo)[0].startswith("line 3, column")


def test_empty_missing_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="the file is empty"):
        load_config(write(tmp_path, ""))
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_toml_is_supported(tmp_path):
    text = '''
default = "fast"
[tiers.fast]
models = ["openai/gpt-4o-mini"]
[tiers.strong]
models = [{model = "openai/gpt-4o", timeout = 10}]
[steps.plan]
policy = "fixed"
tier = "strong"
'''
    cfg = load_config(write(tmp_path, text, "steproute.toml"))
    assert cfg.tier_names() == ("fast", "strong")
    assert cfg.policy_for("plan").tier == "strong"


def test_unknown_provider_fails_when_the_router_is_built():
    cfg = RouterConfig(tiers={"t": {"models": ["not-a-known-model-xyz"]}}, default="t")
    with pytest.raises(ConfigError) as excinfo:
        StepRouter(cfg)
    assert problems_of(excinfo) == [
        "tiers.t.models[0].model: LiteLLM cannot tell the provider of 'not-a-known-model-xyz'; "
        "write it as 'provider/model'"]


def test_from_file_builds_a_router(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPROUTE_TEST_KEY", "k")
    router = StepRouter.from_file(write(tmp_path, VALID_YAML))
    assert router.tiers == ("fast", "standard", "advanced")


def test_example_config_in_repo_is_valid(monkeypatch):
    monkeypatch.setenv("STEPROUTE_LOCAL_FAST_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("STEPROUTE_LOCAL_STRONG_URL", "http://127.0.0.1:2/v1")
    root = Path(__file__).resolve().parents[2]
    paths = sorted((root / "examples").glob("*.yaml"))
    assert [p.name for p in paths] == ["hosted.yaml", "steproute.yaml"]
    for path in paths:
        assert load_config(path).tier_names()


@pytest.mark.parametrize(("tier", "said"), [
    # a deployment's key written on its tier: where it belongs
    ({"models": ["openai/gpt-4o-mini"], "capabilities": {"vision": False}},
     "tiers.fast.capabilities: unknown key — 'capabilities' belongs under tiers.<name>.models[i]"),
    # LiteLLM's and providers' names of a capability: the key steproute calls it
    ({"models": [{"model": "openai/gpt-4o-mini", "capabilities": {"function_calling": True}}]},
     "tiers.fast.models[0].capabilities.function_calling: unknown key — did you mean 'tools'?"),
    ({"models": [{"model": "openai/gpt-4o-mini", "capabilities": {"supports_vision": True}}]},
     "tiers.fast.models[0].capabilities.supports_vision: unknown key — did you mean 'vision'?"),
    # a misspelling: among the keys valid at its place, not a tier's 'tool_calling'
    ({"models": [{"model": "openai/gpt-4o-mini", "capabilities": {"tool_calling": True}}]},
     "tiers.fast.models[0].capabilities.tool_calling: unknown key — did you mean 'tools'?"),
    ({"models": [{"model": "openai/gpt-4o-mini", "capabilities": {"visoin": True}}]},
     "tiers.fast.models[0].capabilities.visoin: unknown key — did you mean 'vision'?"),
])
def test_an_unknown_key_is_told_the_key_valid_at_its_place(tier, said):
    with pytest.raises(ConfigError) as excinfo:
        RouterConfig(tiers={"fast": tier}, default="fast")
    assert [str(p) for p in excinfo.value.problems] == [said]
