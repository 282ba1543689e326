"""The short version of ``benchmarks/load.py``: 100 concurrent graph runs of 5 routed steps over
llmock (its own process, 50 ms per request), three rounds on one event loop. Every run
completes, nothing is lost (one decision-log entry per routed call, none dropped), and nothing
is left over: no asyncio task, no thread, no socket, no memory growth from one round to the
next."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]


def load_module():
    spec = importlib.util.spec_from_file_location("steproute_load_benchmark", ROOT / "benchmarks" / "load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_100_concurrent_graph_runs_complete_lose_no_record_and_leave_nothing_behind(tmp_path):
    load = load_module()
    before = load.sockets()  # what earlier tests of this process left open
    with load.llmock_process(50) as base:
        rounds = load.run(base, 100, rounds=3, progress=False, log_path=tmp_path / "decisions.jsonl")
    assert [r.completed for r in rounds] == [100, 100, 100]
    # every routed call (5 per run) has its decision-log entry, none dropped
    assert [(r.logged, r.dropped) for r in rounds] == [(500, 0)] * 3
    assert [r.tasks_left for r in rounds] == [0, 0, 0]
    # the connection pool and LiteLLM's workers are made in the first round and reused after
    assert len({r.threads for r in rounds}) == 1, [r.threads for r in rounds]
    # the pool may close idle keep-alive connections between rounds, but never grows
    assert max(r.sockets for r in rounds[1:]) <= rounds[0].sockets + 5, [r.sockets for r in rounds]
    assert rounds[0].sockets - before <= 100 + 10  # at most one connection per run at once, plus a few
    assert rounds[-1].rss_mb - rounds[0].rss_mb < 25, [r.rss_mb for r in rounds]
