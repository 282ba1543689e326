"""Rows of the evaluation format from steproute's own decision log: the live answer's feedback
and the shadow results (the same call answered on another tier and judged) as each call's
outcomes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from steproute.decision_log import LogContents, read_log, to_evaluation
from steproute.evaluation._format import Loaded, parse_row

__all__ = ["LogRows", "from_decision_log"]


@dataclass
class LogRows(Loaded):
    """:class:`Loaded` rows from a decision log, with how many decisions gave them."""

    rated: int = 0
    """Decisions whose live answer has feedback."""
    shadowed: int = 0
    """Decisions with at least one shadow result that became an outcome."""


def from_decision_log(path: str | os.PathLike[str]) -> LogRows:
    """One row per decision that got feedback (``router.feedback(id, quality)``) or a shadow
    result naming its model.

    A row's outcomes are the live model's (its feedback as quality, the call's cost) and each
    shadow result's model (its judged quality and the shadow call's cost): enough to train a
    ``classifier`` (each tier's estimate learns from the calls that tier answered) and, on the
    calls shadowed, to replay both tiers. Bad log lines come back as problems with their line
    numbers, and so do shadow results that name no model and the count of decisions that give no
    row, so nothing disappears unseen. The log must have been written with ``messages: true``
    (``include_prompts=True``) for the rows to carry messages.

    Example:
        >>> import json, pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "decisions.jsonl"
        >>> entries = [{"type": "decision", "id": "d-1", "step": "plan", "model": "small", "cost_usd": 0.001,
        ...             "messages": [{"role": "user", "content": "2+2?"}]},
        ...            {"type": "feedback", "id": "d-1", "quality": 0.0},
        ...            {"type": "shadow", "id": "d-1", "tier": "strong", "model": "big", "quality": 1.0, "cost_usd": 0.01}]
        >>> _ = path.write_text("".join(json.dumps(e) + "\\n" for e in entries))
        >>> rows = from_decision_log(path).rows
        >>> sorted((model, o.quality) for model, o in rows[0].outcomes.items())
        [('big', 1.0), ('small', 0.0)]
    """
    contents = read_log(path)
    loaded = LogRows(problems=[str(p) for p in contents.problems])
    shadows = _shadow_outcomes(contents, loaded.problems)
    raws = {raw["id"]: raw for raw in to_evaluation(contents)}
    loaded.rated = len(raws)
    for decision in contents.decisions:
        on_it = shadows.get(decision["id"])
        if not on_it or decision.get("error"):
            continue
        loaded.shadowed += 1
        raw = raws.setdefault(decision["id"], {"id": decision["id"], "step": decision.get("step"),
                                              "kind": decision.get("kind"), "messages": decision.get("messages", []),
                                              "outcomes": {}})
        raw["outcomes"] = {**on_it, **raw["outcomes"]}  # the live answer's own rating wins over a shadow of it
    for raw in raws.values():
        try:
            row = parse_row(raw)
        except ValueError as exc:
            loaded.problems.append(f"decision {raw.get('id')!r}: {exc}")
            continue
        if not row.messages:
            loaded.problems.append(f"decision {row.id!r}: no messages (write the log with messages: true, "
                                   "or include_prompts=True)")
            continue
        loaded.rows.append(row)
    unlabelled = len(contents.decisions) - len(raws)
    if unlabelled:
        loaded.problems.append(f"{unlabelled} decision(s) have no feedback or shadow result (or failed) and give no row")
    return loaded


def _shadow_outcomes(contents: LogContents, problems: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per decision id, the outcomes its shadow results give, by model."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for shadow in contents.shadows:
        model = shadow.get("model")
        if not isinstance(model, str) or not model:
            problems.append(f"shadow result on decision {shadow['id']!r} names no model (its tier "
                            f"{shadow['tier']!r} only): not an outcome")
            continue
        cost = shadow.get("cost_usd")
        out.setdefault(shadow["id"], {})[model] = {
            "quality": float(shadow["quality"]),
            "cost_usd": cost if isinstance(cost, (int, float)) and not isinstance(cost, bool) else 0.0}
    return out
