"""A/B experiments: a thread (or a tenant) assigned to one arm, stably, in every process.

An experiment (``experiment:`` in the configuration, :class:`~steproute.experiment_config.ExperimentConfig`)
names arms, a split and the ``steps:`` entries it covers. A unit (the call's thread id, or its
tenant) falls at a point in [0, 1): the first 8 bytes of ``sha256(name + "\\0" + unit)`` as an
integer over 2**64 (:func:`unit_point`) — never Python's ``hash()``, which changes with each
process's ``PYTHONHASHSEED`` — and the arm is the one whose cumulative weight first exceeds that
point. The same thread is in the same arm in every process, replica and restart; another
experiment name shuffles the units afresh.

A call with no unit id (no thread, or no tenant for ``unit: tenant``) goes to the first arm, the
control, unassigned: its decision's reason says so, the log entry carries ``assigned: false``, and
the ``steproute`` logger says it once per router. ``steproute report --by arm`` leaves those calls
out of the comparison (they were not randomised).

Example:
    >>> from steproute.experiment_config import ExperimentConfig
    >>> experiment = Experiment.from_config(ExperimentConfig(
    ...     name="cheap-answer", steps=["answer"], arms={"control": None, "cheap": "fast"},
    ...     split={"control": 0.5, "cheap": 0.5}))
    >>> experiment.assign("thread-42") == experiment.assign("thread-42")
    True
    >>> experiment.assign(None)
    ArmAssignment(name='cheap-answer', arm='control', control='control', unit='thread', assigned=False)
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from steproute.experiment_config import ExperimentConfig
from steproute.types import ArmAssignment, StepRequest

__all__ = ["Arm", "ArmAssignment", "Experiment", "arm_note", "unit_point"]

_SCALE = float(2**64)


def unit_point(experiment: str, unit: str) -> float:
    """Where ``unit`` falls in [0, 1) for ``experiment``: the first 8 bytes of
    ``sha256(experiment + "\\0" + unit)`` (UTF-8), big-endian, over 2**64. The same in every process.

    Example:
        >>> round(unit_point("cheap-answer", "thread-42"), 6)
        0.433457
    """
    digest = hashlib.sha256(f"{experiment}\0{unit}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


@dataclass(frozen=True)
class Arm:
    """One arm: its name, its share of the units, and the configuration that decides its calls.

    Example:
        >>> Arm("cheap", 0.5).name
        'cheap'
    """

    name: str
    weight: float
    config: Any = field(default=None, compare=False)
    """The ``steps:`` value that replaces the step's for calls in this arm (``None``: the step's own)."""


@dataclass(frozen=True)
class Experiment:
    """An experiment's arms (the first is the control), the entries it covers and its unit.

    Build one with :meth:`from_config`; :meth:`assign` is pure and thread-safe.

    Example:
        >>> e = Experiment("e", (Arm("a", 0.25), Arm("b", 0.75)), frozenset({"answer"}))
        >>> e.control.name, e.covers("answer"), e.covers(None)
        ('a', True, False)
    """

    name: str
    arms: tuple[Arm, ...]
    steps: frozenset[str]
    """The ``steps:`` entries covered; ``default`` for the steps no entry governs."""
    unit: str = "thread"
    _bounds: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _assigned: tuple[ArmAssignment, ...] = field(init=False, repr=False, compare=False)
    _unassigned: ArmAssignment = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.arms:
            raise ValueError("an experiment needs arms")
        total = sum(a.weight for a in self.arms) or 1.0
        bounds = tuple(b / total for b in itertools.accumulate(a.weight for a in self.arms))
        object.__setattr__(self, "_bounds", (*bounds[:-1], 1.0))
        control = self.arms[0].name
        object.__setattr__(self, "_assigned", tuple(ArmAssignment(self.name, a.name, control, self.unit)
                                                    for a in self.arms))
        object.__setattr__(self, "_unassigned", ArmAssignment(self.name, control, control, self.unit, assigned=False))

    @classmethod
    def from_config(cls, config: ExperimentConfig) -> Experiment:
        """The experiment of a validated ``experiment:`` section."""
        weights = config.weights()
        return cls(config.name, tuple(Arm(name, weights[name], cfg) for name, cfg in config.arms.items()),
                   frozenset(config.steps), config.unit)

    @property
    def control(self) -> Arm:
        """The first arm: calls with no unit id go to it."""
        return self.arms[0]

    def covers(self, entry: str | None) -> bool:
        """Whether calls governed by ``entry`` (a ``steps:`` key; ``None``: ``default``) are in it."""
        return ("default" if entry is None else entry) in self.steps

    def unit_of(self, request: StepRequest) -> str | None:
        """The request's unit id: its thread, or its tenant (``None``: it has none)."""
        return request.tenant if self.unit == "tenant" else request.thread

    def assign(self, unit: str | None) -> ArmAssignment:
        """The arm of ``unit`` (``None``: the control, unassigned)."""
        if unit is None or unit == "":
            return self._unassigned
        return self._assigned[min(bisect.bisect_right(self._bounds, unit_point(self.name, unit)), len(self.arms) - 1)]


def arm_note(assignment: ArmAssignment) -> str:
    """What a decision's reason starts with in an experiment.

    Example:
        >>> arm_note(ArmAssignment("e", "cheap", "control", "thread"))
        "experiment 'e', arm 'cheap'"
        >>> arm_note(ArmAssignment("e", "control", "control", "thread", assigned=False))
        "experiment 'e': no thread id, so the control arm 'control'"
    """
    return assignment.note
