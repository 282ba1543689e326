"""``steproute drift LOG [--recent N] [--json]``: has any step's routing drifted?

Each step's last N calls (default 500; decision entries in order of their timestamps, feedback
joined by decision id) against the calls before them: tier mix, escalation rate, fallback
rate, cost per call and feedback quality (:func:`steproute.drift.detect_drift`; the tests and
thresholds are in docs/drift.md). Exit status: 0 when no step drifted, :data:`DRIFTED` (3)
when one did (for CI and cron), 1 when the log holds no decisions, 2 on bad input. Not
``steproute report --config``'s *config drift* (a configuration against a log).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from steproute._cli_kinds import wrong_kind
from steproute._cli_rows import fail
from steproute.decision_log import read_log
from steproute.drift import DriftReport, DriftThresholds, FigureChange, StepDrift, detect_drift

__all__ = ["DRIFTED", "add_parser", "format_drift_report", "run"]

DRIFTED = 3
"""The exit status when at least one step drifted."""

_NAMES = {"tier_mix": "tier mix", "escalation_rate": "escalation rate", "fallback_rate": "fallback rate",
          "cost_per_call": "cost per call", "quality": "quality"}
_EFFECT = {"total variation distance": "TVD", "Cohen's h": "h", "Vargha-Delaney A": "A"}


def add_parser(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``drift`` to the subcommands (``command`` makes a parser with a description and examples)."""
    p = command(sub, "drift", "has a step's tier mix, escalation, fallback, cost or quality moved? (exit 3 if so)",
                "Compare each step's last N calls of a decision log with the calls before them: tier mix "
                "(chi-square), escalation and fallback rates (two-proportion z-test), cost per call and feedback "
                "quality (Mann-Whitney U), Holm-corrected over every figure of every step, each also needing a "
                "minimum effect size (docs/drift.md). Prints which figure moved, before -> after, with its p-value. "
                "Exit status 0: no step drifted; 3: a step drifted; 1: no decisions; 2: bad input.",
                "steproute drift decisions.jsonl",
                "steproute drift decisions.jsonl --recent 200 --json",
                "steproute drift decisions.jsonl || alert   # in cron: exit status 3 when a step drifted")
    p.add_argument("log", metavar="LOG", help="the decision log (StepRouter(decision_log=...))")
    p.add_argument("--recent", default="500", metavar="N",
                   help="compare each step's last N calls with the calls before them (default 500)")
    p.add_argument("--alpha", default="0.01", metavar="A",
                   help="family-wise false-alarm rate, Holm-corrected over every figure tested (default 0.01)")
    p.add_argument("--min-calls", default="30", metavar="M",
                   help="a step with fewer calls in either window gets no verdict (default 30)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: 'steps', each with 'step', 'drifted' and its 'figures'")


def _int(text: str, least: int) -> int | None:
    try:
        value = int(text)
    except (TypeError, ValueError):
        return None
    return value if value >= least else None


def run(args: argparse.Namespace) -> int:
    """Check the input, compare, print; the exit status."""
    from steproute.report import check_decisions

    recent = _int(args.recent, 1)
    if recent is None:
        return fail("drift", "--recent must be an integer of at least 1 (the number of each step's last calls)")
    min_calls = _int(args.min_calls, 2)
    if min_calls is None:
        return fail("drift", "--min-calls must be an integer of at least 2")
    try:
        alpha = float(args.alpha)
        thresholds = DriftThresholds(alpha=alpha, min_calls=min_calls)
    except ValueError:
        return fail("drift", "--alpha must be a number in (0, 1)")
    path = args.log
    if os.path.exists(path) and not os.path.isfile(path):
        return fail("drift", f"{path}: not a regular file (a directory or device); give a decision log")
    wrong = wrong_kind(path, "decision log")
    if wrong:
        return fail("drift", wrong)
    if not os.path.exists(path):
        return fail("drift", f"{path}: no such decision log (give the file the router writes, StepRouter(decision_log=...))")
    try:
        contents = read_log(path)
    except OSError as exc:
        return fail("drift", f"cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError:
        return fail("drift", f"{path}: not UTF-8 text; a decision log is JSON lines")
    wrong = check_decisions(contents)
    if wrong:
        return fail("drift", f"{path}: {wrong}")
    for problem in contents.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not contents.decisions:
        return fail("drift", f"{path} holds no decisions", 1)
    try:
        report = detect_drift(contents, recent=recent, thresholds=thresholds)
    except ImportError as exc:
        return fail("drift", str(exc))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(format_drift_report(report, path))
    return DRIFTED if report.drifted else 0


def format_drift_report(report: DriftReport, path: str) -> str:
    """The report as text: a verdict per step, each figure before → after with its test.

    Example:
        >>> from steproute.drift import DriftReport, DriftThresholds, StepDrift
        >>> print(format_drift_report(DriftReport(500, DriftThresholds(), (StepDrift("plan", 3, 1, False),), 0), "d.jsonl"))
        drift in d.jsonl: each step's last 500 calls against the calls before them
        (Holm-corrected at alpha 0.01 over 0 tests; a figure moves when its effect is also large enough: docs/drift.md)
        <BLANKLINE>
        plan: not enough calls (n=3 before, 1 recent; needs 30 in each)
        <BLANKLINE>
        no step drifted
    """
    lines = [f"drift in {path}: each step's last {report.recent} calls against the calls before them",
             f"(Holm-corrected at alpha {report.thresholds.alpha:g} over {report.tests} test"
             f"{'' if report.tests == 1 else 's'}; a figure moves when its effect is also large enough: docs/drift.md)",
             ""]
    for step in report.steps:
        lines += _step_lines(step, report.thresholds)
    drifted = report.drifted
    lines.append("")
    if drifted:
        lines.append(f"{len(drifted)} of {len(report.steps)} step{'' if len(report.steps) == 1 else 's'} drifted: "
                     f"{', '.join(drifted)} (exit status {DRIFTED})")
    else:
        lines.append("no step drifted")
    return "\n".join(lines)


def _step_lines(step: StepDrift, thresholds: DriftThresholds) -> list[str]:
    counts = f"n={step.calls_before} before, {step.calls_recent} recent"
    if not step.enough:
        return [f"{step.step}: not enough calls ({counts}; needs {thresholds.min_calls} in each)"]
    lines = [f"{step.step}: {'DRIFTED' if step.drifted else 'steady'} ({counts})"]
    for f in step.figures:
        change = f"{_shown(f, f.before)} → {_shown(f, f.after)}"
        if f.figure == "cost_per_call" and isinstance(f.before, float) and isinstance(f.after, float) and f.before > 0:
            change += f" (×{f.after / f.before:.2f})"
        if f.p_value is None:
            lines.append(f"  {_NAMES[f.figure]:<16} {change:<46} {f.note}")
            continue
        effect = f"{_EFFECT.get(f.effect_name or '', f.effect_name)}={f.effect:.2f}"
        verdict = "moved" if f.moved else ("significant, effect too small" if (f.p_adjusted or 1) <= thresholds.alpha
                                           else "")
        lines.append(f"  {_NAMES[f.figure]:<16} {change:<46} {effect:<7} {_p(f.p_adjusted)}  {verdict}".rstrip())
    return lines


def _p(p: float | None) -> str:
    """A p-value as shown: two significant digits; below 1e-16 (where doubles stop) as ``p<1e-16``."""
    if p is None:
        return "p=-"
    return "p<1e-16" if p < 1e-16 else f"p={p:.2g}"


def _shown(f: FigureChange, value: float | dict[str, float] | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return " ".join(f"{t} {s:.0%}" for t, s in value.items())
    if f.figure == "cost_per_call":
        return f"${value:.6f}"
    if f.figure == "quality":
        return f"{value:.2f}"
    return f"{value:.1%}"
