"""What ``steproute train`` and ``calibrate`` print beyond the figures: threshold spread, blend choice, trainers."""

from __future__ import annotations

from typing import Any


def print_spread(folds: int, spread: Any) -> None:
    """The per-fold thresholds' spread (``ThresholdSpread`` or its JSON), as mean ± sd (min–max)."""
    from steproute.evaluation._threshold_cv import FoldThreshold, ThresholdSpread

    if isinstance(spread, dict):
        spread = ThresholdSpread(spread["target"], tuple(FoldThreshold(**f) for f in spread["per_fold"]))
    if spread is not None:
        print(f"{folds}-fold check: threshold chosen on {folds - 1} folds, replayed on the {_ordinal(folds)} "
              "(mean ± sd, min–max; quality and cost against the fold's always-strongest):")
        print("\n".join(f"  {line}" for line in spread.lines()))


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def trainers() -> dict[str, Any]:
    """The training function of each ``steproute train --policy`` that trains one estimator."""
    from steproute.evaluation._ensemble_train import train_ensemble
    from steproute.evaluation._irt_train import train_irt
    from steproute.evaluation._knn_train import train_knn
    from steproute.evaluation._semantic_train import train_semantic
    from steproute.evaluation._train import train_classifier

    return {"classifier": train_classifier, "semantic": train_semantic, "irt": train_irt, "knn": train_knn,
            "ensemble": train_ensemble}


def print_blend(blend: dict[str, Any]) -> None:
    """What cross-validation said of each member and of the blend, and what was written."""
    cv = blend["cv_apgr"]
    print(f"cross-validated APGR: classifier {cv['classifier']:.3f}, knn {cv['knn']:.3f}, best blend "
          f"{cv['best_blend']:.3f} (knn weight {blend['best_blend_weight']:g})")
    if blend["chosen"] == "ensemble":
        print(f"chosen: the blend (knn weight {blend['knn_weight']:g}): it beats each member alone")
    else:
        print(f"chosen: {blend['chosen']} alone: no blend beat it in cross-validation, so the artefact is a plain "
              f"{blend['chosen']} one (a config reads it with policy: {blend['chosen']})")
