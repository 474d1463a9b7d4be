"""The halting proof's bounds (loopspec/verify/termination.py) against full enumeration, on policies
written so that each part of the bound is tight: a counter reset by an enclosing loop bounds its
loop once per entry into it, a counter nothing resets bounds it once per turn, and the amounts a
transition spends divide the cap. An upper bound below what a concrete run reaches is a false
"proven worst case", the worst defect the checker can have."""

from __future__ import annotations

from typing import Any

import pytest

from loopspec import load_policy_text
from loopspec.verify.abstract_graph import build_graph
from loopspec.verify.abstraction import build_analysis
from loopspec.verify.enumeration import enumerate_all
from loopspec.verify.termination import eliminate, worst_case

from _policy_text import handles, tool_loop

HEAD = """\
loopspec: 1
initial: ask
counters:
  tries: {max: TRIES}
  empties: {max: 2}
backstops:
  model_calls: {max: CALLS, exhausted: out}
  tool_batches: {max: BATCHES, exhausted: out}
states:
"""
HALTS = ('  done: {kind: halt, outcome: completed, message: "{response}"}\n'
         '  out: {kind: halt, outcome: backstop, message: "stopped"}\n')


def _text(text_handler: str, tool_calls: str, tries: int = 2, calls: int = 100, batches: int = 3) -> str:
    head = HEAD.replace("TRIES", str(tries)).replace("CALLS", str(calls)).replace("BATCHES", str(batches))
    return head + tool_loop("out", {"opened": "read"}, {"text": text_handler, "tool_calls": tool_calls}, {"ok": "ask"}) + HALTS


RETRY = "[{when: {counter: tries, lt: TRIES}, do: [{increment: tries}], to: ask}, done]"

CASES = {
    # the retries start over after every tool batch: (tries + 1) calls per round, batches + 1 rounds
    "reset_per_round": _text(RETRY.replace("TRIES", "2"), "{do: [{reset: tries}], to: tools}"),
    # nothing resets them: the retries are spent once in the whole turn
    "never_reset": _text(RETRY.replace("TRIES", "2"), "tools"),
    # each retry spends two of five: two retries per round (0, 2, 4; a third would pass the cap)
    # two retry loops, each with its own counter, both reset by the tool batch
    "two_loops": _text(RETRY.replace("TRIES", "2"), "{do: [{reset: tries}, {reset: empties}], to: tools}").replace(
        "empty: out", "empty: [{when: {counter: empties, lt: 2}, do: [{increment: empties}], to: ask}, done]"),
    # an empty reply ends the turn as "empty" only while fewer than two tool batches ran: that
    # outcome's halts all lie in the tool batches' low phase (at most cap - 2)
    "guarded_exit": _text(RETRY.replace("TRIES", "2"), "{do: [{reset: tries}], to: tools}").replace(
        "empty: out", "empty: [{when: {counter: tool_batches, lt: 2}, to: quit}, out]")
        + '  quit: {kind: halt, outcome: empty, message: "nothing came"}\n',
    # a refused key ends the turn (outcome auth_failed) only at the first call state; after a tool
    # batch the turn goes on in a second call state with retries of its own, and never comes back
    "separate_branch": _text(RETRY.replace("TRIES", "2"), "tools").replace(
        handles("call", "out", opened="read"), handles("call", "out", opened="read", auth="quit")).replace(
        handles("tool_exec", "out", ok="ask"), handles("tool_exec", "out", ok="again")) + (
        "  again:\n    kind: call\n    on: " + handles("call", "out", opened="more") + "\n"
        "  more:\n    kind: stream\n    on: " + handles(
            "stream", "out", text="[{when: {counter: empties, lt: 2}, do: [{increment: empties}], to: again}, done]") + "\n"
        '  quit: {kind: halt, outcome: auth_failed, message: "no key"}\n'),
    "spends_two": _text(RETRY.replace("TRIES", "5").replace("{increment: tries}", "{increment: tries, by: 2}"),
                        "{do: [{reset: tries}], to: tools}", tries=5),
}


def _proof(text: str) -> tuple[Any, Any, Any, Any]:
    policy = load_policy_text(text, "bounds.yaml")
    an = build_analysis(policy)
    g = build_graph(an)
    term = eliminate(an, g)
    enum = enumerate_all(an, limit=200_000)
    assert term.halts and enum is not None and enum.halts
    return an, g, term, enum


def _figures(text: str) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    an, g, term, enum = _proof(text)
    return worst_case(an, g, term), enum.worst


def _retries(term: Any) -> list[Any]:
    """The eliminations of the retry loop: the groups ``tries`` removes, one per component the
    backstops' phases split the loop into."""
    found = [el for el in term.eliminations if el.counter == "tries"]
    assert found and all({e.transition.label for e in el.edges} == {"read --text[0]--> ask"} for el in found)
    return found


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_proven_upper_bounds_are_at_least_what_a_run_reaches(name: str) -> None:
    """Every figure the elimination proves is an upper bound of the exact maximum, per outcome and
    over all (how tight the bounds are is the business of the tests below)."""
    upper, exact = _figures(CASES[name])
    for outcome, figs in exact.items():
        for backstop, value in figs.items():
            assert upper[outcome][backstop] >= value, (outcome, backstop, upper[outcome][backstop], value)


def test_a_counter_nothing_resets_bounds_its_loop_once_per_turn() -> None:
    """``tries`` (max 2) is never reset: the retries happen at most twice in the whole turn, however
    often the tool loop enters the retry loop again, and the bound says exactly that."""
    found = _retries(_proof(CASES["never_reset"])[2])
    assert all(el.absolute and el.fires == 2 and not el.backstop for el in found)


@pytest.mark.parametrize(("name", "per_round"), [("reset_per_round", 2), ("spends_two", 2)])
def test_a_counter_reset_by_an_enclosing_loop_bounds_its_loop_once_per_entry(name: str, per_round: int) -> None:
    """``tries`` is reset on every tool batch: the retry loop is entered once per round (the first
    call and one after each of the three batches: four), and retried up to cap // by times in each
    (2, or 5 // 2 with two spent per retry). The bound is that many per entry, times the entries it
    proves: exactly the four rounds (the entry of the turn and the tool batches' bound, 1 + 3), so
    eight retries, as many as the worst run makes."""
    term = _proof(CASES[name])[2]
    found = _retries(term)
    assert all(not el.absolute and el.fires == per_round * el.entries and isinstance(el.fires, int) for el in found)
    widest = max(found, key=lambda el: el.entries)
    assert widest.entries == 4 and widest.fires == 8 and widest.through == ("tool_batches",)
    # one level below the tool batches' elimination, which is at the top (level 0, entered once)
    [batches] = [el for el in term.eliminations if el.counter == "tool_batches"]
    assert (batches.level, batches.entries, widest.level) == (0, 1, 1)


def _most_fires(an: Any, key: Any) -> dict[Any, int]:
    """For each ``key(step)`` (a transition, an abstract edge), the most times one concrete run takes
    a step with that key: the longest path through the configurations the model's own steps reach
    (a halting policy's are acyclic)."""
    memo: dict[Any, dict[Any, int]] = {}

    def best(cfg: Any) -> dict[Any, int]:
        got = memo.get(cfg)
        if got is not None:
            return got
        out: dict[Any, int] = {}
        if an.kind(cfg.state) != "halt":
            for ev in an.events_of(cfg.state):
                for step in an.steps_at(cfg, ev):
                    if step.transition is None:
                        continue
                    after = best(step.after)
                    k = key(step)
                    for other in set(after) | {k}:
                        out[other] = max(out.get(other, 0), after.get(other, 0) + (other == k))
        memo[cfg] = out
        return out

    return best(an.policy.initial_config())


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_run_takes_an_edge_more_often_than_its_bound(name: str) -> None:
    """``fires`` bounds how often each abstract edge fires in one turn: no concrete run takes the
    steps of an edge (its source node, transition and target node) more often than that."""
    an, g, term, _enum = _proof(CASES[name])
    bound: dict[Any, int] = {}
    for e in g.edges:
        if e.transition is not None:
            k = (e.src, id(e.transition), e.dst)
            bound[k] = bound.get(k, 0) + term.fires[e.index]
    most = _most_fires(an, lambda step: (an.node_of(step.before), id(step.transition), an.node_of(step.after)))
    assert most and set(most) <= set(bound)
    for k, n in most.items():
        assert bound[k] >= n, (k[0].state, k[2].state, bound[k], n)
    assert max(most.values()) >= 3  # runs that take an edge again and again


def test_loops_removed_together_each_add_their_bound_to_the_entries_of_what_is_left() -> None:
    """Two retry loops in one component, bounded by two counters at once: what is left after both
    (the call and its stream) is entered once per round plus once after every retry of either loop,
    so its entries are the round's entries plus both bounds, not only the last one's."""
    _an, _g, term, _enum = _proof(CASES["two_loops"])
    deep = [el for el in term.eliminations if el.counter in ("tries", "empties") and el.through]
    assert {el.counter for el in deep} == {"tries", "empties"}
    level = deep[0].level
    together = [el for el in deep if el.level == level]
    assert len(together) == 2 and all(el.entries == 4 for el in together)
    assert sum(el.fires for el in together) == 16


def test_a_loop_only_a_backstop_bounds_is_shown_repeating() -> None:
    """The tool loop has no counter of its own and is not declared ``bounded_by``: the warning comes
    with a run through the loop twice, found within the component the backstop was removed from."""
    from loopspec.verify import check_policy

    result = check_policy(load_policy_text(CASES["reset_per_round"], "bounds.yaml")).properties["no_backstop_only_loops"]
    assert result.status == "warn" and result.counterexample is not None
    steps = [(s.state, s.event) for s in result.counterexample.steps]
    assert steps.count(("read", "tool_calls")) == 2


def test_a_retry_loop_whose_counter_the_tool_loop_resets_is_shown_passing_its_cap() -> None:
    """With the tool loop declared ``bounded_by: tool_batches``, only the retry loop is flagged:
    ``tries`` bounds it per entry, but the tool batch resets it. The warning's run retries three
    times although the cap is two, going around the tool loop in between: the search for it keeps
    to the component the tool batches were removed from, the whole loop."""
    from loopspec.verify import check_policy

    text = CASES["reset_per_round"].replace("{do: [{reset: tries}], to: tools}",
                                            "{do: [{reset: tries}], to: tools, bounded_by: tool_batches}")
    result = check_policy(load_policy_text(text, "bounds.yaml")).properties["no_backstop_only_loops"]
    assert result.status == "warn" and result.findings == [
        "read --text[0]--> ask: tries bounds it per entry, but the entries are bounded only by tool_batches"]
    assert result.counterexample is not None
    steps = [(s.state, s.event) for s in result.counterexample.steps]
    assert steps.count(("read", "text")) >= 3 and ("read", "tool_calls") in steps


def test_a_loop_declared_bounded_by_a_backstop_is_bounded_by_that_one() -> None:
    """The tool loop has no counter; both backstops bound it, and left to itself the proof takes the
    model calls first. Declared ``bounded_by: tool_batches``, the proof takes the tool batches: the
    loop is a declared backstop loop, not a warning."""
    from loopspec.verify import check_policy

    text = CASES["never_reset"].replace("tool_calls: tools", "tool_calls: {to: tools, bounded_by: tool_batches}")
    assert text != CASES["never_reset"]
    r = check_policy(load_policy_text(text, "bounds.yaml"), strict=True)
    assert r.properties["no_backstop_only_loops"].passed, r.format_text()
    assert [(b.edge, b.backstop) for b in r.declared_loops] == [("read --tool_calls[0]--> tools", "tool_batches")]
    undeclared = check_policy(load_policy_text(CASES["never_reset"], "bounds.yaml"), strict=True)
    assert [b.backstop for b in undeclared.backstop_only_loops] == ["model_calls"]


def test_a_loop_inside_a_backstop_loop_is_named_by_its_own_backstop() -> None:
    """Two loops with no counter at all: retries of the text (``text: ask``) inside the tool loop.
    The proof removes one backstop, then needs the other for what is left: each finding names the
    backstop that bounds that loop itself, and a loop bounded per entry says what bounds the
    entries."""
    from loopspec.verify import check_policy

    text = _text("ask", "tools").replace("tries: {max: 2}\n", "").replace("empties", "tries")
    r = check_policy(load_policy_text(text, "bounds.yaml"), strict=True)
    findings = r.properties["no_backstop_only_loops"].findings
    assert len(findings) == len(set(findings)) >= 2
    by_edge = {b.edge: b for b in r.backstop_only_loops}
    assert set(by_edge) >= {"read --text[0]--> ask", "read --tool_calls[0]--> tools"}
    for edge, b in by_edge.items():
        assert b.bound.startswith(f"bounded only by the {b.backstop} backstop") or b.bound.startswith(b.counter)


def test_a_loop_bounded_per_entry_under_two_backstops_names_both() -> None:
    """An escalation loop (``nudge``/``again``) counted by ``tries``, which the way back to the call
    resets: in one copy the proof removes the tool batches, then the model calls, before ``tries``
    bounds what is left. Its finding says the entries are bounded only by both, and is filed under
    the outer one; the copy where only the model calls were removed is filed under those."""
    from loopspec.verify import check_policy

    text = _text("done", "tools").replace("empty: out", "empty: nudge") + (
        "  nudge:\n    kind: escalate\n    apply: [compact]\n    on: {done: [{when: {counter: tries, lt: 2}, "
        "do: [{increment: tries}], to: again}, {do: [{reset: tries}], to: ask}], failed: out}\n"
        "  again:\n    kind: escalate\n    apply: [compact]\n    on: {done: nudge, failed: out}\n")
    r = check_policy(load_policy_text(text, "nested.yaml"), strict=True)
    loops = {(b.edge, b.backstop): b.bound for b in r.backstop_only_loops if b.counter == "tries"}
    assert loops == {
        ("nudge --done[0]--> again", "model_calls"): "tries bounds it per entry, but the entries are bounded only by model_calls",
        ("nudge --done[0]--> again", "tool_batches"):
            "tries bounds it per entry, but the entries are bounded only by tool_batches and model_calls",
    }


def test_the_proof_bounds_the_model_calls_below_their_cap() -> None:
    """The retries reset per round are bounded per entry and the rounds by the tool batches: the
    proven bound on model calls is far below the backstop's 100, and a backstop nothing can spend
    (a policy whose tool calls end the turn) is bounded at zero."""
    upper, exact = _figures(CASES["reset_per_round"])
    assert exact["*"]["model_calls"] <= upper["*"]["model_calls"] < 50
    no_tools = _text(RETRY.replace("TRIES", "2"), "done")
    upper, exact = _figures(no_tools)
    assert exact["*"]["tool_batches"] == upper["*"]["tool_batches"] == 0


def test_an_outcome_reached_only_in_a_backstop_s_low_phase_is_bounded_below_its_cap() -> None:
    """``quit`` (outcome ``empty``) is entered only while fewer than two of the three tool batches
    ran: its figure for tool batches is cap - 2, exactly what the worst run reaches."""
    upper, exact = _figures(CASES["guarded_exit"])
    assert upper["empty"]["tool_batches"] == exact["empty"]["tool_batches"] == 1


def test_an_outcome_s_figures_count_only_the_steps_that_can_lead_to_it() -> None:
    """``auth_failed`` is reached only from the first call state, before any tool batch: its figures
    count the steps from which its halt can still be reached, not the second branch's retries or the
    batch that leads there, so they are below the turn's and no tool batch at all."""
    upper, exact = _figures(CASES["separate_branch"])
    assert upper["auth_failed"]["tool_batches"] == exact["auth_failed"]["tool_batches"] == 0
    assert exact["auth_failed"]["model_calls"] <= upper["auth_failed"]["model_calls"] < upper["*"]["model_calls"]


@pytest.mark.parametrize("by", [1, 2, 3, 7])
def test_a_loop_whose_edges_count_a_counter_by_different_amounts_is_bounded_by_the_smallest(by: int) -> None:
    """Two retry edges, one adding 1 to a counter of cap 6 and one adding ``by``: the loop can fire
    the first one 6 times, so 6 is its bound whatever ``by`` is (the largest amount would claim
    6 // by, under what a run does)."""
    from loopspec.verify import check_policy
    from test_budgets_check import variant

    text = variant(
        "counters:\n  retries: {max: 6}\n",
        ("bounded_by: cost", "bounded_by: tool_batches"),
        ("      empty: failed\n", "      empty: {do: [{increment: retries}], to: ask}\n"),
        ("      thinking_only: failed\n", f"      thinking_only: {{do: [{{increment: retries, by: {by}}}], to: ask}}\n"),
    )
    loops = check_policy(load_policy_text(text, "budgets.yaml")).to_json()["loops"]
    retries = [x for x in loops if x["counter"] == "retries"]
    assert [x["fires_at_most"] for x in retries] == [6], retries
