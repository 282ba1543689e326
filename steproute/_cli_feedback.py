"""``steproute feedback DECISION_ID QUALITY [--log PATH]``: rate a logged decision from the shell.

The entry is the one ``StepRouter.feedback()`` writes (``steproute._feedback.feedback_entry``),
appended by the decision log's own writer (:class:`~steproute.decision_log.JsonlDecisionLog`:
one ``O_APPEND`` write per line, a newline first when the file's last line was cut short), so
it can share the file with a running router. Everything is checked before the file is opened
for writing: a refused command leaves the log byte for byte as it was.

A decision id that the log does not hold is refused (exit status 1) unless ``--force``: a
feedback line that names no decision of its file is read by nothing (``report`` and ``convert``
join feedback to decisions within one file), and the usual cause is a mistyped id or the wrong
file. Ids are never echoed in messages (they can be user-chosen).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from steproute._cli_kinds import wrong_kind
from steproute._feedback import feedback_entry, parse_quality
from steproute.decision_log import JsonlDecisionLog, LogContents, read_log

__all__ = ["add_parser", "feedback_summary", "log_problem", "run"]

WRITE_TIMEOUT_S = 10.0
"""How long the command waits for the entry to reach the file before it says it did not."""


def add_parser(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``feedback`` to the subcommands (``command`` makes a parser with a description and examples)."""
    p = command(sub, "feedback", "rate a logged decision: append a feedback entry to the decision log",
                "Attach a quality in [0, 1] to a decision of a decision log, as StepRouter.feedback() does: "
                "'steproute report' counts the rated decisions and 'steproute convert --from log' turns them into "
                "rows to train on. The decision must be in the log (--force records it anyway); rating a "
                "decision again replaces its earlier rating.",
                "steproute feedback d-57c7692f99e0-10 good",
                "steproute feedback d-57c7692f99e0-10 0.4 --log logs/decisions.jsonl")
    p.add_argument("decision_id", metavar="DECISION_ID", help="the decision's id (its 'id' in the log, Decision.id)")
    p.add_argument("quality", metavar="QUALITY", help="good (1), bad (0), or a number in [0, 1]")
    p.add_argument("--log", metavar="PATH", default="decisions.jsonl",
                   help="the decision log holding the decision (default: decisions.jsonl in this folder)")
    p.add_argument("--force", action="store_true",
                   help="record the feedback even when the log holds no decision with that id (or no log exists)")


def _fail(message: str, code: int = 2) -> int:
    print(f"steproute feedback: {message}", file=sys.stderr)
    return code


def log_problem(path: str) -> str | None:
    """Why entries must not be appended to ``path`` (an existing file that is not a decision
    log, or not a regular file), as one line; ``None`` when it is a decision log or absent.

    Example:
        >>> log_problem("/") is not None, log_problem("/no/such/decisions.jsonl")
        (True, None)
    """
    if os.path.exists(path) and not os.path.isfile(path):
        return f"--log {path}: not a regular file (a directory or device); give a decision log"
    wrong = wrong_kind(path, "decision log", "--log ")
    return wrong.replace(" not a decision log;", " not a decision log: nothing written;") if wrong else None


def _read(path: str, force: bool) -> LogContents | int:
    """The log's contents; an exit status when it cannot be used."""
    problem = log_problem(path)
    if problem:
        return _fail(problem)
    if not os.path.exists(path):
        if force:
            return LogContents()
        return _fail(f"{path}: no such decision log (give --log the file the router writes, "
                     "StepRouter(decision_log=...))")
    try:
        return read_log(path)
    except OSError as exc:
        return _fail(f"cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError:
        return _fail(f"{path}: not UTF-8 text; a decision log is JSON lines")


def run(args: argparse.Namespace) -> int:
    """Check, then append one feedback entry; the exit status."""
    try:
        quality = parse_quality(args.quality)
        entry = feedback_entry(args.decision_id, quality)
    except ValueError as exc:
        return _fail(str(exc))
    contents = _read(args.log, args.force)
    if isinstance(contents, int):
        return contents
    matches = [d for d in contents.decisions if d["id"] == args.decision_id]
    if not matches and not args.force:
        return _fail(f"{args.log} holds no decision with that id ({len(contents.decisions)} decisions); nothing "
                     "recorded. Check the id, or give --log the file the decision was written to; --force records "
                     "it anyway", 1)
    if not matches:
        print(f"warning: {args.log} holds no decision with that id; recording it anyway (--force): 'report' and "
              "'convert' only use feedback whose decision is in the same file", file=sys.stderr)
    elif matches[-1].get("error"):
        print(f"warning: that decision failed ({matches[-1]['error']}): 'convert --from log' makes no row of it",
              file=sys.stderr)
    earlier = contents.feedback.get(args.decision_id)
    if earlier is not None:
        print(f"warning: this replaces the decision's earlier feedback (quality {earlier['quality']:g}): the last "
              "one counts", file=sys.stderr)
    problem = _append(args.log, entry)
    if problem:
        return _fail(f"not recorded: {problem}", 1)
    where = (f" for the decision at step {matches[-1].get('step')} (tier {matches[-1].get('tier')}, model "
             f"{matches[-1].get('model')})" if matches else "")
    print(f"recorded quality {quality:g}{where} in {args.log}")
    return 0


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _append(path: str, entry: dict[str, Any]) -> str | None:
    """Append ``entry`` with the decision log's writer; why it was not written, or ``None``."""
    steproute_logger = logging.getLogger("steproute")
    collect = _Collect()
    steproute_logger.addHandler(collect)  # the writer's warning becomes this command's one line
    try:
        log = JsonlDecisionLog(path, flush_interval_s=0.0)
        log.write(entry)
        written = log.flush(timeout=WRITE_TIMEOUT_S)
        log.close(timeout=WRITE_TIMEOUT_S)
    finally:
        steproute_logger.removeHandler(collect)
    if log.dropped:
        why = collect.messages[0].split("; dropped", 1)[0] if collect.messages else "the write failed"
        return why.removeprefix(f"decision log {path}: ")
    if not written:
        return f"the file did not take the entry within {WRITE_TIMEOUT_S:g} s"
    return None


def feedback_summary(contents: LogContents) -> str:
    """How many of a log's decisions are rated, their mean quality, and feedback naming no decision.

    Example:
        >>> feedback_summary(LogContents(decisions=[{"id": "a"}, {"id": "b"}], feedback={"a": {"quality": 0.5}}))
        'feedback: 1 of 2 decisions rated (mean quality 0.50)'
    """
    ids = {d["id"] for d in contents.decisions}
    rated = [f["quality"] for i, f in contents.feedback.items() if i in ids]
    orphans = len(contents.feedback) - len(rated)
    if rated:
        line = f"feedback: {len(rated)} of {len(ids)} decisions rated (mean quality {sum(rated) / len(rated):.2f})"
    else:
        line = f"feedback: none of the {len(ids)} decisions rated (steproute feedback DECISION_ID good|bad|0..1)"
    if orphans:
        line += f"; {orphans} feedback entr{'y names' if orphans == 1 else 'ies name'} no decision in this log"
    return line
