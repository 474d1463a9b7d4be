"""Actions: the ``do`` of a transition and the ``apply`` of an escalate state, and the directives
that hand their effects outside the configuration to the interpreter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

@dataclass(frozen=True)
class Increment:
    counter: str
    index: int
    amount: int = 1


@dataclass(frozen=True)
class Reset:
    counter: str
    index: int


@dataclass(frozen=True)
class SetFlag:
    flag: str
    value: bool


@dataclass(frozen=True)
class Append:
    """Append a named prompt template as a user message before the next call."""

    template: str


@dataclass(frozen=True)
class DropToolCalls:
    """Drop the truncated or partial tool calls of the last reply: they never enter the history."""


@dataclass(frozen=True)
class Backoff:
    """Wait ``schedule[counter value]`` seconds (the last entry once the counter passes the end)."""

    schedule: str
    attempt_counter: str | None
    attempt_index: int | None


@dataclass(frozen=True)
class Compact:
    """Compact the working copy of the prompt; the full trajectory is kept."""


@dataclass(frozen=True)
class RefuseTools:
    """Answer every call of the pending batch with the template as a synthetic result; run none."""

    template: str


Action = Union[Increment, Reset, SetFlag, Append, DropToolCalls, Backoff, Compact, RefuseTools]

# Actions that only change the configuration; the rest are also handed to the interpreter.
PURE_ACTIONS = (Increment, Reset, SetFlag)


@dataclass(frozen=True)
class Directive:
    """An effect outside the configuration that a step asks the interpreter to perform, in order."""

    action: Action
    delay: float = 0.0
    """For Backoff: the seconds chosen from the schedule."""
