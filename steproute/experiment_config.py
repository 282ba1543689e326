"""The ``experiment:`` section of the configuration: an A/B experiment over some steps.

One experiment, at the top level, so that a conversation (or a tenant) is in the same arm at
every step the experiment covers: the unit of randomisation is the thread, and quality is often
judged on the conversation's end. Each arm is what a ``steps:`` entry may say (the same schema:
a tier name, or a policy with its bounds, pinning, style, fallback), or ``null`` for the step's
own configuration; the first arm is the control. :mod:`steproute.experiments` assigns and
decides; this module only validates.

Example:
    >>> ExperimentConfig(name="cheap-answer", steps=["answer"],
    ...                  arms={"control": None, "cheap": "fast"}).arms["cheap"].tier
    'fast'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Optional

from pydantic import Field, model_validator

from steproute._config_checks import did_you_mean
from steproute._config_read import config_key, shown_config_value
from steproute.errors import ConfigProblem
from steproute.policy_config import FrozenConfig, PolicyConfig

__all__ = ["SPLIT_TOLERANCE", "ExperimentConfig", "experiment_problems"]

SPLIT_TOLERANCE = 1e-6
"""How far from 1 the split's weights may sum (rounding in a hand-written split)."""


def _shorthand(value: Any) -> Any:
    """A tier name is a ``fixed`` policy; a mapping with ``tier`` and no ``policy`` too (as in ``steps:``)."""
    if isinstance(value, str):
        return {"policy": "fixed", "tier": value}
    if isinstance(value, Mapping) and "policy" not in value and "tier" in value:
        return {**value, "policy": "fixed"}
    return value


class ExperimentConfig(FrozenConfig):
    """An A/B experiment: named arms, a split, the steps it covers and what is assigned."""

    name: str = Field(min_length=1, max_length=200)
    """The experiment's name: on decisions, spans and log entries, and the key of the assignment
    hash (another name assigns the units afresh)."""
    steps: list[str] = Field(min_length=1)
    """The ``steps:`` entries it covers (``default``: the steps no entry governs). A call is in the
    experiment when its step resolves to one of them, by name then kind, as for its policy."""
    arms: dict[str, Optional[PolicyConfig]]  # noqa: UP045 - pydantic reads the annotation at run time
    """Arm name → a ``steps:`` value (a tier name, or a policy with its settings) that replaces the
    step's configuration for the calls in that arm; ``null``: the step's own. The first is the control."""
    split: dict[str, Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]] | None = None
    """Arm name → the share of units it gets; the weights sum to 1 (default: equal shares)."""
    unit: Literal["thread", "tenant"] = "thread"
    """What is assigned to an arm: the conversation (``thread``, LangGraph's ``thread_id``) or the
    ``tenant`` (run metadata). A call without one goes to the control, and the log says so."""

    @model_validator(mode="before")
    @classmethod
    def _arm_shorthand(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and isinstance(value.get("arms"), Mapping):
            value = {**value, "arms": {k: _shorthand(v) for k, v in value["arms"].items()}}
        return value

    def weights(self) -> dict[str, float]:
        """Each arm's share, in the arms' order (equal shares when no split is given)."""
        if self.split is None:
            return {arm: 1.0 / len(self.arms) for arm in self.arms}
        return {arm: float(self.split.get(arm, 0.0)) for arm in self.arms}


def experiment_problems(config: Any) -> list[ConfigProblem]:
    """What a :class:`~steproute.config.RouterConfig`'s ``experiment:`` gets wrong across its fields:
    fewer than two arms, a split naming an unknown arm or missing one, weights that do not sum to 1,
    steps that are no ``steps:`` entry (each at its path, values never shown but as names)."""
    experiment: ExperimentConfig | None = config.experiment
    if experiment is None:
        return []
    problems: list[ConfigProblem] = []
    arms = list(experiment.arms)
    if len(arms) < 2:
        problems.append(ConfigProblem("experiment.arms",
                                      "an experiment needs at least two arms (the first is the control)"))
    if experiment.split is not None:
        listed = ", ".join(config_key(a) for a in arms)
        for arm in experiment.split:
            if arm not in experiment.arms:
                problems.append(ConfigProblem(f"experiment.split.{config_key(arm)}",
                                              f"unknown arm {shown_config_value(arm)} (arms: {listed})"
                                              f"{did_you_mean(arm, arms)}"))
        problems.extend(ConfigProblem("experiment.split", f"arm {shown_config_value(arm)} has no weight "
                                                          "(give every arm one)")
                        for arm in arms if arm not in experiment.split)
        total = math.fsum(experiment.split.values())
        if abs(total - 1.0) > SPLIT_TOLERANCE:
            problems.append(ConfigProblem("experiment.split", f"the weights sum to {total:.6g}; they must sum to 1"))
    entries = [*config.steps, "default"]
    for i, step in enumerate(experiment.steps):
        if step not in entries:
            problems.append(ConfigProblem(
                f"experiment.steps[{i}]", f"unknown step {shown_config_value(step)}: not a steps: entry nor "
                                          f"'default' (entries: {', '.join(config_key(s) for s in config.steps)})"
                                          f"{did_you_mean(step, entries)}"))
    return problems
