"""Calibration: the threshold that meets a target, read off a policy's curve on a calibration set."""

from __future__ import annotations

from steproute.evaluation._metrics import Curve, Point

__all__ = ["Target", "calibrate"]


class Target:
    """One of: a share of calls on stronger tiers, an absolute quality floor, or a share of the
    strongest tier's quality.

    Example:
        >>> Target(quality_ratio=0.95).describe()
        'quality >= 95% of the strongest tier'
    """

    def __init__(self, *, strong_share: float | None = None, quality_floor: float | None = None,
                 quality_ratio: float | None = None) -> None:
        given = [v for v in (strong_share, quality_floor, quality_ratio) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one target: strong_share, quality_floor or quality_ratio")
        for name, value in (("strong_share", strong_share), ("quality_floor", quality_floor),
                            ("quality_ratio", quality_ratio)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        self.strong_share, self.quality_floor, self.quality_ratio = strong_share, quality_floor, quality_ratio

    def describe(self) -> str:
        if self.strong_share is not None:
            return f"at most {self.strong_share:.0%} of calls on stronger tiers"
        if self.quality_floor is not None:
            return f"quality >= {self.quality_floor:g}"
        return f"quality >= {self.quality_ratio:.0%} of the strongest tier"


def calibrate(curve: Curve, target: Target, strong_quality: float) -> Point:
    """The operating point for ``target``: for a share cap, the best quality within it; for a
    quality floor, the cheapest point above it. ``ValueError`` when no point meets the target."""
    points = curve.points
    if target.strong_share is not None:
        within = [p for p in points if p.strong_share <= target.strong_share + 1e-12]
        return max(within, key=lambda p: (p.quality, -p.strong_share))
    if target.quality_floor is not None:
        floor = target.quality_floor
    else:
        assert target.quality_ratio is not None  # one of the three is set
        floor = target.quality_ratio * strong_quality
    good = [p for p in points if p.quality >= floor - 1e-12]
    if not good:
        best = max(points, key=lambda p: p.quality)
        raise ValueError(f"no threshold reaches {target.describe()} (quality {floor:.4f}); the best is "
                         f"{best.quality:.4f} at {best.strong_share:.0%} on stronger tiers")
    return min(good, key=lambda p: (p.cost_usd, p.strong_share))
