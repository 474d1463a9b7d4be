"""A turn: run one turn of a compiled policy against a provider, tools and consumers.

The loop is: run the current state's effect (await I/O), which yields exactly one event; ask the
compiled model for the step (pure, synchronous: guards, caps, actions, backstop redirects); move
the ``transitions`` machine along it; carry out the step's directives in order. Guards and actions
are never re-implemented here. The result types are in :mod:`.results`, the request a ``call``
effect sends is built by :mod:`.requests`; the model call and its stream are read in
:mod:`.model_call`, a tool batch is run in :mod:`.tool_batch`.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict
from typing import Any, Awaitable, Sequence

from loopspec.journal import JournalStore
from loopspec.providers.base import Provider
from loopspec.language.alphabet import Event, judge_wait, reason_of
from loopspec.language.model import (
    FATE_REFUSE,
    FATE_RUN,
    Append,
    Backoff,
    Compact,
    Config,
    Directive,
    Offer,
    Policy,
    State,
    Step,
    render_template,
)

from loopspec.wire.assemble import AssembledReply

from .approvals import ApprovalSession
from .budgets import BudgetMeter
from .clock import Clock, DeadlinePassed, RealClock, bounded
from .consumers import Consumers
from .guardrails import GuardrailState
from .history import Trajectory, check_messages
from .machine import Callback, TurnCallbacks, TurnModel
from .model_call import ModelCall
from .journaling import JournalWriter
from .observers import Observers, TurnInfo, TurnObserver
from .requests import build_request, record_of
from .results import AwaitingApproval, RequestRecord, TraceStep, TurnResult, TurnUsage
from .tool_batch import PendingBatch, run_batch
from .tools import ApprovalHook, ToolCall, ToolRegistry, ToolResult

_REPLY_EVENTS = frozenset({"text", "tool_calls", "length", "malformed_args", "unknown_tool"})
_STUB_EVENTS = frozenset({"mid_text", "mid_tool_call"})

DEFAULT_MAX_STEPS = 10_000
STEP_LIMIT_MESSAGE = "the turn took more than {n} decisions without halting; run loopspec check"


class Turn:
    """One turn: its own configuration, trajectory and guardrail memory; nothing shared."""

    def __init__(
        self,
        policy: Policy,
        provider: Provider,
        *,
        model: str,
        tools: ToolRegistry | None = None,
        consumers: Consumers | None = None,
        clock: Clock | None = None,
        approve: ApprovalHook | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        max_tokens: int | None = None,
        reasoning_effort: str | None = None,
        extra: dict[str, Any] | None = None,
        tool_choice: Any = None,
        callbacks: TurnCallbacks | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
        observers: Sequence[TurnObserver] = (),
        journal: JournalStore | None = None,
        turn_id: str | None = None,
        approvals: ApprovalSession | None = None,
    ) -> None:
        self.policy = policy
        self.provider = provider
        self._copy_messages = not getattr(provider, "leaves_messages_unchanged", False)
        """Whether each call sends copies of the history's messages (see ``Trajectory.working_copy``)."""
        self.model = model
        self.tools = tools or ToolRegistry()
        self.consumers = consumers or Consumers()
        self.clock: Clock = clock or RealClock()
        self.approve = approve
        self.approvals = approvals if approvals is not None else ApprovalSession(policy.approvals.auto_approve)
        """Auto-approval and what it spent (share one across a session's turns; see :mod:`.approvals`)."""
        self.api_base = api_base
        self.api_key = api_key
        self.max_tokens = max_tokens
        self.reasoning_effort = reasoning_effort or policy.settings.reasoning_effort
        self.extra = dict(extra or {})
        self.tool_choice = tool_choice
        """The caller's tool_choice (``"required"``, a named function): sent only with requests that
        offer tools, and replaced by ``"auto"`` once the policy resets it (``reset_tool_choice``)."""
        self.max_steps = max_steps
        """A safety net for a policy that never halts: after this many decisions the turn ends in
        the policy_error halt (a checked policy never gets near it)."""
        self.result: TurnResult | None = None
        self._cancel_requested = False
        self._cancel_seen = False
        """The turn has turned the cancel request into its ``cancelled`` event, or halted: a cancel
        scheduled before that must not land any more."""
        self._task: asyncio.Task[Any] | None = None
        self.callbacks = callbacks if callbacks is not None else TurnCallbacks()
        self.journal = journal
        self.turn_id = turn_id or uuid.uuid4().hex
        """The turn's name in its journal (and the prefix of its tools' idempotency keys)."""
        if journal is not None:  # first, so the journal has each fact before a tracer hears of it
            observers = [JournalWriter(journal, self.turn_id, api_key), *observers]
        self.observers = Observers(observers)
        """Who watches the turn's effects (traces, a journal); see :mod:`.observers`."""

    def cancel(self) -> None:
        """End the turn in its cancelled halt, at whatever point it is; safe from any thread.

        Before :meth:`run` the turn halts cancelled without sending a request. While it runs, the
        wait in progress (a request, a chunk, a backoff, a tool) is interrupted: the turn's task is
        cancelled from the event loop, never from inside itself, so the cancellation lands where the
        turn waits and not at some later await. A cancel that comes while the halt is delivered
        interrupts only the consumer it waits on: the halt is decided, and kept."""
        if self._cancel_requested:
            return
        self._cancel_requested = True
        task = self._task
        if task is None or task.done():
            return
        loop = task.get_loop()
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop and asyncio.current_task() is not task:
            self._interrupt()  # from another task or a callback: the turn is waiting, the cancel lands there
            return
        try:  # from inside the turn (a consumer, a tool in its task) or another thread: from the loop, next
            loop.call_soon_threadsafe(self._interrupt)
        except RuntimeError:  # the loop is closed: the turn is over
            pass

    def _interrupt(self) -> None:
        task = self._task
        if task is not None and not task.done() and not self._cancel_seen:
            task.cancel()

    # ------------------------------------------------------------------------------ callbacks

    # Run synchronously by the turn's transitions machine as it moves, before the step is recorded
    # and carried out; see TurnCallbacks. Register before run(); a callback that raises is recorded
    # in TurnResult.callback_errors.

    def on_enter(self, state: str, fn: Callback) -> None:
        self.callbacks.on_enter(state, fn)

    def on_exit(self, state: str, fn: Callback) -> None:
        self.callbacks.on_exit(state, fn)

    def before_state_change(self, fn: Callback) -> None:
        self.callbacks.before_state_change(fn)

    def after_state_change(self, fn: Callback) -> None:
        self.callbacks.after_state_change(fn)

    # ------------------------------------------------------------------------------ the loop

    async def run(self, messages: Sequence[dict[str, Any]]) -> TurnResult:
        """Run the turn from its opening ``messages`` to a halt (:class:`~.history.BadMessages`, before
        anything is sent, when they are not a list of chat messages)."""
        check_messages(messages)
        self._prepare(messages)
        self._announce(resumed=False)
        cfg = self.policy.initial_config()
        return await self._drive(cfg, Offer.from_flags(cfg.flags), Event("start", {}))

    def _announce(self, resumed: bool) -> None:
        replayed = bool(getattr(self.provider, "replayed", False))
        info = TurnInfo(self.policy.name, self.model, self.api_base, replayed, resumed)
        self.observers.notify("turn_started", info, self.trajectory.messages)

    def _prepare(self, messages: Sequence[dict[str, Any]]) -> None:
        """A fresh turn's state, before its first effect."""
        self._task = asyncio.current_task()
        policy = self.policy
        self.trajectory = Trajectory([dict(m) for m in messages], keep_last=policy.settings.compaction_keep_last)
        self.guardrails = GuardrailState(policy.guardrails)
        self.trace: list[TraceStep] = []
        self.steps: list[Step] = []
        self.requests: list[RequestRecord] = []
        self.usage = TurnUsage()
        self.meter = BudgetMeter(policy, self.usage, self.clock)
        self._model_call = ModelCall(self.provider, self.clock, self.consumers, self.usage)
        self._pending_calls: PendingBatch | None = None
        self._escalation_failed: str | None = None
        self._external_cancel = False
        self._pending_cancel = False
        self._batches_run = 0
        self._deadline = None if policy.settings.turn_deadline is None else self.clock.now() + policy.settings.turn_deadline
        self._model_call.deadline = self._deadline
        self._call_in_flight = False
        self._started = self.clock.now()
        self._journaled = len(self.trajectory.messages)  # the journal's begin entry holds these
        self._answered: dict[str, ToolResult] = {}
        self._announced: frozenset[str] = frozenset()
        self._interrupted: frozenset[str] = frozenset()
        self._decisions: dict[str, bool] = {}
        """A person's answers to a paused batch (call id -> approved), until that batch runs."""
        self._awaiting: list[ToolCall] = []
        """The calls the last batch left waiting for approval."""
        self._hook_errors: list[str] = []
        """The ``approve`` hook raised (reported with the callbacks' errors)."""

    async def resume(
        self, turn_id: str | None = None, *, approve: Sequence[str] = (), deny: Sequence[str] = ()
    ) -> TurnResult:
        """Go on with a turn from its journal's last checkpoint, to a halt (see :mod:`.resume`).

        Counters, flags, usage and guardrail memory continue from the checkpoint; the decisions
        before it are re-run through the policy and must lead where the journal says (else
        :class:`~.resume.ResumeError`, as for a turn that already ended or is not there). A call the
        crash interrupted is answered "may or may not have completed" unless its tool is idempotent.

        A turn paused for approval goes on with a person's answers: the calls in ``approve`` run,
        those in ``deny`` are answered "Denied" (ids of the paused calls; see :class:`AwaitingApproval`)."""
        from .resume import INTERRUPTED, ResumeError, resume_point

        if self.journal is None:
            raise ResumeError("a turn resumes from a journal: pass journal= to Turn")
        turn_id = turn_id or self.turn_id
        point = resume_point(self.policy, turn_id, self.journal.entries(turn_id))
        self.turn_id = turn_id
        for o in self.observers.observers:
            if isinstance(o, JournalWriter):
                o.turn_id = turn_id
        self._prepare(point.messages)
        self.trajectory.compaction_level = point.compaction_level  # (thinking is stripped per call, from the offer)
        self.guardrails.restore(point.guardrails)
        self.steps, self.trace, self.requests = point.steps, point.trace, point.requests
        for name, value in asdict(point.usage).items():
            setattr(self.usage, name, value)
        self._batches_run = point.batches_run
        self._pending_calls = point.pending
        self._model_call.reply = AssembledReply(text=point.reply_text)
        self._model_call.streamed, self._model_call.streamed_kept = point.streamed, point.streamed_kept
        self._journaled = len(point.messages)
        if self._deadline is not None:  # the deadline counts the time the turn ran before the crash
            self._deadline -= point.elapsed
            self._model_call.deadline = self._deadline
        self._started -= point.elapsed
        answered = dict(point.answered)
        for call in point.pending[1] if point.pending else []:
            tool = self.tools.tools.get(call.name)
            if call.id in point.interrupted and not (tool is not None and tool.idempotent):
                answered[call.id] = ToolResult(call, INTERRUPTED.format(tool=call.name), ok=False, ran=False)
        self._answered, self._announced = answered, frozenset(point.answered)
        self._interrupted = frozenset(answered) - frozenset(point.answered)
        self._decisions = dict(point.decisions)
        self.approvals.spent = max(self.approvals.spent, point.approval_spent)  # a crash never refunds the cap
        waiting = point.waiting
        if waiting is None:
            if approve or deny:
                raise ResumeError(f"turn {turn_id!r} is not awaiting approval: there is nothing to --approve or --deny")
            self._announce(resumed=True)
            return await self._drive(point.config, point.offer, point.last_event)
        decisions = {**{i: True for i in approve}, **{i: False for i in deny}}
        stray = sorted(set(decisions) - set(waiting))
        if stray or set(approve) & set(deny):
            why = f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} not awaiting approval" if stray else \
                f"{', '.join(sorted(set(approve) & set(deny)))} cannot be both approved and denied"
            raise ResumeError(f"turn {turn_id!r}: {why} (awaiting: {', '.join(waiting)})")
        if not decisions and self.approve is None:
            raise ResumeError(f"turn {turn_id!r} is awaiting approval of {', '.join(waiting)}: answer with "
                              "--approve CALL_ID or --deny CALL_ID (approve= or deny= in Python)")
        self._decisions = decisions  # the batch runs again with them, from its checkpoint
        self._announce(resumed=True)
        return await self._drive(point.config, point.offer, point.last_event)

    async def _drive(self, cfg: Config, offer: Offer, last_event: Event) -> TurnResult:
        """The loop, from ``cfg`` to a halt: effect, step, machine move, record, carry out."""
        policy = self.policy
        turn_model = TurnModel.acquire(policy, self.callbacks)
        turn_model.state = cfg.state
        callback_errors = turn_model.callback_errors
        overrun: str | None = None
        try:
            while True:
                state = policy.states[cfg.state]
                if state.kind == "halt":
                    break
                if len(self.steps) >= self.max_steps:  # a loop `loopspec check` reports as not halting
                    overrun = STEP_LIMIT_MESSAGE.format(n=self.max_steps)
                    cfg = Config(policy.policy_error_state(), cfg.counters, cfg.flags)
                    break
                if self.observers.wants_checkpoints and state.kind in ("call", "tool_exec"):
                    self.observers.notify("checkpoint", self._checkpoint(cfg, last_event, offer))
                if self.observers.broken is not None:  # a journal that cannot be written: no effect goes unrecorded
                    overrun = f"the turn stopped: {self.observers.broken}"
                    cfg = Config(policy.policy_error_state(), cfg.counters, cfg.flags)
                    break
                event = await self._effect(state, cfg, offer)
                step = policy.step(cfg, event, self.meter.measure(cfg))
                turn_model.perform(step)
                self._record(step)
                await self._carry_out(step)
                cfg, last_event = step.after, event
                offer = step.offer or offer
        finally:
            turn_model.release()
            # a cancel asked for before the halt is moot now (the halt is decided): it must not land
            # in the delivery; one asked for during the delivery interrupts the consumer it waits on
            self._cancel_seen = self._cancel_seen or self._cancel_requested
            await self._absorbing(self._model_call.close())
        result = await self._halt(cfg, last_event, overrun, [*callback_errors, *self._hook_errors])
        result.pause = self._pause(last_event)
        result.observer_errors = self.observers.errors
        self.observers.notify("turn_halted", result)
        if self._external_cancel and not self._cancel_requested:
            raise asyncio.CancelledError()
        return result

    def _pause(self, last_event: Event) -> AwaitingApproval | None:
        """The turn halted because its batch waits for a person: with a journal to go on from, that
        is a pause, not an end (without one, the approval halt is the end it always was)."""
        if self.journal is None or last_event.name != "approval_required" or not self._awaiting or not self.steps:
            return None
        if self.policy.states[self.steps[-1].after.state].outcome != "approval_required":
            return None  # the policy ended the turn for another reason (a backstop, say): an end, not a pause
        return AwaitingApproval(self.turn_id, self.steps[-1].before.state, tuple(c.to_json() for c in self._awaiting))

    async def _absorbing(self, waiting: Awaitable[Any]) -> bool:
        """Await ``waiting``; a cancellation that lands there is noted, not raised: the next
        call, stream or tool effect observes ``cancelled`` (and an outside cancel of the task is
        re-raised once the turn has halted). False when it was cancelled."""
        try:
            await waiting
        except asyncio.CancelledError:
            self._note_cancel()
            self._pending_cancel = True
            return False
        return True

    def _checkpoint(self, cfg: Config, last_event: Event, offer: Offer) -> dict[str, Any]:
        """What the turn needs to go on from the top of its loop, before the effect of ``cfg``'s
        state (JSON-safe): written to a journal, so a crash loses at most that effect."""
        messages = self.trajectory.messages
        new, self._journaled = messages[self._journaled :], len(messages)
        pending = self._pending_calls
        return {
            "step": len(self.steps),
            "state": cfg.state,
            "counters": list(cfg.counters),
            "flags": sorted(cfg.flags),
            "offer": asdict(offer),
            "messages": [dict(m) for m in new],
            "message_count": len(messages),
            "compaction_level": self.trajectory.compaction_level,
            "usage": asdict(self.usage),
            "batches_run": self._batches_run,
            "elapsed": self.clock.now() - self._started,
            "reply_text": self._model_call.reply.text,
            "streamed": self._model_call.streamed,
            "streamed_kept": self._model_call.streamed_kept,
            "last_event": {"name": last_event.name, "attrs": dict(last_event.attrs)},
            "pending": None if pending is None else {"text": pending[0], "calls": [c.to_json() for c in pending[1]]},
            "guardrails": self.guardrails.to_json(),
            "decisions": dict(self._decisions),
            "approval_spent": self.approvals.spent,
        }

    def _variables(self, cfg: Config, event: Event) -> dict[str, Any]:
        policy = self.policy
        variables: dict[str, Any] = dict(event.attrs)
        variables.update(
            response=self._model_call.reply.text,
            event=event.name,
            guardrail=event.name if "verdict" in event.attrs else "",
            reason=reason_of(event),
            model_calls=policy.value(cfg, "model_calls"),
            tool_batches=policy.value(cfg, "tool_batches"),
            max_model_calls=policy.backstops["model_calls"].max,
            max_tool_batches=policy.backstops["tool_batches"].max,
            max_wait=policy.settings.max_wait,
        )
        return variables

    def _record(self, step: Step) -> None:
        self.steps.append(step)
        record = TraceStep.of(self.policy, step, len(self.trace))
        self.trace.append(record)
        if self.observers:
            self.observers.notify("step_taken", step, record)

    # ------------------------------------------------------------------------------ effects

    async def _effect(self, state: State, cfg: Config, offer: Offer) -> Event:
        """Run the state's effect. Entry effects that the step already listed (a continuation
        prompt, an escalation's compaction) were carried out with that step."""
        kind = state.kind
        if kind in ("call", "stream", "tool_exec") and (self._cancel_requested or self._pending_cancel or self._past_deadline()):
            self._cancel_seen = self._cancel_seen or self._cancel_requested
            await self._absorbing(self._model_call.close())
            self._pending_cancel = False
            cancelled = Event("cancelled", {})
            self._call_finished(cancelled, None)  # a stream opened and never read: its call ends here
            return cancelled
        try:
            if kind == "call":
                return await self._call(offer)
            if kind == "stream":
                return await self._consume()
            if kind == "stub":
                return self._model_call.stub()
            if kind == "continue":
                return Event("done", {})
            if kind == "tool_exec":
                return await self._run_tools()
            if kind == "escalate":
                return await self._escalate(state, cfg)
        except (asyncio.CancelledError, DeadlinePassed) as exc:
            if isinstance(exc, asyncio.CancelledError):
                self._note_cancel()
            self._cancel_seen = self._cancel_seen or self._cancel_requested
            await self._absorbing(self._model_call.close())
            self._call_finished(Event("cancelled", {}), None)
            if kind in ("call", "stream", "tool_exec"):
                self._pending_cancel = False
                return Event("cancelled", {})
            self._pending_cancel = True
            return Event("done", {})
        raise AssertionError(f"no effect for kind {kind}")  # pragma: no cover

    def _past_deadline(self) -> bool:
        """The policy's turn_deadline has passed (cancellation by the clock)."""
        return self._deadline is not None and self.clock.now() >= self._deadline

    def _note_cancel(self) -> None:
        """A CancelledError was turned into the ``cancelled`` event. If it came from outside (the
        caller cancelled the task, not :meth:`cancel` or the deadline), re-raise it after the halt."""
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            task.uncancel()
            if not self._cancel_requested:
                self._external_cancel = True

    async def _call(self, offer: Offer) -> Event:
        self.trajectory.strip_thinking = offer.thinking_stripped
        request = build_request(
            offer,
            self.trajectory.working_copy(copy=self._copy_messages),
            settings=self.policy.settings,
            tools=self.tools,
            model=self.model,
            max_tokens=self.max_tokens,
            reasoning_effort=self.reasoning_effort,
            extra=self.extra,
            api_base=self.api_base,
            api_key=self.api_key,
            tool_choice=self.tool_choice,
        )
        uncompacted = self.trajectory.compaction_level <= 0  # the request's user messages are the history's
        self.requests.append(record_of(request, self.trajectory.last_user_content() if uncompacted else None))
        self._call_in_flight = True
        self.observers.notify("model_call_started", len(self.requests), request)
        event = judge_wait(await self._model_call.open(request, self.policy.settings.request_timeout), self.policy.settings.max_wait)
        if event.name != "opened":
            self._call_finished(event, None)
        return event

    async def _consume(self) -> Event:
        event = await self._model_call.consume(self.tools, self.policy.settings.stall_timeout, self._stop_reading)
        self._call_finished(event, self._model_call.reply)
        return event

    def _call_finished(self, event: Event, reply: Any) -> None:
        """Tell the observers how the model call in flight ended (once; no call, nothing)."""
        if self._call_in_flight:
            self._call_in_flight = False
            self.observers.notify("model_call_finished", len(self.requests), event, reply)

    def _stop_reading(self) -> bool:
        """Asked before each chunk: the turn was cancelled or its deadline passed."""
        return self._cancel_requested or self._past_deadline()

    async def _run_tools(self) -> Event:
        pending, self._pending_calls = self._pending_calls, None
        # a resumed batch: the answers its journal holds (used once, by the batch the crash cut)
        answered, self._answered = self._answered, {}
        announced, self._announced = self._announced, frozenset()
        interrupted, self._interrupted = self._interrupted, frozenset()
        decisions, self._decisions = self._decisions, {}
        self._awaiting = []
        self._batches_run += 1
        settings = self.policy.settings
        return await run_batch(
            pending, tools=self.tools, approve=self.approve, trajectory=self.trajectory, guardrails=self.guardrails,
            clock=self.clock, tool_timeout=settings.tool_timeout, batch_timeout=settings.tool_batch_timeout,
            deadline=self._deadline, observers=self.observers,
            answered=answered, announced=announced, interrupted=interrupted,
            decisions=decisions, awaiting=self._awaiting, rules=self.policy.approvals, session=self.approvals,
            hook_errors=self._hook_errors,
        )

    async def _escalate(self, state: State, cfg: Config) -> Event:
        """The step that entered ``state`` carried out its apply list; report whether it took."""
        failed, self._escalation_failed = self._escalation_failed, None
        if failed is not None:
            return Event("failed", {"message": failed})
        if "fallback_model" in cfg.flags and not self.policy.settings.fallback_model:
            return Event("failed", {"message": "no fallback_model in settings"})
        await self._absorbing(self.consumers.emit("on_status", f"escalate: {state.name}"))
        return Event("done", {})

    # ------------------------------------------------------------------------------ after a step

    async def _carry_out(self, step: Step) -> None:
        """Commit what the model said as the step's fate for its tool calls says, then perform the
        step's directives in order."""
        event = step.event
        reply = self._model_call.reply
        if event.name in _REPLY_EVENTS or event.name in _STUB_EVENTS:
            self._model_call.streamed_kept = True  # the history keeps the reply, and so its text
            if step.fate == FATE_RUN:
                self._pending_calls = (reply.text, self.trajectory.calls_of(reply))
            elif step.fate == FATE_REFUSE:
                calls = self.trajectory.calls_of(reply)
                content = self.policy.render(step.refusal or "", self._variables(step.after, event))
                refused = [ToolResult(c, content, ok=False, ran=False) for c in calls]
                self.trajectory.add_tool_round(reply.text, calls, refused)
                for r in refused:
                    self.observers.notify("tool_finished", r.call, r)
            else:
                self.trajectory.add_assistant_text(reply.text)
        if not step.directives:  # most steps: nothing to render, so no template variables to build
            return
        entering_escalate = self.policy.states[step.after.state].kind == "escalate"
        for d in step.directives:
            await self._directive(d, step, entering_escalate)

    async def _directive(self, d: Directive, step: Step, entering_escalate: bool) -> None:
        action, event = d.action, step.event
        if isinstance(action, Append):  # the variables are built here, when a template is rendered
            self.trajectory.add_user(self.policy.render(action.template, self._variables(step.after, event)))
        elif isinstance(action, Backoff):
            # Retry-After may lengthen the schedule's wait, never past backoff.max_wait (a 429 asking
            # for an hour is the wait_too_long case, which default.yaml halts on instead); no wait
            # outlasts the turn's deadline, and none starts once the turn is cancelled
            asked = min(float(event.get("retry_after", 0.0) or 0.0), self.policy.settings.max_wait)
            delay = max(d.delay, asked)
            if not await self._absorbing(self.consumers.emit("on_status", f"{event.name}: retrying in {delay:g} s")):
                return
            wait, _ = bounded(self.clock, delay, self._deadline)
            if not (self._cancel_requested or self._pending_cancel):
                slept = self.clock.now()
                await self._absorbing(self.clock.sleep(wait or 0.0))
                self.meter.exclude(self.clock.now() - slept)
        elif isinstance(action, Compact):
            if not self.trajectory.compact() and entering_escalate:
                self._escalation_failed = "nothing left to compact"

    # ------------------------------------------------------------------------------ the halt

    async def _halt(self, cfg: Config, event: Event, message: str | None, callback_errors: list[str]) -> TurnResult:
        """Render the halt message (unless given) and deliver it once to every consumer, then persist it.

        The result is kept on the turn before anything is delivered, and a cancellation that lands
        in a consumer during delivery is noted and the delivery goes on: the halt is decided, a
        cancel cannot lose it nor deliver its message twice."""
        policy = self.policy
        state = policy.states[cfg.state]
        if message is None:
            message = render_template(state.message or "", self._variables(cfg, event), policy.settings.max_message_bytes)
        streamed = self._model_call.streamed
        if not (streamed and message.startswith(streamed)):
            # "{response}\n\n(...)" with nothing written must not start with blank lines; a message
            # that continues the streamed text keeps it byte for byte
            message = message.strip()
        continues = bool(streamed) and message.startswith(streamed)
        extra = message[len(streamed):] if continues else message
        msgs = self.trajectory.messages
        last = msgs[-1] if msgs else {}
        written = last.get("role") == "assistant" and last.get("content") == message
        if streamed and not self._model_call.streamed_kept and not written:
            # text the consumers saw that no reply kept (a cancel, the deadline or a broken stream
            # cut it): the history keeps it as they saw it, then the halt's own message
            if continues:
                self.trajectory.add_assistant_text(message)
            else:
                self.trajectory.add_assistant_text(streamed)
                if message:
                    self.trajectory.add_assistant_text(message)
        elif extra.strip() and not written:
            self.trajectory.add_assistant_text(extra if streamed else message)
        # what happened, not what the budgets were charged: a call state entered and then cancelled
        # spends a model call of the backstop but sends no request
        self.usage.model_calls = len(self.requests)
        self.meter.amounts()  # working time up to the halt
        self.usage.tool_batches = self._batches_run
        result = self.result = TurnResult(
            outcome=state.outcome or "policy_error",
            halt_state=state.name,
            message=message,
            response=self._model_call.reply.text,
            messages=self.trajectory.messages,
            trace=self.trace,
            usage=self.usage,
            requests=self.requests,
            consumer_errors=list(self.consumers.errors),
            steps=self.steps,
            error=next((str(s.event.attrs["message"]) for s in reversed(self.steps) if s.event.attrs.get("message")), None),
            callback_errors=callback_errors,
        )
        if extra.strip():
            await self._absorbing(self.consumers.emit("on_delta", extra))
        await self._absorbing(self.consumers.emit("on_end"))
        await self._absorbing(self.consumers.emit("on_interim", message, not extra.strip()))
        await self._absorbing(self.consumers.emit("on_status", f"halt: {state.outcome}"))
        result.consumer_errors = list(self.consumers.errors)
        return result


async def run_turn(
    policy: Policy, messages: Sequence[dict[str, Any]], provider: Provider, *, model: str, **options: Any
) -> TurnResult:
    """Run one turn; see :class:`Turn` for the options (tools, consumers, clock, approve, ...)."""
    return await Turn(policy, provider, model=model, **options).run(messages)


def run_turn_sync(
    policy: Policy, messages: Sequence[dict[str, Any]], provider: Provider, *, model: str, **options: Any
) -> TurnResult:
    """:func:`run_turn` for synchronous callers (starts its own event loop)."""
    return asyncio.run(run_turn(policy, messages, provider, model=model, **options))
