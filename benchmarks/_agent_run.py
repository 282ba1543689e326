"""Running one task under one router config, and turning what happened into per-step calls.

Every routed call writes a decision entry (an in-memory decision log, prompts included); the
caching proxy records every model call with its measured latency. Calls are sequential, so the
entries and the proxy's events line up: a decision takes one event per attempt (a cascade's
rejected attempts included).

Example:
    >>> from _agent_cache import CallEvent
    >>> entries = [{"step": "plan", "tier": "small", "cost_usd": 0.01, "cascade": [{"tier": "tiny"}, {"tier": "small"}]},
    ...            {"step": "answer", "tier": "tiny", "cost_usd": 0.001}]
    >>> events = [CallEvent("tiny", 1.0, True, 10, 5), CallEvent("small", 2.0, False, 10, 5), CallEvent("tiny", 0.5, True, 3, 1)]
    >>> calls, note = attribute(entries, events)
    >>> [(c.step, c.attempts, c.latency_s, c.cached) for c in calls], note
    ([('plan', ('tiny', 'small'), 3.0, False), ('answer', ('tiny',), 0.5, True)], '')
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from _agent_cache import CachingProxy, CallEvent
from _agent_results import StepCall, TaskRun
from _agent_workloads import Workload, WorkloadRun

__all__ = ["Recorder", "Runner", "attribute"]


class Recorder:
    """A decision log kept in memory (the benchmark reads its entries back)."""

    include_prompts = True

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def write(self, entry: Mapping[str, Any]) -> None:
        self.entries.append(dict(entry))

    def close(self) -> None:
        pass


def attribute(entries: Sequence[Mapping[str, Any]], events: Sequence[CallEvent]) -> tuple[list[StepCall], str]:
    """Each decision with its model calls' latency; a note when entries and calls do not line up."""
    calls, i = [], 0
    for entry in entries:
        cascade = entry.get("cascade") or []
        attempts = tuple(str(a.get("tier")) for a in cascade) or (str(entry.get("tier")),)
        mine = events[i:i + len(attempts)]
        i += len(attempts)
        calls.append(StepCall(str(entry.get("step")), str(entry.get("tier")), attempts, float(entry.get("cost_usd") or 0.0),
                              sum(e.latency_s for e in mine), bool(mine) and all(e.cached for e in mine)))
    note = "" if i == len(events) else f"{len(events)} model calls for {i} attempts logged: latency attribution approximate"
    return calls, note


class Runner:
    """Runs a workload's tasks on routers behind the caching proxy; one router per distinct config."""

    def __init__(self, proxy: CachingProxy, workload: Workload, tiers: Sequence[str],
                 say: Callable[[str], None] = lambda _: None) -> None:
        self.proxy = proxy
        self.say = say
        self.label = ""
        """The configuration being measured, for the progress lines."""
        self.workload = workload
        self.urls = {t: proxy.base_url(t) for t in tiers}
        self._routers: dict[str, tuple[Any, Recorder]] = {}

    def router(self, config: Mapping[str, Any]) -> tuple[Any, Recorder]:
        from steproute import RouterConfig, StepRouter

        key = json.dumps(config, sort_keys=True, default=str)
        if key not in self._routers:
            recorder = Recorder()
            self._routers[key] = (StepRouter(RouterConfig.model_validate(config), decision_log=recorder), recorder)
        return self._routers[key]

    def run_task(self, task: Any, config: Mapping[str, Any]) -> tuple[TaskRun, WorkloadRun, list[dict[str, Any]]]:
        """The task under ``config``: its per-step calls, the workload's record, the decision entries."""
        router, recorder = self.router(config)
        first_entry, first_event = len(recorder.entries), len(self.proxy.events)
        try:
            run = self.workload.run(task, router)
        except Exception as exc:  # a task that fails is a failed task, and says why
            run = WorkloadRun(False, f"error: {type(exc).__name__}: {str(exc)[:200]}", {})
        entries = recorder.entries[first_entry:]
        calls, note = attribute(entries, self.proxy.events[first_event:])
        detail = f"{run.detail}; {note}" if note else run.detail
        result = TaskRun(self.workload.task_id(task), run.success, detail, tuple(calls))
        self.say(f"  {self.label} {result.task_id}: {'ok' if run.success else 'failed'}, {result.latency_s:.0f} s model time, "
                 f"{sum(c.cached for c in calls)}/{len(calls)} calls cached; {detail[:90]}")
        return result, run, entries

    def ask(self, config: Mapping[str, Any], step: str, kind: str | None, messages: Sequence[Mapping[str, Any]],
            params: Mapping[str, Any]) -> tuple[Any, float]:
        """One routed call of ``step`` under ``config``: the completion and what it cost."""
        from steproute import StepRequest

        router, _ = self.router(config)
        result = router.complete(StepRequest(step, [dict(m) for m in messages], kind=kind), **params)
        return result.completion, result.cost_usd
