"""Routing quality vs cost on the shared RouteLLM data: writes the figures of docs/evaluation.md.

For each benchmark (MMLU development rows, GSM8K, MT-Bench) the rows are split 70/30 per step
(seed 0). The classifier, the semantic and knn policies and the classifier+knn ensemble are
trained on the 70% (5-fold cross-validation inside it picks their threshold, knn's k and the
blend weight) and replayed on the 30% they never saw.
LiteLLM's complexity_router heuristic (its score as the routing score) is replayed on the same
30%. MMLU is also split with seeds 1 and 2, and the classifier is tried across data sets.

    python benchmarks/evaluation.py            # about 6 minutes on 2 cores
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import numpy as np

from steproute.evaluation import Evaluation, Outcomes, load_routellm, split_rows, summarise, sweep
from steproute.evaluation._ensemble_train import train_ensemble
from steproute.evaluation._evaluate import _scored, request_of
from steproute.evaluation._irt_train import train_irt
from steproute.evaluation._knn_train import train_knn
from steproute.evaluation._plots import plot_evaluations
from steproute.evaluation._routellm import GPT4, MIXTRAL
from steproute.evaluation._semantic_train import train_semantic
from steproute.evaluation._train import train_classifier
from steproute.policies.classifier import ClassifierPolicy
from steproute.policies.ensemble import EnsemblePolicy
from steproute.policies.features import routing_text
from steproute.policies.irt import IrtPolicy
from steproute.policies.knn import KnnPolicy
from steproute.policies.semantic import SemanticPolicy

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "routellm" / "routellm" / "evals"
DOC = ROOT / "docs" / "evaluation.md"
IMAGES = ROOT / "docs" / "images"
MODELS = (MIXTRAL, GPT4)
BENCHMARKS = {"MMLU": "mmlu", "GSM8K": "gsm8k", "MT-Bench": "mt_bench"}


def complexity_scores(rows) -> np.ndarray:
    """LiteLLM's complexity_router heuristic: its weighted score, higher = send to the strong model."""
    import litellm
    from litellm.router_strategy.complexity_router.complexity_router import ComplexityRouter

    router = litellm.Router(model_list=[{"model_name": "x", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "k"}}])
    classifier = ComplexityRouter(model_name="x", litellm_router_instance=router)
    scores = np.zeros((len(rows), 2))
    for i, row in enumerate(rows):
        query, _, _ = routing_text(request_of(row))
        scores[i, 1] = classifier.classify(query)[1]
    return scores


def knn_evaluation(train, test, outcomes: Outcomes) -> tuple[Evaluation, dict, float]:
    """The ``knn`` policy trained on ``train`` (k and the rest chosen by 5-fold CV), replayed on ``test``;
    its CV figures and its training time (s)."""
    started = time.time()
    art = train_knn(train, MODELS, folds=5)
    seconds = time.time() - started
    ev = _scored("knn", KnnPolicy(art), [request_of(r) for r in test], outcomes, MODELS, None)
    return ev, art.meta["cross_validation"], seconds


def ensemble_evaluation(train, test, outcomes: Outcomes) -> tuple[str, Evaluation, dict, float]:
    """``steproute train --policy ensemble`` on ``train``: classifier and knn blended when CV says it helps.
    Its row's name says what CV chose (a member alone, or the blend and its weight)."""
    started = time.time()
    art = train_ensemble(train, MODELS, folds=5)
    seconds = time.time() - started
    blend = art.meta["blend"]
    policy = {"classifier": ClassifierPolicy, "knn": KnnPolicy, "ensemble": EnsemblePolicy}[art.policy](art)
    chose = f"the blend, knn weight {blend['knn_weight']:g}" if art.policy == "ensemble" else f"{art.policy} alone"
    name = f"classifier+knn ensemble (CV chose {chose})"
    ev = _scored(name, policy, [request_of(r) for r in test], outcomes, MODELS, None)
    return name, ev, art.meta["cross_validation"], seconds


def as_evaluation(name: str, scores: np.ndarray, outcomes: Outcomes) -> Evaluation:
    summary, curve = summarise(scores, outcomes, 0.0)
    return Evaluation(name, summary, curve, sweep(outcomes.oracle_scores(), outcomes), MODELS)


def row_of(name: str, ev: Evaluation, cv: dict | None = None, estimates: bool = True) -> str:
    """A table row; ``estimates``: the scores are quality estimates, so their calibration error (ECE) means something."""
    s = ev.summary
    ece = f"{s.ece:.3f}" if estimates and s.ece is not None else "—"
    cv_part = f"{cv['apgr']:.3f} / {cv['cpt50']:.1%}" if cv else "—"
    saving = 1 - s.cost_usd / s.strong_cost_usd
    point = (f"{s.quality:.3f} ({s.quality / s.strong_quality:.0%}) at {s.strong_share:.0%} strong, "
             f"{saving:.0%} cheaper" if cv else "—")
    return (f"| {name} | **{s.apgr:.3f}** | **{s.cpt50:.1%}** | {s.cpt80:.1%} | {s.aiq:.3f} | {ece} | {cv_part} | {point} |")


def irt_row(train, test, outcomes: Outcomes) -> str:
    """The ``irt`` estimator (issue 22), trained on the 70% as the classifier is: its row of the table."""
    artefact = train_irt(train, MODELS, folds=5)
    ev = _scored("irt", IrtPolicy(artefact), [request_of(r) for r in test], outcomes, MODELS, None)
    return row_of("irt", ev, artefact.meta["cross_validation"])


def main() -> int:
    started = time.time()
    IMAGES.mkdir(parents=True, exist_ok=True)
    lines = [f"Generated by `benchmarks/evaluation.py` on {time.strftime('%Y-%m-%d')} "
             f"({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}).", ""]
    splits: dict[str, tuple[list, list]] = {}
    for title, folder in BENCHMARKS.items():
        loaded = load_routellm(DATA / folder)
        train, test = split_rows(loaded.rows, 0.3, seed=0)
        splits[title] = (train, test)
        outcomes = Outcomes.of(test, MODELS)
        print(f"{title}: {len(train)} train / {len(test)} test rows", file=sys.stderr, flush=True)
        clf_art = train_classifier(train, MODELS, folds=5)
        clf = _scored("classifier", ClassifierPolicy(clf_art), [request_of(r) for r in test], outcomes, MODELS, None)
        sem_art = train_semantic(train, MODELS, folds=5)
        sem = _scored("semantic", SemanticPolicy(sem_art), [request_of(r) for r in test], outcomes, MODELS, None)
        knn, knn_cv, knn_s = knn_evaluation(train, test, outcomes)
        ens_name, ens, ens_cv, ens_s = ensemble_evaluation(train, test, outcomes)
        cx = as_evaluation("LiteLLM complexity_router", complexity_scores(test), outcomes)
        rng = np.random.default_rng(0)
        rnd = as_evaluation("random", rng.random(outcomes.quality.shape), outcomes)
        oracle = as_evaluation("oracle", outcomes.oracle_scores(), outcomes)
        png = IMAGES / f"eval-{folder}.png"
        plot_evaluations([clf, sem, knn, cx], png, title=f"{title}: {len(test)} held-out rows (trained on {len(train)})")
        s = clf.summary
        lines += [
            f"### {title}", "",
            f"{len(train)} training rows, {len(test)} held-out rows. Always-cheapest {s.weak_quality:.3f} "
            f"(${s.weak_cost_usd:.2f}), always-strongest {s.strong_quality:.3f} (${s.strong_cost_usd:.2f}), "
            f"oracle {s.oracle_quality:.3f}.", "",
            "| policy | APGR | CPT(50%) | CPT(80%) | AIQ | ECE | 5-fold CV on the 70%: APGR / CPT(50%) "
            "| at the calibrated threshold (target: 95% of always-strongest) |",
            "|---|---|---|---|---|---|---|---|",
            row_of("classifier", clf, clf_art.meta["cross_validation"]),
            row_of("semantic", sem, sem_art.meta["cross_validation"]),
            irt_row(train, test, outcomes),
            row_of(f"knn (trained in {knn_s:.0f} s)", knn, knn_cv),
            row_of(f"{ens_name} (trained in {ens_s:.0f} s)", ens, ens_cv),
            row_of("LiteLLM complexity_router", cx, estimates=False),  # a complexity score, not a quality estimate
            row_of("random", rnd),
            row_of("oracle", oracle),
            "", f"![{title} curves](images/eval-{folder}.png)", "",
        ]
    # MMLU with other splits: how much the figures move
    lines += ["### MMLU, other splits", "", "| split seed | APGR | CPT(50%) | CPT(80%) |", "|---|---|---|---|"]
    mmlu = load_routellm(DATA / "mmlu").rows
    for seed in (0, 1, 2):
        train, test = split_rows(mmlu, 0.3, seed=seed)
        policy = ClassifierPolicy(train_classifier(train, MODELS, folds=0))
        outcomes = Outcomes.of(test, MODELS)
        ev = _scored("classifier", policy, [request_of(r) for r in test], outcomes, MODELS, None)
        lines.append(f"| {seed} | {ev.summary.apgr:.3f} | {ev.summary.cpt50:.1%} | {ev.summary.cpt80:.1%} |")
        print(f"MMLU seed {seed}: {ev.summary.apgr:.3f}", file=sys.stderr, flush=True)
    # across data sets
    lines += ["", "### Across data sets", "",
              "The classifier trained on one data set's 70% (or on all three together) and replayed on each "
              "held-out 30%.", "", "| trained on | MMLU | GSM8K | MT-Bench |", "|---|---|---|---|"]
    union = [r for train, _ in splits.values() for r in train]
    for name, rows in (("MMLU", splits["MMLU"][0]), ("GSM8K", splits["GSM8K"][0]), ("all three", union)):
        policy = ClassifierPolicy(train_classifier(rows, MODELS, folds=0))
        cells = []
        for title in BENCHMARKS:
            test = splits[title][1]
            outcomes = Outcomes.of(test, MODELS)
            ev = _scored("classifier", policy, [request_of(r) for r in test], outcomes, MODELS, None)
            cells.append(f"{ev.summary.apgr:.3f} / {ev.summary.cpt50:.0%}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: APGR / CPT(50%).", "", f"Whole run: {time.time() - started:.0f} s."]
    text = DOC.read_text(encoding="utf-8")
    block = "<!-- results:start -->\n" + "\n".join(lines) + "\n<!-- results:end -->"
    text = re.sub(r"<!-- results:start -->.*<!-- results:end -->", lambda _: block, text, flags=re.S)
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
