"""Rows of the evaluation format from steproute's own decision log (with feedback attached)."""

from __future__ import annotations

import os

from steproute.decision_log import read_log, to_evaluation
from steproute.evaluation._format import Loaded, parse_row

__all__ = ["from_decision_log"]


def from_decision_log(path: str | os.PathLike[str]) -> Loaded:
    """One row per decision that got feedback (``router.feedback(id, quality)``).

    Each row holds the one model that answered: enough to train a ``classifier`` (each tier's
    estimate learns from the calls that tier answered), not to replay counterfactuals. Bad log
    lines come back as problems with their line numbers, and so does the count of decisions
    without feedback, so nothing disappears unseen. The log must have been written with
    ``include_prompts=True`` for the rows to carry messages.
    """
    contents = read_log(path)
    loaded = Loaded(problems=[str(p) for p in contents.problems])
    with_feedback = 0
    for raw in to_evaluation(contents):
        with_feedback += 1
        try:
            row = parse_row(raw)
        except ValueError as exc:
            loaded.problems.append(f"decision {raw.get('id')!r}: {exc}")
            continue
        if not row.messages:
            loaded.problems.append(f"decision {row.id!r}: no messages (write the log with include_prompts=True)")
            continue
        loaded.rows.append(row)
    unlabelled = len(contents.decisions) - with_feedback
    if unlabelled:
        loaded.problems.append(f"{unlabelled} decision(s) have no feedback (or failed) and give no row")
    return loaded
