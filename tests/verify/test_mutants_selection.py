"""The compiled selection (``loopspec/verify/selection.py``) held to what the case search relies on,
for the mutants of the module the checker's tests let live: two guards share an atom only when
they test the same thing, so a transition never looks shadowed by another that tests a different
list or mapping, and the checker does not prove a loop unreachable that a value reaches."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from loopspec.language.model import AttrTest, Config, CounterCmp, Policy
from loopspec.verify import check_policy
from loopspec.verify.selection import OP_OR, Domains, compile_selection
from loopspec.verify import selection as selection_mod
from loopspec.verify.atoms import ABSENT, SAT, UNKNOWN, UNSAT

from test_check import CALL, HALTS, HEAD, NUDGE_LOOP as LOOP, TOOLS, policy, stream


def call_with(transient: str) -> str:
    return CALL.replace("      transient: fail\n", f"      transient: {transient}\n")


def test_two_lists_of_one_length_on_one_attribute_are_two_atoms_and_the_second_reaches_its_loop() -> None:
    """``in: [a, b]`` and ``in: [c, d]`` are different tests: merged into one atom, the second
    transition would look shadowed by the first, and its loop unreachable (a false proof)."""
    guard = "[{when: {attr: message, in: [a, b]}, to: fail}, {when: {attr: message, in: [c, d]}, to: nudge}, fail]"
    p = policy(call_with(guard), stream(), TOOLS, HALTS, LOOP)
    sel = compile_selection(p, "ask", "transient")
    tests = [a for a in sel.atoms if isinstance(a, AttrTest) and a.attr == "message"]
    assert sorted(a.value for a in tests) == [("a", "b"), ("c", "d")]
    r = check_policy(p)
    assert "halts" in r.failed
    cex = r.properties["halts"].counterexample
    assert cex is not None and cex.concrete
    assert cex.steps[0].attrs["message"] in ("c", "d")


def _with_guards(p: Policy, state: str, event: str, guards: list[Any]) -> Policy:
    """``p`` with ``state``'s transitions on ``event`` replaced by one per guard, in order (a
    policy built in code: YAML gives no tuples, mappings or unknown guard forms here)."""
    (first, *_rest) = p.states[state].transitions[event]
    ts = tuple(dataclasses.replace(first, guard=g, order=i) for i, g in enumerate(guards))
    s = p.states[state]
    states = dict(p.states)
    states[state] = dataclasses.replace(s, transitions={**s.transitions, event: ts})
    return dataclasses.replace(p, states=states)


def _tests(attr: str, op: str, values: list[Any]) -> list[AttrTest]:
    return [AttrTest(attr, op, v) for v in values]


@pytest.mark.parametrize(
    "values, atoms",
    [
        ([["x"], ("x",)], 2),  # a list and a tuple: equal as values of neither, so two tests
        ([("a", "b"), ("c", "d")], 2),
        ([("a", "b"), ("a", "b")], 1),  # the same test twice: one atom
        ([{"k": 1}, {"k": 2}], 2),
        ([{"k": 1}, {"j": 1}], 2),
        ([{"k": 1}, {"k": 1}], 1),
        ([[["x"]], [["y"]]], 2),  # nested lists
        ([frozenset({1}), frozenset({2})], 2),  # hashable values of another kind
        ([{1, 2}, {3, 4}], 2),  # unhashable ones, told apart by their text
    ],
)
def test_guards_share_an_atom_exactly_when_they_test_equal_values_of_one_kind(values: list[Any], atoms: int) -> None:
    p = _with_guards(policy(CALL, stream(), TOOLS, HALTS), "ask", "transient", _tests("message", "eq", values))
    sel = compile_selection(p, "ask", "transient")
    assert len([a for a in sel.atoms if isinstance(a, AttrTest)]) == atoms
    assert len(sel.enabled) == len(values)


def _two_counters(
    guard: str = "[{when: {counter: other, ge: 1}, to: fail}, {when: {counter: tries, lt: 2}, to: nudge}, fail]",
) -> Any:
    """A policy with counters ``tries`` and ``other`` (max 2 each) whose call state's ``transient``
    goes where ``guard`` says, and that state's compiled selection of it."""
    head = HEAD.replace("  tries: {max: 2}\n", "  tries: {max: 2}\n  other: {max: 2}\n")
    p = policy(call_with(guard), stream(), TOOLS, HALTS, LOOP, head=head)
    return p, compile_selection(p, "ask", "transient")


@pytest.mark.parametrize(
    "guard",
    [
        # two counters: merged into one atom, the second test would hold only when the first does
        "[{when: {counter: other, ge: 1}, to: fail}, {when: {counter: tries, lt: 2}, to: nudge}, fail]",
        # one counter and one comparison with two bounds: the same
        "[{when: {counter: tries, ge: 2}, to: fail}, {when: {counter: tries, ge: 0}, to: nudge}, fail]",
    ],
    ids=["two_counters", "two_bounds"],
)
def test_counter_tests_of_other_counters_or_bounds_are_other_atoms_and_the_loop_is_reached(guard: str) -> None:
    """Two counter tests that differ (in the counter, or in the bound) compile to two atoms, which
    the contexts and the counter theory are keyed by. The verdict, reached here whichever way
    (both counters start at 0, where only the second transition is enabled, so its loop is
    reached), did not change when a plant merged the two: the contexts enumerate each counter's
    values and every step is the policy's own, so the atoms are checked here, not the verdict alone."""
    p, sel = _two_counters(guard)
    assert len(sel.atoms) == 2
    r = check_policy(p)
    assert "halts" in r.failed
    cex = r.properties["halts"].counterexample
    assert cex is not None and ("ask", "transient", "nudge") in [(s.state, s.event, s.to) for s in cex.steps]


class _Unknown:
    """A guard form the checker does not know (a policy built in code may hold one)."""

    def evaluate(self, policy: object, cfg: Config, event: object) -> bool:
        return False


def test_a_guard_form_the_checker_does_not_know_is_its_own_undecided_atom() -> None:
    """Each object of an unknown form is one atom of its own, whose theory is undecided (the
    transition may fire), and the same object twice is one atom."""
    one, other = _Unknown(), _Unknown()
    p = _with_guards(policy(CALL, stream(), TOOLS, HALTS), "ask", "transient", [one, other, one])
    sel = compile_selection(p, "ask", "transient")
    assert sel.atoms == [one, other]
    assert sel.vars == [("opaque", 0), ("opaque", 1)]
    domains = Domains.of_config(p.initial_config())
    assert sel.theory(sel.vars[1], [(1, True)], domains) == (UNKNOWN, None)


class _ReadsTheMessage:
    """A guard of a form the checker does not know that reads an attribute of the event, as a
    policy built in code may: it raises on an event that does not carry one."""

    def evaluate(self, policy: object, cfg: Config, event: Any) -> bool:
        return "quota" in event.attrs["message"]


def test_a_guard_form_the_checker_does_not_know_is_never_evaluated_on_a_made_up_event() -> None:
    """Such a guard is undecided (either way) in every configuration, so the case cache's key asks
    only the counter and flag tests: it evaluated the unknown guard on an event with no attributes,
    and the check crashed with a KeyError instead of answering."""
    p = _with_guards(policy(CALL, stream(), TOOLS, HALTS, LOOP), "ask", "transient", [_ReadsTheMessage()])
    r = check_policy(p)
    assert r.failed == ["events_handled"]  # undecided: the transition may not fire
    sel = compile_selection(p, "ask", "transient")
    assert sel.context_key(p.initial_config()) == ()


def test_each_counter_theory_answers_for_its_own_counter_literals_and_range() -> None:
    """Theories are cached by the counter, its range and the literals: each answer below is for
    its own question (a cache keyed by less answered the first question every time)."""
    p, sel = _two_counters()
    other_ge_1, tries_lt_2 = 0, 1  # atoms in the order the guards name them
    wide = Domains(((0, 2), (0, 2)), frozenset())
    questions = [
        (sel.vars[other_ge_1], [(other_ge_1, True)], wide, (SAT, 1)),
        (sel.vars[tries_lt_2], [(tries_lt_2, False)], wide, (SAT, 2)),
        (sel.vars[tries_lt_2], [(tries_lt_2, True)], wide, (SAT, 0)),
        (sel.vars[tries_lt_2], [(tries_lt_2, True)], Domains(((2, 2), (0, 2)), frozenset()), (UNSAT, None)),
        (sel.vars[other_ge_1], [(other_ge_1, False)], Domains(((0, 2), (1, 2)), frozenset()), (UNSAT, None)),
    ]
    for var, lits, domains, answer in questions * 2:  # asked twice: the cached answers too
        assert sel.theory(var, lits, domains) == answer, (var, lits, domains)
    names = list(p.counter_names)
    assert sel.vars == [("counter", names.index("other")), ("counter", names.index("tries"))] == [("counter", 1), ("counter", 0)]


def test_a_theory_is_worked_out_once_per_question(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = selection_mod.counter_witness

    def counting(lo: int, hi: int, lits: Any) -> Any:
        calls.append((lo, hi))
        return real(lo, hi, lits)

    monkeypatch.setattr(selection_mod, "counter_witness", counting)
    _p, sel = _two_counters()
    domains = Domains(((0, 2), (0, 2)), frozenset())
    for _ in range(3):
        assert sel.theory(sel.vars[0], [(0, True)], domains) == (SAT, 1)
    assert calls == [(0, 2)]


def test_a_test_of_an_attribute_the_event_does_not_carry_sees_it_absent() -> None:
    """A guard (in a policy built in code) on an attribute ``transient`` has no field for: the
    attribute is absent on every such event, so it is never truthy."""
    p = _with_guards(policy(CALL, stream(), TOOLS, HALTS), "ask", "transient", [AttrTest("finish_reason", "truthy")])
    sel = compile_selection(p, "ask", "transient")
    domains = Domains.of_config(p.initial_config())
    assert sel.theory(("attr", "finish_reason"), [(0, True)], domains) == (UNSAT, None)
    assert sel.theory(("attr", "finish_reason"), [(0, False)], domains) == (SAT, ABSENT)


def test_a_context_key_is_the_truth_of_the_counter_and_flag_tests_in_a_configuration() -> None:
    """What the cases are cached under: configurations that a counter test tells apart get other
    keys, and an attribute test (which a configuration does not decide) is no part of the key."""
    p, sel = _two_counters()
    at = lambda tries, other: Config("ask", (tries, other, *p.initial_config().counters[2:]), frozenset())  # noqa: E731
    assert sel.context_key(at(0, 0)) == (False, True)  # other >= 1, tries < 2
    assert sel.context_key(at(2, 1)) == (True, False)
    with_attr = _with_guards(p, "ask", "transient", _tests("message", "contains", ["quota"]))
    assert compile_selection(with_attr, "ask", "transient").context_key(at(0, 0)) == ()


def test_only_the_events_the_monitor_reads_the_continuation_budget_on_get_a_budget_node() -> None:
    """``stalled`` (and ``mid_tool_call``) carry the question whether the continuation budget
    lasts; other events, even with the budget's counters named, do not."""
    p, _sel = _two_counters()
    tries = list(p.counter_names).index("tries")
    assert compile_selection(p, "ask", "transient", continuation=(tries,)).budget is None
    stalled = compile_selection(p, "read", "stalled", continuation=(tries,))
    assert stalled.budget is not None and stalled.budget[0] == OP_OR  # over "tries < max"
    (part,) = stalled.budget[1]
    test = stalled.atoms[part[1]]
    assert isinstance(test, CounterCmp) and (test.index, test.op, test.value) == (tries, "lt", 2)
    assert compile_selection(p, "read", "stalled").budget is None


def test_fixed_gives_the_truth_of_each_counter_test_the_domains_pin_and_leaves_the_rest_open() -> None:
    p, sel = _two_counters()
    tries, other = (list(p.counter_names).index(n) for n in ("tries", "other"))
    pinned = [(0, 2)] * len(p.counter_names)
    pinned[other] = (1, 1)  # other >= 1 holds; tries free, so tries < 2 is open
    assert sel.fixed(Domains(tuple(pinned), frozenset())) == [True, None]
    pinned[tries] = (2, 2)
    assert sel.fixed(Domains(tuple(pinned), frozenset())) == [True, False]
