"""The built-in properties, as a monitor over model steps and as questions about the abstract graph.

The monitor (:func:`monitor_step`) is the one definition of the step-local properties. The abstract
explorer runs it on every abstract edge (its state is part of the abstract node), and the concrete
explorer runs the same function on concrete steps to find the shortest counterexample, so a finding
and its counterexample always agree.

Properties (names as in ``check --json``):

``halts``
    every path halts within its caps (proven by counter elimination, :mod:`.termination`).
``halt_message``
    every reachable halt delivers a non-empty message: its template has visible literal text, or
    renders ``{response}`` only after a ``text`` reply (which carries visible text by definition).
``no_partial_tool_exec``
    no tool runs from a truncated or partial tool call: a ``length`` cut with ``has_tool_calls``, a
    stall ``mid_tool_call`` or a ``mid_tool_call`` stub never reaches a ``tool_exec`` state before
    the next model call, unless ``drop_tool_calls`` removed them.
``tools_stay_disabled``
    once ``tools_disabled`` is set no step (transition or escalation) clears it, so every later call
    is made without tools.
``stub_not_silent``
    a mid-tool-call stub (or a stall mid tool call) never ends the turn as ``completed`` while the
    continuation budget lasts (some counter spent on continuations is below its cap).
``history_valid``
    complete tool calls are answered exactly once: they reach a ``tool_exec`` state, are refused
    (``refuse_tools``) or explicitly dropped before the next model call or halt (the interpreter
    only writes a tool call into the history together with its result).
``events_handled``
    every event a state's effect can emit has an enabled transition in every configuration (else the
    turn falls into the ``policy_error`` halt).
``no_backstop_only_loops``
    every loop has a bound of its own, or is declared ``bounded_by`` the backstop that ends it
    (a warning; ``--strict`` makes it a failure).
"""

from __future__ import annotations

from string import Formatter
from typing import TYPE_CHECKING

from ..spec.model import DropToolCalls, RefuseTools, Step

if TYPE_CHECKING:  # pragma: no cover
    from .abstraction import Analysis

PROPERTY_DOCS: dict[str, str] = {
    "halts": "every path halts within its caps",
    "halt_message": "every halt delivers a non-empty message",
    "no_partial_tool_exec": "no tool executes from a truncated or partial tool call",
    "tools_stay_disabled": "once tools are disabled in a turn they stay disabled",
    "stub_not_silent": "a mid-tool-call stub is not a silent end of the turn while its continuation budget lasts",
    "history_valid": "the message history stays valid (each tool call answered exactly once)",
    "events_handled": "every event a state's effect can emit is handled",
    "no_backstop_only_loops": "no loop is bounded only by a global backstop unless declared bounded_by",
}

PENDING_NONE, PENDING_COMPLETE, PENDING_PARTIAL = 0, 1, 2

_CLEARS_PENDING = (DropToolCalls, RefuseTools)


def monitor_step(an: "Analysis", pending: int, silent: bool, step: Step) -> tuple[int, bool, list[tuple[str, str]]]:
    """Advance the property monitor over one model step; return (pending, silent, violations)."""
    policy = an.policy
    ev = step.event
    src_kind = an.kind(step.before.state)
    dst = step.after.state
    dst_state = policy.states[dst]
    dst_kind = dst_state.kind
    t = step.transition
    v: list[tuple[str, str]] = []

    stub_cut = (src_kind == "stub" and ev.name == "mid_tool_call") or (
        src_kind == "stream" and ev.name == "stalled" and bool(ev.attrs.get("mid_tool_call"))
    )
    if src_kind == "stream":
        if ev.name == "tool_calls":
            pending = PENDING_COMPLETE
        elif (ev.name == "length" and bool(ev.attrs.get("has_tool_calls"))) or stub_cut:
            pending = PENDING_PARTIAL
        else:
            pending = PENDING_NONE
    elif src_kind == "stub":
        pending = PENDING_PARTIAL if ev.name == "mid_tool_call" else PENDING_NONE
    if stub_cut and an.budget_lasts(step.before):
        silent = True

    if t is not None and any(isinstance(a, _CLEARS_PENDING) for a in t.actions):
        pending = PENDING_NONE
    if step.redirected_from is not None and policy.states[step.redirected_from].kind == "tool_exec":
        # The tool-batch backstop redirected the batch away from execution; the interpreter drops it
        # and the exhausted state's prompt explains (see the report on model.py).
        pending = PENDING_NONE
    if dst_kind == "escalate" and any(isinstance(a, _CLEARS_PENDING) for a in dst_state.apply):
        pending = PENDING_NONE

    if dst_kind == "tool_exec":
        if pending == PENDING_PARTIAL:
            v.append(("no_partial_tool_exec", f"truncated tool call(s) from '{ev.name}' reach tool execution in '{dst}'"))
        pending = PENDING_NONE
    elif dst_kind in ("call", "halt"):
        if pending == PENDING_COMPLETE:
            where = "the next model call" if dst_kind == "call" else f"the turn ends in '{dst}'"
            v.append(("history_valid", f"tool call(s) from '{ev.name}' are neither run, refused nor dropped before {where}"))
        pending = PENDING_NONE

    if dst_kind == "halt" and silent and dst_state.outcome == "completed":
        v.append(
            (
                "stub_not_silent",
                f"a mid-tool-call stub ends the turn as 'completed' in '{dst}' while the continuation budget lasts",
            )
        )
    if dst_kind in ("call", "stream", "tool_exec", "halt"):
        silent = False

    before_td = "tools_disabled" in step.before.flags
    after_td = "tools_disabled" in step.after.flags
    if before_td and not after_td:
        v.append(("tools_stay_disabled", f"tools were disabled and '{_edge_name(step)}' enables them again"))
    return pending, silent, v


def _edge_name(step: Step) -> str:
    t = step.transition
    if t is None:
        return f"{step.before.state} --{step.event.name}-->"
    return t.label


# --------------------------------------------------------------------------- halt messages

_FMT = Formatter()


def message_problem(template: str | None, incoming_events: set[str]) -> str | None:
    """Why a halt message may render empty for some consumer, or None when it never can."""
    text = template or ""
    literal = []
    names = []
    try:
        for lit, name, _spec, _conv in _FMT.parse(text):
            literal.append(lit)
            if name is not None:
                names.append(name)
    except ValueError:
        return f"message template {text!r} does not parse"
    if "".join(literal).strip():
        return None
    if not names:
        return "message is empty: consumers receive nothing between the role and the finish chunk"
    if set(names) == {"response"} and incoming_events and incoming_events <= {"text"}:
        return None
    risky = sorted(set(names))
    return (
        f"message {text!r} has no text of its own and may render empty "
        f"({', '.join(risky)} can be empty when reached by {', '.join(sorted(incoming_events)) or 'the initial state'})"
    )
