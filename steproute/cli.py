"""The ``steproute`` command."""

from __future__ import annotations

import argparse
import os
import signal
import stat
import sys
import time
from typing import TYPE_CHECKING

from steproute.errors import ConfigError

if TYPE_CHECKING:
    from steproute.config import RouterConfig
    from steproute.decision_log import LogContents


def _check(args: argparse.Namespace) -> int:
    from steproute._cli_kinds import wrong_kind
    from steproute.config_check import check_file, read_env_file

    wrong = wrong_kind(args.config, "config")
    if wrong:
        print(f"steproute check: {wrong}", file=sys.stderr)
        return 2
    try:
        env = read_env_file(args.env) if args.env else None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        print(f"steproute check: --env: {exc.strerror if isinstance(exc, OSError) else exc}", file=sys.stderr)
        return 2
    report = check_file(args.config, env=env, placeholders=args.placeholders)
    print(report.format(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 2


def _tiers(specs: list[str] | None) -> dict[str, str]:
    from steproute.local import DEFAULT_TIERS, MODELS

    if not specs:
        return dict(DEFAULT_TIERS)
    tiers = {}
    for spec in specs:
        tier, sep, model = spec.partition("=")
        if not sep or not tier or model not in MODELS:
            raise SystemExit(f"steproute local: --tier expects TIER=MODEL with MODEL one of {', '.join(MODELS)}; got {spec!r}")
        tiers[tier] = model
    return tiers


def _local(args: argparse.Namespace) -> int:
    from steproute.errors import LocalModelError
    from steproute.local import MODELS, LocalServers, ensure_llama_server, ensure_weights
    from steproute.local._weights import weights_path

    if args.list:
        for m in MODELS.values():
            cached = weights_path(m).exists()
            print(f"{m.name:20} {m.title:38} {m.size_mb:>5} MB  {m.license:10} {'cached' if cached else '-':7} {m.origin}")
        return 0
    tiers = _tiers(args.tier)
    # SIGTERM takes the same way out as Ctrl-C, so the servers are stopped either way.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        if args.prepare:
            print(f"llama-server: {ensure_llama_server()}")
            for model in dict.fromkeys(tiers.values()):
                print(f"{model}: {ensure_weights(model)}")
            return 0
        with LocalServers(tiers, threads=args.threads) as local:
            for tier, server in local.servers.items():
                print(f"{tier:8} {server.model.name:20} {server.base_url}  pid {server.pid}")
            print("\n# Point a config at these servers with the variables ...")
            for name, value in local.env().items():
                print(f"export {name}={value}")
            print("# ... or paste these tiers (set input_cost_per_token/output_cost_per_token to price them):")
            print(local.config_lines().rstrip())
            print("\nServing until Ctrl-C.", flush=True)
            while all(s.process is not None and s.process.poll() is None for s in local.servers.values()):
                time.sleep(0.5)
            print("steproute local: a server stopped on its own", file=sys.stderr)
            return 1
    except LocalModelError as exc:
        print(f"steproute local: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _report(args: argparse.Namespace) -> int:
    from steproute._cli_kinds import wrong_kind
    from steproute.config import load_config
    from steproute.decision_log import read_log
    from steproute.report import parse_since

    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since)
        except ValueError as exc:
            print(f"steproute report: {exc}", file=sys.stderr)
            return 2
    config = None
    if args.config:
        wrong = wrong_kind(args.config, "config", "--config ")
        if wrong:
            print(f"steproute report: {wrong}", file=sys.stderr)
            return 2
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            found = "; ".join(" ".join(str(p).split()) for p in exc.problems)
            print(f"steproute report: --config {args.config}: invalid steproute configuration "
                  f"({len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''}): {found}", file=sys.stderr)
            return 2
    from steproute.report import check_decisions

    fail = f"steproute report: {args.log}:"
    if os.path.exists(args.log) and not os.path.isfile(args.log) and not stat.S_ISFIFO(os.stat(args.log).st_mode):
        print(f"{fail} not a regular file (a directory or device); give a decision log", file=sys.stderr)
        return 2
    wrong = wrong_kind(args.log, "decision log")
    if wrong:
        print(f"steproute report: {wrong}", file=sys.stderr)
        return 2
    try:
        contents = read_log(args.log)
    except OSError as exc:
        print(f"steproute report: cannot read {args.log}: {exc.strerror}", file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print(f"{fail} not UTF-8 text; a decision log is JSON lines", file=sys.stderr)
        return 2
    wrong = check_decisions(contents)
    if wrong:
        print(f"{fail} {wrong}", file=sys.stderr)
        return 2
    for problem in contents.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not contents.decisions:
        print(f"steproute report: {args.log} holds no decisions", file=sys.stderr)
        return 1
    return _report_out(args, contents, config, since)


def _report_out(args: argparse.Namespace, contents: LogContents, config: RouterConfig | None,
                since: float | None) -> int:
    import json

    from steproute._cli_feedback import feedback_summary
    from steproute.report import build_report, config_drift, format_drift, format_report, report_json, write_html

    tenants = tuple(args.tenant or ())
    report = build_report(contents, since=since, tenants=tenants,
                          tiers=config.tier_names() if config else (), baseline=config.baseline_tier() if config else None)
    if not report.contents.decisions:
        what = " and ".join(w for w, on in (("--since", since is not None), ("--tenant", bool(tenants))) if on)
        print(f"steproute report: {args.log}: no decisions match {what} ({len(contents.decisions)} in the log)",
              file=sys.stderr)
        return 1
    drift = config_drift(report.contents, config) if config is not None else None
    if args.by == "arm":  # an A/B experiment's arms, per step (steproute/_report_arms.py)
        from steproute.report import arm_report, arm_report_json, format_arm_report

        arms = arm_report(report.contents)
        if not arms.experiments:
            print(f"steproute report: {args.log}: no decision carries an experiment arm (see 'experiment:' in "
                  "docs/configuration.md)", file=sys.stderr)
            return 1
        print(json.dumps(arm_report_json(arms), indent=2) if args.json else format_arm_report(arms))
    elif args.json:
        print(json.dumps(report_json(report, drift), indent=2))
    else:
        print(format_report(report, under_table=[feedback_summary(report.contents)]))
        if drift is not None:
            print()
            print(format_drift(drift))
    if args.html:
        try:
            print(f"wrote {write_html(report, args.html, drift=drift)}", file=sys.stderr if args.json else sys.stdout)
        except OSError as exc:
            print(f"steproute report: cannot write --html {args.html}: {exc.strerror}", file=sys.stderr)
            return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """The ``steproute`` command: every input error is one line on stderr and a non-zero exit
    status, never a traceback. When the reader of the output goes away (``steproute report
    log | head``) the command stops quietly, with exit status 141 as a process ended by SIGPIPE.

    Example:
        >>> main(["check", "examples/steproute.yaml"])  # doctest: +SKIP
        0
    """
    try:
        code = _main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # the reader went away: it has all it wanted, so say nothing (stderr may be the same pipe),
        # and point stdout at /dev/null so that the flush at exit does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141
    except RecursionError:
        print("steproute: the input is nested too deeply", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    """The ``steproute`` argument parser (every subcommand has a description, examples, and
    help on every option).

    Example:
        >>> build_parser().parse_args(["report", "decisions.jsonl"]).command
        'report'
    """
    from steproute._cli_parsers import build_parser as build

    return build()


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if args.command == "demo":
        from steproute._cli_feedback import log_problem
        from steproute._demo import main as demo

        problem = log_problem(args.log) if args.log else None
        if problem:
            print(f"steproute demo: {problem}", file=sys.stderr)
            return 2
        return demo(log=args.log)
    if args.command == "local":
        return _local(args)
    if args.command == "report":
        return _report(args)
    if args.command == "feedback":
        from steproute._cli_feedback import run as feedback

        return feedback(args)
    if args.command == "drift":
        from steproute._cli_drift import run as drift

        return drift(args)
    if args.command in ("convert", "train", "eval", "calibrate"):
        from steproute._cli_eval import run

        return run(args)
    if getattr(args, "run", None) is not None:  # a subcommand that names its own runner (replay)
        return int(args.run(args))
    return _check(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
