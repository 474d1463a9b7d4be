"""The built-in properties, defined once, over :class:`~loopspec.language.model.Step` records.

``loopspec check`` runs :func:`advance` on every edge of its abstract graph, replay runs it over
the steps of a real turn (cassette ``expect.properties``), and the Hypothesis suite runs it over
generated turns: one definition, one set of names, so a counterexample that ``check`` writes fails
the same property when it is replayed.

Names (as in ``check --json`` and cassette expectations):

``halts``
    every path halts within its caps (proven by the checker; a replayed turn fails it when the
    interpreter's step limit had to end it).
``halt_message``
    every halt delivers a non-empty message to every consumer.
``no_partial_tool_exec``
    a truncated or partial tool call (a ``length`` cut with ``has_tool_calls``, a stall
    ``mid_tool_call``, a ``mid_tool_call`` stub) is never routed to a ``tool_exec`` state without
    ``drop_tool_calls``. The semantics never runs such calls; a policy that routes them to execution
    spends a tool batch on nothing and believes otherwise.
``tools_stay_disabled``
    once ``tools_disabled`` is set nothing clears it, and no tool batch runs after it (a model may
    still answer with tool calls when none were offered).
``stub_not_silent``
    a mid-tool-call stub (or a stall mid tool call) never ends the turn as ``completed`` while the
    continuation budget lasts (some counter spent on continuations is below its cap).
``history_valid``
    every complete tool call the model makes is run, refused with a message, or dropped on purpose
    (``drop_tool_calls``, the tool-batch backstop); none is silently ignored. On a real turn the
    message history itself is checked as well (each call answered exactly once, no orphan results).
``events_handled``
    every event a state's effect can emit has an enabled transition (else the turn falls into the
    ``policy_error`` halt).
``no_backstop_only_loops``
    every loop has a bound of its own, or is declared ``bounded_by`` the backstop that ends it
    (static only; a warning, ``--strict`` makes it a failure).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .model import CALLS_PARTIAL, FATE_IGNORE, FATE_RUN, Config, DropToolCalls, Policy, Step

PROPERTY_DOCS: dict[str, str] = {
    "halts": "every path halts within its caps",
    "halt_message": "every halt delivers a non-empty message",
    "no_partial_tool_exec": "no truncated or partial tool call is routed to tool execution",
    "tools_stay_disabled": "once tools are disabled in a turn they stay disabled and no tool batch runs",
    "stub_not_silent": "a mid-tool-call stub is not a silent end of the turn while its continuation budget lasts",
    "history_valid": "every tool call is run, refused or dropped on purpose; the history stays valid",
    "events_handled": "every event a state's effect can emit is handled",
    "no_backstop_only_loops": "no loop is bounded only by a global backstop unless declared bounded_by",
}

STEP_PROPERTIES = ("no_partial_tool_exec", "tools_stay_disabled", "stub_not_silent", "history_valid", "events_handled")
"""The properties :func:`advance` decides step by step."""

RUN_PROPERTIES = ("halts", "halt_message", *STEP_PROPERTIES)
"""The properties a cassette may expect of one replayed turn."""

Violation = tuple[str, str]
"""(property name, why)."""


@dataclass(frozen=True)
class Watch:
    """What the step properties remember between steps of one turn."""

    silent: bool = False
    """A mid-tool-call stub with continuation budget left, not yet followed by a model call."""


def continuation_counters(policy: Policy) -> tuple[int, ...]:
    """Counters incremented on transitions into continue states: the continuation budget (found
    once per policy: every replayed turn's properties ask, and a corpus replays thousands)."""
    found: tuple[int, ...] | None = policy.__dict__.get("_continuation_counters")
    if found is None:
        out: set[int] = set()
        for s in policy.states.values():
            for t in s.all_transitions():
                if policy.states[t.target].kind == "continue":
                    out.update(inc.index for inc in t.increments())
        found = tuple(sorted(out))
        object.__setattr__(policy, "_continuation_counters", found)
    return found


def budget_lasts(policy: Policy, cfg: Config, continuation: tuple[int, ...]) -> bool:
    """The continuation budget lasts: some counter spent on continuations is below its cap."""
    if not continuation:
        return True
    return any(cfg.counters[i] < policy.counters[i].max for i in continuation)


def advance(policy: Policy, watch: Watch, step: Step, continuation: tuple[int, ...]) -> tuple[Watch, list[Violation]]:
    """Advance the step properties over one step: the new watch and the violations this step makes."""
    v: list[Violation] = []
    ev = step.event
    t = step.transition
    src_kind = policy.states[step.before.state].kind
    dst = policy.states[step.after.state]
    name = t.label if t is not None else f"{step.before.state} --{ev.name}-->"

    if t is None:
        v.append(("events_handled", f"'{ev.name}' in '{step.before.state}' has no enabled transition"))

    if (
        t is not None
        and step.calls == CALLS_PARTIAL
        and policy.states[t.target].kind == "tool_exec"
        and not any(isinstance(a, DropToolCalls) for a in t.actions)
    ):
        v.append(("no_partial_tool_exec", f"truncated tool call(s) from '{ev.name}' are routed to tool execution in '{t.target}'"))

    if step.fate == FATE_IGNORE:
        v.append(
            (
                "history_valid",
                f"tool call(s) from '{ev.name}' are neither run, refused nor dropped: '{name}' leads to "
                f"'{step.after.state}', a {dst.kind} state",
            )
        )

    before_off = "tools_disabled" in step.before.flags
    if before_off and "tools_disabled" not in step.after.flags:
        v.append(("tools_stay_disabled", f"tools were disabled and '{name}' enables them again"))
    if before_off and step.fate == FATE_RUN:
        v.append(("tools_stay_disabled", f"tools were disabled, the model asked for tools anyway, and '{name}' runs them"))

    silent = watch.silent
    stub_cut = step.calls == CALLS_PARTIAL and (src_kind == "stub" or ev.name == "stalled")
    if stub_cut and budget_lasts(policy, step.before, continuation):
        silent = True
    if dst.kind == "halt" and silent and dst.outcome == "completed":
        v.append(("stub_not_silent", f"a mid-tool-call stub ends the turn as 'completed' in '{step.after.state}' while the continuation budget lasts"))
    if dst.kind in ("call", "stream", "tool_exec", "halt"):
        silent = False
    return (watch if silent == watch.silent else Watch(silent)), v


def trace_violations(policy: Policy, steps: Iterable[Step]) -> list[Violation]:
    """Every step-property violation along one turn's steps, in order."""
    cont = continuation_counters(policy)
    watch = Watch()
    out: list[Violation] = []
    for step in steps:
        watch, v = advance(policy, watch, step, cont)
        out.extend(v)
    return out


def first_violation(name: str, violations: Sequence[Violation]) -> str:
    """The first reason ``name`` fails among ``violations``, or '' when it holds."""
    return next((why for p, why in violations if p == name), "")
