"""Shared fixtures. LiteLLM must never reach the network: use its bundled price map."""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings

from steproute import RouterConfig, StepRouter

# Property tests draw the same examples on every run, so CI judges the code, not the draw;
# `--hypothesis-seed=random` (or HYPOTHESIS_PROFILE=explore) hunts for new cases.
settings.register_profile("steproute", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "steproute"))

THREE_TIERS = {
    "fast": "openai/gpt-4o-mini",
    "standard": "openai/gpt-4.1-mini",
    "advanced": "openai/gpt-4o",
}


def mock_tiers(**extra: Any) -> dict[str, Any]:
    """Three tiers whose single deployment answers with LiteLLM's mock_response."""
    return {
        name: {"models": [{"model": model, "mock_response": f"answer from {name}", "api_key": "sk-test", **extra}]}
        for name, model in THREE_TIERS.items()
    }


@pytest.fixture
def make_router() -> Callable[..., StepRouter]:
    def make(**config: Any) -> StepRouter:
        config.setdefault("tiers", mock_tiers())
        config.setdefault("default", "fast")
        return StepRouter(RouterConfig(**config))

    return make


def stop_process(proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Stop a server a fixture started, by its PID: SIGTERM, then SIGKILL after ``timeout``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
