"""Replay a decision log under a candidate configuration: what it would have changed, per step.

Every recorded call is decided again by a router built from the candidate configuration, through
its pure decision path (:meth:`~steproute.StepRouter.route`: the PII guard, the step's ``tier``
hint, its policy, the ``min_tier``/``max_tier`` bounds and the conversation's pin, kept in
memory over the log's calls in order); no model is called and no file is written. Per step: the
calls, the share of them whose tier the candidate changes, what they cost, what they would
cost at the candidate tier's price for the recorded token counts (:func:`~steproute.pricing.call_cost`),
and the quality where the log knows it (feedback on the recorded call; for a call the candidate
sends elsewhere, a shadow result on the candidate's tier), each with a seeded bootstrap 95%
interval.

A step is not replayed, and says why (``why_not``), when the candidate cannot decide its calls
offline: an ``llm`` policy (it calls a model to decide), a ``cascade`` (where it ends depends on
judging answers that were never made), calls logged without their messages when the candidate
reads the text (``rules`` on keywords, regex, turns or size; ``classifier``; ``semantic``; the PII
guard), ``rules`` on run metadata (the log does not hold it), or calls logged before entries said
whether they carried tools or a schema when the candidate's rules ask. Numbers are never made up
for such a step: its candidate figures are ``None``.

Example:
    >>> import json, pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "d.jsonl").write_text(json.dumps({"type": "decision", "id": "d-1", "step": "plan",
    ...     "tier": "fast", "input_tokens": 1000, "output_tokens": 100, "cost_usd": 0.0002}) + "\\n")
    >>> candidate = RouterConfig(tiers={"fast": {"models": ["openai/gpt-4o-mini"]},
    ...                                 "strong": {"models": ["openai/gpt-4o"]}}, default="fast", steps={"plan": "strong"})
    >>> step = replay(folder / "d.jsonl", candidate).steps[0]
    >>> step.step, step.calls, step.changed, step.candidate_cost_usd
    ('plan', 1, 1.0, 0.0035)
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steproute.config import (
    CascadePolicyConfig,
    ChainPolicyConfig,
    ClassifierPolicyConfig,
    FixedPolicyConfig,
    IrtPolicyConfig,
    LLMPolicyConfig,
    PolicyConfig,
    RouterConfig,
    RulesPolicyConfig,
    SemanticPolicyConfig,
    load_config,
)
from steproute.decision_log import LogContents, read_log
from steproute.errors import RoutingError
from steproute.policies.base import learn_extra_missing
from steproute.pricing import call_cost
from steproute.router import StepRouter
from steproute.types import Hint, StepRequest, Usage

__all__ = ["Interval", "ReplayReport", "StepReplay", "bootstrap_mean", "replay"]

RESAMPLES = 2000
"""Bootstrap resamples per interval."""
_TOOL = {"type": "function", "function": {"name": "logged_tool", "parameters": {"type": "object"}}}


@dataclass(frozen=True)
class Interval:
    """A bootstrap 95% interval (percentiles 2.5 and 97.5 of the resampled statistic, widened
    to hold the point estimate when resampling a handful of values leaves it out)."""

    low: float
    high: float

    def as_list(self) -> list[float]:
        return [self.low, self.high]


@dataclass(frozen=True)
class StepReplay:
    """One step's calls replayed under the candidate (candidate figures ``None`` when not replayable)."""

    step: str
    calls: int
    cost_usd: float
    """What the recorded calls cost."""
    replayable: bool
    why_not: str | None = None
    """Why the candidate cannot decide this step's calls offline (``None`` when it can)."""
    changed: float | None = None
    """The share of calls (0..1) whose tier the candidate changes."""
    changed_ci: Interval | None = None
    candidate_cost_usd: float | None = None
    """The recorded token counts at the candidate tier's prices."""
    candidate_cost_ci: Interval | None = None
    tiers: Mapping[str, int] = field(default_factory=dict)
    """Recorded calls per tier the router decided."""
    candidate_tiers: Mapping[str, int] = field(default_factory=dict)
    quality: float | None = None
    """Mean feedback quality of the recorded calls that have some."""
    quality_ci: Interval | None = None
    quality_n: int = 0
    candidate_quality: float | None = None
    """Mean known quality of the candidate's choices: feedback where it keeps the recorded tier,
    a shadow result on its tier where it moves the call."""
    candidate_quality_ci: Interval | None = None
    candidate_quality_n: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``steproute replay --json``'s items)."""
        out: dict[str, Any] = {}
        for name, value in vars(self).items():
            out[name] = value.as_list() if isinstance(value, Interval) else dict(value) if isinstance(
                value, Mapping) else value
        return out


@dataclass(frozen=True)
class ReplayReport:
    """A whole log replayed: the steps in order of first call, and the lines the log reader refused."""

    steps: tuple[StepReplay, ...]
    problems: tuple[str, ...] = ()
    seed: int = 0

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"steps": [s.as_dict() for s in self.steps], "calls": self.calls, "seed": self.seed,
                "resamples": RESAMPLES, "problems": list(self.problems)}


def bootstrap_mean(values: Sequence[float], *, seed: int = 0, resamples: int = RESAMPLES,
                   scale: float = 1.0) -> Interval:
    """A seeded percentile-bootstrap 95% interval of ``scale`` × the mean of ``values`` (the same
    values and seed give the same interval); it always holds the point estimate.

    Example:
        >>> i = bootstrap_mean([0, 1, 1, 0, 1], seed=3)
        >>> i.low <= 0.6 <= i.high, i == bootstrap_mean([0, 1, 1, 0, 1], seed=3)
        (True, True)
    """
    try:
        import numpy as np
    except ImportError as exc:
        raise learn_extra_missing("steproute replay's intervals", exc) from None
    data = np.asarray(values, dtype=float)
    point = float(data.mean()) * scale if len(data) else 0.0
    if len(data) < 2:
        return Interval(point, point)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // len(data))  # bounded memory: at most ~2M indices at once
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        means[start:start + n] = data[rng.integers(0, len(data), size=(n, len(data)))].mean(axis=1)
    low, high = (float(v) * scale for v in np.percentile(means, [2.5, 97.5]))
    return Interval(min(low, point), max(high, point))


def replay(log: str | os.PathLike[str] | LogContents, config: RouterConfig | str | os.PathLike[str], *,
           seed: int = 0) -> ReplayReport:
    """Decide every call of ``log`` again under ``config`` (a configuration or its file) and sum
    up per step; see the module's documentation.

    Raises:
        OSError: the log cannot be read.
        ConfigError: the candidate configuration is invalid.
        ImportError: numpy is missing (``pip install 'steproute[learn]'``).
    """
    contents = log if isinstance(log, LogContents) else read_log(log)
    if not isinstance(config, RouterConfig):
        config = load_config(config)
    router = StepRouter(config.model_copy(update={"decision_log": None}))
    by_step: dict[str, list[dict[str, Any]]] = {}
    for entry in contents.decisions:
        by_step.setdefault(str(entry.get("step") or "default"), []).append(entry)
    shadows: dict[tuple[str, str], float] = {}
    for s in contents.shadows:
        shadows[(s["id"], s["tier"])] = float(s["quality"])
    blocked = {step: _why_not(config, step, entries) for step, entries in by_step.items()}
    chosen: dict[str, str | None] = {}
    for entry in contents.decisions:  # in log order: a thread's pins build up as they did live
        step = str(entry.get("step") or "default")
        if blocked[step] is None:
            tier, why = _decide(router, config, step, entry)
            chosen[entry["id"]] = tier
            if why is not None and blocked[step] is None:
                blocked[step] = why
    steps = [_summary(router, step, entries, blocked[step], chosen, contents, shadows, seed)
             for step, entries in by_step.items()]
    return ReplayReport(tuple(steps), tuple(contents.problems), seed)


def decided_tier(entry: Mapping[str, Any]) -> str | None:
    """The tier the live router decided for a logged call (before a cascade escalated or a
    fallback moved it)."""
    tier = entry.get("escalated_from") or entry.get("fallback_from") or entry.get("tier")
    return tier if isinstance(tier, str) else None


# -- can the candidate decide offline ------------------------------------------------------------


def _needs(policy: PolicyConfig, config: RouterConfig) -> tuple[set[str], str | None]:
    """What ``policy`` reads (``text``, ``metadata``, ``shape``), or why it cannot run offline."""
    if isinstance(policy, LLMPolicyConfig):
        return set(), "the candidate's 'llm' policy calls a model to decide: it cannot be re-run offline"
    if isinstance(policy, CascadePolicyConfig):
        return set(), ("the candidate's 'cascade' decides after the call, by judging answers the log does not "
                       "have: only its first tier is known offline")
    if isinstance(policy, (ClassifierPolicyConfig, SemanticPolicyConfig, IrtPolicyConfig)):
        return {"text"}, None
    if isinstance(policy, ChainPolicyConfig):
        needs: set[str] = set()
        for link in policy.policies:
            more, why = _needs(link, config)
            if why is not None:
                return set(), why
            needs |= more
        return needs, None
    if isinstance(policy, RulesPolicyConfig):
        needs = set()
        for rule in policy.rules:
            w = rule.when
            if w.keywords or w.regex is not None or any(v is not None for v in (
                    w.min_turns, w.max_turns, w.min_input_tokens, w.max_input_tokens)):
                needs.add("text")
            if w.metadata:
                needs.add("metadata")
            if w.has_tools is not None or w.has_schema is not None:
                needs.add("shape")
        if policy.fallback is None and policy is not config.default:
            more, why = _needs(config.default, config)
            if why is not None:
                return set(), f"when no rule matches, {why}"
            needs |= more
        return needs, None
    assert isinstance(policy, FixedPolicyConfig)
    return set(), None


def _why_not(config: RouterConfig, step: str, entries: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the candidate cannot decide this step's calls offline (``None``: it can)."""
    kinds = {e.get("kind") if isinstance(e.get("kind"), str) else None for e in entries}
    policy_calls = [e for e in entries if not (e.get("hint") or {}).get("tier")]
    needs: set[str] = set()
    for kind in kinds:
        if not policy_calls:
            break
        more, why = _needs(config.policy_for(step, kind), config)
        if why is not None:
            return why
        needs |= more
    if config.guards.pii is not None:
        needs.add("guard")
    bare = sum(1 for e in (entries if "guard" in needs else policy_calls) if not isinstance(e.get("messages"), list))
    if bare and needs & {"text", "guard"}:
        reader = "PII guard" if not needs & {"text"} else "policy"
        return (f"{bare} of {len(entries)} call(s) were logged without their messages and the candidate's {reader} "
                "reads the text (log them with decision_log: {messages: true})")
    if "metadata" in needs:
        return "the candidate's rules read run metadata, which the decision log does not hold"
    old = sum(1 for e in policy_calls if "has_tools" not in e or "has_schema" not in e)
    if old and "shape" in needs:
        return (f"{old} of {len(entries)} call(s) were logged before entries said whether they carried tools or a "
                "schema, and the candidate's rules ask")
    return None


def _decide(router: StepRouter, config: RouterConfig, step: str, entry: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The candidate's tier for one logged call, or why it has none."""
    logged_hint = entry.get("hint")
    hint_fields: Mapping[str, Any] = logged_hint if isinstance(logged_hint, Mapping) else {}
    if not hint_fields and entry.get("policy") == "hint":  # an older log: the tier hint is the decided tier
        hint_fields = {"tier": decided_tier(entry)}
    logged_messages = entry.get("messages")
    messages: list[Any] = logged_messages if isinstance(logged_messages, list) else []
    guard = _text(entry.get("guard")) or ""
    pii = config.guards.pii
    if pii is not None and guard.startswith("pii:") and set(guard[4:].split(",")) & {*pii.detectors, *pii.patterns}:
        return pii.tier, None  # the live guard saw the text the log holds redacted: its finding stands
    try:
        request = StepRequest(step, messages, kind=entry.get("kind") if isinstance(entry.get("kind"), str) else None,
                              hint=Hint(**{k: v for k, v in hint_fields.items() if k in _HINT_FIELDS}),
                              thread=_text(entry.get("thread")), tenant=_text(entry.get("tenant")),
                              tools=[_TOOL] if entry.get("has_tools") else (),
                              response_schema={"type": "object"} if entry.get("has_schema") else None)
        decision, _ = router.route(request)
    except (ValueError, RoutingError) as exc:
        return None, f"the candidate cannot decide a logged call: {type(exc).__name__}"
    return decision.tier, None


_HINT_FIELDS = ("tier", "min_tier", "max_tier", "pin", "pin_group")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# -- per step ------------------------------------------------------------------------------------


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _summary(router: StepRouter, step: str, entries: Sequence[Mapping[str, Any]], why_not: str | None,
             chosen: Mapping[str, str | None], contents: LogContents, shadows: Mapping[tuple[str, str], float],
             seed: int) -> StepReplay:
    costs = [_number(e.get("cost_usd")) for e in entries]
    tiers = Counter(t for t in (decided_tier(e) for e in entries) if t)
    rated = [float(contents.feedback[e["id"]]["quality"]) for e in entries if e["id"] in contents.feedback]
    base: dict[str, Any] = {"step": step, "calls": len(entries), "cost_usd": round(sum(costs), 12),
                            "tiers": dict(tiers), "quality_n": len(rated)}
    if rated:
        base.update(quality=sum(rated) / len(rated), quality_ci=bootstrap_mean(rated, seed=seed))
    if why_not is not None:
        return StepReplay(replayable=False, why_not=why_not, **base)
    changed: list[float] = []
    candidate_costs: list[float] = []
    known: list[float] = []
    for e in entries:
        tier = chosen[e["id"]]
        assert tier is not None
        changed.append(float(tier != decided_tier(e)))
        usage = Usage(int(_number(e.get("input_tokens"))), int(_number(e.get("output_tokens"))))
        candidate_costs.append(call_cost(router.deployments(tier)[0].price, usage))
        if tier == e.get("tier") and e["id"] in contents.feedback:
            known.append(float(contents.feedback[e["id"]]["quality"]))
        elif (e["id"], tier) in shadows:
            known.append(shadows[(e["id"], tier)])
    n = len(entries)
    result = dict(base, replayable=True, changed=sum(changed) / n, changed_ci=bootstrap_mean(changed, seed=seed),
                  candidate_cost_usd=round(sum(candidate_costs), 12),
                  candidate_cost_ci=bootstrap_mean(candidate_costs, seed=seed, scale=n),
                  candidate_tiers=dict(Counter(chosen[e["id"]] for e in entries)), candidate_quality_n=len(known))
    if known:
        result.update(candidate_quality=sum(known) / len(known), candidate_quality_ci=bootstrap_mean(known, seed=seed))
    return StepReplay(**result)


def log_path_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be replayed (missing, not a file), as one line; ``None`` when it can be read."""
    p = Path(path)
    if not p.exists():
        return f"{p}: no such decision log"
    if not p.is_file():
        return f"{p}: not a regular file (give a decision log, JSON lines)"
    return None
