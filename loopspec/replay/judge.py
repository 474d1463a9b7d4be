"""Judging a replayed turn: its expectations (outcome, bounds, messages, requests, counters,
properties) and the first step at which its decisions part from a stored trace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from loopspec.engine.history import history_problems
from loopspec.engine.results import TraceStep, TurnResult
from loopspec.language.diagnostics import closest
from loopspec.language.graph import describe_guard
from loopspec.language.model import Policy
from loopspec.language.properties import first_violation, trace_violations

from .cassette import Cassette, RecordedStep
from .cassette_model import as_bound


@dataclass
class TraceDivergence:
    """The first step at which a replay's decisions part from the recorded ones."""

    step: int
    recorded: RecordedStep | None
    actual: TraceStep | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "recorded": vars(self.recorded) if self.recorded else None,
            "actual": {"state": self.actual.state, "event": self.actual.event, "target": self.actual.target,
                       "transition": self.actual.transition} if self.actual else None,
            "reason": self.reason,
        }


def decision_path(result: TurnResult) -> list[tuple[str, str, str]]:
    """(state, event, target) per step: what a snapshot or a diff compares."""
    return [(s.state, s.event, s.target) for s in result.trace]


def first_difference(old: Sequence[tuple[str, str, str]], new: Sequence[tuple[str, str, str]]) -> int | None:
    """The first step at which two decision paths differ, or where the shorter one ends (a run cut
    by the step limit or a crash, the other going on); None when they are the same."""
    part = next((i for i, (x, y) in enumerate(zip(old, new)) if x != y), None)
    if part is None and len(old) != len(new):
        part = min(len(old), len(new))
    return part


def compare_trace(recorded: Sequence[RecordedStep], result: TurnResult, policy: Policy) -> TraceDivergence | None:
    """Where the decisions first differ from the recorded trace, naming the guard that decided."""
    actual = result.trace
    for i in range(max(len(recorded), len(actual))):
        rec = recorded[i] if i < len(recorded) else None
        act = actual[i] if i < len(actual) else None
        if rec is not None and act is not None and (rec.state, rec.event, rec.target) == (act.state, act.event, act.target):
            continue
        if rec is None or act is None:
            reason = "the replay took more steps than recorded" if rec is None else "the replay ended before the recorded trace did"
            return TraceDivergence(i, rec, act, reason)
        if (rec.state, rec.event) != (act.state, act.event):
            return TraceDivergence(i, rec, act, f"observed {act.event} in {act.state}, recorded {rec.event} in {rec.state}")
        reason = f"in {act.state} on {act.event}: now -> {act.target}, recorded -> {rec.target}"
        transition = _transition_of(policy, act)
        if transition is not None:
            guard = describe_guard(transition.guard) or "no guard"
            reason += f", by transition {transition.label} (guard: {guard})"
            if act.redirected_from:
                reason += f", redirected from {act.redirected_from} by a backstop"
        elif act.transition is None:
            reason += ": no transition matched (policy_error)"
        return TraceDivergence(i, rec, act, reason)
    return None


def _transition_of(policy: Policy, step: TraceStep):  # type: ignore[no-untyped-def]
    state = policy.states.get(step.state)
    if state is None:
        return None
    for t in state.transitions.get(step.event, ()):
        if t.label == step.transition:
            return t
    return None


def divergence_message(c: Cassette, result: TurnResult, index: int) -> str:
    """Which call, what the cassette had, what the policy asked for, and how to fix it."""
    steps = [s for s in result.trace if s.kind == "call"]
    before = result.trace[steps[index].index - 1] if index < len(steps) and steps[index].index else None
    why = f", after {before.state} --{before.event}--> {before.target}" if before else ""
    asked = ""
    if index < len(result.requests):
        req = result.requests[index]
        prompt = req.last_user if len(req.last_user) <= 60 else req.last_user[:57] + "..."
        asked = f" It asked with tools {req.tools or 'none'} and last prompt {prompt!r}."
    return (
        f"diverged at model call {index + 1}: the cassette recorded {len(c.interactions)} model responses and the "
        f"policy asked for another{why}.{asked} Replay never invents a response: record the turn again "
        "under this policy (loopspec record), or add the response it needs to the cassette's interactions."
    )


def check_expectations(
    c: Cassette,
    result: TurnResult,
    policy: Policy,
    *,
    unconsumed: int,
    ran: Sequence[str] = (),
    elapsed: float | None = None,
) -> list[str]:
    """Every expectation that does not hold, as a sentence that says what to look at. ``ran`` is
    the tools that started running, ``elapsed`` the turn's seconds on its own clock."""
    e = c.expect
    out: list[str] = []
    if e.outcome is not None and result.outcome != e.outcome:
        out.append(f"outcome is {result.outcome} ({result.halt_state}), expected {e.outcome}")
    if e.outcome_any_of and result.outcome not in e.outcome_any_of:
        out.append(f"outcome is {result.outcome} ({result.halt_state}), expected one of {', '.join(e.outcome_any_of)}")
    if e.model_calls is not None:
        problem = as_bound(e.model_calls).violation(result.usage.model_calls)
        if problem:
            out.append(f"{result.usage.model_calls} model calls, {problem}")
    if e.tool_batches is not None:
        problem = as_bound(e.tool_batches).violation(result.usage.tool_batches)
        if problem:
            out.append(f"{result.usage.tool_batches} tool batches, {problem}")
    for s in e.final_response_contains:
        if s not in result.response:
            out.append(f"the model's last reply does not contain {s!r} (it is {result.response[:80]!r})")
    for s in e.message_contains:
        if s not in result.message:
            out.append(f"halt message does not contain {s!r} (it is {result.message[:80]!r})")
    for s in e.message_not_contains:
        if s in result.message:
            out.append(f"halt message contains {s!r}, expected it not to (it is {result.message[:80]!r})")
    for name in e.tools_never_ran:
        if name in ran:
            out.append(f"tool {name} ran {ran.count(name)} times, expected never")
    out += _counter_problems(c, result, policy)
    if e.elapsed is not None and elapsed is not None:
        problem = e.elapsed.violation(elapsed)
        if problem:
            out.append(f"the turn took {elapsed:g} s on its clock, {problem} s")
    if e.all_played and unconsumed:
        out.append(f"{unconsumed} recorded model responses were never played (the policy stopped early)")
    made = len(result.requests)
    for r in e.requests:
        position = r.index if r.index > 0 else made + r.index + 1
        if not 1 <= position <= made:
            out.append(f"request {r.index} was never made ({made} calls)")
            continue
        req = result.requests[position - 1]
        name = f"request {r.index}" if r.index > 0 else f"request {r.index} (call {position})"
        if r.tools == "absent" and req.tools:
            out.append(f"{name} carried tools {req.tools}, expected none")
        if r.tools == "present" and not req.tools:
            out.append(f"{name} carried no tools, expected some")
        if r.prompt_contains and r.prompt_contains not in req.last_user:
            out.append(f"{name}'s last prompt does not contain {r.prompt_contains!r}")
        for key, want in r.carries:
            got = getattr(req, key)
            if got != want:
                out.append(f"{name} carried {key} {got!r}, expected {want!r}")
    for label, limit in e.max_fires:
        fired = sum(1 for s in result.trace if s.transition == label)
        if fired > limit:
            out.append(f"transition {label} fired {fired} times, at most {limit} expected")
    for p in e.properties:
        problem = property_problem(p, result, policy)
        if problem:
            out.append(f"property {p} fails: {problem}")
    return out


def _counter_problems(c: Cassette, result: TurnResult, policy: Policy) -> list[str]:
    """``expect.counters``, judged on each counter's highest value over the turn."""
    out: list[str] = []
    names = policy.counter_names
    for name, bound in c.expect.counters:
        if name not in names:
            near = closest(name, names)  # the counters are listed already: only a likely typo is named
            out.append(
                f"expect.counters names {name!r}, which policy {policy.name} ({policy.file}) does not declare "
                f"(cassette {c.file}); its counters: {', '.join(names)}" + (f"; did you mean {near!r}?" if near else "")
            )
            continue
        highest = max((s.counters.get(name, 0) for s in result.trace), default=0)
        problem = bound.violation(highest)
        if problem:
            out.append(f"counter {name} reached {highest}, {problem}")
    return out


def property_problem(name: str, result: TurnResult, policy: Policy) -> str:
    """Why ``result`` breaks the built-in property ``name`` ('' when it holds). The step properties
    are the definitions ``loopspec check`` proves, run over the turn's own steps."""
    if name == "halts":
        if halted(result, policy):
            return ""
        return f"{result.message} (it was still in '{result.steps[-1].after.state}')"
    if name == "halt_message":
        return "" if result.message.strip() else f"halt {result.halt_state} delivered an empty message"
    problem = first_violation(name, trace_violations(policy, result.steps))
    if name == "history_valid" and not problem:
        problem = "; ".join(history_problems(result.messages))
    return problem


def halted(result: TurnResult, policy: Policy) -> bool:
    """The turn reached a halt of its own, rather than being ended by the interpreter's step limit."""
    if not result.steps:
        return True
    return policy.states[result.steps[-1].after.state].kind == "halt"
