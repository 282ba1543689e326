"""The cascade offline on GSM8K: quality and cost with every cheap attempt paid for.

GSM8K rows carry both models' full answers, so a cascade can be replayed without calling a
model: Mixtral answers first; the trained answer scorer judges the answer; below the
threshold the row goes to GPT-4 as well (paid twice). Six 70/30 splits per problem: the scorer
is trained and its threshold calibrated (target: 95% of GPT-4's accuracy at the lowest cost)
on the 70%, and replayed on the 30% it never saw. In the same run, on the same splits:

- the scorer without its cost weighting (``cost_exponents=(0,)``),
- a simple verifier (keep the cheap answer when it states a final answer and none of its
  calculations is wrong),
- the pre-call classifier at its calibrated threshold (it never pays for a cheap attempt),
- the oracle cascade (keeps exactly the right cheap answers),
- cascade routing (:func:`cascade_routing`): the start tier and each escalation by value,
  from the calibrated classifier and answer scorer, λ set by cross-validation on the 70%.

Writes the ``cascade`` block of docs/evaluation.md and docs/images/cascade-gsm8k.png.

    python benchmarks/cascade.py            # about 4 minutes on 2 cores
    python benchmarks/cascade.py --routing  # cascade routing alone, seed 0: figures and curve, no doc written
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import time
import timeit
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from steproute.evaluation import Outcomes, load_routellm, split_rows
from steproute.evaluation._cascade import (
    CascadeEvaluation,
    CascadeTable,
    evaluate_cascade,
    evaluate_scores,
    plot_cascades,
    train_cascade,
    verifier_scores,
)
from steproute.evaluation._cascade_routing_train import RoutingEvaluation, evaluate_cascade_routing, train_cascade_routing
from steproute.evaluation._evaluate import _scored, request_of
from steproute.evaluation._knn_train import train_knn
from steproute.evaluation._routellm import GPT4, MIXTRAL
from steproute.evaluation._train import train_classifier
from steproute.policies.answer_scorer import AnswerScorer
from steproute.policies.classifier import ClassifierPolicy
from steproute.policies.knn import KnnPolicy

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "routellm" / "routellm" / "evals" / "gsm8k"
DOC = ROOT / "docs" / "evaluation.md"
PNG = ROOT / "docs" / "images" / "cascade-gsm8k.png"
ROUTING_PNG = ROOT / "docs" / "images" / "cascade-routing-gsm8k.png"
MODELS = (MIXTRAL, GPT4)
SEEDS = range(6)


def cascade_routing(train: list, test: list) -> tuple[RoutingEvaluation, float]:
    """Cascade routing trained on ``train`` (λ for 95% of GPT-4's quality, by cross-validation
    on it), replayed on ``test``; and the training time in seconds."""
    started = time.time()
    artefact = train_cascade_routing(train, MODELS)
    seconds = time.time() - started
    return evaluate_cascade_routing(test, artefact), seconds


def plot_routing(routing: RoutingEvaluation, cascade: CascadeEvaluation, path: Path, title: str) -> None:
    """Quality against cost: cascade routing over λ (its calibrated point marked) beside the threshold cascade."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6.5, 4.2))
    axis.plot([p.cost_usd / routing.strong_cost_usd for p in routing.curve], [p.quality for p in routing.curve],
              label="cascade routing (over λ)")
    axis.plot([p.cost_usd / cascade.strong_cost_usd for p in cascade.curve], [p.quality for p in cascade.curve],
              label="threshold cascade (over threshold)")
    axis.scatter([routing.cost_ratio], [routing.point.quality], zorder=3, label=f"calibrated λ={routing.point.lam:.3g}")
    axis.scatter([cascade.cost_ratio], [cascade.point.quality], zorder=3, marker="s", label="calibrated threshold")
    axis.axhline(0.95 * routing.strong_quality, color="grey", ls=":", lw=0.8, label="95% of GPT-4")
    axis.axvline(0.45, color="grey", ls="--", lw=0.8, label="45% of GPT-4's cost")
    axis.set_xlabel("cost / always-GPT-4 cost (cheap attempts included)")
    axis.set_ylabel("quality")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def routing_only(seeds: range = range(1)) -> int:
    """``--routing``: the three side by side on each split, cascade routing's curve; writes no doc."""
    rows = load_routellm(DATA).rows
    for seed in seeds:
        train, test = split_rows(rows, 0.3, seed=seed)
        routing, seconds = cascade_routing(train, test)
        cascade = evaluate_cascade(test, train_cascade(train, MODELS))
        outcomes = Outcomes.of(test, MODELS)
        clf = _scored("classifier", ClassifierPolicy(train_classifier(train, MODELS, folds=5)),
                      [request_of(r) for r in test], outcomes, MODELS, None).summary
        p = routing.point
        print(f"seed {seed} ({len(test)} held-out rows)\n"
              f"  pure routing (classifier): quality {clf.quality / clf.strong_quality:.1%}, cost "
              f"{clf.cost_usd / clf.strong_cost_usd:.1%}, GPT-4 share {clf.strong_share:.1%}\n"
              f"  threshold cascade:         quality {cascade.quality_ratio:.1%}, cost {cascade.cost_ratio:.1%}, "
              f"escalated {cascade.point.escalation_rate:.1%}\n"
              f"  cascade routing:           quality {routing.quality_ratio:.1%}, cost {routing.cost_ratio:.1%}, "
              f"GPT-4 share {p.strong_share:.1%}, skipped Mixtral {p.skipped_share:.1%}, escalated "
              f"{p.escalation_rate:.1%}; λ={p.lam:.3g}, κ={p.kappa:g}; trained in {seconds:.0f} s")
        if seed == seeds[0]:
            for q in routing.curve[200::12]:
                print(f"    λ={q.lam:.3g}: quality {q.quality / routing.strong_quality:.1%}, cost "
                      f"{q.cost_usd / routing.strong_cost_usd:.1%}, GPT-4 share {q.strong_share:.1%}, "
                      f"skipped {q.skipped_share:.1%}")
            plot_routing(routing, cascade, ROUTING_PNG, f"GSM8K: {len(test)} held-out rows (seed {seed})")
    return 0


def main() -> int:
    started = time.time()
    rows = load_routellm(DATA).rows
    results: dict[str, list[tuple[float, float, float]]] = {}

    def add(name: str, quality_ratio: float, cost_ratio: float, escalation: float) -> None:
        results.setdefault(name, []).append((quality_ratio, cost_ratio, escalation))

    plotted = None
    for seed in SEEDS:
        train, test = split_rows(rows, 0.3, seed=seed)
        table = CascadeTable.of(test, MODELS)
        trained = train_cascade(train, MODELS)
        ev = evaluate_cascade(test, trained)
        add("cascade, trained scorer", ev.quality_ratio, ev.cost_ratio, ev.point.escalation_rate)
        flat = evaluate_cascade(test, train_cascade(train, MODELS, cost_exponents=(0.0,)))
        add("cascade, scorer without cost weighting", flat.quality_ratio, flat.cost_ratio, flat.point.escalation_rate)
        verifier = evaluate_scores(table, verifier_scores(table), 0.5)
        add("cascade, simple verifier", verifier.quality_ratio, verifier.cost_ratio, verifier.point.escalation_rate)
        add("cascade, oracle", ev.oracle.quality / ev.strong_quality, ev.oracle.cost_usd / ev.strong_cost_usd,
            ev.oracle.escalation_rate)
        outcomes = Outcomes.of(test, MODELS)
        clf = _scored("classifier", ClassifierPolicy(train_classifier(train, MODELS, folds=5)),
                      [request_of(r) for r in test], outcomes, MODELS, None).summary
        routing, _ = cascade_routing(train, test)
        add("cascade routing (start and escalation by value)", routing.quality_ratio, routing.cost_ratio,
            routing.point.strong_share)
        add("pre-call classifier (no cheap attempt)", clf.quality / clf.strong_quality, clf.cost_usd / clf.strong_cost_usd,
            clf.strong_share)
        knn = _scored("knn", KnnPolicy(train_knn(train, MODELS, folds=5)), [request_of(r) for r in test], outcomes,
                      MODELS, None).summary
        add("pre-call knn (no cheap attempt)", knn.quality / knn.strong_quality, knn.cost_usd / knn.strong_cost_usd,
            knn.strong_share)
        if plotted is None:
            plotted = [("trained scorer", ev), ("scorer without cost weighting", flat)]
            plot_cascades(plotted, str(PNG), title=f"GSM8K: {len(test)} held-out rows (split seed 0), cheap attempts paid")
        print(f"seed {seed}: cascade {ev.quality_ratio:.3f} quality at {ev.cost_ratio:.3f} cost "
              f"(exponent {trained.meta['cost_exponent']})", file=sys.stderr, flush=True)

    scorer = AnswerScorer.of(train_cascade(rows, MODELS))
    question = rows[0].messages[-1]["content"]
    answer = rows[0].outcomes[MIXTRAL].response or ""
    n = 2000
    per_call = timeit.timeit(lambda: scorer.score(question, answer), number=n) / n

    lines = [f"Generated by `benchmarks/cascade.py` on {time.strftime('%Y-%m-%d')}: GSM8K, {len(SEEDS)} splits "
             f"70/30, {len(rows)} rows; costs at $0.90 (Mixtral) and $20 (GPT-4) per million tokens.", "",
             "| router | quality / always-GPT-4 | cost / always-GPT-4 | escalation (or GPT-4) rate | met: ≥95% at ≤45% |",
             "|---|---|---|---|---|"]
    for name, values in results.items():
        q = [v[0] for v in values]
        c = [v[1] for v in values]
        e = [v[2] for v in values]
        met = sum(1 for qi, ci in zip(q, c, strict=True) if qi >= 0.95 and ci <= 0.45)
        lines.append(f"| {name} | {statistics.mean(q):.1%} ({min(q):.1%}–{max(q):.1%}) | "
                     f"{statistics.mean(c):.1%} ({min(c):.1%}–{max(c):.1%}) | {statistics.mean(e):.1%} | "
                     f"{met} of {len(values)} |")
    lines += ["", "Cells: the mean over the splits (lowest–highest).", "",
              f"Scoring one answer (features + the logistic regression) takes {per_call * 1e6:.0f} µs.", "",
              "![GSM8K cascade curves](images/cascade-gsm8k.png)", "", f"Whole run: {time.time() - started:.0f} s."]
    text = DOC.read_text(encoding="utf-8")
    block = "<!-- cascade:start -->\n" + "\n".join(lines) + "\n<!-- cascade:end -->"
    if "<!-- cascade:start -->" not in text:
        raise SystemExit(f"{DOC} has no <!-- cascade:start --> block")
    DOC.write_text(re.sub(r"<!-- cascade:start -->.*<!-- cascade:end -->", lambda _: block, text, flags=re.S),
                   encoding="utf-8")
    print(f"wrote {DOC} and {PNG}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if "--routing" in sys.argv[1:]:
        sys.exit(routing_only(range(6) if "--all-seeds" in sys.argv[1:] else range(1)))
    sys.exit(main())
