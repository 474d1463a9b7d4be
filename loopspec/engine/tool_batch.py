"""The ``tool_exec`` effect: run the pending batch of tool calls and report it as one event.

Every call of the batch is answered in the trajectory exactly once (run, awaiting approval, or
cancelled), so the history stays valid whatever ends the turn; the batch's results then go through
the guardrail detectors. The turn hands in what the batch needs and nothing else.
"""

from __future__ import annotations

import asyncio

from loopspec.language.alphabet import Event

from .guardrails import GuardrailState
from .history import Trajectory
from .observers import Observers
from .tools import ApprovalHook, ToolCall, ToolRegistry, ToolResult, needs_approval, run_one

PendingBatch = tuple[str, list[ToolCall]]
"""The text of the reply that asked for the calls, and the complete calls to run."""


async def run_batch(
    pending: PendingBatch | None,
    *,
    tools: ToolRegistry,
    approve: ApprovalHook | None,
    trajectory: Trajectory,
    guardrails: GuardrailState,
    observers: Observers | None = None,
) -> Event:
    """Run ``pending`` (concurrently if more than one call) and return ``ok``, ``failed``,
    ``approval_required`` or a guardrail event. On cancellation the unanswered calls are answered
    "cancelled" and the ``CancelledError`` propagates to the turn."""
    if not pending:  # nothing complete to run: a partial call never becomes a batch
        return Event("ok", {"tools": []})
    text, calls = pending
    names = [c.name for c in calls]
    watch = observers if observers else None
    blocked = await needs_approval(tools, calls, approve)
    if blocked is not None:
        results = [ToolResult(c, "Not run: this call is awaiting human approval.", ok=False, ran=False) for c in calls]
        trajectory.add_tool_round(text, calls, results)
        _finished(watch, results)
        return Event("approval_required", {"tool": blocked.name})
    tasks: list[asyncio.Future[ToolResult]] = []
    if watch is not None:
        for c in calls:
            watch.notify("tool_started", c)
    try:
        if len(calls) == 1:  # the common case: no task, no extra trip through the event loop
            results = [await run_one(tools.tools.get(calls[0].name), calls[0])]
        else:
            tasks = [asyncio.ensure_future(run_one(tools.tools.get(c.name), c)) for c in calls]
            results = list(await asyncio.gather(*tasks))
    except asyncio.CancelledError:
        for t in tasks:
            t.cancel()
        done = {id(c): t.result() for t, c in zip(tasks, calls) if t.done() and not t.cancelled()}
        results = [done.get(id(c)) or ToolResult(c, "Not run: the turn was cancelled.", ok=False, ran=False) for c in calls]
        trajectory.add_tool_round(text, calls, results)
        _finished(watch, results)
        raise
    trajectory.add_tool_round(text, calls, results)
    _finished(watch, results)
    guard = guardrails.observe(results)
    if guard is not None:
        return guard
    if all(r.ok for r in results):
        return Event("ok", {"tools": names})
    return Event("failed", {"tools": [r.call.name for r in results if not r.ok]})


def _finished(observers: Observers | None, results: list[ToolResult]) -> None:
    if observers is not None:
        for r in results:
            observers.notify("tool_finished", r.call, r)
