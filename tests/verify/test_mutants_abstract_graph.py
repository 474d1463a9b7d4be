"""The abstract graph keeps every distinct step from an abstract configuration as its own edge:
two transitions on one event to one place, and one transition measured at different budget
levels, are different edges; only a step repeated exactly is dropped."""

from __future__ import annotations

from typing import Any

from loopspec import load_policy_text
from loopspec.verify import check_policy
from loopspec.verify.abstract_graph import build_graph
from loopspec.verify.abstraction import build_analysis

from test_mutants_budget_usage import POLICY as BUDGETS
from test_mutants_cover import POLICY, _policy


def _labels(policy: Any, state: str) -> set[str]:
    g = build_graph(build_analysis(policy))
    return {e.transition.label for e in g.edges if e.src.state == state and e.transition is not None}


def test_two_transitions_on_one_event_to_one_state_are_two_edges() -> None:
    """A guarded answer and the catch-all after it both end in ``done``: each is an edge, so
    neither is reported dead."""
    text = POLICY.replace("text: [{when: {counter: tries, lt: 1}, do: [{increment: tries}], to: ask}, "
                          "{when: {attr: chars, gt: 3}, to: done}, out]", "text: [{when: {attr: chars, gt: 3}, to: done}, done]")
    policy = _policy(text)
    assert {"read --text[0]--> done", "read --text[1]--> done"} <= _labels(policy, "read")
    assert check_policy(policy, strict=True).to_json()["structure"]["shadowed_transitions"] == []


def test_one_step_measured_at_each_budget_level_is_an_edge_each() -> None:
    """The tool loop's way back to the call, measured below the budgets, at the warning and at the
    max: the last is redirected to the budget's halt, which is therefore reachable."""
    policy = load_policy_text(BUDGETS, "budgets.yaml")
    g = build_graph(build_analysis(policy))
    back = [e for e in g.edges if e.src.state == "tools" and e.step.event.name == "ok"]
    targets = {(e.dst.state, frozenset(e.dst.flags)) for e in back}
    assert any(t[0] == "out" for t in targets)
    assert any(t[0] == "ask" and "input_tokens_warned" in t[1] for t in targets)
    assert any(t[0] == "ask" and "input_tokens_warned" not in t[1] for t in targets)


def test_a_silent_stub_is_remembered_across_the_states_between_it_and_the_halt() -> None:
    """A mid-tool-call stub that spends a continuation and then goes, through an escalation and no
    model call, to a completed halt: the stub's silence is carried by the abstract node of the
    state in between, so the check fails stub_not_silent with that run."""
    text = (POLICY.replace("stalled: out", "stalled: cut")
            + "  cut:\n    kind: stub\n    on: {mid_text: out, mid_tool_call: {do: [{increment: tries}], to: nudge}}\n"
            + "  nudge:\n    kind: escalate\n    apply: [compact]\n    on: {done: done, failed: out}\n")
    policy = _policy(text)
    assert any(n.state == "nudge" and n.silent for n in build_graph(build_analysis(policy)).nodes)
    result = check_policy(policy).properties["stub_not_silent"]
    assert not result.passed and result.counterexample is not None
    assert [(s.state, s.event) for s in result.counterexample.steps] == [
        ("ask", "opened"), ("read", "stalled"), ("cut", "mid_tool_call"), ("nudge", "done")]
