"""Make Arize Phoenix show steproute's cost: register the configured tiers' prices with it.

Phoenix (20.x) takes no cost from span attributes: it prices each LLM span itself, from
``llm.model_name`` and the ``llm.token_count.*`` attributes, at the per-token prices of the
model whose name pattern matches (user-registered models first, then its built-in table). Its
``llm.cost.*`` ingestion is an open feature request (Arize-ai/phoenix#15240). steproute's
``chat`` spans carry the configured model as ``llm.model_name`` and the tokens they were billed
for, so registering each deployment's price, the one steproute priced the call at, makes
Phoenix's cost of every span, and so of every trace, steproute's own.

Example:
    >>> from steproute.phoenix import register_prices                         # doctest: +SKIP
    >>> register_prices("http://127.0.0.1:6006", router.config)               # doctest: +SKIP
    ['steproute openai/gpt-4.1-mini', 'steproute openai/gpt-4.1']
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

from steproute.pricing import Price, price_of

if TYPE_CHECKING:
    from steproute.config import RouterConfig

__all__ = ["PRICE_REFRESH_S", "model_prices", "register_prices"]

logger = logging.getLogger("steproute")

PRICE_REFRESH_S = 5.0
"""How often Phoenix reloads its price table: spans it ingests sooner after a registration
are priced at the old prices (Phoenix never reprices a span)."""

_LIST = "{ generativeModels(first: 1000) { edges { node { id name } } } }"
_CREATE = "mutation($input: CreateModelMutationInput!) { createModel(input: $input) { model { id } } }"
_UPDATE = "mutation($input: UpdateModelMutationInput!) { updateModel(input: $input) { model { id } } }"


def model_prices(config: RouterConfig) -> dict[str, Price]:
    """Each configured model's price, as steproute prices its calls (first tier naming it wins).

    Example:
        >>> from steproute import RouterConfig
        >>> config = RouterConfig.from_dict({"tiers": {"fast": {"models": [{"model": "openai/m",
        ...     "input_cost_per_token": 1e-7, "output_cost_per_token": 4e-7}]}},
        ...     "default": "fast"})
        >>> model_prices(config)
        {'openai/m': Price(input=1e-07, output=4e-07, cache_read=None, known=True)}
    """
    prices: dict[str, Price] = {}
    for tier_name, tier in config.tiers.items():
        for index, deployment in enumerate(tier.models):
            price = price_of(deployment, f"tiers.{tier_name}.models[{index}]")
            if deployment.model in prices and prices[deployment.model] != price:
                logger.warning("steproute: tiers price %s differently; Phoenix prices it as the first one does",
                               deployment.model)
            prices.setdefault(deployment.model, price)
    return prices


def _costs(price: Price) -> list[dict[str, Any]]:
    costs = [{"tokenType": "input", "costPerMillionTokens": price.input * 1e6, "kind": "PROMPT"},
             {"tokenType": "output", "costPerMillionTokens": price.output * 1e6, "kind": "COMPLETION"}]
    if price.cache_read is not None:
        costs.append({"tokenType": "cache_read", "costPerMillionTokens": price.cache_read * 1e6, "kind": "PROMPT"})
    return costs


def register_prices(endpoint: str, config: RouterConfig, *, headers: dict[str, str] | None = None,
                    timeout: float = 10.0, wait: bool = True) -> list[str]:
    """Register (or update) in Phoenix at ``endpoint`` the price of every model of ``config``,
    each under the name ``steproute {model}`` with a pattern matching exactly that model; returns
    the names. Phoenix applies them to spans it ingests from :data:`PRICE_REFRESH_S` seconds on:
    with ``wait`` (the default), this returns only then.

    Raises:
        RuntimeError: Phoenix did not answer, or refused a request (the message gives the
            error's type or the HTTP status only, never a header).
    """
    import httpx

    try:
        names = _register(httpx, endpoint, config, headers, timeout)
    except httpx.HTTPError as exc:
        raise RuntimeError(f"Phoenix did not answer a price registration ({type(exc).__name__})") from None
    if wait:
        time.sleep(PRICE_REFRESH_S + 0.5)
    return names


def _register(httpx: Any, endpoint: str, config: RouterConfig, headers: dict[str, str] | None,
              timeout: float) -> list[str]:
    url = endpoint.rstrip("/") + "/graphql"
    with httpx.Client(timeout=timeout, headers=headers) as client:

        def graphql(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
            response = client.post(url, json={"query": query, "variables": variables or {}})
            body = response.json() if response.status_code == 200 else {}
            if response.status_code != 200 or body.get("errors"):
                raise RuntimeError(f"Phoenix refused a price registration (HTTP {response.status_code})")
            return dict(body["data"])

        existing = {e["node"]["name"]: e["node"]["id"] for e in graphql(_LIST)["generativeModels"]["edges"]}
        names = []
        for model, price in model_prices(config).items():
            name = f"steproute {model}"
            spec: dict[str, Any] = {"name": name, "namePattern": f"^{re.escape(model)}$", "costs": _costs(price)}
            if name in existing:
                graphql(_UPDATE, {"input": {**spec, "id": existing[name], "provider": None}})
            else:
                graphql(_CREATE, {"input": spec})
            names.append(name)
    return names
