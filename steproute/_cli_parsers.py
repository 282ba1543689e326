"""The ``steproute`` command's arguments: every subcommand with a description and examples,
every option with its help (``tests/unit/test_cli_conventions.py`` walks this parser and
fails on a subcommand or an option without them)."""

from __future__ import annotations

import argparse
import platform
import textwrap
from importlib import metadata
from typing import Any

__all__ = ["build_parser", "version_line"]


def version_line() -> str:
    """steproute's version, with Python's and the versions of the packages it routes through.

    Example:
        >>> version_line()  # doctest: +SKIP
        'steproute 0.1.0 (Python 3.11.9, litellm 1.100.5, langgraph 1.0.2, langchain-core 1.0.4)'
    """

    def installed(name: str) -> str:
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            return f"{name} not installed"

    deps = ", ".join(installed(n) for n in ("litellm", "langgraph", "langchain-core"))
    return f"{installed('steproute')} (Python {platform.python_version()}, {deps})"


class _Version(argparse.Action):
    """``--version``: :func:`version_line` on stdout, worked out only when asked for."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(version_line())
        parser.exit()


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _command(sub: Any, name: str, help: str, description: str, *examples: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=textwrap.fill(description, 78), epilog=_examples(*examples),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    """The ``steproute`` argument parser, every subcommand included.

    Example:
        >>> build_parser().parse_args(["feedback", "d-1", "good"]).log
        'decisions.jsonl'
    """
    parser = argparse.ArgumentParser(
        prog="steproute", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill("Per-step model-tier routing for LangGraph: check a configuration, run the demo, "
                                  "serve local models, report on a decision log, record feedback, and train and "
                                  "evaluate learned policies.", 78),
        epilog=_examples("steproute demo --log decisions.jsonl      # a routed agent on a mock server; log it",
                         "steproute report decisions.jsonl          # what each step cost and saved",
                         "steproute feedback DECISION_ID good       # rate a decision (for training)",
                         "steproute COMMAND --help                  # a command's options and examples"))
    parser.add_argument("--version", action=_Version,
                        help="print steproute's version (and Python's, LiteLLM's, LangGraph's) and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="the command to run (each has its own --help)")
    demo = _command(sub, "demo", "run a routed 5-step agent on a mock server and print its per-step bill",
                    "Run a five-step LangGraph agent (rewrite, extract, plan, use_tool, answer) routed across three "
                    "tiers, for a free and an enterprise tenant, on llmock: a mock OpenAI-compatible server started "
                    "on 127.0.0.1 (canned answers, real HTTP, real LiteLLM, no API key, no download). Prints each "
                    "step's tier, reason and cost.",
                    "steproute demo", "steproute demo --log decisions.jsonl && steproute report decisions.jsonl")
    demo.add_argument("--log", metavar="PATH",
                      help="also append every decision to this decision log (with the demo's prompts), for "
                           "'steproute report', 'steproute feedback' and 'steproute convert --from log'")
    check = _command(sub, "check", "validate a configuration file and show its tiers and prices",
                     "Load a configuration as StepRouter.from_file does and report every problem in one run (with "
                     "'did you mean' for keys, tiers, policies and models; a baseline model without a price is an "
                     "error), then its tiers (cheap to strong, the baseline marked), each deployment's price per "
                     "million tokens, and the tiers each step can reach. Exit status 2 when it is invalid.",
                     "steproute check steproute.yaml", "steproute check examples/steproute.yaml --placeholders",
                     "steproute check steproute.yaml --env .env")
    check.add_argument("config", help="path to steproute.yaml (or .toml)")
    check.add_argument("--env", metavar="FILE", help="read ${VAR} values from FILE (KEY=VALUE lines) instead of "
                                                     "the environment")
    check.add_argument("--placeholders", action="store_true",
                       help="check a file whose ${VAR}s are unset: each is a warning, not an error")
    local = _command(sub, "local", "serve local llama.cpp models as tiers on 127.0.0.1 until Ctrl-C",
                     "Build llama.cpp's server and fetch the weights once (into ~/.cache/steproute), then serve "
                     "each tier's model on 127.0.0.1 and print the environment variables and configuration lines "
                     "that point a steproute.yaml at them.",
                     "steproute local", "steproute local --prepare",
                     "steproute local --tier fast=smollm2-135m --tier strong=qwen2.5-coder-0.5b")
    local.add_argument("--tier", action="append", metavar="TIER=MODEL",
                       help="a tier and its model (repeatable; default: fast=smollm2-135m strong=qwen2.5-coder-0.5b)")
    local.add_argument("--threads", type=int, default=2, help="CPU threads per server (default 2)")
    local.add_argument("--prepare", action="store_true", help="only build llama-server and fetch the weights")
    local.add_argument("--list", action="store_true", help="list the available models")
    report = _command(sub, "report", "per-step cost beside quality, savings, tier mix, escalations, latency, tenants",
                      "Summarise a decision log (StepRouter(decision_log=...) or 'steproute demo --log'): per step, "
                      "the calls, cost, cost on the baseline tier, savings, tier mix, escalations, what rejected "
                      "cascade attempts cost, quality (from feedback, and per tier from feedback and shadow results), "
                      "latency (p50, p95) and errors; quality against the baseline tier; cost per tenant; the "
                      "escalation rate over time. Bad lines are warnings, never dropped silently.",
                      "steproute report decisions.jsonl",
                      "steproute report decisions.jsonl --html report.html --config steproute.yaml",
                      "steproute report decisions.jsonl --since 7d --tenant acme --json",
                      "steproute report decisions.jsonl --by arm")
    report.add_argument("log", help="a decision log (JSON lines) written by StepRouter(decision_log=...)")
    report.add_argument("--html", metavar="OUT", help="also write a self-contained HTML page with charts")
    report.add_argument("--config", metavar="FILE",
                        help="also list configured steps the log never called, and logged steps with no "
                             "configuration; the tiers' order and the baseline tier come from it")
    report.add_argument("--json", action="store_true",
                        help="print one JSON object (steps, tenants, totals, quality against the baseline tier, "
                             "escalations over time) instead of the tables")
    report.add_argument("--since", metavar="WHEN",
                        help="only decisions from WHEN on: an ISO date or date/time (2025-01-31, 2025-01-31T09:00; "
                             "UTC unless a zone is given) or a duration back from now (30m, 24h, 7d, 2w)")
    report.add_argument("--tenant", action="append", metavar="TENANT",
                        help="only this tenant's decisions (repeatable: any of them)")
    report.add_argument("--by", choices=("step", "arm"), default="step",
                        help="'arm': compare an A/B experiment's arms (experiment: in the configuration) per step: "
                             "calls, cost per call, tier mix, escalations, quality with 95%% intervals, and each "
                             "arm's difference from the control")
    from steproute._cli_feedback import add_parser

    add_parser(sub, _command)
    from steproute._cli_replay import add_parser as add_replay_parser

    add_replay_parser(sub, _command)
    _add_offline(sub)
    from steproute._cli_drift import add_parser as add_drift_parser

    add_drift_parser(sub, _command)
    return parser


def _add_target(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--strong-share", type=float, help="at most this share of calls on stronger tiers (0..1)")
    group.add_argument("--quality-floor", type=float, help="mean quality at least this (0..1), at the lowest cost")
    group.add_argument("--quality-ratio", type=float,
                       help="quality at least this share of the strongest tier's (default for train: 0.95)")


def _add_offline(sub: Any) -> None:
    """``convert``, ``train``, ``eval`` and ``calibrate`` (run by ``steproute._cli_eval``)."""
    convert = _command(sub, "convert", "write rows of the evaluation format from RouteLLM results or a decision log",
                       "Write rows of the evaluation format (one query per line with each model's quality and cost), "
                       "the input of train, eval and calibrate: from RouteLLM's published benchmark results, or from "
                       "a decision log's rated decisions (--from log; rate them with 'steproute feedback').",
                       "steproute convert --from log decisions.jsonl --out rows.jsonl",
                       "steproute convert routellm/evals/mmlu --out train.jsonl --holdout 0.3 --holdout-out test.jsonl")
    convert.add_argument("source", metavar="SOURCE", help="a RouteLLM benchmark folder (mmlu, gsm8k, mt_bench) or a decision log")
    convert.add_argument("--from", dest="kind", choices=("routellm", "log"), default="routellm",
                         help="what SOURCE is: 'routellm' (default), a folder of RouteLLM results, or 'log', "
                              "a decision log whose decisions were rated with feedback")
    convert.add_argument("--benchmark", choices=("mmlu", "gsm8k", "mt_bench"), help="default: from the folder's name")
    convert.add_argument("--out", required=True, help="JSONL file to write")
    convert.add_argument("--holdout", type=float, help="also hold out this share of every step's rows ...")
    convert.add_argument("--holdout-out", help="... into this file")
    convert.add_argument("--seed", type=int, default=0,
                         help="seed of the random held-out split (default 0: the same split on every run)")

    train = _command(sub, "train", "train a classifier, semantic, irt or cascade artefact on rows of the evaluation format",
                     "Learn a routing policy from rows: 'classifier' (a quality estimate per tier), 'semantic' "
                     "(nearest references) or 'cascade' (an answer scorer). The threshold is chosen by "
                     "cross-validation for the target; rows converted from a decision log hold one model's "
                     "outcome each, so cross-validation is skipped for them (classifier only).",
                     "steproute train --data train.jsonl --out answer.steproute",
                     "steproute train --data train.jsonl --out solve.steproute --policy cascade --strong-share 0.3")
    train.add_argument("--data", required=True,
                       help="training rows (JSONL, evaluation format), or a decision log with feedback or shadow results")
    train.add_argument("--out", required=True, help="artefact file to write")
    train.add_argument("--policy", choices=("classifier", "semantic", "knn", "ensemble", "irt", "cascade", "cascade_routing"),
                       default="classifier",
                       help="classifier (default), semantic, knn (k nearest neighbours, k chosen by cross-validation), "
                            "ensemble (classifier and knn blended when cross-validation says it helps), irt (a query's "
                            "difficulty against each tier's ability), cascade: the answer scorer, trained on the cheaper "
                            "models' recorded answers, or cascade_routing: where to start and when to escalate by "
                            "value (classifier, scorer, isotonic calibration, λ)")
    train.add_argument("--models", help="comma-separated models, cheap to strong (default: the rows' models by cost)")
    train.add_argument("--folds", type=int, default=None,
                       help="cross-validation folds for the threshold (0: none; default 5, or 0 when the rows hold "
                            "one model's outcome each, as rows from a decision log do)")
    train.add_argument("--encoder", default="wordllama-l2-256", help="wordllama-l2-256 (default) or all-minilm-l6-v2")
    train.add_argument("--json", action="store_true", help="print the cross-validation figures as JSON")
    _add_target(train)

    ev = _command(sub, "eval", "replay a policy (artefact or configuration) over rows; APGR, CPT, AIQ, plots",
                  "Replay a policy over rows without calling a model: a trained artefact, or a steproute.yaml's "
                  "step. Sweeps the threshold and prints quality, strong-tier share, cost, APGR, CPT and AIQ against "
                  "always-cheapest, always-strongest and the oracle.",
                  "steproute eval --data test.jsonl --policy answer.steproute --plot curve.png",
                  "steproute eval --data test.jsonl --policy steproute.yaml --step answer --json",
                  "steproute eval --data test.jsonl --policy answer.steproute --html explorer.html")
    ev.add_argument("--data", required=True, help="test rows (JSONL, evaluation format)")
    ev.add_argument("--policy", required=True, help="an artefact from 'steproute train', or a steproute.yaml")
    ev.add_argument("--step", help="decide every row as this step (configuration only; default: each row's step)")
    ev.add_argument("--model", action="append", metavar="TIER=MODEL", help="which outcome model a tier stands for")
    ev.add_argument("--threshold", type=float, help="override the policy's threshold")
    ev.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ev.add_argument("--plot", metavar="PNG", help="write the quality/share and quality/cost curves")
    ev.add_argument("--html", metavar="OUT", help="write the threshold explorer: a self-contained page whose slider "
                                                  "moves the threshold over the sweep (classifier or semantic)")

    cal = _command(sub, "calibrate", "choose a step's threshold for a target on a calibration set; write it back",
                   "Replay a configured step's learned policy (classifier or semantic) on calibration rows, pick the "
                   "threshold that meets the target at the lowest cost, and with --write set it in the configuration "
                   "(comments and layout kept; the new file is validated before it replaces the old one).",
                   "steproute calibrate --data test.jsonl --config steproute.yaml --step answer --strong-share 0.3",
                   "steproute calibrate --data test.jsonl --config steproute.yaml --step answer --write",
                   "steproute calibrate --data test.jsonl --config steproute.yaml --step answer --html explorer.html")
    cal.add_argument("--data", required=True,
                     help="calibration rows (JSONL, evaluation format), or a decision log with shadow results")
    cal.add_argument("--config", required=True, help="steproute.yaml whose step to calibrate")
    cal.add_argument("--step", required=True, help="the step (its policy must be classifier or semantic, or a cascade "
                                                    "with a cascade_routing artefact: then λ is calibrated)")
    cal.add_argument("--model", action="append", metavar="TIER=MODEL", help="which outcome model a tier stands for")
    cal.add_argument("--write", action="store_true", help="write the threshold into the configuration file")
    cal.add_argument("--folds", type=int, default=5,
                     help="check how the threshold generalises: chosen on all folds but one, replayed on that one, "
                          "for each fold; prints the spread (default 5; 0: no check)")
    cal.add_argument("--html", metavar="OUT", help="write the threshold explorer, the calibrated point marked: a "
                                                   "self-contained page whose slider moves the threshold over the sweep")
    cal.add_argument("--json", action="store_true",
                     help="print one JSON object (step, target, threshold, quality, strong_share, cost_usd, written)")
    _add_target(cal)
