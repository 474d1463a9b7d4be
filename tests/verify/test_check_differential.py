"""Differential: full enumeration and counter elimination agree on generated small policies.

For every generated policy the full concrete enumeration (through ``Policy.step``) is the ground
truth. Counter elimination must be sound against it: when it proves halting the policy halts, its
bounds are at least the exact maxima (overall and per outcome), every state a run reaches is in the
abstract graph, and every property a concrete run violates is a finding of the abstract graph. The
witness walks are concrete, so their figures never exceed the exact ones.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, note
from hypothesis import strategies as st

from loopspec import load_policy_text
from loopspec.verify import check_policy
from loopspec.verify.abstract_graph import build_graph
from loopspec.verify.abstraction import build_analysis
from loopspec.verify.explore import enumerate_all, witness_walks
from loopspec.verify.termination import eliminate, worst_case

STATES = {
    "ask": "call",
    "read": "stream",
    "stub": "stub",
    "go_on": "continue",
    "tools": "tool_exec",
    "fix": "escalate",
    "done": "halt",
    "failed": "halt",
    "out": "halt",
}
EVENTS = {
    "call": ["opened", "rate_limit", "context_overflow"],
    "stream": ["text", "tool_calls", "empty", "length", "stalled", "broken"],
    "stub": ["mid_text", "mid_tool_call"],
    "continue": ["done"],
    "tool_exec": ["ok", "failed"],
    "escalate": ["done", "failed"],
}
ATTR_GUARDS = {
    "length": [{"attr": "has_tool_calls"}, {"attr": "thinking_only"}],
    "broken": [{"attr": "cause", "eq": "overflow"}],
    "stalled": [{"attr": "mid_tool_call"}],
}
COUNTERS = ["a", "b"]
NON_HALT = [s for s, k in STATES.items() if k != "halt"]


@st.composite
def guards(draw: st.DrawFn, event: str) -> Any:
    options: list[Any] = [None]
    options += [{"counter": c, "lt": n} for c in COUNTERS for n in (1, 2)]
    options += [{"flag": "f"}, {"flag": "f", "is": False}, {"flag": "tools_disabled"}]
    options += ATTR_GUARDS.get(event, [])
    g = draw(st.sampled_from(options))
    if g is not None and draw(st.integers(0, 5)) == 0:
        g = {"not": g}
    return g


@st.composite
def transitions(draw: st.DrawFn, event: str) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(1, 2))):
        t: dict[str, Any] = {"to": draw(st.sampled_from(list(STATES)))}
        g = draw(guards(event))
        if g is not None:
            t["when"] = g
        actions: list[Any] = []
        for _ in range(draw(st.integers(0, 2))):
            a = draw(
                st.sampled_from(
                    [
                        {"increment": "a"},
                        {"increment": "b"},
                        {"reset": "a"},
                        {"reset": "b"},
                        {"set": "f"},
                        {"clear": "f"},
                        "disable_tools",
                        "drop_tool_calls",
                    ]
                )
            )
            if a not in actions:
                actions.append(a)
        if actions:
            t["do"] = actions
        if event == "tool_calls" and draw(st.booleans()):
            t["bounded_by"] = "tool_batches"
        out.append(t)
    if draw(st.booleans()):
        out.append({"to": draw(st.sampled_from(["done", "failed", "out"]))})
    return out


@st.composite
def small_policies(draw: st.DrawFn) -> str:
    states: dict[str, Any] = {}
    for name, kind in STATES.items():
        if kind == "halt":
            outcome = {"done": "completed", "failed": "provider_error", "out": "backstop"}[name]
            states[name] = {"kind": "halt", "outcome": outcome, "message": "{response} (" + name + ")"}
            continue
        body: dict[str, Any] = {"kind": kind}
        if kind == "continue":
            body["prompt"] = "more"
        if kind == "escalate":
            body["apply"] = draw(st.sampled_from([["compact"], ["disable_tools"], [{"reset": "a"}], [{"set": "f"}]]))
        on: dict[str, Any] = {}
        for ev in EVENTS[kind]:
            if draw(st.integers(0, 6)) == 0:
                continue  # unhandled: the policy_error halt
            on[ev] = draw(transitions(ev))
        body["on"] = on
        states[name] = body
    doc = {
        "loopspec": 1,
        "initial": "ask",
        "templates": {"more": "more"},
        "counters": {"a": {"max": draw(st.integers(1, 2))}, "b": {"max": draw(st.integers(1, 3))}},
        "flags": {"f": {}},
        "backstops": {
            "model_calls": {"max": draw(st.integers(2, 5)), "exhausted": "out", **({"wrap_up": "fix"} if draw(st.booleans()) else {})},
            "tool_batches": {"max": draw(st.integers(1, 3)), "exhausted": draw(st.sampled_from(["out", "fix"]))},
        },
        "states": states,
    }
    return yaml.safe_dump(doc, sort_keys=False)


@given(small_policies())
def test_elimination_agrees_with_full_enumeration(text: str) -> None:
    note(text)
    policy = load_policy_text(text, "gen.yaml")
    an = build_analysis(policy)
    g = build_graph(an)
    term = eliminate(an, g)
    enum = enumerate_all(an, limit=100_000)
    assert enum is not None, "generated policies are small enough to enumerate"
    # soundness of termination
    if term.halts:
        assert enum.halts, "elimination proved halting but a concrete run loops"
    # bounds are upper bounds of the exact maxima
    upper = worst_case(an, g, term)
    if enum.halts and term.halts:
        for key, figs in enum.worst.items():
            assert key in upper, f"outcome {key} reached concretely but missing from the abstract graph"
            for b, v in figs.items():
                assert upper[key][b] >= v, (key, b, upper[key][b], v)
    # the abstract graph covers every concrete finding
    abstract_violations = {name for e in g.edges for name, _ in e.violations}
    assert set(enum.violations) <= abstract_violations
    # witnesses are concrete runs: never above the exact figures
    wit = witness_walks(an, upper, seconds=0.05)
    for key, figs in wit.best.items():
        for b, v in figs.items():
            assert v <= enum.worst.get(key, {}).get(b, 0), (key, b)


@given(small_policies())
def test_check_policy_verdict_matches_enumeration(text: str) -> None:
    """The public result: halting verdict and exact figures come from enumeration when it is small."""
    policy = load_policy_text(text, "gen.yaml")
    r = check_policy(policy, witness_seconds=0.02)
    an = build_analysis(policy)
    enum = enumerate_all(an, limit=100_000)
    assert enum is not None
    assert r.halts == enum.halts
    if enum.halts:
        for b, f in r.worst_case.items():
            assert f.exact and f.value == enum.worst["*"][b]
    else:
        cex = r.properties["halts"].counterexample
        assert cex is not None and cex.concrete and cex.loop_start is not None
    for name in ("no_partial_tool_exec", "tools_stay_disabled", "stub_not_silent", "history_valid"):
        assert r.properties[name].passed == (name not in enum.violations), name
