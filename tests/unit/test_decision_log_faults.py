"""The decision log under faults (issue 17): real files, real FIFOs, real subprocesses.

An I/O error never kills the writer, an entry it cannot write is dropped *and counted* and
warned about once per kind, a call never blocks on the log, exit is never hung, and a new
entry always starts on a new line.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from steproute import RouterConfig, StepRequest, StepRouter
from steproute.decision_log import JsonlDecisionLog, read_log
from tests.conftest import mock_tiers

REPO = Path(__file__).resolve().parents[2]


def routed(log):
    """A router on LiteLLM ``mock_response`` tiers (tests/conftest.py) writing to ``log``."""
    return StepRouter(RouterConfig(tiers=mock_tiers(), default="fast"), decision_log=log)


def ask(router, step="plan"):
    return router.complete(StepRequest(step, [{"role": "user", "content": "hi"}]))


def log_warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == "steproute" and r.levelno == logging.WARNING and "decision log" in r.getMessage()]


def run_script(code: str, *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``code`` in a fresh interpreter; returns it and the monotonic time it ended."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)
    return proc, time.monotonic()   # CLOCK_MONOTONIC is system-wide: comparable with the child's


# -- a path that cannot be opened --------------------------------------------------------------

@pytest.mark.parametrize("where", ["a directory", "under a regular file"])
def test_an_unwritable_path_drops_and_counts_warns_once_and_routing_goes_on(tmp_path, caplog, where):
    if where == "a directory":
        path = tmp_path / "decisions.jsonl"
        path.mkdir()
    else:
        (tmp_path / "not-a-dir").write_text("x")
        path = tmp_path / "not-a-dir" / "decisions.jsonl"
    with caplog.at_level(logging.WARNING, logger="steproute"):
        router = routed(path)
        for _ in range(3):
            assert ask(router).decision.tier == "fast"
            assert router.decision_log.flush()  # three batches: three failed opens
        router.feedback("d-x", 1.0)
        assert router.decision_log.flush()
    assert router.decision_log.dropped == 4
    assert router.decision_log.drops == {"open": 4}
    (warning,) = log_warnings(caplog)
    assert str(path) in warning and "dropped" in warning
    router.decision_log.close()


def test_a_path_that_becomes_writable_starts_working(tmp_path, caplog):
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log directory should be")
    path = blocker / "decisions.jsonl"
    log = JsonlDecisionLog(path)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        log.write({"type": "decision", "id": "d-lost"})
        assert log.flush()
        blocker.unlink()  # the directory can now be made
        log.write({"type": "decision", "id": "d-kept"})
        log.close()
    assert log.dropped == 1
    assert [e["id"] for e in read_log(path).decisions] == ["d-kept"]
    assert len(log_warnings(caplog)) == 1


# -- a full disk: a file-size limit in a subprocess ------------------------------------------

FULL_DISK = """
    import json, logging, resource, signal, sys, time
    from steproute import RouterConfig, StepRequest, StepRouter
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    path = sys.argv[1]
    router = StepRouter(RouterConfig(tiers=json.loads(sys.argv[2]), default="fast"), decision_log=path)
    ask = lambda: router.complete(StepRequest("plan", [{"role": "user", "content": "hi"}]))
    ask()
    router.decision_log.flush()
    size = len(open(path, "rb").read())
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 2000, resource.RLIM_INFINITY))
    answered = 0
    started = time.monotonic()
    for i in range(300):
        answered += ask().decision.tier == "fast"
        if i % 60 == 0:
            router.decision_log.flush()
    routing_s = time.monotonic() - started
    router.decision_log.flush()
    print(json.dumps({"answered": answered, "dropped": router.decision_log.dropped,
                      "drops": router.decision_log.drops, "routing_s": routing_s,
                      "exiting_at": time.monotonic()}), flush=True)
    # no close(): the at-exit flush must not hang
"""


def test_a_full_disk_keeps_routing_counts_the_dropped_warns_once_and_exits_promptly(tmp_path):
    path = tmp_path / "decisions.jsonl"
    proc, ended = run_script(FULL_DISK, str(path), json.dumps(mock_tiers()))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["answered"] == 300
    contents = read_log(path)
    written = len(contents.decisions)
    assert 1 < written < 301 and result["dropped"] > 0
    assert written + result["dropped"] == 301            # every entry is written or counted
    assert len(contents.problems) <= 1                   # at most the one line the limit cut
    assert set(result["drops"]) == {"write"}
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("steproute WARNING")]
    assert len(warnings) == 1 and "decision log" in warnings[0] and "EFBIG" in warnings[0], proc.stderr[-2000:]
    exit_s = ended - result["exiting_at"]
    assert exit_s < 5, f"the process took {exit_s:.1f} s to exit"
    print(f"full disk: {result['dropped']} dropped, 300 calls in {result['routing_s']:.1f} s, exit in {exit_s:.2f} s")
    assert result["routing_s"] < 30, f"300 calls took {result['routing_s']:.1f} s"


# -- values that do not serialise ------------------------------------------------------------

class Unprintable:
    def __str__(self):
        raise RuntimeError("no")

    __repr__ = __str__


def test_an_unserialisable_feedback_extra_keeps_the_entry_and_the_rest_of_the_log(tmp_path, caplog):
    path = tmp_path / "decisions.jsonl"
    router = routed(path)
    loop: list = []
    loop.append(loop)
    with caplog.at_level(logging.WARNING, logger="steproute"):
        first = ask(router)
        router.feedback(first.decision.id, 0.5, scores={("a", 1): 0.5}, loop=loop, who=Unprintable(), rater="me")
        router.feedback(first.decision.id, 0.75, odd=Unprintable())
        second = ask(router)
        router.decision_log.close()
    contents = read_log(path)
    assert contents.problems == []
    assert [d["id"] for d in contents.decisions] == [first.decision.id, second.decision.id]
    feedback = contents.feedback[first.decision.id]
    assert feedback["quality"] == 0.75 and feedback["odd"] == "<unserialisable Unprintable>"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    (bad,) = [e for e in lines if e.get("quality") == 0.5]
    assert bad["rater"] == "me" and bad["loop"] == "<unserialisable list>"
    assert bad["scores"] == "<unserialisable dict>" and bad["who"] == "<unserialisable Unprintable>"
    assert router.decision_log.dropped == 0
    assert len(log_warnings(caplog)) == 1


def test_text_that_utf8_cannot_hold_is_escaped_not_lost(tmp_path):
    log = JsonlDecisionLog(tmp_path / "d.jsonl")
    log.write({"type": "decision", "id": "d-1", "reason": "half a pair: \ud800"})
    log.write({"type": "decision", "id": "d-2", "reason": "ünïcödé"})
    log.close()
    assert [d["reason"] for d in read_log(tmp_path / "d.jsonl").decisions] == ["half a pair: \ud800", "ünïcödé"]
    assert log.dropped == 0


# -- a crash left a cut last line -------------------------------------------------------------

def test_a_new_entry_starts_on_a_new_line_after_a_cut_last_line(tmp_path):
    path = tmp_path / "decisions.jsonl"
    whole = json.dumps({"type": "decision", "id": "d-0"})
    cut = '{"type": "decision", "id": "d-1", "st'
    path.write_text(whole + "\n" + cut)
    log = JsonlDecisionLog(path)
    log.write({"type": "decision", "id": "d-2"})
    log.close()
    assert path.read_text().splitlines() == [whole, cut, json.dumps({"type": "decision", "id": "d-2"})]
    contents = read_log(path)
    assert [d["id"] for d in contents.decisions] == ["d-0", "d-2"]
    assert len(contents.problems) == 1 and ":2: not JSON" in contents.problems[0]


def test_a_file_ending_in_a_newline_gets_no_blank_line(tmp_path):
    path = tmp_path / "decisions.jsonl"
    path.write_text(json.dumps({"type": "decision", "id": "d-0"}) + "\n")
    log = JsonlDecisionLog(path)
    log.write({"type": "decision", "id": "d-1"})
    log.close()
    assert len(path.read_text().splitlines()) == 2


# -- after close ------------------------------------------------------------------------------

def test_write_after_close_is_counted_and_warned_once(tmp_path, caplog):
    path = tmp_path / "decisions.jsonl"
    router = routed(path)
    decided = ask(router)
    router.decision_log.close()
    with caplog.at_level(logging.WARNING, logger="steproute"):
        assert ask(router).decision.tier == "fast"   # routing goes on
        router.feedback(decided.decision.id, 1.0)
    assert router.decision_log.dropped == 2 and router.decision_log.drops == {"closed": 2}
    (warning,) = log_warnings(caplog)
    assert "closed" in warning
    assert [d["id"] for d in read_log(path).decisions] == [decided.decision.id]
    assert read_log(path).feedback == {}


# -- forged feedback --------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["type", "id"])
def test_feedback_extras_cannot_override_type_or_id(tmp_path, key):
    path = tmp_path / "decisions.jsonl"
    router = routed(path)
    decided = ask(router)
    with pytest.raises(ValueError, match=rf"feedback: '{key}' .*cannot be an extra"):
        router.feedback(decided.decision.id, 1.0, **{key: "decision"})
    router.decision_log.close()
    contents = read_log(path)
    assert [d["id"] for d in contents.decisions] == [decided.decision.id] and contents.feedback == {}


# -- a stuck disk: a FIFO nobody reads --------------------------------------------------------

def test_many_writers_on_a_stuck_log_never_block_and_the_dropped_are_counted(tmp_path, caplog):
    fifo = tmp_path / "decisions.fifo"
    os.mkfifo(fifo)   # opening it for writing blocks until a reader comes: the writer is stuck
    log = JsonlDecisionLog(fifo, max_pending=2)
    threads, per_thread = 8, 250
    slowest: list[float] = []

    def hammer(n):
        worst = 0.0
        for i in range(per_thread):
            started = time.perf_counter()
            log.write({"type": "decision", "id": f"d-{n}-{i}"})
            worst = max(worst, time.perf_counter() - started)
        slowest.append(worst)

    with caplog.at_level(logging.WARNING, logger="steproute"):
        workers = [threading.Thread(target=hammer, args=(n,), daemon=True) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=30)
        assert not any(w.is_alive() for w in workers), "a write blocked"
    assert max(slowest) < 0.5, f"a write took {max(slowest):.3f} s"
    assert log.dropped >= threads * per_thread - 5   # 2 queued, 3 at most in the stuck writer's hands
    assert set(log.drops) == {"queue_full"}
    assert len(log_warnings(caplog)) == 1
    started = time.monotonic()
    assert log.flush(timeout=0.5) is False           # a flush says it did not finish
    log.close(timeout=1)
    assert time.monotonic() - started < 3
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # let the stuck thread go
    os.close(reader)


EXIT_STUCK = """
    import os, sys, time
    from steproute.decision_log import JsonlDecisionLog
    os.mkfifo(sys.argv[1])
    log = JsonlDecisionLog(sys.argv[1], max_pending=4)
    for i in range(100):
        log.write({"type": "decision", "id": f"d-{i}"})
    print(log.dropped, time.monotonic(), flush=True)   # the at-exit close waits EXIT_WAIT_S (5 s) at most
"""


def test_exit_is_not_hung_by_a_stuck_log(tmp_path):
    proc, ended = run_script(EXIT_STUCK, str(tmp_path / "decisions.fifo"), timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dropped, exiting_at = proc.stdout.split()
    assert int(dropped) >= 95
    exit_s = ended - float(exiting_at)
    assert exit_s < 10, f"the process took {exit_s:.1f} s to exit"
    print(f"exit with a stuck writer took {exit_s:.1f} s")
