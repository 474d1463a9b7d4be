"""Deciding which calls of a batch may run: the policy's approval rules, a person's answers to a
paused batch, the turn's ``approve`` hook, and auto-approval within the session's spending cap.

Auto-approval follows ml-intern's loop (huggingface/ml-intern, ``agent/core/agent_loop.py``): a
call the rules mark ``ask`` is approved without a person when auto-approval is on, the tool can
estimate the call's cost, and the estimate fits what is left of the session's cap; a call that
would pass the cap, or whose cost cannot be estimated, goes to a person, and a ``person`` call
always does. The calls of one batch reserve their estimates in order, so two calls cannot both fit
the last of the cap; the session is charged only when the batch runs.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Mapping

from loopspec.language.approvals import APPROVAL_NONE, APPROVAL_PERSON, ApprovalRules

from .tools import ApprovalHook, Tool, ToolCall, ToolRegistry

DENIED = "Denied: the user did not approve this call, so '{tool}' was not run."
"""The answer of a call a person refused when the paused turn was resumed."""


@dataclass
class ApprovalSession:
    """Auto-approval for one conversation: whether it is on, and what its auto-approved calls have
    spent. Pass the same object to every :class:`~loopspec.Turn` of the session, so the cap holds
    across turns; a turn's journal records ``spent``, so it also holds across a crash."""

    auto_approve: bool = False
    spent: float = 0.0


@dataclass(frozen=True)
class BatchApproval:
    """What the approvals decided for a batch."""

    waiting: list[ToolCall]
    """Calls that need a person who has not answered: the batch does not run."""
    denied: list[ToolCall]
    """Calls a person refused: answered "Denied", the rest of the batch runs."""
    auto_spend: float = 0.0
    """What the auto-approved calls of the batch are estimated to cost (charged when it runs)."""
    hook_errors: tuple[str, ...] = ()
    """The ``approve`` hook raised: ``"approve: Type: message"`` (that call waits, as if refused)."""


def estimate(tool: Tool, call: ToolCall) -> float | None:
    """The tool's estimate of the call's cost: a finite number at least 0, else None (no estimator,
    an estimator that raises, or one that answers anything else)."""
    if tool.cost_estimator is None:
        return None
    try:
        value = tool.cost_estimator(**(call.parsed or {}))
    except Exception:  # an estimator that fails cannot estimate: a person decides
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


async def decide_batch(
    registry: ToolRegistry,
    calls: list[ToolCall],
    approve: ApprovalHook | None,
    decisions: Mapping[str, bool] | None = None,
    rules: ApprovalRules | None = None,
    session: ApprovalSession | None = None,
) -> BatchApproval:
    """Decide each call of a batch, in order: no approval needed; a person's answer to a pause
    (``decisions``, call id -> approved); auto-approval within the cap; else the ``approve`` hook,
    and a call it does not grant waits."""
    rules = rules or ApprovalRules()
    waiting: list[ToolCall] = []
    denied: list[ToolCall] = []
    errors: list[str] = []
    reserved = 0.0
    for call in calls:
        tool = registry.tools.get(call.name)
        if tool is None:
            continue
        args: Mapping[str, Any] = call.parsed or {}
        level = rules.level(call.name, args, registered=tool.needs_approval)
        if level == APPROVAL_NONE:
            continue
        if decisions is not None and call.id in decisions:
            if not decisions[call.id]:
                denied.append(call)
            continue
        if level != APPROVAL_PERSON and session is not None and session.auto_approve:
            cost = estimate(tool, call)
            if cost is not None and session.spent + reserved + cost <= rules.spending_cap:
                reserved += cost
                continue
        granted: Any = False
        if approve is not None:
            try:
                granted = approve(call)
                if inspect.isawaitable(granted):
                    granted = await granted
            except Exception as exc:  # a broken hook approves nothing; the turn keeps its history
                errors.append(f"approve: {type(exc).__name__}: {exc}")
                granted = False
        if not granted:
            waiting.append(call)
    return BatchApproval(waiting, denied, reserved, tuple(errors))
