"""A third-party-style model factory: the app's one place that makes chat models."""

from __future__ import annotations

from typing import Any


def get_model(role: str = "default", **settings: Any) -> Any:
    """A ChatOpenAI for a role (the provider package is imported only when a model is made)."""
    from langchain_openai import ChatOpenAI  # not installed in steproute's test environment

    return ChatOpenAI(model="gpt-4o-mini" if role != "planner" else "gpt-4o", **settings)
