"""Speed of the learned classifier: decisions per second, and training time with the embedding cache.

Decisions: a classifier trained on the MMLU development rows' 70% (seed 0) decides 2,000
held-out prompts on one core, each decided once before timing. Three paths, interleaved per
round in the same run: the decision path as it was before issue 22 (kept below as
``BeforePolicy``), the current one, and scikit-learn's own pipeline on one row
(``_Features.transform`` then ``LogisticRegression.predict_proba``, on fewer prompts: it is slow).

Training: ``train_classifier`` with 5-fold cross-validation, in the same run: as before issue 22
(every fold embeds its rows again, then the final fit once more), embedding each text once
without a cache, with an empty cache (cold) and with the cache the cold run filled (warm). On
all the development rows with the default static encoder, and on a subset with
all-MiniLM-L6-v2 (torch; a few milliseconds to a tenth of a second a text on this machine).
Writes the ``learned-speed`` block of docs/evaluation.md.

    python benchmarks/learned_speed.py [--quick] [--minilm-rows N]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
import time
from collections import Counter
from itertools import chain, pairwise, repeat
from operator import itemgetter
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import numpy as np

from steproute.evaluation import load_mmlu, split_rows
from steproute.evaluation._routellm import GPT4, MIXTRAL
from steproute.evaluation._train import _Features, _fit, _predict, request_of, train_classifier
from steproute.policies._artefact import unpack_strings
from steproute.policies._scoring import ScoringPolicy
from steproute.policies.classifier import ClassifierPolicy, terms
from steproute.policies.features import (
    MAX_EMBED_CHARS,
    StaticEncoder,
    get_encoder,
    routing_text,
    step_tokens,
    words,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "routellm" / "routellm" / "evals" / "mmlu"
DOC = Path(__file__).resolve().parents[1] / "docs" / "evaluation.md"
MODELS = (MIXTRAL, GPT4)
_first, _second = itemgetter(0), itemgetter(1)
BEFORE, PREVIOUS, NOW = "before issue 22 (commit 37a6350)", "previous (commit c0711dc)", "now"


_OLD_WORD = re.compile(r"(?u)\b\w\w+\b")
_OLD_MATH = re.compile(r"[=+\-*/^<>]|\\[a-z]+")
_OLD_DIGIT = re.compile(r"\d")
_OLD_NEGATION = re.compile(r"\b(NOT|EXCEPT|LEAST|FALSE)\b")


def old_words(text):
    return _OLD_WORD.findall(text.lower())


def old_hand_features(query, context, user_turns):
    n = len(query)
    digits = len(_OLD_DIGIT.findall(query))
    return [math.log1p(n), 10.0 * digits / max(1, n), math.log1p(len(_OLD_MATH.findall(query))),
            1.0 if _OLD_NEGATION.search(query) else 0.0, math.log1p(query.count("\n")), float(user_turns),
            math.log1p(len(context))]


def old_encode_words(encoder, text_words):
    cache = encoder._ids
    known = list(map(cache.get, text_words))
    if None in known:
        for i, word in enumerate(text_words):
            if known[i] is None:
                known[i] = cache[word] = encoder._tokenizer.encode(word, add_special_tokens=False).ids
    ids = list(chain.from_iterable(k for k in known if k is not None))
    if not ids:
        return np.zeros(encoder.dim, dtype=np.float32)
    v = encoder._table.take(ids, axis=0).sum(axis=0)
    norm = math.sqrt(float(v @ v))
    return v / norm if norm > 0 else v


def previous_hand_features(query, context, user_turns):
    """``hand_features`` at commit c0711dc (``str.count`` per character)."""
    n = len(query)
    count = query.count
    digits = sum(map(count, tuple("0123456789"))) if query.isascii() else len(_OLD_DIGIT.findall(query))
    maths = len(_OLD_MATH.findall(query)) if "\\" in query else sum(map(count, tuple("=+-*/^<>")))
    negation = any(map(query.__contains__, ("NOT", "EXCEPT", "LEAST", "FALSE"))) and _OLD_NEGATION.search(query) is not None
    return [math.log1p(n), 10.0 * digits / max(1, n), math.log1p(maths),
            1.0 if negation else 0.0, math.log1p(count("\n")), float(user_turns), math.log1p(len(context))]


class PreviousPolicy(ScoringPolicy):
    """The decision path at commit c0711dc (before this speed-up), verbatim, for the comparison."""

    name = "classifier"

    def __init__(self, artefact, tiers=None, threshold=None) -> None:
        a = artefact.arrays
        self._bind(artefact, tiers, threshold)
        self._vocab = {term: i for i, term in enumerate(unpack_strings(a["terms"]))}
        self._steps = {tok: i for i, tok in enumerate(unpack_strings(a["steps"]))}
        self._hand_mean, self._hand_scale = a["hand_mean"], a["hand_scale"]
        coef = a["coef"].astype(np.float64)  # tiers × [terms | query emb | context emb | hand | steps]
        v, d, h = len(self._vocab), int(artefact.meta["embedding_dim"]), len(self._hand_mean)
        # one row per term: its IDF weight, then its coefficient for each tier (one gather a call)
        self._term_rows = np.ascontiguousarray(np.hstack([a["idf"].astype(np.float64)[:, None], coef[:, :v].T]))
        self._w_query = np.ascontiguousarray(coef[:, v:v + d])
        self._w_context = np.ascontiguousarray(coef[:, v + d:v + 2 * d])
        self._w_hand = np.ascontiguousarray(coef[:, v + 2 * d:v + 2 * d + h])
        self._w_steps = np.ascontiguousarray(coef[:, v + 2 * d + h:].T)
        self._intercept = a["intercept"].astype(np.float64)
        self._by_step: dict[tuple[str, str | None], np.ndarray] = {}
        self._words: dict[str, tuple[int, list[int]]] = {}
        """Each word seen: its unigram's vocabulary index (-1: none) and its token ids (static encoder)."""
        self._encoder = get_encoder(artefact.meta["encoder"])
        self._static = isinstance(self._encoder, StaticEncoder)

    def _word(self, word: str) -> tuple[int, list[int]]:
        if len(self._words) >= 500_000:
            self._words.clear()
        record = self._words[word] = (self._vocab.get(word, -1), self._encoder.word_ids(word) if self._static else [])
        return record

    def _step_part(self, step: str, kind: str | None) -> np.ndarray:
        """The intercept plus the step's one-hot columns, per (step, kind): a handful per application."""
        z = self._by_step.get((step, kind))
        if z is None:
            z = self._intercept.copy()
            for tok in step_tokens(step, kind):
                i = self._steps.get(tok)
                if i is not None:
                    z += self._w_steps[i]
            if len(self._by_step) >= 4096:
                self._by_step.clear()
            self._by_step[(step, kind)] = z
        return z

    def scores(self, request) -> np.ndarray:
        """The estimates, as c0711dc computed them."""
        query, context, turns = routing_text(request)
        query_words = words(query)
        z = self._step_part(request.step, request.kind).copy()
        static = self._static and len(query) <= MAX_EMBED_CHARS
        known = list(map(self._words.get, query_words))  # one lookup a word: its term and its tokens
        if None in known:
            known = [k if k is not None else self._word(w) for k, w in zip(known, query_words, strict=True)]
        # term counts (sublinear TF × IDF, L2-normalised, as TfidfVectorizer(sublinear_tf=True));
        # the terms are analyse()'s: the words, then the adjacent pairs
        pairs = map(self._vocab.get, map(" ".join, pairwise(query_words)), repeat(-1))
        counts = Counter(chain(map(_first, known), pairs))  # type: ignore[arg-type]
        counts.pop(-1, None)
        if counts:
            n = len(counts)
            rows = self._term_rows[np.fromiter(counts, np.intp, n)]
            vals = np.log(np.fromiter(counts.values(), np.float64, n))
            vals += 1.0
            vals *= rows[:, 0]
            z += (vals @ rows[:, 1:]) / math.sqrt(vals @ vals)
        if static:  # the words TF-IDF already split, their token ids remembered with their terms
            z += self._w_query @ self._encoder.encode_ids(list(chain.from_iterable(map(_second, known))))  # type: ignore[arg-type]
        else:
            z += self._w_query @ self._encoder.encode_one(query)
        if context:
            z += self._w_context @ self._encoder.encode_one(context)
        hand = np.array(previous_hand_features(query, context, turns))
        hand -= self._hand_mean
        hand /= self._hand_scale
        z += self._w_hand @ hand
        z *= -1.0
        np.exp(z, out=z)
        z += 1.0
        return np.reciprocal(z, out=z)


    def choose(self, request):
        from steproute.policies._scoring import pick
        from steproute.policies.base import Choice

        scores = self.scores(request).tolist()
        i = pick(scores, self.threshold)
        shown = ", ".join([f"{t}={s:.2f}" for t, s in zip(self.tiers, scores, strict=True)])
        margin = max(scores[i + 1:]) - scores[i] if i + 1 < len(scores) else 0.0
        return Choice(self.tiers[i], f"{self.name}: estimated quality {shown}; threshold {self.threshold:g}",
                      score=round(margin, 4))


class BeforePolicy(PreviousPolicy):
    """The decision path before issue 22 (commit 37a6350, with its words, hand features and
    embedding lookup as they were), for the comparison."""

    def __init__(self, artefact, tiers=None, threshold=None) -> None:
        super().__init__(artefact, tiers, threshold)
        a = artefact.arrays
        coef = a["coef"].astype(np.float64)
        v, d, h = len(self._vocab), int(artefact.meta["embedding_dim"]), len(self._hand_mean)
        self._idf = a["idf"].astype(np.float64)
        self._dim = d
        self._w_terms = np.ascontiguousarray(coef[:, :v].T)
        self._w_dense = np.ascontiguousarray(coef[:, v:v + 2 * d + h])
        self._steps_old = {tok: i for i, tok in enumerate(unpack_strings(a["steps"]))}

    def scores(self, request):
        query, context, turns = routing_text(request)
        z = self._intercept.copy()
        query_words = old_words(query)
        found = np.fromiter(map(self._vocab.get, terms(query_words), repeat(-1)), dtype=np.intp)
        found = found[found >= 0]
        if len(found):
            idx, counts = np.unique(found, return_counts=True)
            vals = np.log(counts) + 1.0
            vals *= self._idf[idx]
            vals /= math.sqrt(float(vals @ vals))
            z += vals @ self._w_terms[idx]
        d = self._dim
        dense = np.empty(self._w_dense.shape[1])
        if self._static and len(query) <= MAX_EMBED_CHARS:
            dense[:d] = old_encode_words(self._encoder, query_words)
        else:
            dense[:d] = self._encoder.encode_one(query)
        dense[d:2 * d] = self._encoder.encode_one(context) if context else 0.0
        dense[2 * d:] = old_hand_features(query, context, turns)
        dense[2 * d:] -= self._hand_mean
        dense[2 * d:] /= self._hand_scale
        z += self._w_dense @ dense
        for tok in step_tokens(request.step, request.kind):
            i = self._steps_old.get(tok)
            if i is not None:
                z += self._w_steps[i]
        return 1.0 / (1.0 + np.exp(-z))


def sklearn_decider(artefact, train_rows):
    """One row through scikit-learn's pipeline with the artefact's parameters."""
    from sklearn.linear_model import LogisticRegression

    from steproute.policies._scoring import pick

    features = _Features(artefact.meta["encoder"])
    features.fit_transform(train_rows)
    features.tfidf.idf_ = artefact.arrays["idf"].astype(np.float64)
    models = []
    for t in range(len(artefact.labels)):
        m = LogisticRegression()
        m.classes_ = np.array([0.0, 1.0])
        m.coef_ = artefact.arrays["coef"][t:t + 1].astype(np.float64)
        m.intercept_ = np.array([artefact.arrays["intercept"][t]])
        models.append(m)

    def decide(row):
        X = features.transform([row])
        return pick([float(m.predict_proba(X)[0, 1]) for m in models], artefact.threshold)

    return decide


def decision_speed(train, test, quick: bool, runs: int = 3) -> dict[str, tuple[float, float, float]]:
    artefact = train_classifier(train, MODELS, folds=0, embedding_cache=False)
    n = 300 if quick else 2000
    rows = test[:n]
    requests = [request_of(r) for r in rows]
    after, previous, before = ClassifierPolicy(artefact), PreviousPolicy(artefact), BeforePolicy(artefact)
    for name, other in (("before", before), ("previous", previous)):
        same = sum(a.tier == b.tier for a, b in zip(map(after.choose, requests), map(other.choose, requests), strict=True))
        diff = max(float(np.abs(after.scores(r) - other.scores(r)).max()) for r in requests)
        print(f"decisions: {same}/{len(requests)} identical tier choices {name}/now, largest score difference {diff:.1e}")
    sk = sklearn_decider(artefact, train)
    variants = {BEFORE: (before.choose, requests), PREVIOUS: (previous.choose, requests), NOW: (after.choose, requests),
                "scikit-learn predict_proba, one row": (sk, rows[: max(1, n // 10)])}
    for fn, items in variants.values():
        for item in items:  # warm: every word seen once
            fn(item)
    results = []
    for run in range(runs):
        out = _timed(variants, 2 if quick else 5)
        results.append(out)
        load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
        print(f"run {run + 1} of {runs}: now {out[NOW][2]:,.0f} decisions/s (p50 {out[NOW][0]:.0f} µs, p99 {out[NOW][1]:.0f} "
              f"µs); load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    median = sorted(results, key=lambda o: o[NOW][2])[len(results) // 2]  # the run with the median rate
    median["runs"] = [o[NOW][2] for o in results]  # type: ignore[assignment]
    return median


def _timed(variants, rounds: int) -> dict:
    lat: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    wall, thread = time.perf_counter, time.thread_time
    for _ in range(rounds):
        for name, (fn, items) in variants.items():
            for item in items:
                c, t = thread(), wall()
                fn(item)
                t, c = wall() - t, thread() - c
                lat[name].append(t)
                cpu[name].append(c)
    out = {}
    for name, xs in lat.items():
        us, cpu_us = np.array(xs) * 1e6, np.array(cpu[name]) * 1e6
        out[name] = (float(np.percentile(us, 50)), float(np.percentile(us, 99)), 1e6 / float(us.mean()),
                     float(np.percentile(cpu_us, 50)), float(np.percentile(cpu_us, 99)), 1e6 / float(cpu_us.mean()))
        print(f"{name:40} p50 {out[name][0]:8.1f} µs  p99 {out[name][1]:8.1f} µs  {out[name][2]:8.0f}/s   "
              f"CPU time: p50 {out[name][3]:8.1f} µs  p99 {out[name][4]:8.1f} µs  {out[name][5]:8.0f}/s", flush=True)
    return out


def train_before(rows, encoder: str, folds: int = 5) -> None:
    """Cross-validation as before issue 22: each fold embeds its rows again, then the final fit does."""
    from sklearn.model_selection import StratifiedKFold

    steps = np.array([r.step for r in rows])
    zeros = np.zeros(len(rows))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=0).split(zeros, steps):
        features, coef, intercept = _fit([rows[i] for i in tr], MODELS, encoder, 0.3)
        _predict(features, coef, intercept, [rows[i] for i in te])
    _fit(rows, MODELS, encoder, 0.3)


def training_time(rows, encoder: str) -> dict[str, float]:
    from steproute.policies.features import get_encoder

    get_encoder(encoder)  # loaded once, outside the timings
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        for name, run in (("before (every fold embeds again)", lambda: train_before(rows, encoder)),
                          ("after, no cache", lambda: train_classifier(rows, MODELS, encoder=encoder, embedding_cache=False)),
                          ("after, cold cache", lambda: train_classifier(rows, MODELS, encoder=encoder, embedding_cache=cache)),
                          ("after, warm cache", lambda: train_classifier(rows, MODELS, encoder=encoder, embedding_cache=cache))):
            t = time.perf_counter()
            run()
            out[name] = time.perf_counter() - t
            print(f"training {encoder}, {len(rows)} rows, {name:34} {out[name]:8.1f} s", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script runs; writes nothing")
    parser.add_argument("--minilm-rows", type=int, default=200, help="rows for the MiniLM training time (0: skip)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of the decisions; the median run is written")
    parser.add_argument("--decisions-only", action="store_true",
                        help="measure the decisions only; rewrite only their table in the block, keeping the training one")
    args = parser.parse_args(argv)
    rows = load_mmlu(DATA).rows
    train, test = split_rows(rows, 0.3, seed=0)
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
    if cores:
        os.sched_setaffinity(0, {min(cores)})  # decisions on one core
    try:
        speed = decision_speed(train[::8] if args.quick else train, test, args.quick, args.runs)
    finally:
        if cores:
            os.sched_setaffinity(0, cores)
    if args.decisions_only:
        if not args.quick:
            write_doc(speed, None, None, 0, 0, len(test[:2000]))
        return {"decisions": speed}
    static = training_time(rows[::20] if args.quick else rows, "wordllama-l2-256")
    minilm_rows = rows[:: max(1, len(rows) // args.minilm_rows)][: args.minilm_rows] if args.minilm_rows else []
    minilm = training_time(minilm_rows, "all-minilm-l6-v2") if minilm_rows else {}
    if not args.quick:
        write_doc(speed, static, minilm, len(rows), len(minilm_rows), len(test[:2000]))
    return {"decisions": speed, "training": {"static": static, "minilm": minilm}}


def write_doc(speed, static, minilm, n_static: int, n_minilm: int, n_prompts: int) -> None:
    """Write the block; with ``static`` None (``--decisions-only``), keep the block's training table."""
    b, pr, a = speed[BEFORE], speed[PREVIOUS], speed[NOW]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [f"Generated by `benchmarks/learned_speed.py` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} CPUs, shared "
             f"with other jobs: load average {load:.1f} at the end of the decisions; every comparison within one run).", "",
             f"Classifier decisions on one core, {n_prompts} held-out MMLU prompts, each decided once before timing, "
             f"the paths interleaved; the median of {len(speed['runs'])} runs (the current path's rate in each: "
             + ", ".join(f"{r:,.0f}/s" for r in speed["runs"]) + "):", "",
             "| decision path | p50 | p99 | decisions per second | vs before | vs previous | CPU time p50 | CPU time p99 "
             "| decisions per CPU second | vs before | vs previous |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, (p50, p99, rate, cpu50, cpu99, cpu_rate) in ((k, v) for k, v in speed.items() if k != "runs"):
        lines.append(f"| {name} | {p50:.0f} µs | {p99:.0f} µs | {rate:,.0f} | {rate / b[2]:.2f}x | {rate / pr[2]:.2f}x "
                     f"| {cpu50:.0f} µs | {cpu99:.0f} µs | {cpu_rate:,.0f} | {cpu_rate / b[5]:.2f}x | {cpu_rate / pr[5]:.2f}x |")
    lines += ["", f"The current path makes the same choices as before, as the previous path and as scikit-learn's "
              f"`predict_proba` (tested to 1e-9 on 300 MMLU rows, and against the previous path's saved estimates on "
              f"308 requests): {a[2] / b[2]:.2f}x the decisions per second of the path before issue 22, "
              f"{a[2] / pr[2]:.2f}x the previous one's. The machine is "
              "shared: wall-clock times include other jobs' turns on the core (hence the p99); the CPU time is the "
              "deciding thread's own (`time.thread_time`).", "",
              "`steproute train` (5-fold cross-validation, then the final fit):", "",
              "| encoder, rows | before (every fold embeds again) | after, no cache | after, cold cache | after, warm cache |",
              "|---|---|---|---|---|"]
    text = DOC.read_text(encoding="utf-8")
    if static is None:  # the training table as the block has it
        kept = re.search(r"<!-- learned-speed:start -->.*?\n(\| encoder, rows .*?)\n<!-- learned-speed:end -->", text, re.S)
        lines += kept.group(1).splitlines()[2:] if kept else []
    for label, t in ((f"wordllama-l2-256 (default), {n_static}", static), (f"all-minilm-l6-v2, {n_minilm}", minilm)):
        if t:
            lines.append(f"| {label} | " + " | ".join(f"{v:.1f} s" for v in t.values()) + " |")
    block = "<!-- learned-speed:start -->\n" + "\n".join(lines) + "\n<!-- learned-speed:end -->"
    text = re.sub(r"<!-- learned-speed:start -->.*<!-- learned-speed:end -->", lambda _: block, text, flags=re.S)
    DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
