"""Change a step's policy safely, end to end, on the two local demo models: log → shadow →
report → train → calibrate → replay → switch → drift. Writes docs/lifecycle.md (every command's
real output) and docs/images/lifecycle.png.

    python examples/lifecycle.py            # after `make demo` (llama.cpp and the two models); ~5 min
    python examples/lifecycle.py --calls 40 --out /tmp/lifecycle   # a quicker run, docs untouched

The app: a ``answer`` step that does arithmetic. Today it runs on the strong tier
(Qwen2.5-Coder-0.5B) and the app grades each answer against the true result (``feedback``).
A shadow on the fast tier (SmolLM2-135M) answers the same calls off the hot path, judged by
their final numbers. From that log a classifier is trained, calibrated to keep 95% of the
strong tier's quality, replayed over the log, switched on, and the drift check sees the switch.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from steproute import StepRequest, StepRouter  # noqa: E402
from steproute.local import LocalServers  # noqa: E402
from steproute.shadow import final_number  # noqa: E402

TIERS = """\
tiers:
  fast:
    tool_calling: json
    models:
      - {model: openai/smollm2-135m, api_base: "${STEPROUTE_LOCAL_FAST_URL}", api_key: local,
         input_cost_per_token: 0.00000015, output_cost_per_token: 0.0000006,
         capabilities: {vision: false, audio: false, tools: false, response_schema: true,
                        max_input_tokens: 8192, max_output_tokens: 8192}}
  strong:
    tool_calling: json
    models:
      - {model: openai/qwen2.5-coder-0.5b, api_base: "${STEPROUTE_LOCAL_STRONG_URL}", api_key: local,
         input_cost_per_token: 0.0000025, output_cost_per_token: 0.00001,
         capabilities: {vision: false, audio: false, tools: false, response_schema: true,
                        max_input_tokens: 8192, max_output_tokens: 8192}}
baseline: strong
default: fast
"""
LIVE = TIERS + """\
decision_log: {path: decisions.jsonl, messages: true}
steps:
  answer:
    policy: fixed
    tier: strong
    shadow: {candidate: fast, sample: 1.0, judge: final_number, max_concurrency: 8}
"""
CANDIDATE = TIERS + """\
decision_log: {path: decisions.jsonl, messages: true}
steps:
  answer:
    policy: classifier
    artefact: answer.steproute
"""


def questions(n: int, seed: int) -> list[tuple[str, float]]:
    """Half sums of two digits (the small model mostly gets them), half products of a two-digit
    and a one-digit number (it does not)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 2:
            a, b = rng.randint(12, 99), rng.randint(3, 9)
            out.append((f"What is the product of {a} and {b}? Reply with the number only.", float(a * b)))
        else:
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            out.append((f"What is the sum of {a} and {b}? Reply with the number only.", float(a + b)))
    return out


def serve(router: StepRouter, qs: list[tuple[str, float]], label: str) -> list[dict[str, Any]]:
    """Each question through the router, graded against its true result (``feedback``)."""
    rows = []
    started = time.perf_counter()
    for i, (text, gold) in enumerate(qs, 1):
        result = router.complete(StepRequest("answer", [{"role": "user", "content": text}]), max_tokens=12, temperature=0)
        quality = 1.0 if final_number(result.completion.content or "") == gold else 0.0
        router.feedback(result.decision.id, quality)
        rows.append({"tier": result.decision.tier, "quality": quality, "cost_usd": result.cost_usd})
        print(f"\r{label}: {i}/{len(qs)} calls, {time.perf_counter() - started:.0f} s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return rows


def command(out: Path, *argv: str, cut_at: str | None = None) -> tuple[str, str, int]:
    """Run ``steproute ARGV`` in ``out``; the command line as shown, its output (up to the line
    starting ``cut_at``, if given) and its exit status."""
    proc = subprocess.run([sys.executable, "-m", "steproute", *argv], cwd=out, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=1800)
    shown = "steproute " + " ".join(argv)
    text = (proc.stdout + ("\n" + proc.stderr if proc.stderr.strip() else "")).strip()
    if proc.returncode not in (0, 3):  # 3: drift found, which is what the last step shows
        raise SystemExit(f"{shown} failed ({proc.returncode}):\n{text}")
    if cut_at is not None and f"\n{cut_at}" in text:
        text = text.split(f"\n{cut_at}")[0] + f"\n[... the report's '{cut_at}' table left out here]"
    return shown, text, proc.returncode


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    n = len(rows)
    return {"calls": n, "quality": sum(r["quality"] for r in rows) / n, "cost_per_call": sum(r["cost_usd"] for r in rows) / n,
            "fast_share": sum(r["tier"] == "fast" for r in rows) / n}


def chart(before: dict[str, float], after: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    labels = ["before\n(fixed: strong)", "after\n(classifier)"]
    for ax, key, title, fmt in ((axes[0], "cost_per_call", "cost per call (USD)", "{:.2e}"),
                                (axes[1], "quality", "quality (graded answers)", "{:.0%}"),
                                (axes[2], "fast_share", "share on the fast tier", "{:.0%}")):
        values = [before[key], after[key]]
        bars = ax.bar(labels, values, color=["#7f7f7f", "#1f77b4"])
        ax.set_title(title)
        ax.bar_label(bars, [fmt.format(v) for v in values])
        ax.set_ylim(0, 1.1 if key != "cost_per_call" else max(values) * 1.25)
    fig.suptitle("step 'answer' on the local demo models, before and after the switch")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def page(run: dict[str, Any]) -> str:
    def block(item: tuple[str, str, int]) -> str:
        status = f"\n(exit status {item[2]})\n" if item[2] else ""
        return f"```text\n$ {item[0]}\n{item[1]}\n```\n{status}"

    b, a = run["before"], run["after"]
    moved = (f"this one moved {a['fast_share']:.0%} of the calls to the fast tier, "
             + ("and the check flags it." if run["drift"][2] == 3 else
                "under that threshold, so the check calls the step steady: the switch changed little, "
                "which is what the replay above predicted."))
    return f"""# Changing a routing policy safely

A walk through the whole loop on the two local demo models (SmolLM2-135M as `fast`,
Qwen2.5-Coder-0.5B as `strong`, under llama.cpp on 127.0.0.1): log every call with its
messages, shadow a cheaper tier, read the report, train and calibrate a policy from the log,
replay it over the log, switch it on, and watch for drift. Every output below is real: this page
is written by `examples/lifecycle.py` (run {run['date']}, {run['calls']} calls per phase,
{run['seconds']:.0f} s). Prices are the illustrative ones of `examples/steproute.yaml`
(the strong model's tokens cost about 17× the fast one's).

The app is one step, `answer`, that does arithmetic: half the questions are sums of two digits,
half products of a two-digit and a one-digit number. The app knows each true result and rates
every answer with `router.feedback(id, 1.0 or 0.0)`.

## 1. Log and shadow

Today `answer` runs on the strong tier. The configuration logs every call with its messages
and shadows the step on the fast tier: the fast model answers the same calls off the hot path,
and a judge compares the final numbers of the two answers ([shadow.md](shadow.md)).

```yaml
{LIVE}```

## 2. Report

{block(run['report'])}
## 3. Train and calibrate from the log

`train` and `calibrate` read the decision log as it is: each call's outcomes are the strong
tier's graded answer (feedback) and the fast tier's shadow result.

{block(run['train'])}
The candidate configuration uses the trained classifier:

<!-- snippet: not run (names answer.steproute, the artefact trained above) -->
```yaml
{CANDIDATE}```

{block(run['calibrate'])}
## 4. Replay the candidate over the log

Before switching, `replay` re-decides every logged call under the candidate: how many decisions
change and what the calls would have cost at the candidate's tiers.

{block(run['replay'])}
## 5. Switch, and watch for drift

The candidate goes live on {run['calls']} new questions (the same mix), logging to the same file.
Then `drift` compares the step's last {run['calls']} calls with the calls before them
([drift.md](drift.md)); exit status 3 says a step drifted, 0 that none did. A switch that moves
a tenth of a step's calls or more to another tier is what it flags; {moved}

{block(run['drift'])}
## Before and after

| | calls | quality (graded) | cost per call | on the fast tier |
|---|---|---|---|---|
| before: fixed on `strong` | {b['calls']:.0f} | {b['quality']:.0%} | ${b['cost_per_call']:.3g} | {b['fast_share']:.0%} |
| after: trained classifier | {a['calls']:.0f} | {a['quality']:.0%} | ${a['cost_per_call']:.3g} | {a['fast_share']:.0%} |

![cost, quality and tier mix before and after the switch](images/lifecycle.png)

These are small models and a small run: the figures show the loop working on real output, not
what the policy would save on your traffic. On your own app, shadow with a `sample` below 1,
keep a `budget_usd_per_day` on the shadow, and switch through an A/B `experiment:`
([configuration.md](configuration.md)) before switching every thread.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=80, help="questions per phase (default 80)")
    parser.add_argument("--page-from", type=Path, metavar="RUN_JSON",
                        help="only write docs/lifecycle.md again from a run's run.json (no models started)")
    parser.add_argument("--out", type=Path, help="working folder (default: a fresh one; docs/ is written only without --out)")
    args = parser.parse_args()
    if args.page_from is not None:
        saved = json.loads(args.page_from.read_text())
        chart(saved["before"], saved["after"], ROOT / "docs" / "images" / "lifecycle.png")
        (ROOT / "docs" / "lifecycle.md").write_text(page(saved))
        return 0
    import tempfile

    out = args.out or Path(tempfile.mkdtemp(prefix="steproute-lifecycle-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "live.yaml").write_text(LIVE)
    (out / "candidate.yaml").write_text(CANDIDATE)
    started = time.perf_counter()
    run: dict[str, Any] = {"calls": args.calls, "date": time.strftime("%Y-%m-%d")}
    with LocalServers() as local:
        os.environ.update(local.env())
        cwd = Path.cwd()
        os.chdir(out)
        try:
            live = StepRouter.from_file("live.yaml")
            before = serve(live, questions(args.calls, seed=1), "log and shadow")
            live.close(timeout=600)
            live.decision_log.close()  # type: ignore[union-attr]
            run["report"] = command(out, "report", "decisions.jsonl", cut_at="escalation rate by")
            run["train"] = command(out, "train", "--data", "decisions.jsonl", "--out", "answer.steproute")
            run["calibrate"] = command(out, "calibrate", "--data", "decisions.jsonl", "--config", "candidate.yaml",
                                       "--step", "answer", "--quality-ratio", "0.95", "--write")
            run["replay"] = command(out, "replay", "decisions.jsonl", "--config", "candidate.yaml")
            switched = StepRouter.from_file("candidate.yaml")
            after = serve(switched, questions(args.calls, seed=2), "switched")
            switched.close(timeout=60)
            switched.decision_log.close()  # type: ignore[union-attr]
            run["drift"] = command(out, "drift", "decisions.jsonl", "--recent", str(args.calls))
        finally:
            os.chdir(cwd)
    run["before"], run["after"] = summary(before), summary(after)
    run["seconds"] = time.perf_counter() - started
    (out / "run.json").write_text(json.dumps(run, indent=2))
    docs = ROOT / "docs" if args.out is None else out
    chart(run["before"], run["after"], (docs / "images" if args.out is None else out) / "lifecycle.png")
    (docs / "lifecycle.md").write_text(page(run))
    print(f"wrote {docs / 'lifecycle.md'} ({run['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
