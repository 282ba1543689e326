"""Every error steproute raises pickles and copies with its fields: a graph run in a process pool,
or a remote graph, sends its errors back that way."""

from __future__ import annotations

import copy
import pickle

import pytest

from steproute import BudgetExceeded, CapabilityError, ConfigError, DispatchError
from steproute.errors import Attempt, ConfigProblem, ProviderAuthError, ProviderFailure


def errors() -> list[Exception]:
    attempt = Attempt("openai/gpt-4o-mini", "AuthenticationError", "openai", kind="auth", message="bad key")
    return [
        BudgetExceeded("plan", "acme", 1.0, 1.5, 123.0),
        CapabilityError("plan", "vision", ("fast", "strong"), "needs vision"),
        ConfigError([ConfigProblem("steps.plan.tier", "unknown tier")], source="steproute.yaml"),
        DispatchError("plan", "fast", (attempt,), tiers=("fast", "strong")),
        ProviderAuthError("plan", "fast", (attempt,), deployment="openai/gpt-4o-mini", provider="openai",
                          failure=ProviderFailure("auth", "AuthenticationError", "bad key", 401)),
    ]


@pytest.mark.parametrize("error", errors(), ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("how", [lambda e: pickle.loads(pickle.dumps(e)), copy.copy, copy.deepcopy],
                         ids=["pickle", "copy", "deepcopy"])
def test_an_error_survives_pickling_and_copying_with_its_fields(error, how):
    again = how(error)
    assert type(again) is type(error) and str(again) == str(error) and again.args == error.args
    assert vars(again) == vars(error)
