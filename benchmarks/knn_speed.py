"""Decision time of the ``knn`` policy on an MMLU-sized artefact (the 70% training split, 6,854 references).

The artefact uses the parameters cross-validation chose on that split (k = 200, inverse-distance
weights; see docs/learned-policies.md), so the time is that of the shipped policy: embedding
the request (static encoder), one matrix-vector product against the references, one partial
sort. One core, one BLAS thread. Prints p50 and p99 per call in microseconds over the 2,937 held-out requests.

    python benchmarks/knn_speed.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# one BLAS thread: the matrix-vector product is too small to gain from threads, and on a busy
# machine waking them costs milliseconds a call (p50 15 ms with OpenBLAS's threads under load)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from steproute.evaluation import load_routellm, split_rows
from steproute.evaluation._evaluate import request_of
from steproute.evaluation._knn_train import train_knn
from steproute.evaluation._routellm import GPT4, MIXTRAL
from steproute.policies.knn import KnnPolicy

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "routellm" / "routellm" / "evals"
CHOSEN = {"k": (200,), "weighting": ("distance",), "prior_strength": (20.0,), "hand_weight": (0.2,), "step_penalty": (0.5,)}


def main() -> int:
    train, test = split_rows(load_routellm(DATA / "mmlu").rows, 0.3, seed=0)
    artefact = train_knn(train, (MIXTRAL, GPT4), folds=0, grid=CHOSEN)
    policy = KnnPolicy(artefact)
    requests = [request_of(r) for r in test]
    for request in requests[:200]:  # warm: the encoder's word cache, as in a running process
        policy.choose(request)
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
    if cores:
        os.sched_setaffinity(0, {min(cores)})  # one core
    times = []
    try:
        for request in requests:
            started = time.perf_counter()
            policy.choose(request)
            times.append(time.perf_counter() - started)
    finally:
        if cores:
            os.sched_setaffinity(0, cores)
    us = np.array(times) * 1e6
    print(f"knn decision on {len(train)} references ({artefact.arrays['references'].shape[1]} features, "
          f"k={policy.k}): p50 {np.percentile(us, 50):.0f} µs, p99 {np.percentile(us, 99):.0f} µs, "
          f"{len(us) / us.sum() * 1e6:.0f} decisions/s on one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
