"""What makes answers from different tiers look alike: a tier's, then a step's, system-prompt
addition and output settings, applied to one attempt's messages and parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from steproute.config import RouterConfig
from steproute.policy_config import StyleConfig
from steproute.types import Decision, StepRequest

__all__ = ["styled"]


def styled(config: RouterConfig, step_style: StyleConfig | None, request: StepRequest, decision: Decision,
           params: dict[str, Any]) -> tuple[Sequence[Mapping[str, Any]], dict[str, Any]]:
    """The tier's, then the step's, system-prompt addition and output settings (so answers
    look alike across tiers); settings the call gives itself win.

    Example:
        >>> cfg = RouterConfig(tiers={"fast": {"models": ["openai/gpt-4o-mini"], "style": {"max_tokens": 50}}},
        ...                    default="fast")
        >>> d = Decision(step="s", kind=None, tier="fast", model="openai/gpt-4o-mini", policy="fixed", reason="r")
        >>> styled(cfg, StyleConfig(system_prompt="Be brief."), StepRequest("s", [{"role": "user", "content": "hi"}]), d, {})
        ([{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'hi'}], {'max_tokens': 50})
    """
    tier_style = config.tiers[decision.tier].style
    if tier_style is None and step_style is None:
        return request.messages, params
    styles = [s for s in (tier_style, step_style) if s is not None]
    messages = list(request.messages)
    addition = "\n\n".join(s.system_prompt for s in styles if s.system_prompt)
    if addition:
        if messages and messages[0].get("role") == "system":
            content = messages[0].get("content")
            if isinstance(content, list):
                content = [*content, {"type": "text", "text": addition}]
            else:
                content = f"{content}\n\n{addition}" if content else addition
            messages[0] = {**messages[0], "content": content}
        else:
            messages.insert(0, {"role": "system", "content": addition})
    params = dict(params)
    for name in ("max_tokens", "temperature"):
        values = [getattr(s, name) for s in reversed(styles) if getattr(s, name) is not None]
        if values:
            params.setdefault(name, values[0])
    return messages, params
