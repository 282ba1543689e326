"""The cascade offline: train its answer scorer, and replay it over recorded answers.

Rows of the evaluation format that carry each model's ``response`` (GSM8K's do) are enough
to simulate a cascade without calling a model: for each row, the cheapest model's recorded
answer is scored; at or above the threshold it is kept, else the row moves to the next model,
and so on. Quality is the kept answer's; cost is every attempt's (the cheap attempt is paid
for even when the answer is thrown away). Sweeping the threshold gives the quality / cost /
escalation-rate curve.

Example:
    >>> from steproute.evaluation import EvalRow, Outcome
    >>> rows = [EvalRow(str(i), ({"role": "user", "content": "2+2?"},),
    ...                 {"cheap": Outcome(float(i % 2), 1.0, "4" if i % 2 else "I'm not sure"),
    ...                  "strong": Outcome(1.0, 10.0, "4")}) for i in range(4)]
    >>> table = CascadeTable.of(rows, ("cheap", "strong"))
    >>> point = table.at(np.array([[0.0], [1.0], [0.0], [1.0]]), 0.5)
    >>> point.quality, point.cost_usd, point.escalation_rate
    (1.0, 24.0, 0.5)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from steproute.evaluation._calibrate import Target
from steproute.evaluation._format import EvalRow
from steproute.policies._artefact import Artefact
from steproute.policies.answer_scorer import FEATURES, AnswerScorer, acceptance, answer_features, check_arithmetic

__all__ = ["CascadeEvaluation", "CascadePoint", "CascadeTable", "evaluate_cascade", "replay_cascade", "train_cascade",
           "verifier_scores"]

DEFAULT_CASCADE_TARGET = Target(quality_ratio=0.95)
COST_EXPONENTS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The cost weightings training tries (see :func:`~steproute.policies.answer_scorer.acceptance`)."""
Progress = Callable[[str, int], Any]


def _question(row: EvalRow) -> str:
    users = [m.get("content") for m in row.messages if m.get("role") == "user"]
    last = users[-1] if users else ""
    return last if isinstance(last, str) else str(last)


@dataclass(frozen=True)
class CascadePoint:
    """The cascade at one threshold."""

    threshold: float
    quality: float
    cost_usd: float
    """Every attempt's cost, summed over the rows."""
    escalation_rate: float
    """Share of rows that went past the first model."""


@dataclass(frozen=True)
class CascadeTable:
    """Quality, cost and recorded answer of every row on every model (cheap to strong)."""

    models: tuple[str, ...]
    quality: np.ndarray
    cost: np.ndarray
    questions: tuple[str, ...]
    responses: tuple[tuple[str, ...], ...]
    """Per row, the recorded answer of each model but the last."""

    @classmethod
    def of(cls, rows: Sequence[EvalRow], models: Sequence[str]) -> CascadeTable:
        """Raises ``ValueError`` naming the first row that lacks an outcome, or a recorded
        ``response`` for a model the cascade would judge."""
        if len(models) < 2:
            raise ValueError(f"a cascade needs two or more models, got {list(models)}")
        for row in rows:
            for i, model in enumerate(models):
                outcome = row.outcomes.get(model)
                if outcome is None:
                    raise ValueError(f"row {row.id!r} has no outcome for model {model!r}")
                if i < len(models) - 1 and outcome.response is None:
                    raise ValueError(f"row {row.id!r}: model {model!r} has no recorded 'response' to judge")
        quality = np.array([[r.outcomes[m].quality for m in models] for r in rows], dtype=float)
        cost = np.array([[r.outcomes[m].cost_usd for m in models] for r in rows], dtype=float)
        responses = tuple(tuple(r.outcomes[m].response or "" for m in models[:-1]) for r in rows)
        return cls(tuple(models), quality.reshape(len(rows), len(models)), cost.reshape(len(rows), len(models)),
                   tuple(_question(r) for r in rows), responses)

    def __len__(self) -> int:
        return len(self.questions)

    def at(self, scores: np.ndarray, threshold: float) -> CascadePoint:
        """The cascade at ``threshold``, given a score for each row's answer of each judged model."""
        n, m = self.quality.shape
        done = np.zeros(n, dtype=bool)
        quality = np.zeros(n)
        cost = np.zeros(n)
        for j in range(m):
            active = ~done
            cost[active] += self.cost[active, j]
            keep = active & (scores[:, j] >= threshold) if j < m - 1 else active
            quality[keep] = self.quality[keep, j]
            done |= keep
        escalated = float((scores[:, 0] < threshold).mean()) if n else 0.0
        return CascadePoint(float(threshold), float(quality.mean()) if n else 0.0, float(cost.sum()), escalated)

    def curve(self, scores: np.ndarray, points: int = 201) -> list[CascadePoint]:
        """The cascade over thresholds from "keep every first answer" to "escalate every row"."""
        judged = np.unique(scores)
        if len(judged) > points:
            judged = np.quantile(judged, np.linspace(0, 1, points))
        thresholds = np.concatenate([[-np.inf], judged, [np.inf]])
        return [self.at(scores, t) for t in thresholds]

    def features(self, judged: int = 0) -> np.ndarray:
        return np.array([answer_features(q, r[judged]) for q, r in zip(self.questions, self.responses, strict=True)],
                        dtype=float).reshape(len(self), len(FEATURES))

    def lengths(self, judged: int = 0) -> np.ndarray:
        """Characters of question plus judged answer: what an escalation's cost follows."""
        return np.array([len(q) + len(r[judged]) for q, r in zip(self.questions, self.responses, strict=True)], dtype=float)

    def strong(self) -> tuple[float, float]:
        return float(self.quality[:, -1].mean()), float(self.cost[:, -1].sum())


def _meets(point: CascadePoint, target: Target, strong_quality: float) -> bool:
    if target.strong_share is not None:
        return point.escalation_rate <= target.strong_share + 1e-12
    if target.quality_floor is not None:
        return point.quality >= target.quality_floor - 1e-12
    assert target.quality_ratio is not None
    return point.quality >= target.quality_ratio * strong_quality - 1e-12


def calibrate_cascade(curve: Sequence[CascadePoint], target: Target, strong_quality: float) -> CascadePoint:
    """The cheapest point that meets ``target`` (for a share cap: the best quality within it).
    ``ValueError`` when none does."""
    meeting = [p for p in curve if _meets(p, target, strong_quality)]
    if not meeting:
        raise ValueError(f"no threshold meets the target ({target.describe()})")
    if target.strong_share is not None:
        return max(meeting, key=lambda p: (p.quality, -p.cost_usd))
    return min(meeting, key=lambda p: (p.cost_usd, -p.quality))


def _fit(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Standardise, then a logistic regression on soft labels (a quality of 0.7 counts as 0.7
    of a right answer and 0.3 of a wrong one)."""
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    labels = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
    weights = np.concatenate([y, 1.0 - y])
    keep = weights > 0
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit(np.vstack([z, z])[keep], labels[keep], sample_weight=weights[keep])
    return mean, scale, model.coef_[0], float(model.intercept_[0])


def _predict(x: np.ndarray, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(((x - mean) / scale) @ coef + intercept, -50, 50)))


def _accept(p: np.ndarray, lengths: np.ndarray, scale: float, exponent: float) -> np.ndarray:
    return np.array([acceptance(float(pi), float(li), scale, exponent) for pi, li in zip(p, lengths, strict=True)])


def train_cascade(rows: Sequence[EvalRow], models: Sequence[str], *, target: Target | None = None, folds: int = 5,
                  c: float = 0.3, seed: int = 0, cost_exponents: Sequence[float] = COST_EXPONENTS,
                  progress: Progress | None = None) -> Artefact:
    """Fit the answer scorer on the cheaper models' recorded answers, choose how much the cost
    of an escalation weighs (:data:`COST_EXPONENTS`) and calibrate the threshold, both on
    out-of-fold scores, for ``target`` (default: 95% of the strongest model's quality at the
    lowest cost)."""
    target = target or DEFAULT_CASCADE_TARGET
    table = CascadeTable.of(rows, models)
    if folds < 2:
        raise ValueError("a cascade's threshold is calibrated on out-of-fold scores: folds must be 2 or more")
    if len(table) < folds * 4:
        raise ValueError(f"too few rows to train a cascade ({len(table)}; at least {folds * 4} for {folds} folds)")
    judged = range(len(models) - 1)
    bar = progress("cascade", len(judged) + folds) if progress else None
    x_by, lengths = [], []
    for j in judged:
        x_by.append(table.features(j))
        lengths.append(table.lengths(j))
        if bar is not None:
            bar.update(1)
    length_scale = float(np.mean(np.concatenate(lengths)))
    order = np.random.default_rng(seed).permutation(len(table))
    probabilities = np.zeros((len(table), len(judged)))
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        fit = _fit(np.vstack([xj[train] for xj in x_by]), np.concatenate([table.quality[train, j] for j in judged]), c)
        for j in judged:
            probabilities[test, j] = _predict(x_by[j][test], *fit)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    strong_quality, strong_cost = table.strong()
    exponents = tuple(cost_exponents) if target.strong_share is None else (0.0,)
    best: tuple[CascadePoint, float] | None = None
    for exponent in exponents:
        scores = np.column_stack([_accept(probabilities[:, j], lengths[j], length_scale, exponent) for j in judged])
        try:
            point = calibrate_cascade(table.curve(scores), target, strong_quality)
        except ValueError:
            continue
        if best is None or (point.cost_usd, -point.quality) < (best[0].cost_usd, -best[0].quality):
            best = (point, exponent)
    if best is None:
        raise ValueError(f"no threshold meets the target ({target.describe()}) on the training rows")
    point, exponent = best
    x = np.vstack(x_by)
    y = np.concatenate([table.quality[:, j] for j in judged])
    mean, scale, coef, intercept = _fit(x, y, c)
    meta: dict[str, Any] = {
        "labels": list(models), "threshold": float(min(max(point.threshold, 0.0), 1.0)), "features": list(FEATURES),
        "target": target.describe(), "trained_on": len(table), "c": c, "length_scale": length_scale,
        "cost_exponent": exponent,
        "cross_validation": {"folds": folds, **asdict(point), "strong_quality": strong_quality,
                             "strong_cost_usd": strong_cost},
    }
    arrays = {"mean": mean, "scale": scale, "coef": coef, "intercept": np.array([intercept])}
    return Artefact("cascade", meta, arrays)


def scorer_scores(table: CascadeTable, scorer: AnswerScorer) -> np.ndarray:
    """The scorer's acceptance score for every judged answer (rows × judged models)."""
    out = []
    for j in range(len(table.models) - 1):
        p = _predict(table.features(j), np.array(scorer.mean), np.array(scorer.scale), np.array(scorer.coef),
                     scorer.intercept)
        out.append(_accept(p, table.lengths(j), scorer.length_scale, scorer.cost_exponent))
    return np.column_stack(out)


def verifier_scores(table: CascadeTable) -> np.ndarray:
    """A simple verifier, the baseline the issue names: 1 when the answer states a final answer
    and none of its calculations is wrong, else 0."""
    out = np.zeros((len(table), len(table.models) - 1))
    for i, responses in enumerate(table.responses):
        for j, text in enumerate(responses):
            _, wrong = check_arithmetic(text)
            out[i, j] = float(wrong == 0 and answer_features("", text)[FEATURES.index("final_marker")] > 0)
    return out


def oracle_scores(table: CascadeTable) -> np.ndarray:
    """Scores that keep exactly the right answers."""
    return table.quality[:, :-1].copy()


@dataclass(frozen=True)
class CascadeEvaluation:
    """A cascade replayed over rows: the operating point, the references and the curve."""

    models: tuple[str, ...]
    rows: int
    point: CascadePoint
    strong_quality: float
    strong_cost_usd: float
    weak_quality: float
    weak_cost_usd: float
    oracle: CascadePoint
    curve: list[CascadePoint] = field(repr=False)

    @property
    def quality_ratio(self) -> float:
        return self.point.quality / self.strong_quality if self.strong_quality else 0.0

    @property
    def cost_ratio(self) -> float:
        return self.point.cost_usd / self.strong_cost_usd if self.strong_cost_usd else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": "cascade", "models": list(self.models), "rows": self.rows, "threshold": self.point.threshold,
            "quality": self.point.quality, "cost_usd": self.point.cost_usd,
            "escalation_rate": self.point.escalation_rate, "quality_ratio": self.quality_ratio,
            "cost_ratio": self.cost_ratio, "strong_quality": self.strong_quality,
            "strong_cost_usd": self.strong_cost_usd, "weak_quality": self.weak_quality,
            "weak_cost_usd": self.weak_cost_usd, "oracle": asdict(self.oracle),
            "curve": [asdict(p) for p in self.curve],
        }


def evaluate_scores(table: CascadeTable, scores: np.ndarray, threshold: float) -> CascadeEvaluation:
    strong_quality, strong_cost = table.strong()
    oracle = table.at(oracle_scores(table), 0.5)
    return CascadeEvaluation(table.models, len(table), table.at(scores, threshold), strong_quality, strong_cost,
                             float(table.quality[:, 0].mean()), float(table.cost[:, 0].sum()), oracle,
                             table.curve(scores))


def evaluate_cascade(rows: Sequence[EvalRow], artefact: Artefact, *, threshold: float | None = None,
                     models: Sequence[str] | None = None) -> CascadeEvaluation:
    """Replay a trained cascade (its scorer at its calibrated threshold, or ``threshold``)."""
    scorer = AnswerScorer.of(artefact)
    table = CascadeTable.of(rows, tuple(models) if models else artefact.labels)
    return evaluate_scores(table, scorer_scores(table, scorer), scorer.threshold if threshold is None else threshold)


class _NoModels:
    """Offline there is no model to call: signals that need one cannot be replayed."""

    def samples(self, n: int) -> list[Any]:
        raise ValueError("the 'consistency' signal calls models: it cannot be replayed over recorded answers")

    def ask(self, tier: str, messages: Any, max_tokens: int) -> str:
        raise ValueError("the 'judge' signal calls models: it cannot be replayed over recorded answers")


def replay_cascade(rows: Sequence[EvalRow], policy: Any, models: Sequence[str], *, step: str | None = None,
                   progress: Progress | None = None) -> CascadeEvaluation:
    """Replay a configured ``cascade`` policy (its signals, thresholds and ``combine``) over
    the recorded answers: the operating point is the policy's own verdicts; the curve sweeps
    a threshold over its combined confidence. ``models``: the outcome model of each cascade
    tier, cheap to strong."""
    from steproute.evaluation._evaluate import request_of
    from steproute.policies.confidence import Answer

    table = CascadeTable.of(rows, models)
    probe = _NoModels()
    confidence = np.zeros((len(table), len(models) - 1))
    accepted = np.zeros_like(confidence)
    bar = progress("replaying", len(rows)) if progress else None
    for i, row in enumerate(rows):
        request = request_of(row, step)
        for j in range(len(models) - 1):
            verdict = policy.judge(request, Answer(table.responses[i][j]), probe)
            accepted[i, j] = float(verdict.accepted)
            confidence[i, j] = 1.0 if verdict.confidence is None else verdict.confidence
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    result = evaluate_scores(table, confidence, 0.5)
    return CascadeEvaluation(result.models, result.rows, table.at(accepted, 0.5), result.strong_quality,
                             result.strong_cost_usd, result.weak_quality, result.weak_cost_usd, result.oracle,
                             result.curve)


def plot_cascades(results: Sequence[tuple[str, CascadeEvaluation]], path: str, *, title: str = "") -> None:
    """Quality against cost (share of always-strongest) and against escalation rate, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, result in results:
        cost = [p.cost_usd / result.strong_cost_usd for p in result.curve]
        quality = [p.quality for p in result.curve]
        left.plot(cost, quality, label=name)
        right.plot([p.escalation_rate for p in result.curve], quality, label=name)
        left.scatter([result.cost_ratio], [result.point.quality], marker="o", zorder=3)
    first = results[0][1]
    for axis in (left, right):
        axis.axhline(first.strong_quality, color="grey", ls="--", lw=0.8, label="always strongest")
        axis.axhline(0.95 * first.strong_quality, color="grey", ls=":", lw=0.8, label="95% of strongest")
        axis.set_ylabel("quality")
        axis.grid(alpha=0.3)
    left.scatter([first.oracle.cost_usd / first.strong_cost_usd], [first.oracle.quality], marker="*", s=120,
                 color="black", label="oracle", zorder=3)
    left.set_xlabel("cost / always-strongest cost (cheap attempts included)")
    right.set_xlabel("escalation rate")
    left.legend(fontsize=8, loc="lower right")
    fig.suptitle(title or "cascade")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
