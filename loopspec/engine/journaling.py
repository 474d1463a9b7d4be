"""Writing a turn into its journal: an observer that appends each fact before its effect.

The order the entries land in is the point (``docs/journal.md``):

- ``begin``: the opening messages, the policy and the model;
- ``checkpoint``: before each model call and each tool batch, what the turn needs to go on from
  there (its configuration, the messages added since the last checkpoint, usage, guardrail memory,
  the calls waiting to run), so a crash loses at most the effect in progress;
- ``request`` before a request is sent, ``response`` once its stream is classified;
- ``tool_start`` before a tool runs, with an idempotency key (``TURN_ID:CALL_ID``), and
  ``tool_finish`` with its answer, so a call that started and never finished is known;
- ``step`` for each decision, ``halt`` at the end.

Every body is redacted like every other output (provider key shapes, ``key=``/``token=`` values,
the request's API key, credential environment values).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Sequence

from loopspec.journal import JournalStore
from loopspec.language.alphabet import Event
from loopspec.language.model import Step
from loopspec.wire.redaction import env_secrets, literal_secrets, redact

from .observers import TurnInfo, TurnObserver
from .requests import record_of

if TYPE_CHECKING:
    from loopspec.providers.base import ModelRequest
    from loopspec.wire.assemble import AssembledReply

    from .results import TraceStep, TurnResult
    from .tools import ToolCall, ToolResult


def idempotency_key(turn_id: str, call_id: str) -> str:
    """The key a tool may use to make a retried call a no-op (the same on every resume)."""
    return f"{turn_id}:{call_id}"


class JournalWriter(TurnObserver):
    """Appends one turn's entries to a :class:`~loopspec.journal.JournalStore`."""

    wants_checkpoints = True
    required = True

    def __init__(self, store: JournalStore, turn_id: str, api_key: str | None = None) -> None:
        self.store = store
        self.turn_id = turn_id
        self._secrets = (*literal_secrets(api_key), *env_secrets())

    def _write(self, kind: str, body: dict[str, Any]) -> None:
        # a failed write raises: the observers record it, and the effect it announces still waits
        # for nothing (see docs/journal.md on what a journal that cannot be written means)
        self.store.append(self.turn_id, kind, redact(_plain(body), self._secrets))

    def turn_started(self, info: TurnInfo, messages: Sequence[dict[str, Any]]) -> None:
        if info.resumed:  # the journal has the history already: note where the turn went on
            self._write("resume", {"model": info.model, "message_count": len(messages)})
        else:
            self._write("begin", {"policy": info.policy, "model": info.model, "replayed": info.replayed, "messages": list(messages)})

    def checkpoint(self, point: dict[str, Any]) -> None:
        self._write("checkpoint", point)

    def model_call_started(self, index: int, request: "ModelRequest") -> None:
        self._write("request", {"index": index, **asdict(record_of(request))})

    def model_call_finished(self, index: int, event: Event, reply: "AssembledReply | None") -> None:
        body: dict[str, Any] = {"index": index, "event": event.name, "attrs": _plain(event.attrs)}
        if reply is not None:
            body["finish_reason"] = reply.finish_reason
            body["chars"] = len(reply.text)
            if reply.usage is not None:
                body["usage"] = {"prompt_tokens": reply.usage.prompt_tokens, "completion_tokens": reply.usage.completion_tokens,
                                 "reasoning_tokens": reply.usage.reasoning_tokens}
        self._write("response", body)

    def tool_started(self, call: "ToolCall") -> None:
        self._write("tool_start", {**call.to_json(), "key": idempotency_key(self.turn_id, call.id)})

    def tool_finished(self, call: "ToolCall", result: "ToolResult") -> None:
        self._write("tool_finish", {"id": call.id, "name": call.name, "content": result.content, "ok": result.ok,
                                    "ran": result.ran, "timed_out": result.timed_out})

    def step_taken(self, step: Step, record: "TraceStep") -> None:
        # only the event's attributes can carry outside text (a provider's message); the rest of a
        # step record is the policy's own names and numbers, which the validator keeps to
        # identifiers, so redacting them on every decision would be work for nothing
        body = _plain(record.to_json())
        body["attrs"] = redact(body["attrs"], self._secrets)
        self.store.append(self.turn_id, "step", body)

    def turn_halted(self, result: "TurnResult") -> None:
        body = {"outcome": result.outcome, "halt_state": result.halt_state, "message": result.message, "usage": asdict(result.usage)}
        if result.pause is None:
            self._write("halt", body)
        else:  # not an end: resume goes on from here once a person answers
            self._write("pause", {**body, **result.pause.to_json(), "step": len(result.steps)})

    def turn_abandoned(self, halt_state: str, messages: Sequence[dict[str, Any]]) -> None:
        """A paused turn ended without a person's answer: the messages that answer its calls."""
        self._write("halt", {"outcome": "abandoned", "halt_state": halt_state, "messages": list(messages)})


def _plain(value: Any) -> Any:
    """A JSON-safe copy: what an event attribute or a trace record holds, never NaN."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN
        return None
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
