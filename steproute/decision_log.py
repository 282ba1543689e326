"""The decision log: one JSON line per routed call, quality feedback attached later.

Writing never blocks a call: entries go on a queue that a background thread appends to the
file. Prompt text is logged only when asked for (``include_prompts=True``). A log with
feedback converts to the evaluation format (one row per query, outcomes per model), which the
evaluation harness and learned policies read.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "decisions.jsonl"
    >>> log = JsonlDecisionLog(path)
    >>> log.write({"type": "decision", "id": "d-1", "step": "plan", "tier": "fast"})
    >>> log.close()
    >>> [e["id"] for e in read_log(path).decisions]
    ['d-1']
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = ["DecisionLog", "JsonlDecisionLog", "LogContents", "read_log", "to_evaluation"]


@runtime_checkable
class DecisionLog(Protocol):
    """Where decision entries go. ``write`` must return at once (no I/O on the caller's thread)."""

    include_prompts: bool

    def write(self, entry: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


_STOP = object()


class JsonlDecisionLog:
    """Appends entries to a JSON-lines file from a background thread.

    ``flush()`` waits until everything written so far is on disk; ``close()`` flushes and
    stops the thread (also done at interpreter exit). At most ``max_pending`` entries wait for
    the writer: beyond that, ``write`` waits for room (memory stays bounded when calls outpace
    the disk; measured in docs/benchmarks.md).
    """

    def __init__(self, path: str | os.PathLike[str], *, include_prompts: bool = False,
                 flush_interval_s: float = 0.05, max_pending: int = 50_000) -> None:
        self.path = Path(path)
        self.include_prompts = include_prompts
        self.flush_interval_s = flush_interval_s
        """How long the writer gathers entries before writing them (entries are on disk within
        about this long, and at ``flush()``/``close()``)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if max_pending < 1:
            raise ValueError("JsonlDecisionLog: max_pending must be at least 1")
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="steproute-decision-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def write(self, entry: Mapping[str, Any]) -> None:
        if not self._closed:
            self._queue.put(dict(entry))

    def flush(self) -> None:
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout=30)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with open(self.path, "a", encoding="utf-8") as out:
            while True:
                item = self._queue.get()
                if not isinstance(item, threading.Event) and item is not _STOP:
                    time.sleep(self.flush_interval_s)  # gather a batch: one wake-up, not one per call
                batch = [item]
                while True:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                for entry in batch:
                    if entry is _STOP:
                        out.flush()
                        return
                    if isinstance(entry, threading.Event):
                        out.flush()
                        entry.set()
                        continue
                    out.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
                out.flush()


@dataclass
class LogContents:
    """A decision log read back: decisions in order, feedback by decision id, bad lines."""

    decisions: list[dict[str, Any]] = field(default_factory=list)
    feedback: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    """One message per line that could not be used, with its line number."""


def read_log(path: str | os.PathLike[str]) -> LogContents:
    """Read a decision log. Lines that are not valid entries are reported, never dropped silently.

    Raises:
        OSError: the file cannot be read.
    """
    contents = LogContents()
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                contents.problems.append(f"{path}:{number}: not JSON ({exc.msg})")
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                contents.problems.append(f"{path}:{number}: not a decision-log entry (no 'id')")
            elif entry.get("type") == "feedback":
                quality = entry.get("quality")
                if isinstance(quality, bool) or not isinstance(quality, (int, float)) or not 0 <= quality <= 1:
                    contents.problems.append(f"{path}:{number}: feedback quality must be a number in [0, 1]")
                else:
                    contents.feedback[entry["id"]] = entry
            elif entry.get("type") == "decision":
                contents.decisions.append(entry)
            else:
                contents.problems.append(f"{path}:{number}: unknown entry type {entry.get('type')!r}")
    return contents


def to_evaluation(contents: LogContents) -> Iterable[dict[str, Any]]:
    """Rows of the evaluation format for the decisions that have feedback.

    Each row holds the one model that answered, with its quality and cost; rows from a log
    written without ``include_prompts`` have no messages.
    """
    for decision in contents.decisions:
        feedback = contents.feedback.get(decision["id"])
        if feedback is None or decision.get("error"):
            continue
        outcome: dict[str, Any] = {"quality": float(feedback["quality"]), "cost_usd": decision.get("cost_usd", 0.0)}
        if "response" in decision:
            outcome["response"] = decision["response"]
        yield {
            "id": decision["id"],
            "step": decision.get("step"),
            "kind": decision.get("kind"),
            "messages": decision.get("messages", []),
            "outcomes": {decision.get("model"): outcome},
        }
