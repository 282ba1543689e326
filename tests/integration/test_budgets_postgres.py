"""Tenant budgets shared by 8 processes through LangGraph's Postgres store, on a real
PostgreSQL server: together they never overshoot the limit by more than one call's cost."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_pins_postgres import assert_overlapped, postgres, start_together  # noqa: F401

pytestmark = pytest.mark.integration

LIMIT = 6e-4  # about 44 calls of gpt-4o-mini at LiteLLM's mock usage (10 in, 20 out)

SPENDER = """
import json, sys, time
from langgraph.store.postgres import PostgresStore
from steproute import BudgetExceeded, RouterConfig, StepRequest, StepRouter
from steproute.guards import BaseStoreBudgetStore
from steproute.pin_locks import PostgresAdvisoryLock
from tests.conftest import mock_tiers
conninfo, limit = sys.argv[1], float(sys.argv[2])
class SlowStore(PostgresStore):  # 20 ms per read, as over a slow network: widens every race window
    def get(self, *args, **kwargs):
        time.sleep(0.02)
        return super().get(*args, **kwargs)
with SlowStore.from_conn_string(conninfo) as store:
    budgets = BaseStoreBudgetStore(store, lock=PostgresAdvisoryLock(conninfo))
    router = StepRouter(RouterConfig(tiers=mock_tiers(), default="fast",
                                     guards={"budgets": {"limits": {"acme": limit}}}), budget_store=budgets)
    print("ready", flush=True)  # imported, connected, router built
    sys.stdin.readline()  # the barrier: the test releases every process at once, when all are ready
    began = time.monotonic()
    costs = []
    try:
        for _ in range(1000):
            costs.append(router.complete(StepRequest("s", [{"role": "user", "content": "hi"}], tenant="acme"),
                                         max_tokens=20).cost_usd)
    except BudgetExceeded as exc:
        refused = exc.spent_usd + exc.reserved_usd
    print(json.dumps({"costs": costs, "refused_at": refused, "began": began, "ended": time.monotonic()}))
"""


# the barrier waits until all 8 interpreters are ready, however busy the machine is
@pytest.mark.timeout(600)
def test_eight_processes_never_overshoot_a_tenants_limit_by_more_than_one_call(postgres):  # noqa: F811
    from langgraph.store.postgres import PostgresStore

    from steproute.guards import BaseStoreBudgetStore

    with PostgresStore.from_conn_string(postgres) as store:
        store.setup()
        spenders = start_together(SPENDER, [[postgres, str(LIMIT)]] * 8)
        results = []
        for s in spenders:
            out, err = s.communicate(timeout=180)
            assert s.returncode == 0, err[-2000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
        budgets = BaseStoreBudgetStore(store)
        windows = [int(key) for key in (i.key for i in store.search(("steproute", "budgets", "acme")))]
        assert len(windows) == 1
        spent, reserved = budgets.usage("acme", windows[0])
    costs = [c for r in results for c in r["costs"]]
    one_call = max(costs)
    assert spent == pytest.approx(sum(costs)) and reserved == pytest.approx(0.0)  # no update lost, nothing left held
    assert LIMIT <= spent <= LIMIT + one_call, (spent, LIMIT, one_call)
    # each was refused only once spend plus the reservations of calls under way reached the limit
    assert all(r["refused_at"] >= LIMIT - 1e-12 for r in results)
    assert sum(1 for r in results if r["costs"]) >= 4  # the processes really spent concurrently
    assert_overlapped([(r["began"], r["ended"]) for r in results])  # ... and were all spending at one instant
