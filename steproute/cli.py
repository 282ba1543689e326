"""The ``steproute`` command."""

from __future__ import annotations

import argparse
import os
import sys

from steproute.errors import ConfigError


def _check(path: str) -> int:
    from steproute.router import StepRouter

    try:
        router = StepRouter.from_file(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{path}: valid")
    for tier in router.tiers:
        marker = "  (baseline)" if tier == router.baseline else ""
        print(f"  tier {tier}{marker}")
        for d in router.deployments(tier):
            price = f"${d.price.input * 1e6:.2f}/M in, ${d.price.output * 1e6:.2f}/M out"
            print(f"    {d.model}  {price}{'' if d.price.known else '  (no price known: counted as $0)'}")
    for name, policy in router.config.steps.items():
        print(f"  step {name}: policy {policy.policy}")
    print(f"  default: policy {router.config.default.policy}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="steproute", description="Per-step model-tier routing for LangGraph.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run a routed 5-step agent and print its per-step bill")
    check = sub.add_parser("check", help="validate a configuration file and show its tiers and prices")
    check.add_argument("config", help="path to steproute.yaml (or .toml)")
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if args.command == "demo":
        from steproute._demo import main as demo

        return demo()
    return _check(args.config)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
