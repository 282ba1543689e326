"""Bandits of two replicas learning together through LangGraph's Postgres store, on a real PostgreSQL server."""

from __future__ import annotations

import threading

import pytest

from tests.integration.test_pins_postgres import postgres  # noqa: F401

pytestmark = pytest.mark.integration

BANDIT = {"policy": "bandit", "explore": 0.0}


@pytest.mark.timeout(300)
def test_replicas_on_postgres_learn_together_and_lose_no_feedback(postgres):  # noqa: F811
    from langgraph.store.postgres import PostgresStore

    from steproute import RouterConfig, StepRequest, StepRouter
    from steproute.policies.bandit import BanditStore, share_bandit_store
    from tests.conftest import mock_tiers

    config = RouterConfig(tiers=mock_tiers(), default="fast", steps={"answer": BANDIT})
    request = StepRequest("answer", [{"role": "user", "content": "hi"}])
    with PostgresStore.from_conn_string(postgres) as first, PostgresStore.from_conn_string(postgres) as second:
        first.setup()
        a, b = StepRouter(config), StepRouter(config)
        share_bandit_store(a, BanditStore(first))
        share_bandit_store(b, BanditStore(second))
        tiers = a.tiers
        assert b.route(request)[0].tier == tiers[0]

        def teach(router: StepRouter) -> None:  # both replicas at once: the strongest tier is the good one
            for i in range(20):
                router.feedback(f"x{i}", 1.0, step="answer", tier=tiers[-1])
                router.feedback(f"y{i}", 0.0, step="answer", tier=tiers[0])

        threads = [threading.Thread(target=teach, args=(r,)) for r in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for router in (a, b):
            bandit = router.policy_of("answer")
            bandit.refresh("answer")  # type: ignore[attr-defined]
            posterior = bandit.posterior("answer")  # type: ignore[attr-defined]
            assert posterior[tiers[-1]] == (41.0, 1.0) and posterior[tiers[0]] == (1.0, 41.0)  # no update lost
            assert router.route(request)[0].tier == tiers[-1]
        late = StepRouter(config)  # a replica started later reads what the others learnt
        share_bandit_store(late, BanditStore(first))
        late.policy_of("answer").refresh("answer")  # type: ignore[attr-defined]
        assert late.policy_of("answer").posterior("answer")[tiers[-1]] == (41.0, 1.0)  # type: ignore[attr-defined]
        assert late.route(request)[0].tier == tiers[-1]
