"""Tests that kill mutmut mutants of steproute/policies/bandit.py (see docs/architecture.md, "Mutation testing").

Each reason is read against a model of the guard rails kept by the test: the explored share
(explored + 1 over the calls, at or under the cap) and the exploration budget (the extra cost
of the explored tier over the exploited one).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest
from langgraph.store.base import Item, PutOp
from langgraph.store.memory import InMemoryStore

from steproute.config import RouterConfig
from steproute.policies.bandit import BanditPolicy, BanditStore, share_bandit_store
from steproute.router import StepRouter
from steproute.types import Decision, Hint, StepRequest
from tests.unit.test_bandit import teach


def request(step: str = "answer") -> StepRequest:
    return StepRequest(step, [{"role": "user", "content": "hi"}])


class Share:
    """The test's model of one step's explored share: each reason is checked against it."""

    def __init__(self, cap: float) -> None:
        self.cap, self.calls, self.explored, self.at_the_cap, self.stopped = cap, 0, 0, 0, 0

    def read(self, reason: str) -> None:
        self.calls += 1
        means = "means fast 0.500 (n=0), strong 0.500 (n=0)"  # flat posteriors: 'fast' is the best (the cheaper)
        if reason.startswith("bandit explore 'strong'"):
            assert self.explored + 1 <= self.cap * self.calls, (self.calls, self.explored)
            self.at_the_cap += self.explored + 1 == self.cap * self.calls
            self.explored += 1
        elif "stopped" in reason:
            assert self.explored + 1 > self.cap * self.calls, (self.calls, self.explored)
            assert reason == (f"bandit exploit 'fast': exploration of 'strong' stopped: exploring would make the explored "
                              f"share {(self.explored + 1) / self.calls:.1%}, over the cap {self.cap:.1%}; {means}")
            self.stopped += self.explored > 0
        else:
            assert reason == f"bandit exploit 'fast': best posterior mean reward; {means}"


def test_exploration_is_allowed_up_to_the_cap_exactly_and_the_stop_names_the_share_it_would_make():
    bandit = BanditPolicy(("fast", "strong"), explore=0.5, seed=5)
    share = Share(0.5)
    for _ in range(200):
        share.read(bandit.choose(request()).reason)
    assert share.at_the_cap >= 5 and share.stopped >= 5 and share.explored >= 60


def test_each_step_has_its_own_explored_share():
    bandit = BanditPolicy(("fast", "strong"), explore=0.2, seed=9)  # the draws want to explore one call in two
    shares = {"plan": Share(0.2), "answer": Share(0.2)}
    for step in ["plan"] * 40 + ["answer", "plan"] * 40:
        shares[step].read(bandit.choose(request(step)).reason)
    assert all(s.at_the_cap >= 2 and s.stopped >= 5 for s in shares.values())


def exploring(bandit: BanditPolicy, calls: int = 300) -> list[str]:
    return [bandit.choose(request()).reason for _ in range(calls)]


def test_exploring_a_cheaper_tier_spends_nothing_of_the_budget():
    bandit = BanditPolicy(("fast", "strong"), explore=1.0, costs={"fast": 0.01, "strong": 0.02},
                          budget_usd_per_day=0.001, seed=3)
    teach(bandit, "strong", 1.0, 3)  # strong is the best; exploring fast costs less, not more
    reasons = exploring(bandit)
    assert any(r.startswith("bandit explore 'fast'") for r in reasons)
    assert not any("stopped" in r for r in reasons)


def test_the_budget_books_the_explored_tiers_extra_cost_over_the_exploited_one():
    bandit = BanditPolicy(("fast", "strong"), explore=1.0, costs={"fast": 0.01, "strong": 0.03},
                          budget_usd_per_day=0.05, seed=3)
    teach(bandit, "fast", 1.0, 3)
    reasons = exploring(bandit)
    assert sum(r.startswith("bandit explore 'strong'") for r in reasons) == 2  # $0.02 extra each
    assert any("stopped: budget $0.05/day for exploration spent ($0.0400 today)" in r for r in reasons)


def test_costs_without_a_budget_never_stop_exploration():
    bandit = BanditPolicy(("fast", "strong"), explore=1.0, costs={"fast": 0.0, "strong": 0.5}, seed=3)
    teach(bandit, "fast", 1.0, 3)
    reasons = exploring(bandit)
    assert sum(r.startswith("bandit explore 'strong'") for r in reasons) >= 10
    assert not any("stopped" in r for r in reasons)


def two_bandit_steps() -> RouterConfig:
    tiers = {name: {"models": [{"model": model, "mock_response": "ok", "input_cost_per_token": 1e-6,
                                     "output_cost_per_token": 1e-6}]}
             for name, model in (("fast", "openai/gpt-4o-mini"), ("strong", "openai/gpt-4o"))}
    return RouterConfig(tiers=tiers, default={"policy": "bandit", "explore": 0.0},
                        steps={"plan": {"policy": "bandit", "explore": 0.0}, "answer": {"policy": "bandit", "explore": 0.0}})


def test_share_bandit_store_puts_every_bandit_of_the_router_on_the_store():
    store = InMemoryStore()
    a, b = StepRouter(two_bandit_steps()), StepRouter(two_bandit_steps())
    assert share_bandit_store(a, BanditStore(store)) == 3  # plan's, answer's and the default's
    assert share_bandit_store(b, BanditStore(store)) == 3
    for step in ("plan", "answer", "other"):
        for _ in range(4):
            a.feedback(f"{step}-x", 1.0, step=step, tier="strong")
        b.policy_of(step).refresh(step)  # type: ignore[attr-defined]
        assert b.route(request(step))[0].tier == "strong", step


class FlakyStore(BanditStore):
    """A store that can go down: reading and writing raise ``ConnectionError`` while ``down``."""

    down = False

    def write(self, step, replica, sums):
        if self.down:
            raise ConnectionError("store down")
        super().write(step, replica, sums)

    def read(self, step, *, skip=None):
        if self.down:
            raise ConnectionError("store down")
        return super().read(step, skip=skip)


def warnings_of(caplog, about: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "steproute" and about in r.getMessage()]


def test_a_store_that_cannot_be_written_keeps_the_feedback_here_and_says_so_once_per_step(caplog):
    store = FlakyStore(InMemoryStore())
    bandit = BanditPolicy(("fast", "strong"), store=store, replica="r1")
    store.down = True
    with caplog.at_level("WARNING", logger="steproute"):
        teach(bandit, "strong", 1.0, 2)
        teach(bandit, "strong", 1.0, 1, step="plan")
    assert bandit.posterior("answer")["strong"] == (3.0, 1.0) and bandit.posterior("plan")["strong"] == (2.0, 1.0)
    said = "the store could not be written (ConnectionError); the feedback is learnt in this replica only until the next write"
    assert warnings_of(caplog, "written") == [f"bandit, step 'answer': {said} (logged once)",
                                              f"bandit, step 'plan': {said} (logged once)"]
    store.down = False
    teach(bandit, "strong", 1.0, 1)  # the next write carries everything this replica learnt
    assert store.read("answer") == {"strong": (3.0, 3.0)}


def test_a_store_that_cannot_be_read_decides_on_the_state_last_read_and_says_so_once_per_step(caplog):
    store = FlakyStore(InMemoryStore())
    writer = BanditPolicy(("fast", "strong"), store=store)
    reader = BanditPolicy(("fast", "strong"), store=store, explore=0.0, refresh_seconds=3600)
    teach(writer, "strong", 1.0, 4)
    reader.refresh("answer")
    store.down = True
    with caplog.at_level("WARNING", logger="steproute"):
        for step in ("answer", "answer", "plan"):
            reader.refresh(step)
    assert reader.posterior("answer")["strong"] == (5.0, 1.0)  # what was read before the store went down
    assert reader.posterior("plan")["strong"] == (1.0, 1.0)  # never read: nothing
    assert reader.choose(request()).tier == "strong"
    said = "the store could not be read (ConnectionError); deciding on the state last read"
    assert warnings_of(caplog, "store") == [f"bandit, step 'answer': {said} (logged once)",
                                            f"bandit, step 'plan': {said} (logged once)"]


def test_feedback_reads_the_other_replicas_sums_again():
    store = BanditStore(InMemoryStore())
    a = BanditPolicy(("fast", "strong"), store=store)
    b = BanditPolicy(("fast", "strong"), store=store, refresh_seconds=3600)
    teach(a, "strong", 1.0, 3)
    teach(b, "fast", 1.0, 1)
    assert b.posterior("answer") == {"fast": (2.0, 1.0), "strong": (4.0, 1.0)}


def test_feedback_naming_a_tier_but_no_step_is_not_learnt():
    bandit = BanditPolicy(("fast", "strong"))
    assert not bandit.learn({"type": "feedback", "id": "unknown", "quality": 1.0, "tier": "fast"})
    assert bandit.learn({"type": "feedback", "id": "unknown", "quality": 1.0, "tier": "fast", "step": "answer"})
    assert bandit.posterior("answer")["fast"] == (2.0, 1.0)
    assert bandit.posterior("None")["fast"] == (1.0, 1.0)


def test_a_remembered_decision_is_learnt_for_its_own_step_and_tier_whatever_the_extras_say():
    bandit = BanditPolicy(("fast", "strong"))
    bandit.decided(Decision(step="answer", kind=None, tier="fast", model="m", policy="bandit", reason="", id="d"))
    assert bandit.learn({"type": "feedback", "id": "d", "quality": 1.0, "step": "plan", "tier": "strong"})
    assert bandit.posterior("answer")["fast"] == (2.0, 1.0)
    assert bandit.posterior("plan")["strong"] == (1.0, 1.0)


def test_each_replicas_item_says_when_it_was_written():
    store = BanditStore(InMemoryStore())
    before = time.time()
    store.write("answer", "r1", {"fast": (1.0, 2.0)})
    item = store.store.get(("steproute", "bandit", "answer"), "r1")
    assert item.value["tiers"] == {"fast": [1.0, 2.0]} and before <= item.value["at"] <= time.time()


def test_remember_keeps_the_newest_decisions():
    bandit = BanditPolicy(("fast", "strong"), remember=2)
    for i in (1, 2, 3):
        bandit.decided(Decision(step="answer", kind=None, tier="fast", model="m", policy="bandit", reason="", id=f"d{i}"))
    learnt = [bandit.learn({"type": "feedback", "id": f"d{i}", "quality": 1.0}) for i in (1, 2, 3)]
    assert learnt == [False, True, True]


def test_the_exploration_budget_is_spent_per_utc_day(monkeypatch):
    clock = [86_400.0 * 20_000 - 1.0]  # one second before a UTC midnight
    monkeypatch.setattr(time, "time", lambda: clock[0])
    bandit = BanditPolicy(("fast", "strong"), explore=1.0, costs={"fast": 0.0, "strong": 0.01},
                          budget_usd_per_day=0.025, seed=3)
    teach(bandit, "fast", 1.0, 3)
    assert sum(r.startswith("bandit explore 'strong'") for r in exploring(bandit)) == 2
    clock[0] += 1.0  # midnight: a new day's budget
    assert sum(r.startswith("bandit explore 'strong'") for r in exploring(bandit)) == 2


class SlowStore(BanditStore):
    """Reads wait for ``release``; each read notes the thread it ran in."""

    def __init__(self) -> None:
        super().__init__(InMemoryStore())
        self.release = threading.Event()
        self.threads: list[threading.Thread] = []

    def read(self, step, *, skip=None):
        self.threads.append(threading.current_thread())
        self.release.wait(5)
        return super().read(step, skip=skip)


def test_a_missing_cache_is_read_once_in_a_daemon_thread_while_deciding_goes_on():
    store = SlowStore()
    bandit = BanditPolicy(("fast", "strong"), store=store, explore=0.0)
    assert [bandit.choose(request()).tier for _ in range(5)] == ["fast"] * 5  # none waited for the store
    deadline = time.monotonic() + 5
    while not store.threads:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    store.release.set()
    time.sleep(0.05)
    assert len(store.threads) == 1  # one read for the five calls
    (thread,) = store.threads
    assert thread.name == "steproute-bandit-refresh" and thread.daemon and thread is not threading.main_thread()


def test_a_fresh_cache_is_not_read_again_before_refresh_seconds():
    store = BanditStore(InMemoryStore())
    writer = BanditPolicy(("fast", "strong"), store=store)
    reader = BanditPolicy(("fast", "strong"), store=store, explore=0.0, refresh_seconds=3600)
    reader.refresh("answer")
    teach(writer, "strong", 1.0, 5)
    for _ in range(5):
        assert reader.choose(request()).tier == "fast"
        time.sleep(0.02)  # time for a background read, had one started
    assert reader.posterior("answer")["strong"] == (1.0, 1.0)


@pytest.mark.parametrize("budget", [0.0, -1.0, float("nan")])
def test_a_budget_of_nothing_is_refused_as_the_configuration_refuses_it(budget):
    with pytest.raises(ValueError) as caught:
        BanditPolicy(("fast", "strong"), costs={"fast": 0.0, "strong": 0.01}, budget_usd_per_day=budget)
    assert str(caught.value) == f"bandit: 'budget_usd_per_day' must be more than 0 (got {budget:g})"


def test_a_hints_max_tier_bounds_the_arms():
    bandit = BanditPolicy(("fast", "mid", "strong"), explore=1.0, seed=3)
    teach(bandit, "strong", 1.0, 20)  # the best by far: only the hint keeps the bandit off it
    capped = StepRequest("answer", [{"role": "user", "content": "hi"}], hint=Hint(max_tier="mid"))
    tiers = {bandit.choose(capped).tier for _ in range(200)}
    assert tiers == {"fast", "mid"}
    mid_only = StepRequest("answer", [], hint=Hint(min_tier="mid", max_tier="mid"))
    choice = bandit.choose(mid_only)
    assert (choice.tier, choice.reason) == ("mid", "bandit exploit 'mid': best posterior mean reward; means mid 0.500 (n=0)")


def test_the_cost_is_taken_off_each_draw_too():
    bandit = BanditPolicy(("fast", "strong"), explore=1.0, costs={"fast": 0.0, "strong": 0.01}, cost_weight=50, seed=3)
    teach(bandit, "fast", 0.9, 30)
    teach(bandit, "strong", 1.0, 30)  # strong's draws, less 0.5, never reach fast's
    assert {bandit.choose(request()).tier for _ in range(200)} == {"fast"}


def test_equal_draws_go_to_the_cheaper_tier():
    # a cost that dwarfs every quality: each tier's draw less its cost is the same float, -1e20
    bandit = BanditPolicy(("fast", "strong"), explore=0.0, costs={"fast": 1.0, "strong": 1.0}, cost_weight=1e20, seed=3)
    for _ in range(5):
        choice = bandit.choose(request())
        assert choice.tier == "fast" and choice.reason.startswith("bandit exploit 'fast': best posterior mean reward;")


def test_the_score_is_the_chosen_tiers_posterior_mean_reward():
    bandit = BanditPolicy(("fast", "strong"), explore=0.5, seed=5)
    teach(bandit, "fast", 1.0, 3)  # fast 0.8, strong 0.5
    seen = set()
    for _ in range(100):
        choice = bandit.choose(request())
        kind = "explore" if choice.reason.startswith("bandit explore") else "stopped" if "stopped" in choice.reason else "exploit"
        seen.add(kind)
        assert choice.score == {"fast": 0.8, "strong": 0.5}[choice.tier], choice
    assert seen == {"explore", "stopped", "exploit"}


def test_the_default_store_is_an_in_memory_one_under_the_steps_own_namespace():
    store = BanditStore()
    store.write("answer", "r1", {"fast": (1.0, 2.0)})
    store.write("plan", "r1", {"strong": (1.0, 1.0)})
    assert store.read("answer") == {"fast": (1.0, 2.0)} and store.read("plan") == {"strong": (1.0, 1.0)}
    assert [tuple(i.namespace) for i in store.store.search(("steproute",))] == [("steproute", "bandit", "answer"),
                                                                                ("steproute", "bandit", "plan")]
    mine = BanditStore(InMemoryStore(), prefix=("app", "v.2"))
    mine.write("a.b", "r.1", {"fast": (1.0, 1.0)})
    assert mine.store.get(("app", "v%2E2", "a%2Eb"), "r%2E1").value["tiers"] == {"fast": [1.0, 1.0]}


def test_read_adds_up_every_replicas_item_and_skips_only_the_one_named():
    store = BanditStore(InMemoryStore())
    store.write("answer", "", {"fast": (1.0, 2.0)})  # a replica named "" is one like any other
    for i in range(12):  # more than a store's default search page
        store.write("answer", f"r{i}", {"fast": (1.0, 3.0)})
    store.store.put(("steproute", "bandit", "answer", "deeper"), "r0", {"tiers": {"fast": [5.0, 5.0]}})
    assert store.read("answer") == {"fast": (13.0, 38.0)}
    assert store.read("answer", skip="") == {"fast": (12.0, 36.0)}
    assert store.read("answer", skip="r0") == {"fast": (12.0, 35.0)}


def test_a_malformed_item_or_pair_counts_as_nothing_and_the_rest_is_read():
    store = BanditStore(InMemoryStore())
    namespace = ("steproute", "bandit", "answer")
    store.store.put(namespace, "a", {"tiers": {"strong": ["x", 1], "fast": [1, 2], "mid": [1]}})
    store.store.put(namespace, "b", {"no tiers": 1})
    store.store.put(namespace, "c", {"tiers": {"fast": [-1, 2], "mid": [3, 2]}})
    store.store.put(namespace, "d", {"tiers": {"fast": [0.5, 1]}})
    assert store.read("answer") == {"fast": (1.5, 3.0)}


def test_a_stopped_exploration_is_said_once_per_step_and_explored_tier(caplog):
    bandit = BanditPolicy(("fast", "mid", "strong"), explore=0.0, seed=4)
    with caplog.at_level("WARNING", logger="steproute"):
        for step in ("answer", "plan"):
            for _ in range(60):
                bandit.choose(request(step))
    said = sorted(m.split(": exploring")[0] for m in warnings_of(caplog, "stopped"))
    assert said == [f"bandit, step {step!r}: exploration of {tier!r} stopped"
                    for step in ("answer", "plan") for tier in ("mid", "strong")]


def test_the_documented_defaults():
    bandit = BanditPolicy(("fast", "strong"), prior="strong", costs={"fast": 0.0, "strong": 1.0}, seed=1)
    assert (bandit.explore, bandit.cost_weight, bandit.refresh_seconds, bandit.budget) == (0.1, 0.0, 5.0, None)
    assert bandit.posterior("answer") == {"fast": (1.0, 1.0), "strong": (3.0, 1.0)}  # the prior: 2 successes ahead
    assert "means fast 0.500 (n=0), strong 0.750 (n=2)" in bandit.choose(request()).reason  # no cost taken off
    for i in range(100_001):
        bandit.decided(Decision(step="answer", kind=None, tier="fast", model="m", policy="bandit", reason="", id=f"d{i}"))
    assert not bandit.learn({"type": "feedback", "id": "d0", "quality": 1.0})  # 100,000 decisions remembered
    assert bandit.learn({"type": "feedback", "id": "d1", "quality": 1.0})


def test_no_tiers_is_refused_in_words():
    with pytest.raises(ValueError) as caught:
        BanditPolicy(())
    assert str(caught.value) == "bandit: 'tiers' is empty (no tier between min_tier and max_tier?)"


@pytest.mark.parametrize(("settings", "said"), [
    ({"costs": {"fast": 0.0, "huge": 1.0}}, "costs names 'huge'"),
    ({"prior": "huge"}, "prior names 'huge'"),
    ({"costs": {"fast": 0.0, "huge": 1.0}, "prior": "vast"}, "costs names 'huge'"),
    ({"costs": {"fast": 0.0}, "prior": "vast"}, "prior names 'vast'"),
])
def test_a_tier_not_among_the_bandits_is_refused_naming_the_setting(settings, said):
    with pytest.raises(ValueError) as caught:
        BanditPolicy(("fast", "strong"), **settings)
    assert str(caught.value) == f"bandit: {said}, not one of the bandit's tiers (fast, strong)"


def test_a_budget_without_costs_is_refused_in_words():
    with pytest.raises(ValueError) as caught:
        BanditPolicy(("fast", "strong"), budget_usd_per_day=1.0)
    assert str(caught.value) == "bandit: 'budget_usd_per_day' needs 'costs' (what a call of each tier costs)"


def test_a_tier_left_out_of_costs_costs_nothing():
    bandit = BanditPolicy(("fast", "strong"), costs={"strong": 0.01}, cost_weight=50, explore=0.0)
    assert bandit.choose(request()).reason.endswith("means fast 0.500 (n=0), strong 0.000 (n=0)")


def test_with_no_store_given_the_bandit_keeps_its_state_in_a_store_of_its_own():
    bandit = BanditPolicy(("fast", "strong"), replica="r1")
    teach(bandit, "strong", 1.0, 2)
    assert bandit.store.read("answer") == {"strong": (2.0, 2.0)}
    assert bandit.store.read("answer", skip="r1") == {}


def test_a_seed_makes_the_draws_reproducible():
    def run() -> list[str]:
        bandit = BanditPolicy(("fast", "mid", "strong"), explore=1.0, seed=42)
        return [bandit.choose(request()).tier for _ in range(30)]

    first = run()
    assert run() == first and len(set(first)) == 3


def test_one_read_takes_at_most_100000_items():
    store = BanditStore(InMemoryStore())
    namespace = ("steproute", "bandit", "answer")
    store.store.batch([PutOp(namespace, f"r{i:06}", {"tiers": {"fast": [1.0, 1.0]}}) for i in range(100_001)])
    assert store.read("answer") == {"fast": (100_000.0, 100_000.0)}


class ListStore:
    """A store (any ``BaseStore``) whose items may hold what LangGraph's in-memory store would refuse."""

    def __init__(self, *values: object) -> None:
        now = datetime.now(timezone.utc)
        self.items = [Item(value=v, key=f"k{i}", namespace=("steproute", "bandit", "answer"), created_at=now,
                           updated_at=now) for i, v in enumerate(values)]

    def search(self, namespace, *, limit):
        return self.items


def test_an_item_whose_value_is_no_mapping_counts_as_nothing():
    store = BanditStore(ListStore(["fast", 1, 1], {"tiers": {"fast": [1.0, 2.0]}}))
    assert store.read("answer") == {"fast": (1.0, 2.0)}
