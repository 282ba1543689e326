"""The evaluation format: one JSON object per line, one line per query (see DESIGN.md).

.. code-block:: json

    {"id": "mmlu-astronomy-17", "step": "mmlu", "kind": "astronomy",
     "messages": [{"role": "user", "content": "..."}],
     "outcomes": {"cheap/model": {"quality": 1.0, "cost_usd": 0.00012, "response": "..."},
                  "strong/model": {"quality": 1.0, "cost_usd": 0.00190}}}

Reading never drops a bad row silently: every problem is reported with its line number, and a
file with problems raises :class:`DataError` unless the caller asks to skip them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DataError", "EvalRow", "Loaded", "Outcome", "read_rows", "write_rows"]


class DataError(ValueError):
    """An evaluation file has rows that cannot be used; ``problems`` lists each with its line."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{source}: {len(self.problems)} bad row(s):\n{shown}{more}")


@dataclass(frozen=True)
class Outcome:
    """How one model did on one query."""

    quality: float
    """In [0, 1]: correctness, or a judge's score scaled."""
    cost_usd: float = 0.0
    """What the call cost (or would have cost)."""
    response: str | None = None
    """The model's answer text, when recorded (material for cascade signals)."""


@dataclass(frozen=True)
class EvalRow:
    """One query and how each model did on it."""

    id: str
    messages: tuple[Mapping[str, Any], ...]
    outcomes: Mapping[str, Outcome]
    """Keyed by model name."""
    step: str = "default"
    kind: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    """Anything else the source carried (subject, category, turn), kept for reports."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "step": self.step}
        if self.kind is not None:
            out["kind"] = self.kind
        out["messages"] = [dict(m) for m in self.messages]
        out["outcomes"] = {
            model: {"quality": o.quality, "cost_usd": o.cost_usd, **({"response": o.response} if o.response is not None else {})}
            for model, o in self.outcomes.items()
        }
        if self.meta:
            out["meta"] = dict(self.meta)
        return out


@dataclass
class Loaded:
    """What a loader produced: rows, problems (``file line N: ...``) and what it dropped."""

    rows: list[EvalRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    contaminated: int = 0


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {type(value).__name__} {str(value)[:40]!r}")
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value}")
    return float(value)


def parse_row(obj: Any, known_models: Iterable[str] | None = None) -> EvalRow:
    """One row from its decoded JSON; ``ValueError`` names the field that is wrong."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"a row must be a JSON object, got {type(obj).__name__}")
    row_id = obj.get("id")
    if not isinstance(row_id, (str, int)) or isinstance(row_id, bool) or row_id == "":
        raise ValueError("'id' is missing or not a string")
    messages = obj.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, Mapping) and "role" in m for m in messages):
        raise ValueError("'messages' must be a list of {role, content} objects")
    outcomes = obj.get("outcomes")
    if not isinstance(outcomes, Mapping) or not outcomes:
        raise ValueError("'outcomes' is missing or empty")
    known = None if known_models is None else set(known_models)
    parsed: dict[str, Outcome] = {}
    for model, out in outcomes.items():
        if known is not None and model not in known:
            raise ValueError(f"outcomes: unknown model {model!r} (known: {', '.join(sorted(known))})")
        if not isinstance(out, Mapping) or "quality" not in out:
            raise ValueError(f"outcomes.{model}: 'quality' is missing")
        quality = _number(out["quality"], f"outcomes.{model}.quality")
        if not 0.0 <= quality <= 1.0:
            raise ValueError(f"outcomes.{model}.quality must be in [0, 1], got {quality}")
        cost = _number(out.get("cost_usd", 0.0), f"outcomes.{model}.cost_usd")
        if cost < 0:
            raise ValueError(f"outcomes.{model}.cost_usd must not be negative, got {cost}")
        response = out.get("response")
        if response is not None and not isinstance(response, str):
            raise ValueError(f"outcomes.{model}.response must be a string")
        parsed[str(model)] = Outcome(quality, cost, response)
    step = obj.get("step") or "default"
    kind = obj.get("kind")
    if not isinstance(step, str) or (kind is not None and not isinstance(kind, str)):
        raise ValueError("'step' and 'kind' must be strings")
    meta = obj.get("meta") or {}
    return EvalRow(str(row_id), tuple(dict(m) for m in messages), parsed, step, kind, dict(meta))


def read_rows(path: str | os.PathLike[str], *, models: Iterable[str] | None = None,
              skip_bad: bool = False) -> tuple[list[EvalRow], list[str]]:
    """Rows of an evaluation file, and the problems found (``"line 7: ..."``).

    With ``skip_bad=False`` (the default) any problem raises :class:`DataError` listing every
    bad line; with ``skip_bad=True`` the bad rows are left out and returned as problems, so the
    caller can report them. ``models`` restricts the accepted model names.
    """
    rows: list[EvalRow] = []
    problems: list[str] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = parse_row(json.loads(line), models)
            except json.JSONDecodeError as exc:
                problems.append(f"line {number}: not JSON ({exc.msg} at column {exc.colno})")
                continue
            except ValueError as exc:
                problems.append(f"line {number}: {exc}")
                continue
            if row.id in seen:
                problems.append(f"line {number}: duplicate id {row.id!r}")
                continue
            seen.add(row.id)
            rows.append(row)
    if problems and not skip_bad:
        raise DataError(os.fspath(path), problems)
    return rows, problems


def write_rows(rows: Iterable[EvalRow], path: str | os.PathLike[str]) -> int:
    """Write rows as JSON lines (atomically: a temporary file renamed into place); returns the count."""
    tmp = f"{os.fspath(path)}.tmp-{os.getpid()}"
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return count
