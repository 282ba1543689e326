"""``steproute train --policy cascade_routing`` and ``steproute calibrate`` of a step whose
cascade runs a cascade-routing artefact (its λ), for :mod:`steproute._cli_eval`.

Example:
    >>> from types import SimpleNamespace
    >>> calibrate_routing_step(SimpleNamespace(config="missing.yaml", step="s"), [], None, {}, None)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

__all__ = ["calibrate_routing_step", "train_routing"]


def train_routing(args: argparse.Namespace, rows: list, models: tuple[str, ...], trained: Callable[..., Any]) -> int:
    """Train, save and describe a ``cascade_routing`` artefact; ``trained`` trains with the
    command's folds, target and progress and saves (an exit code on failure)."""
    from steproute.evaluation._cascade_routing_train import train_cascade_routing

    artefact = trained(args, train_cascade_routing, rows, models, encoder=args.encoder)
    if isinstance(artefact, int):
        return artefact
    cv = artefact.meta["cross_validation"]
    if args.json:
        print(json.dumps({"artefact": args.out, "policy": "cascade_routing", "models": list(models), "lambda": cv["lam"],
                          "kappa": cv["kappa"], "cross_validation": cv}))
        return 0
    print(f"wrote {args.out}: cascade routing over {', '.join(models)} (cheap to strong), {len(rows)} rows, "
          f"λ {cv['lam']:.4g} for {artefact.meta['target']}")
    print(f"{cv['folds']}-fold cross-validation: quality {cv['quality'] / cv['strong_quality']:.1%} and cost "
          f"{cv['cost_usd'] / cv['strong_cost_usd']:.1%} of the strongest; {cv['strong_share']:.1%} of calls on it, "
          f"{cv['skipped_share']:.1%} skipped the cheapest, {cv['escalation_rate']:.1%} escalated")
    return 0


def calibrate_routing_step(args: argparse.Namespace, rows: list, target: Any, tier_models: dict[str, str],
                           write: Callable[..., None]) -> int | None:
    """``calibrate`` of a step whose cascade runs a cascade-routing artefact: the λ that meets
    ``target`` at the lowest cost on ``rows``, written as the step's ``lambda`` with
    ``--write``. ``None`` when the step runs another policy. Raises ``ValueError`` when no λ
    meets the target."""
    from steproute.evaluation._cascade_routing_train import calibrate_routing
    from steproute.policies.cascade_value import CascadeRoutingPolicy
    from steproute.router import StepRouter

    router = StepRouter.from_file(args.config)
    policy = router.policy_of(args.step)
    if not isinstance(policy, CascadeRoutingPolicy):
        return None
    tier_model = {t: router.deployments(t)[0].model for t in router.tiers} | tier_models
    point = calibrate_routing(rows, policy, [tier_model[t] for t in policy.tiers], target, step=args.step)
    if args.write:
        write(Path(args.config), args.step, point.lam, key="lambda")
    if args.json:
        print(json.dumps({"step": args.step, "target": target.describe(), **asdict(point),
                          "written": args.config if args.write else None}))
        return 0
    print(f"step {args.step}: λ {point.lam:.6g} for {target.describe()}: quality {point.quality:.4f}, "
          f"{point.strong_share:.1%} on the strongest tier, {point.skipped_share:.1%} skipped the cheapest, "
          f"${point.cost_usd:.4f}" + (f"; written to {args.config}" if args.write else " (use --write to save it)"))
    return 0
