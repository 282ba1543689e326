"""``steproute train --policy cascade_routing``, ``steproute eval`` of such an artefact and
``steproute calibrate`` of a step whose cascade runs one (its λ), for :mod:`steproute._cli_eval`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

__all__ = ["calibrate_routing_step", "eval_routing", "train_routing"]


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


def eval_routing(args: argparse.Namespace, rows: list) -> int | None:
    """``eval`` of a ``cascade_routing`` artefact at its λ (``--threshold``: another λ), with
    the curve over λ; ``None`` when ``--policy`` is something else."""
    from steproute.evaluation._cascade_routing_train import evaluate_cascade_routing
    from steproute.evaluation._evaluate import is_artefact
    from steproute.policies._artefact import load_artefact

    path = Path(args.policy)
    if not path.is_file() or not is_artefact(path):
        return None
    artefact = load_artefact(path)
    if artefact.policy != "cascade_routing":
        return None
    if args.html or args.plot:
        raise ValueError("--html and --plot are not drawn for a cascade routing yet: use --json for its curve over λ")
    result = evaluate_cascade_routing(rows, artefact, lam=args.threshold)
    p = result.point
    if args.json:
        print(json.dumps({"policy": "cascade_routing", "models": list(artefact.labels), "rows": len(rows), **asdict(p),
                          "quality_ratio": result.quality_ratio, "cost_ratio": result.cost_ratio,
                          "strong_quality": result.strong_quality, "strong_cost_usd": result.strong_cost_usd,
                          "curve": [asdict(q) for q in result.curve]}))
        return 0
    print(f"cascade routing on {Path(args.data).name} (models {', '.join(artefact.labels)}), λ {p.lam:.4g}: "
          f"quality {p.quality:.4f} ({result.quality_ratio:.1%} of the strongest), cost ${p.cost_usd:.4f} "
          f"({result.cost_ratio:.1%}), {p.strong_share:.1%} on the strongest tier, {p.skipped_share:.1%} skipped "
          f"the cheapest, {p.escalation_rate:.1%} escalated")
    return 0
