"""The ``steproute`` command."""

from __future__ import annotations

import argparse
import os
import signal
import stat
import sys
import time

from steproute.errors import ConfigError


def _check(args: argparse.Namespace) -> int:
    from steproute.config_check import check_file, read_env_file

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
    from steproute.config import load_config
    from steproute.decision_log import read_log
    from steproute.report import config_drift, format_drift, format_table, summarise, write_html

    config = None
    if args.config:
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
    print(format_table(summarise(contents)))
    drift = config_drift(contents, config) if config is not None else None
    if drift is not None:
        print()
        print(format_drift(drift))
    if args.html:
        try:
            print(f"wrote {write_html(contents, args.html, drift=drift)}")
        except OSError as exc:
            print(f"steproute report: cannot write --html {args.html}: {exc.strerror}", file=sys.stderr)
            return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """The ``steproute`` command: every input error is one line on stderr and a non-zero exit
    status, never a traceback (a closed stdout, ``steproute report log | head``, included).

    Example:
        >>> main(["check", "examples/steproute.yaml"])  # doctest: +SKIP
        0
    """
    try:
        code = _main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # the reader went away: say nothing more on stdout, and do not fail again at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        print("steproute: the output was closed before everything was written", file=sys.stderr)
        return 141
    except RecursionError:
        print("steproute: the input is nested too deeply", file=sys.stderr)
        return 2


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="steproute", description="Per-step model-tier routing for LangGraph.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run a routed 5-step agent and print its per-step bill")
    check = sub.add_parser("check", help="validate a configuration file and show its tiers and prices")
    check.add_argument("config", help="path to steproute.yaml (or .toml)")
    check.add_argument("--env", metavar="FILE", help="read ${VAR} values from FILE (KEY=VALUE lines) instead of "
                                                     "the environment")
    check.add_argument("--placeholders", action="store_true",
                       help="check a file whose ${VAR}s are unset: each is a warning, not an error")
    local = sub.add_parser("local", help="serve local llama.cpp models as tiers on 127.0.0.1 until Ctrl-C")
    local.add_argument("--tier", action="append", metavar="TIER=MODEL",
                       help="a tier and its model (repeatable; default: fast=smollm2-135m strong=qwen2.5-coder-0.5b)")
    local.add_argument("--threads", type=int, default=2, help="CPU threads per server (default 2)")
    local.add_argument("--prepare", action="store_true", help="only build llama-server and fetch the weights")
    local.add_argument("--list", action="store_true", help="list the available models")
    report = sub.add_parser("report", help="per-step cost, savings, tier mix and escalation rate of a decision log")
    report.add_argument("log", help="a decision log (JSON lines) written by StepRouter(decision_log=...)")
    report.add_argument("--html", metavar="OUT", help="also write a self-contained HTML page with charts")
    report.add_argument("--config", metavar="FILE",
                        help="also list configured steps the log never called, and logged steps with no configuration")
    from steproute._cli_eval import add_parsers

    add_parsers(sub)
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if args.command == "demo":
        from steproute._demo import main as demo

        return demo()
    if args.command == "local":
        return _local(args)
    if args.command == "report":
        return _report(args)
    if args.command in ("convert", "train", "eval", "calibrate"):
        from steproute._cli_eval import run

        return run(args)
    return _check(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
