"""``steproute replay LOG --config CANDIDATE.yaml [--json] [--html OUT]``: what a candidate
configuration would have done with the calls of a decision log, per step (:mod:`steproute.replay`).

Input errors (a missing log, a file of another kind, an invalid candidate) are one line on
stderr naming the file and, for a configuration, each problem's field path (and line), with exit
status 2; nothing of the files' values is echoed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from steproute._cli_kinds import wrong_kind
from steproute._cli_rows import fail
from steproute._text_table import text_table
from steproute.errors import ConfigError

if TYPE_CHECKING:
    from steproute.replay import Interval, ReplayReport, StepReplay

__all__ = ["add_parser", "format_replay", "run"]


def add_parser(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``replay`` to the subcommands (``command`` makes a parser with a description and examples)."""
    p = command(sub, "replay", "re-decide a decision log's calls under a candidate configuration, per step",
                "Decide every call of a decision log again with a router built from CANDIDATE.yaml (no model is "
                "called): per step, the share of decisions it changes, the recorded cost, the candidate's cost for the "
                "recorded token counts at its tiers' prices, and the quality where the log knows it (feedback, "
                "shadow results), with bootstrap 95% intervals. Steps the candidate cannot decide offline (an llm "
                "policy, a cascade, calls logged without messages when the candidate reads the text) say why.",
                "steproute replay decisions.jsonl --config candidate.yaml",
                "steproute replay decisions.jsonl --config candidate.yaml --json",
                "steproute replay decisions.jsonl --config candidate.yaml --html replay.html")
    p.add_argument("log", metavar="LOG", help="a decision log (JSON lines), best written with decision_log: {messages: true}")
    p.add_argument("--config", metavar="CANDIDATE", required=True, help="the candidate configuration (YAML or TOML)")
    p.add_argument("--json", action="store_true", help="print one JSON object with a 'steps' list instead of the table")
    p.add_argument("--html", metavar="OUT", help="also write a self-contained HTML page to OUT")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0: the same run gives the same intervals)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check the inputs, replay, print; the exit status."""
    from steproute._replay_html import replay_page
    from steproute.config import load_config
    from steproute.decision_log import read_log
    from steproute.replay import log_path_problem, replay

    problem = log_path_problem(args.log) or wrong_kind(args.log, "decision log")
    if problem:
        return fail("replay", problem)
    wrong = wrong_kind(args.config, "config", "--config ")
    if wrong:
        return fail("replay", wrong)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        found = "; ".join(" ".join(str(p).split()) for p in exc.problems)
        return fail("replay", f"--config {args.config}: invalid steproute configuration ({len(exc.problems)} "
                     f"problem{'s' if len(exc.problems) != 1 else ''}): {found}")
    try:
        contents = read_log(args.log)
    except OSError as exc:
        return fail("replay", f"cannot read {args.log}: {exc.strerror}")
    except UnicodeDecodeError:
        return fail("replay", f"{args.log}: not UTF-8 text; a decision log is JSON lines")
    if not contents.decisions:
        return fail("replay", f"{args.log}: no decision entries to replay ({len(contents.problems)} line(s) not used)")
    try:
        report = replay(contents, config, seed=args.seed)
    except (ImportError, ConfigError) as exc:
        return fail("replay", str(exc))
    if args.html:
        try:
            with open(args.html, "w", encoding="utf-8") as f:
                f.write(replay_page(report, log=args.log, config=args.config))
        except OSError as exc:
            return fail("replay", f"--html {args.html}: cannot write: {exc.strerror}")
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(format_replay(report))
        if args.html:
            print(f"\nwrote {args.html}")
    for line in report.problems[:5]:
        print(f"warning: {line}", file=sys.stderr)
    return 0


def _ci(interval: Interval | None, fmt: str) -> str:
    return f"{format(interval.low, fmt)}–{format(interval.high, fmt)}" if interval is not None else "-"


def _q(value: float | None, n: int) -> str:
    return f"{value:.2f} (n={n})" if value is not None else "-"


def _row(s: StepReplay) -> list[str]:
    if not s.replayable:
        return [s.step, str(s.calls), "-", "-", f"{s.cost_usd:.6f}", "-", "-", _q(s.quality, s.quality_n), "-",
                f"not replayed: {s.why_not}"]
    assert s.changed is not None and s.candidate_cost_usd is not None
    return [s.step, str(s.calls), f"{s.changed:.0%}", _ci(s.changed_ci, ".0%"), f"{s.cost_usd:.6f}",
            f"{s.candidate_cost_usd:.6f}", _ci(s.candidate_cost_ci, ".6f"), _q(s.quality, s.quality_n),
            _q(s.candidate_quality, s.candidate_quality_n),
            ", ".join(f"{t} {n}" for t, n in s.candidate_tiers.items())]


def format_replay(report: ReplayReport) -> str:
    """The replay as an aligned table, one row per step, and a line of totals over the replayed steps.

    Example:
        >>> from steproute.replay import ReplayReport, StepReplay
        >>> print(format_replay(ReplayReport((StepReplay("plan", 2, 0.5, False, why_not="an llm policy"),))))
        ... # doctest: +NORMALIZE_WHITESPACE
        step  calls  changed  95% CI  cost $    candidate $  95% CI  quality  candidate quality  candidate tiers / why not
        ----  -----  -------  ------  --------  -----------  ------  -------  -----------------  ---------------------------
        plan  2      -        -       0.500000  -            -       -        -                  not replayed: an llm policy
        <BLANKLINE>
        2 calls in 1 step(s); 0 replayed
    """
    header = ["step", "calls", "changed", "95% CI", "cost $", "candidate $", "95% CI", "quality", "candidate quality",
              "candidate tiers / why not"]
    table = text_table(header, [_row(s) for s in report.steps])
    done = [s for s in report.steps if s.replayable]
    line = f"{report.calls} calls in {len(report.steps)} step(s); {len(done)} replayed"
    if done:
        cost = sum(s.cost_usd for s in done)
        candidate = sum(s.candidate_cost_usd or 0.0 for s in done)
        moved = sum((s.changed or 0.0) * s.calls for s in done) / sum(s.calls for s in done)
        line += (f": {moved:.0%} of their decisions change; cost ${cost:.6f} recorded, ${candidate:.6f} under the "
                 "candidate")
    return f"{table}\n\n{line}"
