"""Observers: who watches a turn's effects as they happen, for traces now and the journal next.

Consumers hear what a *user* sees (streamed text, the halt message). Observers hear what an
*operator* needs: each model call from request to classified event, each tool call from start to
finish, each decision step, and the halt. The hooks are synchronous and run at the point of the
effect: ``model_call_started`` before the request is sent and ``tool_started`` before the tool runs,
so an observer that writes them down (a journal) has written them before the effect happens.

An observer that raises is recorded in ``TurnResult.observer_errors`` and never stops the turn:
tracing is never a reason for a turn to fail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from loopspec.language.alphabet import Event
from loopspec.language.model import Step

if TYPE_CHECKING:  # the hooks' argument types; nothing here imports them at run time
    from loopspec.providers.base import ModelRequest
    from loopspec.wire.assemble import AssembledReply

    from .results import TraceStep, TurnResult
    from .tools import ToolCall, ToolResult


class TurnObserver:
    """The hooks, each a no-op here: subclass and override the ones you need."""

    wants_checkpoints = False
    """Set True to be given a :meth:`checkpoint` before each model call and tool batch."""
    required = False
    """Set True when the turn must not go on without this observer (a journal): if one of its
    hooks raises, the turn stops before its next effect, in the policy_error halt, saying why."""

    def turn_started(self, info: "TurnInfo", messages: Sequence[dict[str, Any]]) -> None:
        """A turn begins with these messages."""

    def checkpoint(self, point: dict[str, Any]) -> None:
        """The turn is about to make a model call or run a tool batch; ``point`` is what it needs
        to go on from here (JSON-safe). Only asked of observers that set ``wants_checkpoints``."""

    def model_call_started(self, index: int, request: "ModelRequest") -> None:
        """Model call ``index`` (from 1) is about to be sent."""

    def model_call_finished(self, index: int, event: Event, reply: "AssembledReply | None") -> None:
        """Model call ``index`` ended in ``event``: its stream's classification, or the provider
        error that kept it from opening (``reply`` is None then)."""

    def tool_started(self, call: "ToolCall") -> None:
        """A tool call is about to run."""

    def tool_finished(self, call: "ToolCall", result: "ToolResult") -> None:
        """A tool call has an answer (ran, failed, refused, timed out or cancelled)."""

    def step_taken(self, step: Step, record: "TraceStep") -> None:
        """The policy took a decision step."""

    def turn_halted(self, result: "TurnResult") -> None:
        """The turn has ended; ``result`` is final."""


class TurnInfo:
    """What an observer may want to know about the turn as a whole."""

    __slots__ = ("policy", "model", "api_base", "replayed", "resumed")

    def __init__(self, policy: str, model: str, api_base: str | None, replayed: bool, resumed: bool = False) -> None:
        self.policy = policy
        self.model = model
        self.api_base = api_base
        self.replayed = replayed
        """The turn runs against a recorded cassette, not a live provider."""
        self.resumed = resumed
        """The turn goes on from its journal (``Turn.resume``); the messages are its history so far."""


class Observers:
    """The turn's observers, called in order; one that raises is recorded and skipped."""

    def __init__(self, observers: Sequence[TurnObserver] = ()) -> None:
        self.observers = list(observers)
        self.errors: list[str] = []
        self.wants_checkpoints = any(getattr(o, "wants_checkpoints", False) for o in self.observers)
        self.broken: str | None = None
        """The first error of a ``required`` observer: the turn stops before its next effect."""

    def __bool__(self) -> bool:
        return bool(self.observers)

    def notify(self, hook: str, *args: Any) -> None:
        for observer in self.observers:
            try:
                getattr(observer, hook)(*args)
            except Exception as exc:  # isolation is the point: record, never propagate
                error = f"{type(observer).__name__}.{hook}: {type(exc).__name__}: {exc}"
                self.errors.append(error)
                if getattr(observer, "required", False) and self.broken is None:
                    self.broken = error
