"""docs/agent-benchmark.md: the tables and the cost–success chart of one workload's run, and its
per-step data set (docs/data/agent-<workload>-steps.jsonl), written by ``agent.py --write-docs``.

Each workload has its own block in the page (``<!-- agent-gsm8k:start -->`` ... ``end``), so
one workload's run leaves the other's figures as they are.

Example:
    >>> summary = {"workload": "w", "tasks": 1, "reference": "a", "configs": [
    ...     {"name": "a", "family": "always", "success": 1.0, "success_ci95": [0.2, 1.0], "cost_usd": 0.002,
    ...      "cost_vs_strongest": 1.0, "latency_s": 3.0, "calls": 5, "cached_calls": 0, "steps": {}}]}
    >>> table(summary).splitlines()[2]
    '| a | always | 100% (20%–100%) | $0.00200 | 100% | 3.0 s | 5 (0 cached) |'
"""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["headline", "step_table", "table", "write_docs"]

DOC = "docs/agent-benchmark.md"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def table(summary: Mapping[str, Any]) -> str:
    """One row per configuration: success with its 95% interval, cost, cost against the strongest tier, latency."""
    lines = ["| configuration | family | task success (95% CI) | cost | cost / always-strongest | latency per task | "
             "model calls |", "|---|---|---|---|---|---|---|"]
    for c in summary["configs"]:
        lo, hi = c["success_ci95"]
        lines.append(f"| {c['name']} | {c['family']} | {c['success']:.0%} ({lo:.0%}–{hi:.0%}) | ${c['cost_usd']:.5f} | "
                     f"{_pct(c.get('cost_vs_strongest'))} | {c['latency_s']:.1f} s | {c['calls']} ({c['cached_calls']} cached) |")
    return "\n".join(lines)


def step_table(summary: Mapping[str, Any]) -> str:
    """Per configuration and step: the tiers that answered, escalations, the step's share of the cost."""
    steps: list[str] = []
    for c in summary["configs"]:
        steps += [s for s in c["steps"] if s not in steps]
    lines = ["| configuration | " + " | ".join(steps) + " |", "|---|" + "---|" * len(steps)]
    for c in summary["configs"]:
        cells = []
        for s in steps:
            info = c["steps"].get(s)
            if info is None:
                cells.append("—")
                continue
            tiers = ", ".join(f"{t} {n}" for t, n in info["tiers"].items())
            esc = f"; {info['escalated']} escalated" if info["escalated"] else ""
            cells.append(f"{tiers}{esc}; {info['cost_share']:.0%} of cost, {info['latency_s']:.1f} s")
        lines.append(f"| {c['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def findings(summary: Mapping[str, Any]) -> list[str]:
    """The issue's targets, checked on this run: ≥ 95% of always-strongest success at ≤ 50% of its cost,
    and per-step routing against per-request routing at about equal cost."""
    configs = {c["name"]: c for c in summary["configs"]}
    ref = configs.get(summary["reference"])
    out = []
    if ref is None or not ref["success"]:
        return ["The strongest tier solved no task: no ratio to report."]
    for c in summary["configs"]:
        if c["family"] != "per-step":
            continue
        s, k = c.get("success_vs_strongest") or 0.0, c.get("cost_vs_strongest") or 0.0
        met = s >= 0.95 and k <= 0.5
        out.append(f"- {c['name']}: {s:.0%} of always-strongest success at {k:.0%} of its cost — target "
                   f"(≥ 95% at ≤ 50%) {'met' if met else '**not met**'}.")
    for c in summary["configs"]:
        if c["family"] != "per-request":
            continue
        near = [p for p in summary["configs"] if p["family"] == "per-step" and p["cost_usd"] <= c["cost_usd"] * 1.1]
        if near:
            best = max(near, key=lambda p: p["success"])
            verdict = "beats" if best["success"] > c["success"] else ("ties" if best["success"] == c["success"] else "loses to")
            out.append(f"- At no more than {c['name']}'s cost (+10%), the best per-step configuration ({best['name']}, "
                       f"{best['success']:.0%}) {verdict} it ({c['success']:.0%}).")
        else:
            out.append(f"- No per-step configuration costs as little as {c['name']} (${c['cost_usd']:.5f}).")
    return out


WORKLOAD_NAMES = {"gsm8k": "GSM8K word problems (a five-step LangGraph pipeline)",
                  "bfcl": "BFCL tool-calling tasks (LangChain's create_agent loop)"}


def headline(summary: Mapping[str, Any]) -> str:
    """One sentence for the README: the strongest tier, the best per-step and per-request configurations.

    The best of a family is its most successful configuration, the cheaper one on a tie.
    """
    configs = {c["name"]: c for c in summary["configs"]}
    ref = configs[summary["reference"]]

    def best(family: str) -> Mapping[str, Any] | None:
        members = [c for c in summary["configs"] if c["family"] == family]
        return min(members, key=lambda c: (-c["success"], c["cost_usd"])) if members else None

    def said(c: Mapping[str, Any]) -> str:
        return f"`{c['name']}` {c['success']:.0%} at {_pct(c.get('cost_vs_strongest'))} of its cost"

    parts = [f"**{WORKLOAD_NAMES.get(summary['workload'], summary['workload'])}, {summary['tasks']} tasks**: "
             f"the strongest tier alone solves {ref['success']:.0%}"]
    for family in ("per-step", "per-request"):
        top = best(family)
        if top is not None:
            parts.append(f"the best {family} routing {said(top)}")
    return "; ".join(parts) + "."


def plot(summary: Mapping[str, Any], path: Path) -> None:
    """Task success (95% interval) against cost, one point per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {"always": "o", "per-request": "s", "per-step": "^"}
    fig, axis = plt.subplots(figsize=(7, 4.4))
    for c in summary["configs"]:
        lo, hi = c["success_ci95"]
        axis.errorbar([c["cost_usd"]], [c["success"]], yerr=[[c["success"] - lo], [hi - c["success"]]],
                      fmt=markers.get(c["family"], "o"), capsize=3, label=c["name"])
    axis.set_xlabel(f"cost of {summary['tasks']} tasks (USD, prices ∝ parameters)")
    axis.set_ylabel("task success (95% Wilson interval)")
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="best")
    fig.suptitle(f"{summary['workload']}: cost against success, {summary['tasks']} tasks")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def block(summary: Mapping[str, Any], image: str, data: str | None) -> str:
    w = summary["workload"]
    prices = ", ".join(f"{t} ${p:g}" for t, p in summary["price_per_million_tokens"].items())
    models = ", ".join(f"{t} = {m}" for t, m in summary["models"].items())
    half = max(((c["success_ci95"][1] - c["success_ci95"][0]) / 2 for c in summary["configs"]), default=0.0)
    earlier = summary.get("answers_from_earlier_runs")
    reused = f", {earlier} of them kept from earlier runs of the same models (`--cache`)" if earlier else ""
    lines = [f"Generated by `benchmarks/agent.py --workload {w} --tasks {summary['tasks']} --write-docs` on "
             f"{time.strftime('%Y-%m-%d')} ({platform.machine()}, {os.cpu_count()} CPUs, llama.cpp "
             f"`--threads {summary.get('threads', 2)}`). {summary['tasks']} tasks: a success rate's 95% interval "
             f"spans up to ±{half:.0%} here, so differences smaller than that are not findings.",
             "", f"Tiers: {models}. Prices per million tokens, input and output alike: {prices}.",
             f"Whole run: {summary['seconds']:.0f} s; {summary['model_calls']} model calls, {summary['cache_hits']} "
             f"answered from the cache{reused}; learned routers cross-fitted over {summary['folds']} folds of the "
             f"tasks; LiteLLM's complexity router: {summary['litellm_complexity_router']}.", "",
             table(summary), "", "Latency: model time per task, summed over its calls as first measured (a cached "
             "answer keeps the latency it was computed with).", "", f"![{w}: cost against success](images/{image})",
             "", "Against the issue's targets (always-strongest is the reference):", "", *findings(summary), "",
             "Per step (tiers that answered, cascade escalations, the step's share of the configuration's cost, "
             "model time per task):", "", step_table(summary)]
    if data:
        lines += ["", f"Per-step data set of this run: [`{data}`]({data.removeprefix('docs/')})."]
    return "\n".join(lines)


PAGE = """# Agent benchmark: per-step routing against per-request routing

`benchmarks/agent.py` runs agent workloads on three local models under llama.cpp on 127.0.0.1
and measures, in one run and on the same tasks, each tier alone, per-request routing and
per-step routing. `make bench-agent` is the full run (after `make demo`, which builds llama.cpp
and fetches the models; `make bench-agent` fetches the 1.5B model too).

```text
python benchmarks/agent.py --workload gsm8k --tasks 10 --json   # a quick run: one JSON object
make bench-agent                                                 # the full run, writes this page
```

## GSM8K pipeline

<!-- agent-gsm8k:start -->
<!-- agent-gsm8k:end -->

## BFCL tool calling

<!-- agent-bfcl:start -->
<!-- agent-bfcl:end -->
"""


def write_docs(summary: Mapping[str, Any], rows: Sequence[Any], root: Path) -> list[Path]:
    """Write the workload's block of docs/agent-benchmark.md, its chart, and its per-step data set."""
    from steproute.evaluation import write_rows

    w = summary["workload"]
    doc, image = root / DOC, f"agent-{w}.png"
    (root / "docs" / "images").mkdir(parents=True, exist_ok=True)
    plot(summary, root / "docs" / "images" / image)
    written = [root / "docs" / "images" / image]
    data = None
    if rows:
        data_path = root / "docs" / "data" / f"agent-{w}-steps.jsonl"
        data_path.parent.mkdir(parents=True, exist_ok=True)
        write_rows(rows, data_path)
        data = f"docs/data/{data_path.name}"
        written.append(data_path)
    text = doc.read_text(encoding="utf-8") if doc.exists() else PAGE
    start, end = f"<!-- agent-{w}:start -->", f"<!-- agent-{w}:end -->"
    if start not in text:
        text += f"\n## {w}\n\n{start}\n{end}\n"
    new = f"{start}\n{block(summary, image, data)}\n{end}"
    doc.write_text(re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: new, text, flags=re.S), encoding="utf-8")
    readme, marker = root / "README.md", f"<!-- agent-headline-{w} -->"
    if readme.exists() and marker in readme.read_text(encoding="utf-8"):  # the line after the marker is the headline
        lines = readme.read_text(encoding="utf-8").split("\n")
        at = lines.index(marker)
        lines[at + 1] = f"- {headline(summary)}"
        readme.write_text("\n".join(lines), encoding="utf-8")
        written.append(readme)
    return [doc, *written]
