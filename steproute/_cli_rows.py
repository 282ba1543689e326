"""The one-line errors of the offline commands (``fail``, ``one_line``), and reading the
``--data`` of ``steproute train | eval | calibrate``: rows of the evaluation format, or (for
``train`` and ``calibrate``) a decision log whose rated and shadowed decisions become rows."""

from __future__ import annotations

import sys

__all__ = ["fail", "one_line", "read_data", "read_log_rows"]


def fail(command: str, message: str, code: int = 2) -> int:
    print(f"steproute {command}: {one_line(message)}", file=sys.stderr)
    return code


def one_line(error: object) -> str:
    """An error as one line: a ``ConfigError``'s problems joined by ``; ``.

    Example:
        >>> from steproute.errors import ConfigError, ConfigProblem
        >>> one_line(ConfigError([ConfigProblem("default", "unknown tier 'gold'")], source="s.yaml"))
        "invalid steproute configuration in s.yaml (1 problem): default: unknown tier 'gold'"
    """
    problems = getattr(error, "problems", None)
    if problems is not None:
        head = str(error).split("\n", 1)[0].rstrip(":")
        return f"{head}: " + "; ".join(" ".join(str(p).split()) for p in problems)
    return " ".join(str(error).split())


def read_data(path: str, command: str) -> tuple[list, int]:
    """The rows ``--data PATH`` holds, or the exit code of a failure (said on stderr)."""
    from steproute._cli_kinds import kind_of, wrong_kind
    from steproute.evaluation import DataError, read_rows

    if command in ("train", "calibrate") and kind_of(path) == "decision log":
        return read_log_rows(path, command)
    wrong = wrong_kind(path, "rows", "--data ")
    if wrong:
        return [], fail(command, wrong)
    try:
        rows, _ = read_rows(path)
    except DataError as exc:  # one line per bad row, by design
        print(f"steproute {command}: {exc}", file=sys.stderr)
        return [], 2
    except UnicodeDecodeError:
        return [], fail(command, f"{path} is not UTF-8 text")
    except OSError as exc:
        return [], fail(command, f"cannot read {path}: {exc.strerror}")
    if not rows:
        return [], fail(command, f"{path} holds no rows")
    return rows, 0


def read_log_rows(path: str, command: str) -> tuple[list, int]:
    """Rows from a decision log: its rated decisions and shadow results, its problems as warnings."""
    from steproute.evaluation import from_decision_log

    try:
        loaded = from_decision_log(path)
    except (OSError, ValueError) as exc:
        return [], fail(command, str(exc))
    for problem in loaded.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not loaded.rows:
        return [], fail(command, f"{path}: a decision log with no usable rows (rate decisions with steproute "
                                  "feedback, or shadow a step; write the log with messages: true)")
    print(f"read {len(loaded.rows)} rows from the decision log {path} (feedback on {loaded.rated} decisions, "
          f"shadow results on {loaded.shadowed})", file=sys.stderr)
    if command != "calibrate":
        return loaded.rows, 0
    # calibrating replays every tier on every row: only the calls with every model's outcome
    # (the shadowed ones) can be replayed; the rest are left out, and said
    models = {model for row in loaded.rows for model in row.outcomes}
    complete = [row for row in loaded.rows if models <= row.outcomes.keys()]
    if not complete:
        return [], fail(command, f"{path}: no decision has every model's outcome ({', '.join(sorted(models))}); "
                                  "shadow the step so calls are answered on both tiers")
    if len(complete) < len(loaded.rows):
        print(f"note: calibrating on the {len(complete)} rows with every model's outcome; {len(loaded.rows) - len(complete)} "
              "rows hold only some models' outcomes and are left out", file=sys.stderr)
    return complete, 0
