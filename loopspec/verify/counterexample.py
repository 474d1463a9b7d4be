"""A counterexample: an event path from the start of a turn, one :class:`CexStep` per event."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..language.model import Step


@dataclass
class CexStep:
    """One step of a counterexample: in ``state``, the model (or effect) answered ``event``."""

    state: str
    event: str
    attrs: dict[str, Any]
    to: str
    transition: str | None
    measured: tuple[str, ...] = ()
    """Budget flags the step measured on entering a call (the adversary's amounts)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "event": self.event, "attrs": dict(self.attrs), "to": self.to, "transition": self.transition}
        if self.measured:
            out["measured"] = list(self.measured)
        return out

    def as_tuple(self) -> tuple[str, str, dict[str, Any]]:
        return (self.state, self.event, dict(self.attrs))


@dataclass
class Counterexample:
    """An event path from the start of a turn; replayable once the cassette writer turns it into one."""

    steps: list[CexStep]
    note: str = ""
    concrete: bool = True
    """False when only the abstract graph could produce the path (search limit reached)."""
    loop_start: int | None = None
    """For a non-halting run: the index of the first step of the repeated cycle."""
    fires: tuple[str, int] | None = None
    """For a loop demonstration: (transition label, the firings its own bound allows); the run
    fires that transition more often."""
    alternatives: list["Counterexample"] = field(default_factory=list, repr=False)
    """Other runs that show the same failure, for when this one cannot be made into a cassette."""

    @property
    def end(self) -> str | None:
        return self.steps[-1].to if self.steps else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"steps": [s.to_json() for s in self.steps], "end": self.end, "concrete": self.concrete}
        if self.loop_start is not None:
            out["loop_start"] = self.loop_start
        if self.fires is not None:
            out["fires"] = {"transition": self.fires[0], "at_most": self.fires[1]}
        if self.note:
            out["note"] = self.note
        return out


def cex_step(step: Step) -> CexStep:
    t = step.transition
    return CexStep(step.before.state, step.event.name, dict(step.event.attrs), step.after.state, t.label if t else None,
                   tuple(sorted(step.measured)))
