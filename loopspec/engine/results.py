"""What a turn hands back: its trace of decisions, usage, the requests it made, and its outcome."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from loopspec.language.graph import describe_action
from loopspec.language.model import Policy, Step


@dataclass(frozen=True, init=False)
class TraceStep:
    """One decision: where the turn was, what it observed, and where that took it."""

    index: int
    state: str
    kind: str
    event: str
    attrs: dict[str, Any]
    transition: str | None
    target: str
    counters: dict[str, int]
    flags: list[str]
    actions: list[str]
    redirected_from: str | None = None
    measured: list[str] = field(default_factory=list)
    """Budget flags the step added on entering a call (what the budgets measured); empty for a
    policy without ``budgets:``, and then left out of :meth:`to_json`."""

    def __init__(
        self,
        index: int,
        state: str,
        kind: str,
        event: str,
        attrs: dict[str, Any],
        transition: str | None,
        target: str,
        counters: dict[str, int],
        flags: list[str],
        actions: list[str],
        redirected_from: str | None = None,
        measured: list[str] | None = None,
    ) -> None:
        """The fields in one dictionary update, not the frozen dataclass's setattr per field:
        a turn records every decision (``tests/test_record_constructors.py`` holds the
        parameters to the fields)."""
        self.__dict__.update(
            index=index, state=state, kind=kind, event=event, attrs=attrs, transition=transition, target=target,
            counters=counters, flags=flags, actions=actions, redirected_from=redirected_from,
            measured=[] if measured is None else measured,
        )

    @classmethod
    def of(cls, policy: Policy, step: Step, index: int) -> TraceStep:
        """The record of ``step``, the ``index``-th decision of a turn of ``policy``."""
        t = step.transition
        before, after = step.before.state, step.after
        return cls(
            index,
            before,
            policy.states[before].kind,
            step.event.name,
            dict(step.event.attrs),
            t.label if t else None,
            after.state,
            dict(zip(policy.counter_names, after.counters)),
            sorted(after.flags),
            [describe_action(a) for a in t.actions] if t else [],
            step.redirected_from,
            sorted(step.measured) if step.measured else [],
        )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.measured:
            del out["measured"]
        return out


@dataclass
class TurnUsage:
    model_calls: int = 0
    tool_batches: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float = 0.0
    """US dollars of the replies whose cost was known (see ``cost_unknown``)."""
    cost_unknown: bool = False
    """A reply's cost was unknown (a model missing from litellm's cost map, no usage reported):
    ``cost`` leaves it out."""
    working_time: float = 0.0
    """Seconds the turn ran, backoff waits (rate limits, retries) excluded."""


@dataclass
class RequestRecord:
    """What one model call carried (for expectations: was it sent without tools?)."""

    model: str
    tools: list[str]
    tool_choice: Any
    last_user: str
    message_count: int
    reasoning_effort: str | None
    max_tokens: int | None


@dataclass(frozen=True)
class AwaitingApproval:
    """A turn paused until a person answers (only a turn with a journal pauses; see docs/journal.md).

    ``loopspec resume --journal FILE TURN_ID --approve CALL_ID`` (or ``--deny``), or
    ``Turn.resume(turn_id, approve=..., deny=...)``, lifts it: the turn goes on from its checkpoint
    before the batch, whose effect runs again with the answers (see docs/journal.md)."""

    turn_id: str
    state: str
    """The tool_exec state whose batch waits."""
    calls: tuple[dict[str, str], ...]
    """The calls waiting for an answer: ``id``, ``name``, ``arguments``."""

    def to_json(self) -> dict[str, Any]:
        return {"turn_id": self.turn_id, "state": self.state, "calls": [dict(c) for c in self.calls]}


@dataclass
class TurnResult:
    outcome: str
    halt_state: str
    message: str
    """The halt message every consumer was given."""
    response: str
    """The visible text of the model's last reply."""
    messages: list[dict[str, Any]]
    """The full trajectory: never truncated, valid at every halt."""
    trace: list[TraceStep]
    usage: TurnUsage
    requests: list[RequestRecord] = field(default_factory=list)
    consumer_errors: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    """The compiled model's steps, in order: what the built-in properties are judged on."""
    callback_errors: list[str] = field(default_factory=list)
    """Callbacks (``Turn.on_enter`` and the like) that raised: ``"hook: Type: message"``."""
    observer_errors: list[str] = field(default_factory=list)
    """Observers (traces, a journal) that raised: ``"Observer.hook: Type: message"``."""
    error: str | None = None
    """The raw text of the last failure the turn observed (a provider's error message, an
    escalation's reason), for logs; halt messages name a short typed reason instead."""
    pause: AwaitingApproval | None = None
    """Set when the turn did not end but paused for a person's approval (a turn with a journal)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "halt_state": self.halt_state,
            "message": self.message,
            "response": self.response,
            "usage": asdict(self.usage),
            "trace": [s.to_json() for s in self.trace],
            "messages": self.messages,
            "error": self.error,
            **({"pause": self.pause.to_json()} if self.pause is not None else {}),
        }
