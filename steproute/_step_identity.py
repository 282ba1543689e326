"""Which step a call inside a LangGraph run belongs to: hint, agent, subgraph, node.

Prebuilt agents (LangChain's ``create_agent``, LangGraph's ``create_react_agent``) make every
model call from one inner node (``model``/``agent``), so in a multi-agent app the node's name
says nothing. The agent does: LangChain puts its name in the run metadata
(``lc_agent_name``), and LangGraph's checkpoint namespace (``supervisor:<id>|agent:<id>``)
names the parent node a subgraph runs in. The resolution order, first match wins:

1. an explicit hint: a :func:`~steproute.step` hint in the run's metadata (a node's
   ``metadata=``), else the chat model's own ``step=``;
2. the agent or subgraph: ``lc_agent_name``, then the parent nodes of the checkpoint namespace,
   innermost first;
3. the LangGraph node (``langgraph_node``);
4. ``default``.

Among the names of 2 and 3, the first one that is a ``steps:`` key of the configuration wins,
so a configuration can name an agent, the node a subgraph runs in, or an inner node; when none
is configured, the most specific identity (the agent, else the subgraph, else the node) is the
step's name, and so its pin group: agents never share a pin unless a pin group says so.

Example:
    >>> resolve_step({"langgraph_node": "agent",
    ...               "langgraph_checkpoint_ns": "math_expert:1f0|agent:2a1"}, None, {})
    StepIdentity(step='math_expert', origin='subgraph', agent='math_expert')
    >>> resolve_step({"langgraph_node": "plan", "langgraph_checkpoint_ns": "plan:9c2"}, None, {})
    StepIdentity(step='plan', origin='node', agent=None)
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any, NamedTuple

from steproute.pinning import PIN_MODES

__all__ = ["HINT_FIELDS", "HINT_KEY", "StepIdentity", "resolve_step", "step"]

HINT_KEY = "steproute"
"""Key of the step hint in a LangGraph node's (or a run's) metadata."""

HINT_FIELDS = ("tier", "min_tier", "max_tier", "pin", "pin_group")
"""The hint's fields besides ``step`` and ``kind``, in :class:`~steproute.types.Hint`'s order."""

_NAMESPACE_KEYS = ("langgraph_checkpoint_ns", "checkpoint_ns")


class StepIdentity(NamedTuple):
    """The step a call belongs to, where that name came from, and the agent it runs in."""

    step: str
    origin: str
    """``hint``, ``model``, ``agent``, ``subgraph``, ``node`` or ``default``."""
    agent: str | None


def parent_nodes(metadata: Mapping[str, Any]) -> list[str]:
    """The nodes a call's subgraph runs in, innermost first (``[]`` at the top level)."""
    for key in _NAMESPACE_KEYS:
        namespace = metadata.get(key)
        if isinstance(namespace, str) and namespace:
            # "outer:<task>|inner:<task>|node:<task>": the last segment is the calling node itself
            segments = namespace.split("|")[:-1]
            return [s.split(":", 1)[0] for s in reversed(segments) if s.split(":", 1)[0]]
    return []


def resolve_step(metadata: Mapping[str, Any], declared: str | None, configured: Container[str]) -> StepIdentity:
    """The step of a call made with run ``metadata``; ``declared`` is an explicit step name
    (``origin`` ``hint`` when the metadata's hint gave it is the caller's business: this
    function marks it ``model``), ``configured`` the ``steps:`` keys."""
    agent_name = metadata.get("lc_agent_name")
    parents = parent_nodes(metadata)
    agent = agent_name if isinstance(agent_name, str) and agent_name else (parents[0] if parents else None)
    if declared:
        return StepIdentity(declared, "model", agent)
    node = metadata.get("langgraph_node")
    candidates: list[tuple[str, str]] = []
    if isinstance(agent_name, str) and agent_name:
        candidates.append((agent_name, "agent"))
    candidates.extend((p, "subgraph") for p in parents)
    if isinstance(node, str) and node:
        candidates.append((node, "node"))
    for name, origin in candidates:
        if name in configured:
            return StepIdentity(name, origin, agent)
    if candidates:
        name, origin = candidates[0]
        return StepIdentity(name, origin, agent)
    return StepIdentity("default", "default", None)


def step(
    name: str,
    *,
    kind: str | None = None,
    tier: str | None = None,
    min_tier: str | None = None,
    max_tier: str | None = None,
    pin: str | None = None,
    pin_group: str | None = None,
) -> dict[str, Any]:
    """The metadata that declares a LangGraph node as a routed step.

    Pass it as ``StateGraph.add_node(..., metadata=step(...))``, or to any runnable as
    ``.with_config(metadata=step(...))``. ``tier`` fixes the tier (it wins over the step's
    policy); ``min_tier``/``max_tier`` clamp the policy's choice. ``kind`` is one of
    ``rewrite``, ``extract``, ``plan``, ``tool_use``, ``synthesis``, or any name. ``pin`` sets
    the step's pin mode (``sticky``, ``upgrade_only``, ``reevaluate``, ``turn``, ``off``) and
    ``pin_group`` the pin it shares with other steps (see ``docs/pinning.md``).

    Example:
        >>> step("plan", kind="plan", min_tier="standard")
        {'steproute': {'step': 'plan', 'kind': 'plan', 'min_tier': 'standard'}}
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("step(): 'name' must be a non-empty string")
    values = {"kind": kind, "tier": tier, "min_tier": min_tier, "max_tier": max_tier, "pin": pin,
              "pin_group": pin_group}
    for key, value in values.items():
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"step({name!r}): {key!r} must be a non-empty string or None")
    if pin is not None and pin not in PIN_MODES:
        raise ValueError(f"step({name!r}): pin must be one of {', '.join(PIN_MODES)}; got {pin!r}")
    return {HINT_KEY: {"step": name, **{k: str(v) for k, v in values.items() if v is not None}}}
