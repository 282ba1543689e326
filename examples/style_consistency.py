"""Before/after: the same question on the fast and the strong local model, without and with a
per-tier style (docs/pinning.md, "Answers that look alike across tiers").

    python examples/style_consistency.py
"""

from __future__ import annotations

import os
import re

from steproute import Hint, RouterConfig, StepRequest, StepRouter
from steproute.local import LocalServers

QUESTION = "How do I print a shipping label?"
STYLE = {"system_prompt": "Answer in one or two plain sentences. No lists, no headings, no markdown.",
         "max_tokens": 80, "temperature": 0}


def answers(local: LocalServers, styled: bool) -> dict[str, str]:
    tiers = local.tiers_config()
    for tier in tiers.values():
        tier["models"][0].update(input_cost_per_token=0, output_cost_per_token=0)  # local: no price
        if styled:
            tier["style"] = STYLE
    router = StepRouter(RouterConfig(tiers=tiers, default="fast"))
    out = {}
    for tier in tiers:
        result = router.complete(StepRequest(tier, [{"role": "user", "content": QUESTION}], hint=Hint(tier=tier)),
                                 **({} if styled else {"max_tokens": 300, "temperature": 0}))
        out[tier] = result.completion.content.strip()
    return out


def describe(text: str) -> str:
    markdown = bool(re.search(r"^\s*([-*#]|\d+\.)\s", text, re.M) or "**" in text)
    return f"{len(text)} chars, {len(text.split())} words, {'markdown' if markdown else 'plain'}"


def main() -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with LocalServers(progress=False) as local:
        for label, styled in (("without style", False), ("with the same style on both tiers", True)):
            print(f"== {label}")
            for tier, text in answers(local, styled).items():
                print(f"-- {tier} ({describe(text)}):\n{text}\n")


if __name__ == "__main__":
    main()
