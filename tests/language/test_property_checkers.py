"""The property checkers themselves, on inputs known to be bad and inputs known to be good.

Every history and trace assertion in the suite goes through ``history_problems`` and
``loopspec.language.properties``; if either turned into a no-op, every property test would pass.
These tests hand each checker a bad input it must flag (by name, with the reason) and the nearest
good input it must accept, so a checker that flags nothing, or everything, fails here.
"""

from __future__ import annotations

from typing import Any

import pytest

from loopspec import load_policy_text
from loopspec.engine.history import history_problems
from loopspec.language.alphabet import Event
from loopspec.language.model import Config, Policy, Step
from loopspec.language.properties import (
    STEP_PROPERTIES,
    Watch,
    advance,
    continuation_counters,
    first_violation,
    trace_violations,
)

from _policy_text import handles

# ------------------------------------------------------------------------------ history_problems


def call(cid: str, name: str = "lookup") -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": "{}"}}


def asks(*ids: str) -> dict[str, Any]:
    return {"role": "assistant", "content": "", "tool_calls": [call(i) for i in ids]}


def answer(cid: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": cid, "content": "ok"}


USER = {"role": "user", "content": "go"}


def test_a_history_with_every_call_answered_once_is_valid() -> None:
    good = [USER, asks("a", "b", "c"), answer("a"), answer("b"), answer("c"), {"role": "assistant", "content": "done"}]
    assert history_problems(good) == []


@pytest.mark.parametrize(
    ("history", "why"),
    [
        ([USER, asks("a")], "tool call 'a' answered 0 times"),
        ([USER, asks("a", "b", "c"), answer("a"), answer("b")], "tool call 'c' answered 0 times"),
        ([USER, asks("a", "b"), answer("a"), answer("b"), answer("b")], "tool call 'b' answered 2 times"),
        ([USER, answer("x")], "message 1: tool result for unknown call 'x'"),
        ([USER, answer("a"), asks("a")], "message 1: tool result for unknown call 'a'"),
        ([USER, asks("a"), answer("a"), asks("b"), answer("a")], "tool call 'b' answered 0 times"),
    ],
    ids=["unanswered", "last-of-batch-unanswered", "answered-twice", "orphan", "answer-before-call", "wrong-answer"],
)
def test_history_problems_flags_each_kind_of_bad_history(history: list[dict[str, Any]], why: str) -> None:
    """A history checker that stopped flagging any one of these would let every history assertion
    in the suite pass on a broken interpreter."""
    assert why in history_problems(history)


# ------------------------------------------------------------------------------ step properties

POLICY = """\
loopspec: 1
initial: ask
counters:
  continuations: {max: 1}
flags:
  spare: {}
templates:
  more: "Continue."
backstops:
  model_calls: {max: 6, exhausted: out}
  tool_batches: {max: 3, exhausted: out}
states:
  ask:
    kind: call
    on: CALL_EVENTS
  read:
    kind: stream
    on: STREAM_EVENTS
  stub:
    kind: stub
    on: {mid_text: out, mid_tool_call: STUB}
  more:
    kind: continue
    prompt: more
    on: {done: ask}
  tools:
    kind: tool_exec
    on: {ok: ask, failed: ask, repeated_exact_failure: out, same_tool_failure: out, no_progress: out,
         doom_loop: out, approval_required: out, timeout: out, cancelled: out}
  off:
    kind: escalate
    apply: [disable_tools]
    on: {done: ask, failed: out}
  note:
    kind: escalate
    apply: [NOTE_APPLY]
    on: {done: tools, failed: out}
  done: {kind: halt, outcome: completed, message: "{response}"}
  out: {kind: halt, outcome: backstop, message: "stopped"}
""".replace("CALL_EVENTS", handles("call", "out", opened="read")).replace(
    "STREAM_EVENTS", handles("stream", "out", text='done', tool_calls='TOOL_CALLS', length='LENGTH', empty='off', stalled='stub', broken='UNHANDLED')
)

GOOD = {
    "TOOL_CALLS": "tools",
    "LENGTH": "{do: [drop_tool_calls], to: out}",
    "STUB": "[{do: [{increment: continuations}], to: more}, out]",
    "UNHANDLED": "out",
    "NOTE_APPLY": "{set: spare}",
}


def policy(**changes: str) -> Policy:
    text = POLICY
    for key, value in {**GOOD, **changes}.items():
        text = text.replace(key, value)
    return load_policy_text(text)


def walk(p: Policy, events: list[Event], flags: frozenset[str] = frozenset()) -> list[Step]:
    cfg = Config(p.initial, p.initial_config().counters, flags)
    steps = []
    for ev in events:
        step = p.step(cfg, ev)
        steps.append(step)
        cfg = step.after
    return steps


OPEN = Event("opened", {})
TOOL_CALLS = Event("tool_calls", {"tools": ["lookup"], "count": 1, "chars": 10})
CUT_TOOL = Event("length", {"has_tool_calls": True, "dropped_tools": ["lookup"], "thinking_only": False, "chars": 10})
STALL_IN_TOOL = Event("stalled", {"chars": 10, "mid_tool_call": True})
STUB_CUT = Event("mid_tool_call", {"chars": 10, "cut_tools": ["lookup"]})
BROKEN = Event("broken", {"cause": "disconnect", "chars": 0, "message": ""})

# (property, the policy change that breaks it, the events that show it, initial flags)
CASES: dict[str, tuple[dict[str, str], list[Event], frozenset[str]]] = {
    "events_handled": ({"UNHANDLED": "[{when: {flag: spare}, to: out}]"}, [OPEN, BROKEN], frozenset()),
    "no_partial_tool_exec": ({"LENGTH": "tools"}, [OPEN, CUT_TOOL], frozenset()),
    "history_valid": ({"TOOL_CALLS": "note"}, [OPEN, TOOL_CALLS], frozenset()),
    "tools_stay_disabled": ({}, [OPEN, TOOL_CALLS], frozenset({"tools_disabled"})),
    "stub_not_silent": ({"STUB": "done"}, [OPEN, STALL_IN_TOOL, STUB_CUT], frozenset()),
}


def test_every_step_property_has_a_known_bad_case() -> None:
    assert sorted(CASES) == sorted(STEP_PROPERTIES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_step_property_flags_its_known_bad_trace(name: str) -> None:
    """The broken policy's trace violates exactly the property it was built to break."""
    changes, events, flags = CASES[name]
    p = policy(**changes)
    violations = trace_violations(p, walk(p, events, flags))
    assert first_violation(name, violations), violations
    assert {v[0] for v in violations} == {name}, violations


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_step_property_accepts_the_same_trace_under_the_good_policy(name: str) -> None:
    """The same events under the good policy violate nothing, so the bad case is flagged for the
    policy change and not for the events (except tools_stay_disabled, whose bad case is the
    starting flag: without it, the run is clean)."""
    _changes, events, _flags = CASES[name]
    p = policy()
    assert trace_violations(p, walk(p, events)) == []


def test_tools_stay_disabled_flags_a_transition_that_clears_the_flag() -> None:
    p = policy(TOOL_CALLS="note", NOTE_APPLY="{clear: tools_disabled}")
    steps = walk(p, [OPEN, TOOL_CALLS, Event("done", {})], frozenset({"tools_disabled"}))
    assert "enables them again" in first_violation("tools_stay_disabled", trace_violations(p, steps))


def test_stub_not_silent_allows_a_completed_end_once_the_continuation_budget_is_spent() -> None:
    """Ending as completed after a cut tool call is silent only while the budget lasts: with the
    budget spent, the same end is no violation; with budget left, it is."""
    p = policy(STUB="[{do: [{increment: continuations}], to: more}, done]")
    cont = continuation_counters(p)
    assert cont, "transitions into a continue state make a continuation budget"

    def violations_from(counters: tuple[int, ...]) -> list[tuple[str, str]]:
        cfg, watch, out = Config("read", counters, frozenset()), Watch(), []
        for ev in [STALL_IN_TOOL, STUB_CUT]:
            step = p.step(cfg, ev)
            watch, v = advance(p, watch, step, cont)
            out += v
            cfg = step.after
        return out

    spent = tuple(c.max if i in cont else 0 for i, c in enumerate(p.counters))
    assert violations_from(spent) == []
    with_budget = policy(STUB="done")
    assert continuation_counters(with_budget) == ()  # no budget at all: it always "lasts"
    assert first_violation("stub_not_silent", trace_violations(with_budget, walk(with_budget, [OPEN, STALL_IN_TOOL, STUB_CUT])))


def test_first_violation_names_the_first_reason_of_that_property_only() -> None:
    violations = [("history_valid", "first"), ("events_handled", "other"), ("history_valid", "second")]
    assert first_violation("history_valid", violations) == "first"
    assert first_violation("tools_stay_disabled", violations) == ""
