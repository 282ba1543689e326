"""``steproute check``: every problem of a file in one run, "did you mean", unpriced models,
typed pass-through values, contradictions, unset ``${VAR}``s, and each step's tiers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from steproute import ConfigError, RouterConfig
from steproute.config_check import check_file, read_env_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "steproute.yaml"

FIVE_WRONG = """\
tiers:
  fast:
    models:
      - model: openai/gpt-4o-mini
        timeout: "sixty"
  strong:
    models: [openai/gpt-4o]
baseline: strnog
default: fats
steps:
  plan: {policy: fixed, tier: fast, min_tier: strong}
  extract: {policy: rules, rules: [{tier: fast, when: {keywords: [x]}}], fallbak: fast}
dispach: {timeout: 5}
"""


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("STEPROUTE_LOCAL_")}
    base["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    return subprocess.run([sys.executable, "-m", "steproute", "check", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, cwd=ROOT, timeout=120)


def test_every_problem_of_a_file_is_reported_in_one_run_with_did_you_mean(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(FIVE_WRONG)
    done = run_cli(str(path))
    assert done.returncode == 2
    out = done.stderr
    assert "6 problems" in out, out
    for line in ("tiers.fast.models[0]: timeout must be a number above 0",
                 "steps.extract.fallbak: unknown key — did you mean 'fallback'?",
                 "dispach: unknown key — did you mean 'dispatch'?",
                 "baseline: unknown tier 'strnog' (known: fast, strong) — did you mean 'strong'?",
                 "default.tier: unknown tier 'fats' (known: fast, strong) — did you mean 'fast'?",
                 "steps.plan.tier: tier 'fast' is below the entry's min_tier 'strong'"):
        assert line in out, (line, out)
    assert "sixty" not in out  # values are never echoed
    assert "Traceback" not in out


def test_the_shipped_example_says_what_to_do_about_unset_variables_and_checks_with_placeholders_or_an_env_file(tmp_path):
    bare = run_cli(str(EXAMPLE))
    assert bare.returncode == 2
    assert "STEPROUTE_LOCAL_FAST_URL is not set" in bare.stderr and "--placeholders" in bare.stderr
    assert "--env" in bare.stderr

    held = run_cli(str(EXAMPLE), "--placeholders")
    assert held.returncode == 0, held.stderr
    assert "valid" in held.stdout and "2 warnings" in held.stdout
    assert "checked with a placeholder" in held.stdout

    env = tmp_path / ".env"
    env.write_text("# local servers\nSTEPROUTE_LOCAL_FAST_URL=http://127.0.0.1:8080/v1\n"
                   "export STEPROUTE_LOCAL_STRONG_URL='http://127.0.0.1:8081/v1'\n")
    given = run_cli(str(EXAMPLE), "--env", str(env))
    assert given.returncode == 0, given.stderr
    assert "warning" not in given.stdout


def test_the_output_shows_which_tiers_each_step_can_reach():
    report = check_file(EXAMPLE, placeholders=True)
    assert report.ok
    reach = {r.entry: (r.policy, r.tiers) for r in report.routes}
    assert reach == {"rewrite": ("fixed", ("fast",)), "extract": ("cascade", ("fast", "strong")),
                     "plan": ("fixed", ("strong",)), "calculate": ("fixed", ("fast",)),
                     "answer": ("fixed", ("strong",)), "(default)": ("fixed", ("fast",))}
    text = report.format()
    assert "tiers it can reach" in text and "strong (baseline)" in text and "$2.50 in, $10.00 out" in text


def test_misspelled_models_are_caught_an_unpriced_baseline_is_an_error(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("tiers:\n  fast: {models: [openai/gpt-4o-mni]}\n  strong: {models: [anthropic/claude-sonet-4-5]}\n"
                    "default: fast\n")
    report = check_file(path)
    assert not report.ok
    [error] = report.errors
    assert error.path == "tiers.strong.models[0]" and "prices the baseline" in error.message
    assert "did you mean 'anthropic/claude-sonnet-4-5'?" in error.message
    [warning] = [w for w in report.warnings if "no model information" not in w.message]  # capabilities: unknown
    assert warning.path == "tiers.fast.models[0]" and "did you mean 'openai/gpt-4o-mini'?" in warning.message
    assert run_cli(str(path)).returncode == 2


def test_a_model_priced_in_the_file_needs_no_price_map_entry(tmp_path):
    path = tmp_path / "priced.yaml"
    path.write_text("tiers:\n  fast: {models: [openai/gpt-4o-mini]}\n  strong:\n    models:\n"
                    "      - {model: openai/my-finetune, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}\n"
                    "default: fast\n")
    report = check_file(path)
    # only that LiteLLM has no capability facts for the fine-tune (it is priced in the file)
    assert report.ok and [w.path for w in report.warnings] == ["tiers.strong.models[0]"], report.format()


def test_rules_whose_tier_the_bounds_move_are_a_warning(tmp_path):
    path = tmp_path / "bounds.yaml"
    path.write_text("tiers:\n  fast: {models: [openai/gpt-4o-mini]}\n  strong: {models: [openai/gpt-4o]}\n"
                    "default: fast\nsteps:\n  plan: {policy: rules, max_tier: fast, fallback: fast,\n"
                    "         rules: [{tier: strong, when: {keywords: [x]}}]}\n")
    report = check_file(path)
    assert report.ok
    assert [(w.path, w.message) for w in report.warnings] == [
        ("steps.plan.rules[0].tier", "tier 'strong' is outside the step's bounds: its calls go to 'fast'")]
    assert {r.entry: r.tiers for r in report.routes}["plan"] == ("fast",)


@pytest.mark.parametrize(("params", "field"), [
    ({"timeout": "sixty"}, "timeout"), ({"timeout": 0}, "timeout"), ({"max_tokens": 2.5}, "max_tokens"),
    ({"temperature": 3}, "temperature"), ({"api_base": 8080}, "api_base"), ({"rpm": True}, "rpm")])
def test_pass_through_parameters_of_a_known_type_are_checked_at_load(params, field):
    with pytest.raises(ConfigError) as caught:
        RouterConfig(tiers={"fast": {"models": [{"model": "openai/gpt-4o-mini", **params}]}}, default="fast")
    [problem] = caught.value.problems
    assert problem.path == "tiers.fast.models[0]" and problem.message.startswith(field)
    value = next(iter(params.values()))
    assert not isinstance(value, str) or value not in problem.message  # never echoed


def test_a_fixed_tier_outside_its_own_bounds_is_refused():
    with pytest.raises(ConfigError) as caught:
        RouterConfig(tiers={"fast": {"models": ["openai/gpt-4o-mini"]}, "strong": {"models": ["openai/gpt-4o"]}},
                     default="fast", steps={"plan": {"policy": "fixed", "tier": "strong", "max_tier": "fast"}})
    assert [str(p) for p in caught.value.problems] == [
        "steps.plan.tier: tier 'strong' is above the entry's max_tier 'fast': the two contradict"]


def test_a_secret_pasted_as_a_key_or_tier_is_not_echoed_nor_suggested(tmp_path):
    secret = "sk-live-7f3c9a1b2d4e6f80a1b2"
    path = tmp_path / "leak.yaml"
    path.write_text(f"tiers:\n  fast: {{models: [openai/gpt-4o-mini]}}\ndefault: {secret}\n{secret}: 1\n")
    done = run_cli(str(path))
    assert done.returncode == 2 and secret not in done.stderr + done.stdout
    assert "did you mean" not in done.stderr


def test_an_env_file_with_a_bad_line_names_the_line_not_its_text(tmp_path):
    env = tmp_path / ".env"
    env.write_text("GOOD=1\nthis is sk-live-secret-value\n")
    with pytest.raises(ValueError, match=r"line 2: expected NAME=VALUE") as caught:
        read_env_file(env)
    assert "sk-live" not in str(caught.value)
    done = run_cli(str(EXAMPLE), "--env", str(env))
    assert done.returncode == 2 and "line 2" in done.stderr and "sk-live" not in done.stderr


def test_a_name_litellm_answers_with_zero_cost_for_is_an_unknown_price_at_runtime_too(caplog):
    from steproute import StepRouter

    router = StepRouter(RouterConfig(tiers={"fast": {"models": ["openai/gpt-4o-mini"]},
                                            "strong": {"models": ["anthropic/claude-sonet-4-5"]}}, default="fast"))
    [deployment] = router.deployments("strong")
    assert not deployment.price.known
    assert "no price for anthropic/claude-sonet-4-5" in caplog.text
    assert router.deployments("fast")[0].price.known
