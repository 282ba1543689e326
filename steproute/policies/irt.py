"""``irt``: a query's latent difficulty against each tier's latent ability (item response theory).

The model (fitted by ``steproute train --policy irt``, as in IRT-Router, ACL 2025) says that
tier ``t`` answers query ``x`` well with probability::

    P(t, x) = sigmoid(a_t · (ability_t − difficulty(x)) + θ_t · d(x))

``difficulty(x)`` is one number per query, shared by every tier, predicted from the query's
features (the classifier's: TF-IDF, static embeddings of the query and its context, text
measures, the step); ``ability_t`` and the discrimination ``a_t`` are one number per tier;
``d(x)`` is a small learned direction (what a query asks for, beyond how hard it is) that each
tier meets with its own ``θ_t``. All tiers are fitted at once, on every outcome: a tier with
few outcomes borrows the difficulty the others taught.

Reading it: difficulty is in standard deviations of the training queries (0 = an average
training query, +2 = harder than about 98% of them); a tier's ``ability`` is the difficulty it
answers well half the time (ignoring ``d``). The artefact lists the training steps with the
highest mean difficulty (``meta.json``'s ``hardest_steps``), and every decision's reason
shows the request's difficulty.

Running needs numpy only: both terms are linear in the features, so the artefact holds, per
tier, the product collapsed to one coefficient row (and one row for the difficulty), and a
decision is the classifier's feature pass (about 0.1 ms).

Example:
    .. code-block:: yaml

        steps:
          answer:
            policy: irt
            artefact: answer-irt.steproute   # steproute train --policy irt --data train.jsonl --out answer-irt.steproute
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from steproute.policies._artefact import Artefact, built, load_artefact
from steproute.policies._scoring import ScoringPolicy, pick
from steproute.policies.base import Choice
from steproute.policies.classifier import ClassifierPolicy
from steproute.types import StepRequest

__all__ = ["IrtPolicy"]


class IrtPolicy(ScoringPolicy):
    """Route by each tier's ability against the request's difficulty (see the module docstring).

    Example:
        >>> from steproute.evaluation import EvalRow, Outcome
        >>> from steproute.evaluation._irt_train import train_irt
        >>> rows = [EvalRow(f"q{i}", ({"role": "user", "content": "prove the theorem" if i % 2 else "say hi"},),
        ...                 {"cheap": Outcome(float(i % 2 == 0), 0.1), "strong": Outcome(1.0, 1.0)}) for i in range(40)]
        >>> policy = IrtPolicy(train_irt(rows, ("cheap", "strong"), folds=0, cache=False), threshold=0.05)
        >>> hard, easy = (StepRequest("x", [{"role": "user", "content": c}]) for c in ("prove the theorem", "say hi"))
        >>> policy.difficulty(hard) > policy.difficulty(easy), policy.choose(hard).tier, policy.choose(easy).tier
        (True, 'strong', 'cheap')
    """

    name = "irt"

    def __init__(self, artefact: Artefact, tiers: Sequence[str] | None = None, threshold: float | None = None) -> None:
        a = artefact.arrays
        self._bind(artefact, tiers, threshold)
        # one linear pass gives every tier's logit and, in the last row, minus the difficulty
        coef = np.vstack([a["coef"].astype(np.float64), -a["difficulty"].astype(np.float64)[None, :]])
        intercept = np.append(a["intercept"].astype(np.float64), -float(a["difficulty_intercept"][0]))
        linear_meta = {**artefact.meta, "labels": [*artefact.labels, "difficulty"]}
        self._linear = ClassifierPolicy(Artefact("classifier", linear_meta, {**a, "coef": coef, "intercept": intercept}))
        self.ability = a["ability"].astype(np.float64)
        """Each tier's ability, on the difficulty scale (cheap to strong)."""
        self.discrimination = a["discrimination"].astype(np.float64)

    @classmethod
    def load(cls, path: str | os.PathLike[str], tiers: Sequence[str] | None = None,
             threshold: float | None = None) -> IrtPolicy:
        """Load an artefact written by ``steproute train --policy irt``."""
        artefact = load_artefact(path, "irt")
        return built(path, lambda: cls(artefact, tiers, threshold))

    def _both(self, request: StepRequest) -> tuple[np.ndarray, float]:
        p = self._linear.scores(request)
        last = min(max(float(p[-1]), 1e-13), 1 - 1e-13)
        return p[:-1], math.log((1 - last) / last)

    def scores(self, request: StepRequest) -> np.ndarray:
        """Estimated probability that each tier answers well (fractional quality: its expected value)."""
        return self._both(request)[0]

    def difficulty(self, request: StepRequest) -> float:
        """The request's latent difficulty (standard deviations of the training queries; 0 = average)."""
        return self._both(request)[1]

    def choose(self, request: StepRequest) -> Choice:
        p, b = self._both(request)
        scores: list[float] = p.tolist()
        i = pick(scores, self.threshold)
        shown = ", ".join([f"{t}={s:.2f}" for t, s in zip(self.tiers, scores, strict=True)])
        margin = max(scores[i + 1:]) - scores[i] if i + 1 < len(scores) else 0.0
        return Choice(self.tiers[i], f"irt: difficulty {b:+.2f}; estimated quality {shown}; threshold {self.threshold:g}",
                      score=round(margin, 4))
