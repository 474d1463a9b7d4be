"""The abstract graph keeps every distinct step from an abstract configuration as its own edge:
two transitions on one event to one place, and one transition measured at different budget
levels, are different edges; only a step repeated exactly is dropped."""

from __future__ import annotations

from typing import Any

from loopspec import load_policy_text
from loopspec.verify import check_policy
from loopspec.language.model import Config
from loopspec.verify.abstract_graph import build_graph, iter_base_steps
from loopspec.verify.cases import case_steps
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


def test_a_cut_tool_call_routed_to_the_tools_fails_though_a_plain_cut_takes_the_same_way() -> None:
    """``length: tools`` with no guard: a cut reply with a tool call in it and one without take the
    same transition to the same place, and only the first breaks no_partial_tool_exec. The graph
    keeps them apart by what the monitor reads (``has_tool_calls``); merged, the check would prove
    the property."""
    result = check_policy(_policy(POLICY.replace("length: out", "length: tools"))).properties["no_partial_tool_exec"]
    assert not result.passed
    assert result.counterexample is not None and result.counterexample.steps[-1].event == "length"


def test_a_stall_mid_tool_call_routed_to_the_tools_fails_though_a_plain_stall_takes_the_same_way() -> None:
    """``stalled: tools`` with no guard: a stall inside a tool call and one in the text are one
    transition to one place; only the first is a partial call sent to execution (``mid_tool_call``)."""
    result = check_policy(_policy(POLICY.replace("stalled: out", "stalled: tools"))).properties["no_partial_tool_exec"]
    assert not result.passed
    assert result.counterexample is not None and result.counterexample.steps[-1].event == "stalled"


CONTINUED = (POLICY.replace("tries: {max: 2}", "tries: {max: 2}\n  cont: {max: 1}")
             .replace("length: out", "length: [{when: {counter: cont, lt: 1}, do: [{increment: cont}], to: more}, out]")
             .replace("stalled: out", "stalled: done")
             + "  more:\n    kind: continue\n    prompt: go_on\n    on: {done: ask}\ntemplates:\n  go_on: Go on.\n")
"""A continuation spends ``cont``; a stall ends the turn as completed whether or not it lasts."""


def test_a_stall_is_a_step_of_its_own_with_the_continuation_budget_lasting_and_spent() -> None:
    """From the stream, a stall (in the text, in a tool call) with the continuation budget left and
    with it spent takes one transition to one halt; the monitor reads whether the budget lasts
    (stub_not_silent), so all four are distinct steps of the graph, and the halt is found silent."""
    policy = _policy(CONTINUED)
    an = build_analysis(policy)
    steps = [s for s in iter_base_steps(an, "read", frozenset(), an.phases_of(policy.initial_config().counters))
             if s.event.name == "stalled"]
    seen = {(bool(s.event.attrs["mid_tool_call"]), an.budget_lasts(s.before)) for s in steps}
    assert seen == {(False, False), (False, True), (True, False), (True, True)} and len(steps) == 4
    result = check_policy(policy).properties["stub_not_silent"]
    assert not result.passed


def test_a_stall_ending_the_turn_only_once_the_continuation_budget_is_spent_is_not_silent() -> None:
    """mutmut ``properties.monitor_step_5``: the monitor was not told which counters are the
    continuation budget, and took it as lasting always. Here a stall goes on while ``cont`` lasts
    and ends the turn as completed only once it is spent: no step is a silent stub, so the check
    proves stub_not_silent, with and without the full enumeration."""
    text = CONTINUED.replace("stalled: done", "stalled: [{when: {counter: cont, lt: 1}, do: [{increment: cont}], to: more}, done]")
    policy = _policy(text)
    g = build_graph(build_analysis(policy))
    assert not any(p == "stub_not_silent" for e in g.edges for p, _ in e.violations)
    assert {n.state for n in g.nodes if n.silent} == {"more"}, "silent only on the way to the model"
    for limit in (0, 100_000):
        result = check_policy(policy, enumerate_limit=limit)
        assert result.exploration["full_enumeration"] == (limit > 0)
        assert result.properties["stub_not_silent"].passed


def test_the_steps_evaluated_are_every_step_of_every_case_duplicates_included() -> None:
    """The statistic ``check --json`` prints as ``model_steps`` counts each step the graph's
    construction asks the model for, kept or dropped as a duplicate."""
    policy = _policy(CONTINUED)
    an = build_analysis(policy)
    phases = an.phases_of(policy.initial_config().counters)
    kept = list(iter_base_steps(an, "read", frozenset(), phases))
    asked = 0
    for ev_name in an.events_of("read"):
        sel = an.selection("read", ev_name)
        for case in an.abstract_cases("read", frozenset(), phases, ev_name):
            asked += len(case_steps(sel, Config("read", case.counters, case.flags), case))
    assert an.steps_evaluated == asked > len(kept)


def _every_step_is_an_edge(policy: Any) -> None:
    """Each step the model takes from each node's configurations (every case of every event, at
    every budget level) is on one of that node's edges: same transition, same next node."""
    an = build_analysis(policy)
    g = build_graph(an)
    for n in g.nodes:
        if an.kind(n.state) == "halt":
            continue
        edges = {(id(e.transition), e.dst.state, e.dst.flags, e.dst.phases) for e in g.out[n]}
        for ev_name in an.events_of(n.state):
            sel = an.selection(n.state, ev_name)
            for case in an.abstract_cases(n.state, n.flags, n.phases, ev_name):
                for step in case_steps(sel, Config(n.state, case.counters, case.flags), case):
                    after = an.node_of(step.after)
                    assert (id(step.transition), after.state, after.flags, after.phases) in edges, (n, step)


def test_every_step_from_a_node_is_one_of_its_edges() -> None:
    """The graph is complete: nothing the model can do from a node is missing from its edges, in a
    policy with counters, one with a continuation and one with budgets (whose levels make several
    steps of one case, some of them the same step)."""
    for text, load in ((POLICY, _policy), (CONTINUED, _policy), (BUDGETS, lambda t: load_policy_text(t, "budgets.yaml"))):
        _every_step_is_an_edge(load(text))
