"""Prices of deployments and the cost of calls: LiteLLM's price map, or the config's override.

Prices are resolved once per deployment when the router is built, so pricing a call is a few
multiplications, not a LiteLLM lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from steproute._litellm import litellm
from steproute.config import DeploymentConfig
from steproute.types import Usage

__all__ = ["Price", "call_cost", "estimate_usage", "in_price_map", "price_of"]

logger = logging.getLogger("steproute")


@dataclass(frozen=True)
class Price:
    """USD per token for one deployment."""

    input: float
    output: float
    cache_read: float | None = None
    """USD per cached input token (default: the input price)."""
    known: bool = True
    """False when neither LiteLLM's price map nor the config had a price (priced at 0)."""


def price_of(deployment: DeploymentConfig, where: str = "the deployment") -> Price:
    """The price of a deployment: overrides from the config win over LiteLLM's price map.

    A model LiteLLM has no price for, and without an override, is priced at zero with a
    warning (set ``input_cost_per_token``/``output_cost_per_token`` in the config). The
    warning names the model, or ``where`` (the deployment's place in the configuration, such
    as ``tiers.fast.models[0]``) when the model came from an environment variable.

    Example:
        >>> price_of(DeploymentConfig(model="openai/gpt-4o-mini", input_cost_per_token=1e-7,
        ...                           output_cost_per_token=4e-7))
        Price(input=1e-07, output=4e-07, cache_read=None, known=True)
    """
    input_price, output_price = deployment.input_cost_per_token, deployment.output_cost_per_token
    if input_price is not None and output_price is not None:
        return Price(input_price, output_price)
    try:
        info = litellm().get_model_info(deployment.model)
        if not (info.get("input_cost_per_token") or info.get("output_cost_per_token")) and not in_price_map(
                deployment.model):  # LiteLLM answers $0 for a name it does not know of some providers
            raise LookupError(deployment.model)
    except Exception:  # LiteLLM raises a bare Exception for unmapped models
        named = f"{where} (a model name from the environment)" if deployment.model_from_env else deployment.model
        logger.warning(
            "steproute: no price for %s in LiteLLM's price map and no override in the config; "
            "its calls are counted at $0", named)
        return Price(input_price or 0.0, output_price or 0.0, known=False)
    # The map's cached-input price applies only when the input price is the map's too.
    cache = info.get("cache_read_input_token_cost") if input_price is None else None
    return Price(
        input=float(info.get("input_cost_per_token") or 0.0) if input_price is None else input_price,
        output=float(info.get("output_cost_per_token") or 0.0) if output_price is None else output_price,
        cache_read=float(cache) if cache is not None else None,
    )


def in_price_map(model: str) -> bool:
    """Whether LiteLLM's price map lists ``model`` by name (with or without its provider prefix).

    Example:
        >>> in_price_map("openai/gpt-4o-mini"), in_price_map("anthropic/claude-sonet-4-5")
        (True, False)
    """
    known = litellm().model_cost
    return model in known or model.split("/", 1)[-1] in known


def call_cost(price: Price, usage: Usage) -> float:
    """USD cost of one call's token usage at ``price``.

    Example:
        >>> call_cost(Price(1e-6, 2e-6), Usage(input_tokens=100, output_tokens=10))
        0.00012
    """
    cached = min(usage.cache_read_tokens, usage.input_tokens)
    cache_price = price.input if price.cache_read is None else price.cache_read
    total = (usage.input_tokens - cached) * price.input + cached * cache_price + usage.output_tokens * price.output
    return round(total, 12)


def estimate_usage(model: str, messages: Sequence[Mapping[str, Any]], output: str, choices: int = 1) -> Usage:
    """The usage of a call whose provider never said it (a stream stopped before its last
    chunk): ``messages`` and ``output`` counted with LiteLLM's tokenizer for ``model`` (its
    default one for models it does not know), the output once per choice. Text that cannot be
    tokenized is counted at about 3 characters a token.

    Example:
        >>> usage = estimate_usage("openai/gpt-4o-mini", [{"role": "user", "content": "hi"}], "Hello there")
        >>> usage.input_tokens > 0, usage.output_tokens
        (True, 2)
    """
    module = litellm()
    try:
        input_tokens = int(module.token_counter(model=model, messages=list(messages)))
    except Exception:  # content LiteLLM cannot count (an unknown part type, ...)
        input_tokens = sum(len(str(m.get("content") or "")) for m in messages) // 3 + 1
    try:
        output_tokens = int(module.token_counter(model=model, text=output, count_response_tokens=True)) if output else 0
    except Exception:
        output_tokens = len(output) // 3 + 1
    return Usage(input_tokens=max(input_tokens, 0), output_tokens=max(output_tokens, 0) * max(choices, 1))
