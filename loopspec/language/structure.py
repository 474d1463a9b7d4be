"""The compiled policy's declarations: states, transitions, counters, backstops, guardrails and
settings, as plain frozen records.

They have no behaviour of their own: the step rules that read them live in
:mod:`loopspec.language.model`, so guards and step records can name these types without importing
the model.
"""

from __future__ import annotations

import functools

import math
from dataclasses import dataclass
from typing import Mapping

from .actions import Action, Increment, Reset
from .diagnostics import Position
from .guards import Guard
from .templates import DEFAULT_MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class Transition:
    source: str
    event: str
    order: int
    guard: Guard
    actions: tuple[Action, ...]
    target: str
    bounded_by: str | None = None
    """A declared backstop loop: this edge may repeat until that backstop ends it."""
    pos: Position | None = None

    @functools.cached_property
    def label(self) -> str:
        """``source --event[order]--> target`` (built once: every decision's record reads it)."""
        return f"{self.source} --{self.event}[{self.order}]--> {self.target}"

    def increments(self) -> tuple[Increment, ...]:
        """The transition's increments, in order (found once: every decision asks, twice)."""
        return self._increments

    @functools.cached_property
    def _increments(self) -> tuple[Increment, ...]:
        return tuple(a for a in self.actions if isinstance(a, Increment))

    @functools.cached_property
    def increment_indices(self) -> frozenset[int]:
        """The counters the transition increments (a step taking it is capped by them)."""
        return frozenset(i.index for i in self._increments)

    @functools.cached_property
    def reset_indices(self) -> frozenset[int]:
        """The counters the transition resets."""
        return frozenset(a.index for a in self.actions if isinstance(a, Reset))


@dataclass(frozen=True)
class State:
    name: str
    kind: str
    transitions: Mapping[str, tuple[Transition, ...]]
    doc: str = ""
    apply: tuple[Action, ...] = ()
    """escalate: the actions it performs on entry (compact, disable_tools, switch_model, ...)."""
    prompt: str | None = None
    """continue: the template appended as the continuation prompt."""
    outcome: str | None = None
    message: str | None = None
    """halt: the message template delivered to every consumer."""
    pos: Position | None = None

    def all_transitions(self) -> tuple[Transition, ...]:
        return tuple(t for ts in self.transitions.values() for t in ts)


@dataclass(frozen=True)
class Counter:
    name: str
    index: int
    max: int
    doc: str = ""
    backstop: bool = False


@dataclass(frozen=True)
class Backstop:
    counter: str
    max: int
    exhausted: str
    wrap_up: str | None = None
    """model_calls only: the state ordinary calls are redirected to when one call is left; the
    transitions out of it may spend that last call (e.g. disable tools and ask for a summary)."""
    warn_at: int | None = None
    warning: str | None = None


@dataclass(frozen=True)
class Budget:
    """A usage budget (``budgets:``): an amount the interpreter measures, outside the configuration.

    The configuration only holds what a decision reads of it, as built-in flags
    (:func:`~loopspec.language.alphabet.budget_flag`), set when a model call is entered; see
    :meth:`loopspec.language.model.Policy.budget_status`."""

    name: str
    max: float
    exhausted: str
    wrap_up: str | None = None
    """Entered instead of the call once the amount reached ``max``; its one last call goes through."""
    warn_at: float | None = None
    warning: str | None = None
    min_per_call: float | None = None
    """Each model call counts as at least this much, so ``ceil(max / min_per_call)`` calls reach the cap."""
    doc: str = ""

    def flag(self, level: str) -> str:
        return f"{self.name}_{level}"

    def call_bound(self) -> int | None:
        """The most model calls a turn can enter before this budget redirects, when it declares
        ``min_per_call`` (one more with ``wrap_up``); None when it bounds nothing."""
        if self.min_per_call is None:
            return None
        # rounded first, so that 0.05 / 0.001 is 50 calls and not 51; the interpreter redirects
        # after this many calls by definition (Policy.budget_status), so rounding cannot break it
        return max(1, math.ceil(round(self.max / self.min_per_call, 9)))


@dataclass(frozen=True)
class Guardrail:
    code: str
    threshold: int
    verdict: str
    max_period: int = 5


@dataclass(frozen=True)
class Settings:
    stall_timeout: float = 60.0
    request_timeout: float = 120.0
    max_tokens: int | None = None
    boosted_max_tokens: int | None = None
    fallback_model: str | None = None
    compaction_keep_last: int = 6
    reasoning_effort: str | None = None
    max_wait: float = 60.0
    """The longest a backoff waits, whatever Retry-After asks (``backoff.max_wait``)."""
    turn_deadline: float | None = None
    """Seconds a whole turn may take (litellm's timeouts only bound each read). Every wait of the
    turn (request, chunk, backoff, tool) is cut at it, and the call, stream or tool batch waiting
    observes ``cancelled``."""
    tool_timeout: float | None = None
    """Seconds one tool call may run; past it the call is answered "timed out" and the batch
    emits ``timeout``. None: no limit (only the turn's deadline and a cancel stop a tool)."""
    tool_batch_timeout: float | None = None
    """Seconds a whole tool batch may run; past it every call still running is answered "timed
    out" and the batch emits ``timeout``."""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """The most a rendered message or prompt may hold (UTF-8 bytes, one copy of ``{response}``
    not counted); past it the text is cut with a visible marker (:mod:`.templates`)."""
