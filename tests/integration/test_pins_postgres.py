"""Pins shared across processes through LangGraph's Postgres store, on a real PostgreSQL server.

The fixture runs Debian's PostgreSQL (``make test`` installs it) from a fresh data directory,
listening on a Unix socket only (no TCP at all), and stops it afterwards.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import stop_process

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        pytest.fail(f"PostgreSQL's {name} is missing: `make test` installs it (apt-get install postgresql)")
    return found[-1]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    root = Path(tempfile.mkdtemp(prefix="steproute-pg-", dir="/tmp"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as Debian's postgres user
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, socket_dir = root / "data", root
    subprocess.run([*as_postgres, _pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    server = subprocess.Popen([*as_postgres, _pg_bin("postgres"), "-D", str(data), "-k", str(socket_dir),
                               "-c", "listen_addresses=", "-c", "fsync=off", "-c", "max_connections=50"],
                              stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "wb"))
    conninfo = f"postgresql://postgres@/postgres?host={socket_dir}"
    try:
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(conninfo).close()
                break
            except psycopg.OperationalError:
                assert server.poll() is None and time.monotonic() < deadline, (root / "server.log").read_text()
                time.sleep(0.2)
        yield conninfo
    finally:
        stop_process(server)
        shutil.rmtree(root, ignore_errors=True)


def start_together(script: str, argvs: list[list[str]], timeout: float = 420) -> list[subprocess.Popen[str]]:
    """Start one process per ``argv`` running ``script`` and release them together: each prints
    ``ready`` once imported and connected, then waits for a line on its stdin (a barrier across
    processes); the line goes to all of them only when every one is ready."""
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    procs = [subprocess.Popen([sys.executable, "-c", script, *argv], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for argv in argvs]
    deadline = time.monotonic() + timeout
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until this one is ready (or has died: "")
        if line.strip() != "ready":
            for other in procs:
                other.kill()
            err = proc.communicate()[1]
            pytest.fail(f"a process died before it was ready: {err[-2000:]}")
        assert time.monotonic() < deadline, "the processes took too long to get ready"
    for proc in procs:  # all are blocked on stdin: release them within microseconds of each other
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return procs


def assert_overlapped(spans: list[tuple[float, float]]) -> None:
    """Every process was inside its call at one common instant (``time.monotonic`` is one clock
    for the whole machine on Linux): the race the test is about really happened."""
    latest_start, earliest_end = max(b for b, _ in spans), min(e for _, e in spans)
    assert latest_start < earliest_end, (
        f"the calls did not overlap: the last began {latest_start - earliest_end:.3f} s after the first ended")


WRITER = """
import json, sys, time
from langgraph.store.postgres import PostgresStore
from steproute import RouterConfig, StepRequest, StepRouter
from steproute.pin_locks import PostgresAdvisoryLock
from steproute.pinning import BaseStorePinStore
from tests.conftest import mock_tiers
conninfo, text = sys.argv[1], sys.argv[2]
answer = {"policy": "rules", "fallback": "standard",
          "rules": [{"name": "hard", "when": {"keywords": ["prove"]}, "tier": "advanced"}]}
class SlowStore(PostgresStore):  # 50 ms per read, as over a slow network: widens the race window
    def get(self, *args, **kwargs):
        time.sleep(0.05)
        return super().get(*args, **kwargs)
with SlowStore.from_conn_string(conninfo) as store:
    pins = BaseStorePinStore(store, lock=PostgresAdvisoryLock(conninfo))
    router = StepRouter(RouterConfig(tiers=mock_tiers(), default="fast", steps={"answer": answer}), pin_store=pins)
    print("ready", flush=True)  # imported, connected, router built
    sys.stdin.readline()  # the barrier: the test releases every writer at once, when all are ready
    began = time.monotonic()
    d = router.complete(StepRequest("answer", [{"role": "user", "content": text}], thread="race")).decision
    ended = time.monotonic()
    held = pins.get("race", "answer")
    print(json.dumps({"tier": d.tier, "pinned": d.pinned, "id": d.id, "pin": [held.tier, held.decision_id],
                      "began": began, "ended": ended}))
"""


# the barrier waits until all 8 interpreters are ready, however busy the machine is
@pytest.mark.timeout(600)
def test_eight_concurrent_writers_end_with_one_pin_and_no_flapping(postgres):
    from langgraph.store.postgres import PostgresStore

    from steproute.pinning import BaseStorePinStore

    with PostgresStore.from_conn_string(postgres) as store:
        store.setup()
        pins = BaseStorePinStore(store)
        seen: list[tuple[str, str]] = []
        stop = threading.Event()

        def watch() -> None:  # every value the pin takes while the writers race
            while not stop.is_set():
                held = pins.get("race", "answer")
                if held is not None and (not seen or seen[-1] != (held.tier, held.decision_id)):
                    seen.append((held.tier, held.decision_id))
                time.sleep(0.002)

        watcher = threading.Thread(target=watch)
        watcher.start()
        writers = start_together(WRITER, [[postgres, "prove it" if i % 2 else "hello"] for i in range(8)])
        results = []
        for w in writers:
            out, err = w.communicate(timeout=120)
            assert w.returncode == 0, err[-2000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
        time.sleep(0.05)
        stop.set()
        watcher.join()
        final = pins.get("race", "answer")
    assert_overlapped([(r["began"], r["ended"]) for r in results])
    assert final is not None
    assert len(seen) == 1 and seen[0] == (final.tier, final.decision_id), f"the pin flapped: {seen}"
    assert {tuple(r["pin"]) for r in results} == {(final.tier, final.decision_id)}  # every writer sees one pin
    assert {r["tier"] for r in results} == {final.tier}  # and every call followed it
    makers = [r for r in results if not r["pinned"]]
    assert [r["id"] for r in makers] == [final.decision_id]  # exactly one writer made the pin
