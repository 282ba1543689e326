"""The decision log: one JSON line per routed call, quality feedback attached later.

Writing never blocks a call and never fails one: entries go on a bounded queue that a
background thread appends to the file. An entry that cannot be written (the file cannot be
opened, the disk is full, the queue is full, the log is closed) is dropped, counted in
:attr:`JsonlDecisionLog.dropped` and warned about once per kind on the ``steproute`` logger.
Prompt text is logged only when asked for (``include_prompts=True``). A log with feedback
converts to the evaluation format (one row per query, outcomes per model), which the
evaluation harness and learned policies read.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "decisions.jsonl"
    >>> log = JsonlDecisionLog(path)
    >>> log.write({"type": "decision", "id": "d-1", "step": "plan", "tier": "fast"})
    >>> log.close()
    >>> [e["id"] for e in read_log(path).decisions], log.dropped
    (['d-1'], 0)
"""

from __future__ import annotations

import atexit
import errno
import json
import logging
import os
import queue
import stat
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from opentelemetry import metrics

from steproute.errors import shown

__all__ = ["MAX_LINE_BYTES", "DecisionLog", "JsonlDecisionLog", "LogContents", "read_log", "to_evaluation"]

logger = logging.getLogger("steproute")

EXIT_WAIT_S = 5.0
"""At interpreter exit, how long the log waits for its writer to finish (then exit goes on)."""

MAX_LINE_BYTES = 16 * 1024 * 1024
"""The longest line :func:`read_log` reads (16 MiB: an entry written with ``include_prompts``
holds the whole prompt, which for a long-context model can be megabytes). A longer line is
skipped without being held in memory, counted and reported with its line number."""


@runtime_checkable
class DecisionLog(Protocol):
    """Where decision entries go. ``write`` must return at once (no I/O on the caller's thread)."""

    include_prompts: bool

    def write(self, entry: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


_STOP = object()
_WHY = {
    "open": "the file cannot be opened",
    "write": "writing to the file failed",
    "queue_full": "more than max_pending entries were waiting for the writer",
    "closed": "the log was closed",
    "unserialisable": "an entry could not be written as JSON",
}


class JsonlDecisionLog:
    """Appends entries to a JSON-lines file from a background (daemon) thread.

    The guarantees (tested in ``tests/unit/test_decision_log_faults.py``):

    - ``write`` never blocks longer than ``max_wait_s`` (default 0: not at all) and never
      raises for I/O: when ``max_pending`` entries already wait, the entry is dropped.
    - An I/O error (open, write, flush) never stops the writer: the entries it could not write
      are dropped, and the file is opened again for the next batch, so a path that becomes
      writable starts working.
    - Every dropped entry is counted: :attr:`dropped` in all, :attr:`drops` by kind
      (``open``, ``write``, ``queue_full``, ``closed``), and on the counter
      ``steproute.decision_log.dropped`` of the global OpenTelemetry meter provider. The first
      drop of each kind is one warning on the ``steproute`` logger.
    - ``write`` after ``close()`` is such a drop (kind ``closed``), not an error: a routed call
      never fails because of its log.
    - A value JSON cannot hold is written as ``str(value)``, or as
      ``"<unserialisable TypeName>"`` when even that fails (a dict with non-string keys, a
      cycle); the rest of the entry is kept (one warning).
    - A new entry always starts on a new line: a file whose last line was cut short (a crash,
      a full disk) gets a newline first; the cut line is left as it is, and
      :func:`read_log` reports it.
    - ``flush()`` and ``close()`` wait at most ``timeout`` seconds; at interpreter exit the
      log waits at most :data:`EXIT_WAIT_S`, so exit is never hung by a stuck disk.

    Example:
        >>> import tempfile, pathlib
        >>> log = JsonlDecisionLog(pathlib.Path(tempfile.mkdtemp()) / "d.jsonl", max_pending=1000)
        >>> log.write({"type": "feedback", "id": "d-1", "quality": 1.0})
        >>> log.flush(), log.dropped, log.drops
        (True, 0, {})
        >>> log.close()
    """

    def __init__(self, path: str | os.PathLike[str], *, include_prompts: bool = False,
                 flush_interval_s: float = 0.05, max_pending: int = 50_000, max_wait_s: float = 0.0) -> None:
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError("JsonlDecisionLog: max_pending must be at least 1 (an integer)")
        if isinstance(max_wait_s, bool) or not isinstance(max_wait_s, (int, float)) or not 0 <= max_wait_s <= 60:
            raise ValueError("JsonlDecisionLog: max_wait_s must be a number of seconds in [0, 60]")
        self.path = Path(path)
        self.include_prompts = include_prompts
        self.flush_interval_s = flush_interval_s
        """How long the writer gathers entries before writing them (entries are on disk within
        about this long, and at ``flush()``/``close()``)."""
        self.max_wait_s = float(max_wait_s)
        """How long ``write`` may wait for room when ``max_pending`` entries are waiting."""
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._closed = False
        self._lock = threading.Lock()
        self._drops: dict[str, int] = {}
        self._warned: set[str] = set()
        self._counter: Any = None
        self._fd: int | None = None
        self._thread = threading.Thread(target=self._run, name="steproute-decision-log", daemon=True)
        self._thread.start()
        # a weak reference: the at-exit hook does not keep a log (and its thread) alive
        ref = weakref.ref(self)

        def close_at_exit() -> None:
            log = ref()
            if log is not None:
                log.close(timeout=EXIT_WAIT_S)

        atexit.register(close_at_exit)

    # -- the caller's side ------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """How many entries were not written, of every kind."""
        with self._lock:
            return sum(self._drops.values())

    @property
    def drops(self) -> dict[str, int]:
        """The dropped entries by kind: ``open``, ``write``, ``queue_full``, ``closed``."""
        with self._lock:
            return dict(self._drops)

    def write(self, entry: Mapping[str, Any]) -> None:
        """Queue one entry (a copy is taken); never raises for I/O, never blocks past ``max_wait_s``."""
        if self._closed:
            self._drop("closed", 1)
            return
        try:
            if self.max_wait_s:
                self._queue.put(dict(entry), timeout=self.max_wait_s)
            else:
                self._queue.put_nowait(dict(entry))
        except queue.Full:
            self._drop("queue_full", 1)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every entry queued so far was written or dropped, at most ``timeout`` s.

        Returns whether the writer got there in time (always ``False`` once closed).
        """
        if self._closed or not self._thread.is_alive():
            return False
        deadline = time.monotonic() + timeout
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout=max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued and stop the writer, waiting at most ``timeout`` seconds.

        Later writes are dropped and counted (kind ``closed``). Closing twice does nothing.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return  # the writer is stuck: it is a daemon thread, exit does not wait for it
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))

    # -- counting and warning ---------------------------------------------------------------

    def _drop(self, kind: str, n: int, detail: str = "") -> None:
        with self._lock:
            self._drops[kind] = self._drops.get(kind, 0) + n
            first = kind not in self._warned
            self._warned.add(kind)
        self._count(kind, n)
        if first:
            logger.warning("decision log %s: %s%s; dropped %d %s (counted in .dropped; further drops of "
                           "this kind are counted, not logged)", self.path, _WHY[kind], detail, n,
                           "entry" if n == 1 else "entries")

    def _count(self, kind: str, n: int) -> None:
        try:
            if self._counter is None:
                self._counter = metrics.get_meter("steproute").create_counter(
                    "steproute.decision_log.dropped", unit="{entry}",
                    description="Decision-log entries that could not be written")
            self._counter.add(n, {"steproute.decision_log.reason": kind})
        except Exception:
            pass

    def _warn_once(self, kind: str, message: str, *args: Any) -> None:
        with self._lock:
            if kind in self._warned:
                return
            self._warned.add(kind)
        logger.warning(message, *args)

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
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
            lines: list[bytes] = []
            stop = False
            for entry in batch:
                if entry is _STOP:
                    stop = True
                elif isinstance(entry, threading.Event):
                    self._write(lines)
                    lines = []
                    entry.set()
                else:
                    try:
                        lines.append(self._line(entry))
                    except Exception as exc:
                        self._drop("unserialisable", 1, f" ({type(exc).__name__})")
            self._write(lines)
            if stop:
                self._close_file()
                self._drain_after_stop()
                return

    def _drain_after_stop(self) -> None:
        """Count the entries a write racing ``close()`` queued after the stop."""
        late = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, threading.Event):
                item.set()
            elif item is not _STOP:
                late += 1
        if late:
            self._drop("closed", late)

    def _line(self, entry: dict[str, Any]) -> bytes:
        try:
            text = json.dumps(entry, ensure_ascii=False, default=str)
        except Exception:
            text = json.dumps(self._salvage(entry), ensure_ascii=False, default=str)
        try:
            return (text + "\n").encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: JSON's \u escapes hold it
            return (json.dumps(json.loads(text)) + "\n").encode("ascii")

    def _salvage(self, entry: dict[str, Any]) -> dict[str, Any]:
        """The entry with each top-level value JSON cannot hold replaced by a marker."""
        kept: dict[str, Any] = {}
        bad: list[str] = []
        for key, value in entry.items():
            name = key if isinstance(key, str) else _text(key)
            try:
                json.dumps(value, default=str)
                kept[name] = value
            except Exception:
                kept[name] = f"<unserialisable {type(value).__name__}>"
                bad.append(name)
        self._warn_once("unserialisable", "decision log %s: an entry's value(s) %s could not be written as JSON and "
                        "were replaced by '<unserialisable TypeName>' (the rest of the entry was written; "
                        "further cases are not logged)", self.path, ", ".join(shown(b) for b in bad[:5]))
        return kept

    def _write(self, lines: list[bytes]) -> None:
        if not lines:
            return
        if self._fd is None and not self._open(len(lines)):
            return
        data = b"".join(lines)
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])  # type: ignore[arg-type]
        except OSError as exc:
            whole, edge = 0, 0
            for line in lines:
                edge += len(line)
                if edge > done:
                    break
                whole += 1
            self._close_file()  # opened again for the next batch, with a newline first if cut
            self._drop("write", len(lines) - whole, f" ({_oserror(exc)})")
        except Exception as exc:
            self._close_file()
            self._drop("write", len(lines), f" ({type(exc).__name__})")

    def _open(self, n: int) -> bool:
        """Open the file for appending; a non-empty file not ending in a newline gets one."""
        fd = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            self._drop("open", n, f" ({_oserror(exc)})")
            return False
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_size > 0 and not _ends_in_newline(self.path, info.st_size):
                os.write(fd, b"\n")
        except OSError as exc:
            os.close(fd)
            self._drop("write", n, f" ({_oserror(exc)})")
            return False
        self._fd = fd
        return True

    def _close_file(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass


def _ends_in_newline(path: Path, size: int) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False  # cannot tell: one newline too many is a blank line, which readers skip
    try:
        return os.pread(fd, 1, size - 1) == b"\n"
    except OSError:
        return False
    finally:
        os.close(fd)


def _oserror(exc: OSError) -> str:
    code = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    return f"{code}: {os.strerror(exc.errno)}" if exc.errno else code


def _text(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


@dataclass
class LogContents:
    """A decision log read back: decisions in order, feedback by decision id, bad lines."""

    decisions: list[dict[str, Any]] = field(default_factory=list)
    feedback: dict[str, dict[str, Any]] = field(default_factory=dict)
    shadows: list[dict[str, Any]] = field(default_factory=list)
    """Shadow results: ``{"type": "shadow", "id": <decision id>, "tier", "quality"}`` (and
    optionally ``model``, ``cost_usd``): the same call answered on another tier beside the live
    one and judged. ``steproute report`` counts them in the quality of that tier."""
    problems: list[str] = field(default_factory=list)
    """One message per line that could not be used, with its line number."""
    too_long: int = 0
    """Lines longer than the reader's limit (:data:`MAX_LINE_BYTES`), skipped (each is in ``problems``)."""


_SKIP_CHUNK = 1024 * 1024


def _lines(path: str | os.PathLike[str], limit: int) -> Iterable[tuple[int, bytes | None]]:
    """``(number, line)`` for each line of the file; ``line`` is ``None`` for a line longer than
    ``limit`` bytes, which is read past in 1 MiB pieces and never held whole."""
    with open(path, "rb") as f:
        number = 0
        while True:
            line = f.readline(limit + 1)
            if not line:
                return
            number += 1
            if len(line) <= limit or (len(line) == limit + 1 and line.endswith(b"\n")):
                yield number, line
                continue
            while not line.endswith(b"\n"):
                line = f.readline(_SKIP_CHUNK)
                if not line:
                    break
            yield number, None


def read_log(path: str | os.PathLike[str], *, max_line_bytes: int = MAX_LINE_BYTES) -> LogContents:
    """Read a decision log. Lines that are not valid entries are reported, never dropped silently;
    a line longer than ``max_line_bytes`` is skipped in bounded memory, counted in
    :attr:`LogContents.too_long`, reported in ``problems`` and warned about (with its line
    number) on the ``steproute`` logger.

    Raises:
        OSError: the file cannot be read.
        UnicodeDecodeError: a line is not UTF-8.
    """
    contents = LogContents()
    skipped: list[str] = []
    for number, raw in _lines(path, max_line_bytes):
        if raw is None:
            contents.too_long += 1
            skipped.append(str(number))
            contents.problems.append(f"{path}:{number}: longer than {max_line_bytes:,} bytes, skipped")
            continue
        line = raw.decode("utf-8")
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
        elif entry.get("type") == "shadow":
            problem = _shadow_problem(entry)
            if problem:
                contents.problems.append(f"{path}:{number}: {problem}")
            else:
                contents.shadows.append(entry)
        elif entry.get("type") == "decision":
            contents.decisions.append(entry)
        else:
            contents.problems.append(f"{path}:{number}: unknown entry type {entry.get('type')!r}")
    if skipped:
        logger.warning("decision log %s: %d line(s) longer than %s bytes skipped (line %s%s)", path, len(skipped),
                       f"{max_line_bytes:,}", ", ".join(skipped[:5]), ", ..." if len(skipped) > 5 else "")
    return contents


def _shadow_problem(entry: dict[str, Any]) -> str | None:
    quality = entry.get("quality")
    if not isinstance(entry.get("tier"), str):
        return "shadow result needs a 'tier' (a string)"
    if isinstance(quality, bool) or not isinstance(quality, (int, float)) or not 0 <= quality <= 1:
        return "shadow result quality must be a number in [0, 1]"
    return None


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
