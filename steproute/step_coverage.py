"""Configuration against reality: which ``steps:`` entries calls reach, said once in the log.

A configuration that names a step no call ever arrives under (an agent's name misspelled, a
node renamed, an agent factory that makes every call from its inner ``model`` node) silently
routes everything by the default policy. :class:`StepCoverage` notices: the first call of a
step name that matches no ``steps:`` entry logs one warning naming it and the configured
entries that have matched no call so far. ``steproute report --config`` lists both from a
decision log.

Example:
    >>> coverage = StepCoverage(["research_expert"])
    >>> coverage.planned("agent", None)          # logs a warning once
    >>> coverage.unmatched_entries()
    ['research_expert']
    >>> coverage.planned("research_expert", "research_expert")
    >>> coverage.unmatched_entries()
    []
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from steproute.errors import shown

__all__ = ["StepCoverage"]

logger = logging.getLogger("steproute")

_MAX_NAMES = 1000
"""Unconfigured step names remembered (and warned about) at most; more are counted only."""


class StepCoverage:
    """Which configured step entries calls have matched, and which step names matched none."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._entries = list(entries)
        self._matched: set[str] = set()
        self._unconfigured: set[str] = set()
        self._lock = threading.Lock()

    def planned(self, step: str, entry: str | None) -> None:
        """A call of ``step`` is governed by ``entry`` (``None``: by the default policy)."""
        with self._lock:
            if entry is not None:
                self._matched.add(entry)
                return
            if not self._entries or step in self._unconfigured or len(self._unconfigured) >= _MAX_NAMES:
                return
            self._unconfigured.add(step)
            waiting = [e for e in self._entries if e not in self._matched]
        if waiting:
            logger.warning(
                "steproute: calls arrive as step %s, which matches no steps: entry (by name or kind), so the "
                "default policy routes them; configured steps that have matched no call so far: %s. "
                "See docs/integrations.md for how a call's step is found.",
                shown(step), ", ".join(shown(e) for e in waiting))
        else:
            logger.info("steproute: step %s matches no steps: entry; the default policy routes it", shown(step))

    def unmatched_entries(self) -> list[str]:
        """Configured ``steps:`` entries no call has matched yet."""
        with self._lock:
            return [e for e in self._entries if e not in self._matched]

    def unconfigured_steps(self) -> list[str]:
        """Step names calls arrived under that match no ``steps:`` entry."""
        with self._lock:
            return sorted(self._unconfigured)
