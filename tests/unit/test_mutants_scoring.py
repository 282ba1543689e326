"""Tests that kill mutmut mutants of steproute/policies/_scoring.py (see docs/architecture.md, "Mutation testing").

The threshold rule and the reason every learned policy shares, read through a scoring policy
whose estimates are given (binary fractions, so every comparison at a bound is exact).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from steproute.policies._artefact import Artefact
from steproute.policies._scoring import ScoringPolicy, pick
from steproute.types import StepRequest

REQUEST = StepRequest("s", [{"role": "user", "content": "hi"}])


class Given(ScoringPolicy):
    """Estimates given in advance (one list per call, the last one repeated)."""

    name = "given"

    def __init__(self, scores: Sequence[float], labels: Sequence[str] = ("a", "b", "c"), tiers: Sequence[str] | None = None,
                 threshold: float | None = None, artefact_threshold: float = 0.125) -> None:
        self._bind(Artefact("given", {"labels": list(labels), "threshold": artefact_threshold}, {}), tiers, threshold)
        self.given = np.array(scores, dtype=float)

    def scores(self, request: StepRequest) -> np.ndarray:
        return self.given


@pytest.mark.parametrize(("scores", "threshold", "chosen"), [
    ([0.80, 0.83], 0.05, 0),
    ([0.40, 0.90], 0.05, 1),
    ([0.5, 0.75], 0.25, 0),            # exactly the threshold below: still the cheaper tier
    ([0.5, 0.75], 0.125, 1),
    ([0.7, 0.5, 1.0], 0.25, 2),        # compared with the best stronger tier, not the next one
    ([0.875, 0.5, 1.0], 0.25, 0),
    ([0.5, 0.5, 0.5], 0.0, 0),         # a tie goes to the cheaper tier
    ([0.25, 0.5, 1.0], 1.0, 0),
    ([1.0], 0.0, 0),
    ([0.5, 0.25], 0.0, 0),
])
def test_pick_takes_the_cheapest_tier_at_most_threshold_below_the_best_stronger_one(scores, threshold, chosen):
    assert pick(scores, threshold) == chosen


def test_a_negative_threshold_asks_for_a_strictly_better_cheap_tier():
    assert pick([0.5, 0.75], -0.25) == 1
    assert pick([0.75, 0.5], -0.25) == 0
    assert pick([0.625, 0.5], -0.25) == 1


def test_choose_names_the_tier_the_estimates_and_the_margin_to_the_best_stronger_tier():
    choice = Given([0.5, 0.75, 0.625], tiers=["fast", "mid", "strong"], threshold=0.3).choose(REQUEST)
    assert (choice.tier, choice.reason, choice.score) == (
        "fast", "given: estimated quality fast=0.50, mid=0.75, strong=0.62; threshold 0.3", 0.25)
    assert Given([0.25, 0.5, 0.123456], threshold=0.3).choose(REQUEST).score == 0.25
    assert Given([0.1, 0.223456, 0.2], threshold=0.5).choose(REQUEST).score == 0.1235
    strongest = Given([0.25, 0.5, 1.0], threshold=0.0).choose(REQUEST)
    assert (strongest.tier, strongest.score) == ("c", 0.0)


def test_the_reason_shows_braces_in_tier_names_and_follows_a_changed_threshold_tier_or_name():
    policy = Given([0.5, 0.5], labels=["x", "y"], tiers=["{fast}", "strong}"])
    assert policy.choose(REQUEST).reason == "given: estimated quality {fast}=0.50, strong}=0.50; threshold 0.125"
    policy.threshold = 0.0625
    assert policy.choose(REQUEST).reason == "given: estimated quality {fast}=0.50, strong}=0.50; threshold 0.0625"
    policy.tiers = ("p", "q")
    assert policy.choose(REQUEST).reason == "given: estimated quality p=0.50, q=0.50; threshold 0.0625"
    policy.name = "other"
    assert policy.choose(REQUEST).reason == "other: estimated quality p=0.50, q=0.50; threshold 0.0625"


def test_bind_takes_the_labels_as_tiers_and_the_artefacts_threshold_unless_given():
    policy = Given([0.5, 0.5, 0.5], artefact_threshold=1)
    assert (policy.labels, policy.tiers, policy.threshold, type(policy.threshold)) == (("a", "b", "c"), ("a", "b", "c"),
                                                                                        1.0, float)
    assert dict(policy.meta) == {"labels": ["a", "b", "c"], "threshold": 1}
    given = Given([0.5, 0.5, 0.5], tiers=["p", "q", "r"], threshold=0)
    assert (given.tiers, given.threshold, type(given.threshold)) == (("p", "q", "r"), 0.0, float)


def test_bind_refuses_tiers_that_do_not_match_the_labels_in_number():
    with pytest.raises(ValueError) as excinfo:
        Given([0.5], tiers=["p", "q"])
    assert str(excinfo.value) == "the artefact estimates 3 tiers (a, b, c); 2 given (p, q)"


def test_scores_many_stacks_one_row_per_request():
    policy = Given([0.25, 0.5, 0.75])
    many = policy.scores_many([REQUEST, REQUEST])
    assert many.shape == (2, 3) and many.tolist() == [[0.25, 0.5, 0.75]] * 2
    assert policy.scores_many([]).shape == (0, 3)


def test_estimates_that_are_all_nan_pick_the_strongest_tier():
    assert pick([float("nan")] * 3, 0.05) == 2
    assert pick([0.5, 0.75], float("nan")) == 1
    assert Given([float("nan")] * 3).choose(REQUEST).tier == "c"


def test_the_margin_of_the_second_strongest_tier_is_to_the_strongest():
    choice = Given([0.5, 0.75], labels=["a", "b"], threshold=0.25).choose(REQUEST)
    assert (choice.tier, choice.score) == ("a", 0.25)
    assert Given([0.25, 0.5, 0.625], threshold=0.125).choose(REQUEST).score == 0.125


class ByLength(Given):
    """Estimates read off the request: the cheap tier's is the length of the user's text over 8."""

    def scores(self, request: StepRequest) -> np.ndarray:
        return np.array([len(request.latest_user_text) / 8, 1.0, 1.0])


def test_scores_many_asks_for_each_requests_own_estimates():
    short, long = (StepRequest("s", [{"role": "user", "content": text}]) for text in ("ab", "abcdefgh"))
    assert ByLength([]).scores_many([short, long]).tolist() == [[0.25, 1.0, 1.0], [1.0, 1.0, 1.0]]
