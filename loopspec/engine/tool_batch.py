"""The ``tool_exec`` effect: run the pending batch of tool calls and report it as one event.

Every call of the batch is answered in the trajectory exactly once (run, awaiting approval, or
cancelled, timed out), so the history stays valid whatever ends the turn; the batch's results then go
through the guardrail detectors. The turn hands in what the batch needs and nothing else.

Every wait here is bounded when the policy says so: each call by ``settings.tool_timeout``, the
whole batch by ``settings.tool_batch_timeout``, and both by the turn's deadline. A call that
outlives a timeout is answered "timed out" and the batch reports ``timeout``; a deadline that
passes answers what is still running "not run" and ends the batch like a cancellation.
"""

from __future__ import annotations

import asyncio
from typing import Mapping

from loopspec.language.approvals import ApprovalRules

from loopspec.language.alphabet import Event

from .clock import Clock, DeadlinePassed, StallTimeout, bounded
from .guardrails import GuardrailState
from .history import Trajectory
from .observers import Observers
from .approvals import DENIED, ApprovalSession, decide_batch
from .tools import ApprovalHook, Tool, ToolCall, ToolRegistry, ToolResult, run_one, timed_out

PendingBatch = tuple[str, list[ToolCall]]
"""The text of the reply that asked for the calls, and the complete calls to run."""

NOT_RUN = {
    "cancelled": "Not run: the turn was cancelled.",
    "deadline": "Not run: the turn's deadline passed before this call finished.",
}
"""The answer of a call a cancellation or the turn's deadline stopped."""

AWAITING = "Not run: this call is awaiting human approval."
"""The answer of every call of a batch that waits for a person: a placeholder that keeps the
history valid, not the call's answer (a resumed batch decides approval again)."""


async def _run_call(tool: Tool | None, call: ToolCall, clock: Clock, timeout: float | None) -> ToolResult:
    """One call, answered "timed out" if it outlives ``timeout``."""
    if timeout is None:
        return await run_one(tool, call)
    try:
        return await clock.within(run_one(tool, call), timeout)
    except StallTimeout:
        return timed_out(call, timeout)


async def run_batch(
    pending: PendingBatch | None,
    *,
    tools: ToolRegistry,
    approve: ApprovalHook | None,
    trajectory: Trajectory,
    guardrails: GuardrailState,
    clock: Clock,
    tool_timeout: float | None = None,
    batch_timeout: float | None = None,
    deadline: float | None = None,
    observers: Observers | None = None,
    answered: Mapping[str, ToolResult] | None = None,
    announced: frozenset[str] = frozenset(),
    interrupted: frozenset[str] = frozenset(),
    decisions: Mapping[str, bool] | None = None,
    awaiting: list[ToolCall] | None = None,
    rules: ApprovalRules | None = None,
    session: ApprovalSession | None = None,
    hook_errors: list[str] | None = None,
) -> Event:
    """Run ``pending`` (concurrently if more than one call) and return ``ok``, ``failed``,
    ``timeout``, ``approval_required``, ``interrupted_tool`` or a guardrail event (guardrails first: they read every
    result, timed out ones included). On cancellation or at the ``deadline`` (clock time) the
    unanswered calls are answered "not run" and the ``CancelledError`` or :class:`DeadlinePassed`
    propagates to the turn.

    ``answered`` holds calls that already have their answer (a resumed batch: what the journal
    says finished, and the interrupted calls' "may or may not have completed"); they are not run.
    The observers hear of every answer except those in ``announced`` (already in the journal).
    ``interrupted`` names the answered calls a crash cut (answered "may or may not have
    completed"): the batch then reports ``interrupted_tool`` unless a guardrail fires.
    ``decisions`` are a person's answers to the calls a paused batch waited for (approved runs,
    refused is answered "Denied"); the calls still waiting for one are appended to ``awaiting``.
    ``rules`` are the policy's approval rules and ``session`` the auto-approval budget it charges
    (see :mod:`.approvals`); an ``approve`` hook that raises is noted in ``hook_errors``."""
    if not pending:  # nothing complete to run: a partial call never becomes a batch
        return Event("ok", {"tools": []})
    text, calls = pending
    names = [c.name for c in calls]
    watch = observers if observers else None
    known = dict(answered or {})
    whole = calls
    calls = [c for c in whole if c.id not in known]  # the calls to run now

    def merged(ran: list[ToolResult]) -> list[ToolResult]:
        fresh = iter(ran)
        return [known[c.id] if c.id in known else next(fresh) for c in whole]

    def tell(results: list[ToolResult]) -> None:
        _tell_finished(watch, [r for r in results if r.call.id not in announced])

    tasks: list[asyncio.Future[ToolResult]] = []
    try:
        asking = decide_batch(tools, calls, approve, decisions, rules, session)  # a human may take long: the deadline bounds it too
        left, _ = bounded(clock, None, deadline)
        if left is None:
            decided = await asking
        else:
            try:
                decided = await clock.within(asking, left)
            except StallTimeout:
                raise DeadlinePassed() from None
        blocked, denied = decided.waiting, decided.denied
        if hook_errors is not None:
            hook_errors.extend(decided.hook_errors)
        if blocked:
            results = merged([ToolResult(c, AWAITING, ok=False, ran=False) for c in calls])
            trajectory.add_tool_round(text, whole, results)
            tell(results)
            if awaiting is not None:
                awaiting.extend(blocked)
            return Event("approval_required", {"tool": blocked[0].name})
        if session is not None:  # the batch runs: its auto-approved calls spend from the cap
            session.spent += decided.auto_spend
        for c in denied:  # a person said no: answered so, and the rest of the batch runs
            known[c.id] = ToolResult(c, DENIED.format(tool=c.name), ok=False, ran=False)
        calls = [c for c in calls if c.id not in known]
        if watch is not None:
            for c in calls:
                watch.notify("tool_started", c)
        bound, by_deadline = bounded(clock, batch_timeout, deadline)
        if not calls:
            results = []
        elif len(calls) == 1:  # the common case: no task, no extra trip through the loop
            tool = tools.tools.get(calls[0].name)
            if bound is None or (tool_timeout is not None and tool_timeout < bound):
                # nothing bounds the batch, or the call's own timeout ends it first: one wait, not two nested
                results = [await _run_call(tool, calls[0], clock, tool_timeout)]
            else:
                try:  # the batch's bound ends it no later than the call's own timeout would
                    results = [await clock.within(run_one(tool, calls[0]), bound)]
                except StallTimeout:
                    if by_deadline:
                        raise DeadlinePassed() from None
                    assert batch_timeout is not None
                    results = [timed_out(calls[0], batch_timeout)]
        else:
            tasks = [asyncio.ensure_future(_run_call(tools.tools.get(c.name), c, clock, tool_timeout)) for c in calls]
            everything = asyncio.gather(*tasks)
            if bound is None:
                results = list(await everything)
            else:
                try:
                    results = list(await clock.within(everything, bound))
                except StallTimeout:
                    if by_deadline:
                        raise DeadlinePassed() from None
                    assert batch_timeout is not None
                    results = [_finished(t) or timed_out(c, batch_timeout) for t, c in zip(tasks, calls)]
    except (asyncio.CancelledError, DeadlinePassed) as exc:
        for t in tasks:
            t.cancel()
        why = NOT_RUN["deadline" if isinstance(exc, DeadlinePassed) else "cancelled"]
        results = merged([_finished(t) or ToolResult(c, why, ok=False, ran=False) for t, c in zip(tasks, calls)] if tasks else [
            ToolResult(c, why, ok=False, ran=False) for c in calls
        ])
        trajectory.add_tool_round(text, whole, results)
        tell(results)
        raise
    results = merged(results)
    trajectory.add_tool_round(text, whole, results)
    tell(results)
    guard = guardrails.observe(results)
    if guard is not None:
        return guard
    cut = [r.call.name for r in results if r.call.id in interrupted]
    if cut:
        return Event("interrupted_tool", {"tools": cut})
    late = [r.call.name for r in results if r.timed_out]
    if late:
        return Event("timeout", {"tools": late})
    if all(r.ok for r in results):
        return Event("ok", {"tools": names})
    return Event("failed", {"tools": [r.call.name for r in results if not r.ok]})


def _finished(task: asyncio.Future[ToolResult]) -> ToolResult | None:
    """The result of a call that finished before the batch was stopped."""
    return task.result() if task.done() and not task.cancelled() else None


def _tell_finished(observers: Observers | None, results: list[ToolResult]) -> None:
    """Every call of the batch has its answer: tell the observers, in call order."""
    if observers is not None:
        for r in results:
            observers.notify("tool_finished", r.call, r)
