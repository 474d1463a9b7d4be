"""Reading where a turn can go on from: its journal's last checkpoint (see :mod:`.journaling`).

The decisions before the checkpoint are not trusted from the file: each recorded event is run
through the policy's own :meth:`Policy.step` again from the initial configuration, and must lead
where the journal says. That rebuilds the steps and the trace exactly (one semantics), and it
refuses a journal written under another policy instead of resuming it into nonsense.

What happened after the checkpoint is the effect the crash interrupted: a model call is made again;
in a tool batch, each call whose answer was written down keeps it, and a call that started and has
no answer is *interrupted*: it may or may not have completed, so it is not run again unless its
tool is declared idempotent.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from loopspec.journal import Entry, JournalStore
from loopspec.language.alphabet import KINDS, Event
from loopspec.language.config import Config
from loopspec.language.errors import LoopspecError
from loopspec.language.model import Policy, Step
from loopspec.language.step import Offer

from .guardrails import GuardrailState
from .history import Trajectory
from .results import RequestRecord, TraceStep, TurnUsage
from .tool_batch import AWAITING
from .tools import ToolCall, ToolResult

INTERRUPTED = (
    "Interrupted: the process running this call stopped before it answered, so '{tool}' may or may "
    "not have completed. Check its effect before you call it again."
)
"""The answer of a call that started and never finished (a crash while it ran)."""


class ResumeError(LoopspecError):
    """A turn that cannot be resumed from this journal, and why."""


@dataclass
class ResumePoint:
    """Everything :meth:`Turn.resume` needs to go on from a checkpoint."""

    messages: list[dict[str, Any]]
    config: Config
    offer: Offer
    last_event: Event
    steps: list[Step]
    trace: list[TraceStep]
    requests: list[RequestRecord]
    usage: TurnUsage
    guardrails: dict[str, Any]
    compaction_level: int
    batches_run: int
    elapsed: float
    reply_text: str
    streamed: str
    streamed_kept: bool
    pending: tuple[str, list[ToolCall]] | None
    answered: dict[str, ToolResult] = field(default_factory=dict)
    """Calls of the pending batch whose answer the journal holds (they are not run again)."""
    interrupted: list[str] = field(default_factory=list)
    """Ids of calls that started and never finished."""
    decisions: dict[str, bool] = field(default_factory=dict)
    """A person's answers to the pending batch, not yet carried out (call id -> approved)."""
    approval_spent: float = 0.0
    """What auto-approved calls had spent from the session's cap."""
    waiting: list[str] | None = None
    """For a turn paused for approval, the ids of the calls that wait (None: not paused). The turn
    goes on from the checkpoint before that batch (``config``), as after a crash there."""
    paused_in: str = ""
    """For a paused turn, the approval halt it went through."""


_DAMAGE = (KeyError, TypeError, ValueError, AttributeError, IndexError)
"""What reading an entry whose fields are missing or of the wrong shape raises."""


@dataclass
class JournalReading:
    """The entry being read, so that a damaged one is named in the error (see :func:`reading`)."""

    entry: Entry


@contextmanager
def reading(turn_id: str, first: Entry) -> Iterator[JournalReading]:
    """Read turn ``turn_id``'s entries, moving ``.entry`` along as they are read: a field missing
    or of the wrong shape (a disk error, a hand edit) becomes a :class:`ResumeError` that names the
    entry and the field, and what to do, instead of a KeyError or TypeError out of the reader."""
    at = JournalReading(first)
    try:
        yield at
    except _DAMAGE as exc:
        what = f"its field {exc.args[0]!r} is missing" if isinstance(exc, KeyError) and exc.args else f"a field is of the wrong shape ({exc})"
        raise ResumeError(f"turn {turn_id!r}: the journal is damaged at entry {at.entry.seq} ({at.entry.kind}): {what}; "
                          "it cannot be resumed: run the turn again from its messages") from None


def resume_point(policy: Policy, turn_id: str, entries: Sequence[Entry]) -> ResumePoint:
    """Where turn ``turn_id`` goes on from; :class:`ResumeError` when it cannot, a damaged journal
    (an entry with a field missing or of the wrong shape) among the reasons, named by its entry."""
    if not entries:
        raise ResumeError(f"no turn {turn_id!r} in the journal")
    with reading(turn_id, entries[0]) as at:
        return _read_point(policy, turn_id, entries, at)


def _read_point(policy: Policy, turn_id: str, entries: Sequence[Entry], at: JournalReading) -> ResumePoint:
    if entries[0].kind != "begin":
        raise ResumeError(f"turn {turn_id!r} has no beginning in the journal (its first entry is {entries[0].kind!r})")
    ended = next((e for e in reversed(entries) if e.kind == "halt"), None)
    if ended is not None:
        at.entry = ended
        raise ResumeError(f"turn {turn_id!r} already ended: {ended.body.get('outcome')} ({ended.body.get('halt_state')})")
    # paused if no checkpoint follows the last pause: a lift that crashed before its batch's
    # checkpoint ran nothing, and the person is asked again
    pause = next((e for e in reversed(entries) if e.kind in ("pause", "checkpoint")), None)
    pause = pause if pause is not None and pause.kind == "pause" else None
    begin = entries[0].body
    if begin.get("policy") != policy.name:
        raise ResumeError(f"turn {turn_id!r} ran under policy {begin.get('policy')!r}, not {policy.name!r}")
    last = max((i for i, e in enumerate(entries) if e.kind == "checkpoint"), default=None)
    if last is None:
        raise ResumeError(f"turn {turn_id!r} stopped before its first model call: run it again from its messages")
    messages = [dict(m) for m in begin.get("messages", [])]
    Trajectory(messages)
    for e in entries[: last + 1]:
        if e.kind == "checkpoint":
            at.entry = e
            added = [dict(m) for m in e.body.get("messages", [])]
            Trajectory(added)  # read as a history reads them: a message of the wrong shape is damage, named here
            messages += added
    at.entry = entries[last]
    point = entries[last].body
    if len(messages) != point.get("message_count"):
        raise ResumeError(f"turn {turn_id!r}: the journal's messages do not add up ({len(messages)} != {point.get('message_count')})")
    count = int(point["step"])
    steps, trace, cfg = _replay_steps(policy, turn_id, _kept_steps(entries[:last], at), count, at)
    at.entry = entries[last]
    want = Config(point["state"], tuple(point["counters"]), frozenset(point["flags"]))
    if cfg != want:
        raise ResumeError(f"turn {turn_id!r}: the journal's decisions lead to {cfg.state}, its checkpoint says {want.state}")
    if pause is not None and (pause.body.get("state") != cfg.state or policy.states[cfg.state].kind != "tool_exec"):
        raise ResumeError(f"turn {turn_id!r} paused in {pause.body.get('state')!r}, not in the tool_exec state its last "
                          f"checkpoint holds ({cfg.state!r}): the journal does not fit this policy")
    pending = None
    if point.get("pending"):
        p = point["pending"]
        pending = (str(p["text"]), [ToolCall(str(c["id"]), str(c["name"]), str(c["arguments"])) for c in p["calls"]])
    u = point.get("usage", {})
    kinds = {k: type(v) for k, v in vars(TurnUsage()).items()}  # int, float or bool, as declared
    usage = TurnUsage(**{k: kinds[k](v) for k, v in u.items() if k in kinds})
    last_event = point.get("last_event") or {"name": "start", "attrs": {}}
    GuardrailState({}).restore(point.get("guardrails") or {})  # read once here: a damaged memory is named as damage
    offer = Offer(**point["offer"])
    guardrails = dict(point.get("guardrails") or {})
    compaction_level = int(point.get("compaction_level", 0))
    batches_run = int(point.get("batches_run", 0))
    elapsed = float(point.get("elapsed", 0.0))
    decisions = {str(k): bool(v) for k, v in (point.get("decisions") or {}).items()}
    approval_spent = float(point.get("approval_spent") or 0.0)
    event = Event(str(last_event["name"]), dict(last_event.get("attrs") or {}))
    answered: dict[str, ToolResult] = {}
    started: list[str] = []
    calls = {c.id: c for c in (pending[1] if pending else [])}
    for e in entries[last + 1 :]:  # a paused batch ran nothing: its answers are placeholders
        at.entry = e
        if e.kind == "tool_start" and e.body.get("id") in calls:
            started.append(str(e.body["id"]))
        elif e.kind == "tool_finish" and e.body.get("id") in calls and not _awaiting(e.body):
            b = e.body
            answered[str(b["id"])] = ToolResult(calls[str(b["id"])], str(b["content"]), ok=bool(b["ok"]), ran=bool(b["ran"]),
                                                timed_out=bool(b.get("timed_out")))
    requests = []
    for e in entries:
        if e.kind == "request":  # the cut call's request was sent too
            at.entry = e
            requests.append(_request(e.body))
    waiting = None
    if pause is not None:
        at.entry = pause
        waiting = [str(c["id"]) for c in pause.body["calls"]]
    return ResumePoint(
        messages=messages,
        config=cfg,
        offer=offer,
        last_event=event,
        steps=steps,
        trace=trace,
        requests=requests,
        usage=usage,
        guardrails=guardrails,
        compaction_level=compaction_level,
        batches_run=batches_run,
        elapsed=elapsed,
        reply_text=str(point.get("reply_text") or ""),
        streamed=str(point.get("streamed") or ""),
        streamed_kept=bool(point.get("streamed_kept", True)),  # journals before 2026-12-03: kept, as they were read
        pending=pending,
        answered=answered,
        interrupted=[i for i in started if i not in answered],
        decisions=decisions,
        approval_spent=approval_spent,
        waiting=waiting,
        paused_in="" if pause is None else str(pause.body.get("halt_state")),
    )


def _awaiting(answer: dict[str, Any]) -> bool:
    """A batch's "awaiting approval" placeholder: not an answer (a crash came before the pause was
    written, so the resumed batch asks for approval again)."""
    return answer.get("content") == AWAITING and not answer.get("ran")


def _kept_steps(entries: Sequence[Entry], at: JournalReading) -> list[Entry]:
    """The step entries of the decisions that stand: a checkpoint at step n drops the records after
    the n-th, decisions a crash cut, which the process resumed from that checkpoint took again."""
    records: list[Entry] = []
    for e in entries:
        if e.kind == "checkpoint":
            at.entry = e
            del records[int(e.body.get("step", len(records))):]
        elif e.kind == "step":
            records.append(e)
    return records


def _replay_steps(policy: Policy, turn_id: str, records: list[Entry], count: int, at: JournalReading) -> tuple[list[Step], list[TraceStep], Config]:
    """The policy's own steps for the recorded events, checked against where the journal says they led."""
    if len(records) < count:
        raise ResumeError(f"turn {turn_id!r}: its checkpoint follows {count} decisions, the journal holds {len(records)}")
    cfg = policy.initial_config()
    steps: list[Step] = []
    trace: list[TraceStep] = []
    for i, entry in enumerate(records[:count]):
        at.entry, r = entry, entry.body
        if r.get("state") != cfg.state:
            raise ResumeError(f"turn {turn_id!r}: decision {i + 1} was taken in {r.get('state')!r}, the policy is in {cfg.state!r}")
        event = Event(str(r["event"]), _typed(policy, cfg.state, str(r["event"]), dict(r.get("attrs") or {})))
        step = policy.step(cfg, event, frozenset(r.get("measured") or ()))  # what the budgets measured then
        if step.after.state != r.get("target"):
            raise ResumeError(
                f"turn {turn_id!r} was written under another version of policy {policy.name!r}: decision {i + 1} "
                f"({cfg.state} --{event.name}-->) went to {r.get('target')!r}, this policy goes to {step.after.state!r}"
            )
        steps.append(step)
        trace.append(TraceStep.of(policy, step, len(trace)))
        cfg = step.after
    return steps, trace, cfg


def _typed(policy: Policy, state: str, event: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes as the interpreter had them: the journal writes a non-finite number as text."""
    spec = KINDS[policy.states[state].kind].event(event)
    for name, value in list(attrs.items()):
        a = spec.attr(name) if spec is not None else None
        if a is not None and a.type == "float" and isinstance(value, str) and value in ("inf", "-inf"):
            attrs[name] = float(value)
    return attrs


def _request(body: dict[str, Any]) -> RequestRecord:
    fields = RequestRecord.__dataclass_fields__
    return RequestRecord(**{k: body.get(k) for k in fields})  # type: ignore[arg-type]


ABANDONED = "Abandoned: the user moved on without approving this call, so '{tool}' was not run."
"""The answer of a waiting call when the person never answered and the conversation went on."""


def abandon(policy: Policy, journal: JournalStore, turn_id: str) -> list[dict[str, Any]]:
    """End a turn paused for approval without running what waits: each waiting call is answered
    "Abandoned", so the history stays valid when the next user message follows it. Returns that
    history; the journal records the end (the turn cannot be resumed after it)."""
    from .journaling import JournalWriter

    point = resume_point(policy, turn_id, journal.entries(turn_id))
    if point.waiting is None or point.pending is None:
        raise ResumeError(f"turn {turn_id!r} is not awaiting approval: there is nothing to abandon")
    text, calls = point.pending
    history = Trajectory([dict(m) for m in point.messages])
    answers = [ToolResult(c, ABANDONED.format(tool=c.name), ok=False, ran=False) for c in calls]
    history.add_tool_round(text, calls, answers)
    JournalWriter(journal, turn_id).turn_abandoned(point.paused_in, history.messages[len(point.messages):])
    return history.messages
