"""The case search (loopspec/verify/cases.py), tested against the survivors of planting all of
mutmut's mutants of it. ``test_cases.py`` holds its soundness as a property over generated guards;
these pin, on one small selection read exactly, what that property leaves free: that the outcomes
are all there and each only once (with the continuation budget and the monitor split too), that each
case's own configuration and event realise what it claims, that a case is witnessed unless the
search gave up, the cache, and the may-fire path."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from loopspec.language.alphabet import Event, judge_wait
from loopspec.language.model import Config, Policy
from loopspec.verify import cases as cases_mod
from loopspec.verify.atoms import SAT, UNKNOWN, UNSAT
from loopspec.verify.cases import Case, case_steps, enumerate_cases, event_cases_free, shadowing
from loopspec.verify.selection import Domains, Selection, compile_selection

from test_check import CALL, HALTS, HEAD, TOOLS, policy, stream

# On a stall, the first transition is taken when tries is exactly 1 (and it increments tries, cap
# 2); else the turn fails. The monitor reads mid_tool_call, the continuation budget reads tries.
RETRY_AT_ONE = "[{when: {counter: tries, eq: 1}, do: [{increment: tries}], to: ask}, fail]"
NO_FALLBACK = "[{when: {all: [{counter: tries, eq: 1}, {attr: mid_tool_call}]}, to: ask}]"
EITHER = "[{when: {any: [{counter: tries, eq: 1}, {attr: mid_tool_call}]}, to: ask}]"
FREE = Domains(((0, 2), (0, 0), (0, 0)), None)
"""tries anywhere within its cap; the model_calls and tool_batches backstops at 0."""


def _selection(stalled: str, continuation: tuple[int, ...] = (0,), head: str = HEAD) -> tuple[Policy, Selection]:
    p = policy(CALL, stream(stalled=stalled), TOOLS, HALTS, head=head)
    return p, compile_selection(p, "read", "stalled", continuation)


def _config(c: Case) -> Config:
    """The configuration a case was found in (in the stall state)."""
    return Config("read", c.counters, c.flags)


def _moves(steps: list[Any]) -> list[tuple[Any, str]]:
    """Each step's transition and the state it ends in."""
    return [(s.transition, s.after.state) for s in steps]


def _outcome(p: Policy, sel: Selection, cfg: Config, ev: Event) -> tuple[int | None, bool, bool]:
    """What the checker tells apart on this step: the transition selected (its index), the
    monitor's attribute, and whether the continuation budget lasts."""
    t = p.step(cfg, ev).transition
    j = None if t is None else next(i for i, u in enumerate(sel.transitions) if u is t)
    return j, bool(ev.attrs.get("mid_tool_call")), cfg.counters[0] < p.counters[0].max


def _concrete(p: Policy, sel: Selection) -> set[tuple[int | None, bool, bool]]:
    """Every outcome of every configuration in FREE on a spread of stall events."""
    out = set()
    for tries, mid, chars in itertools.product(range(3), (True, False, None), (0, 5)):
        attrs: dict[str, Any] = {"chars": chars}
        if mid is not None:
            attrs["mid_tool_call"] = mid
        out.add(_outcome(p, sel, Config("read", (tries, 0, 0), frozenset()), judge_wait(Event("stalled", attrs), p.settings.max_wait)))
    return out


def _claims(p: Policy, sel: Selection, found: list[Case]) -> list[tuple[int | None, bool, bool]]:
    """What each case's own configuration and event realise, after checking it is the transition
    the case names."""
    out = []
    for c in found:
        got = _outcome(p, sel, _config(c), c.event)
        assert got[0] == c.index and (c.transition is None if c.index is None else c.transition is sel.transitions[c.index])
        out.append(got)
    return out


@pytest.mark.parametrize("stalled", [RETRY_AT_ONE, NO_FALLBACK, EITHER], ids=["with a fallback", "without one", "any of two"])
def test_the_cases_are_exactly_the_outcomes_each_once_and_each_realised_by_its_witness(stalled: str) -> None:
    """Exactness on a selection small enough to enumerate by hand: the outcomes the cases realise
    are the outcomes concrete configurations and events produce (none dropped: the continuation
    budget spent, the monitor's attribute set, no transition enabled), none twice, and every case is
    witnessed (its configuration and event select the transition it names)."""
    p, sel = _selection(stalled)
    found = enumerate_cases(sel, FREE)
    claims = _claims(p, sel, found)
    assert len(claims) == len(set(claims)), claims
    assert set(claims) == _concrete(p, sel)
    assert all(c.witnessed is True for c in found)
    assert sel.may == 0


def test_a_witness_that_sets_a_counter_is_the_cases_configuration() -> None:
    """The retry is enabled only at tries == 1, not at the lowest value: the case for it must carry
    the witness's counter, or its step would select another transition."""
    p, sel = _selection(RETRY_AT_ONE)
    retry = [c for c in enumerate_cases(sel, FREE) if c.index == 0]
    assert retry and {c.counters for c in retry} == {(1, 0, 0)}
    for c in retry:
        [step] = case_steps(sel, _config(c), c)
        assert step.transition is sel.transitions[0]


def test_the_outcomes_are_searched_once_per_projection_of_the_domains() -> None:
    """The case search is the checker's inner loop: asked again for the same counters and flags the
    guards read, it answers from its cache (no query), with the same cases."""
    p, sel = _selection(RETRY_AT_ONE, continuation=())
    first = enumerate_cases(sel, FREE)
    asked = sel.queries
    assert asked > 0
    assert enumerate_cases(sel, FREE) == first and sel.queries == asked
    # flags the guards never read are outside the projection: one search for both sets
    some, other = (Domains(FREE.counters, frozenset({flag})) for flag in ("f", "g"))
    enumerate_cases(sel, some)
    asked = sel.queries
    assert [c.flags for c in enumerate_cases(sel, other)] == [frozenset({"g"})] * len(first) and sel.queries == asked


def test_shadowing_answers_for_each_earlier_transition_whether_it_is_selected_where_this_one_is_enabled() -> None:
    """(why a transition is dead) Three transitions on a stall: the retry at tries == 1, one at
    tries >= 1, a fallback. Where tries may be anything, the retry shadows the second (at 1), and
    the fallback is shadowed by both (the first has nothing before it). Where tries is
    pinned at 2 the retry is never enabled, so it shadows nothing, and the second does."""
    p, sel = _selection("[{when: {counter: tries, eq: 1}, to: ask}, {when: {counter: tries, ge: 1}, to: ask}, fail]")
    assert shadowing(sel, FREE, 0) == []
    assert shadowing(sel, FREE, 1) == [SAT]
    assert shadowing(sel, FREE, 2) == [SAT, SAT]
    at_two = Domains(((2, 2), (0, 0), (0, 0)), None)
    assert shadowing(sel, at_two, 1) == [UNSAT]
    assert shadowing(sel, at_two, 2) == [UNSAT, SAT]
    at_zero = Domains(((0, 0), (0, 0), (0, 0)), None)
    assert shadowing(sel, at_zero, 2) == [UNSAT, UNSAT]  # the fallback is selected there


def test_shadowing_over_a_range_is_what_some_part_of_any_split_of_it_answers() -> None:
    """Each answer is exact, so splitting a counter's range into contexts (as the abstraction does
    for a backstop's low phase) changes none: a transition shadows over the whole range exactly
    when it does over one of the parts."""
    p, sel = _selection("[{when: {counter: tries, eq: 1}, to: ask}, {when: {counter: tries, ge: 1}, to: ask}, "
                        "{when: {counter: tries, le: 0}, to: fail}, fail]")
    seen = set()
    for j in range(len(sel.transitions)):
        whole = shadowing(sel, FREE, j)
        seen.update(whole)
        for cut in (0, 1):
            parts = [shadowing(sel, Domains(((lo, hi), (0, 0), (0, 0)), None), j) for lo, hi in ((0, cut), (cut + 1, 2))]
            assert whole == [SAT if SAT in answers else UNSAT for answers in zip(*parts)], (j, cut)
    assert seen == {SAT, UNSAT}


def test_a_transition_never_within_its_caps_is_shadowed_by_nothing_even_past_the_search_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With tries pinned at its cap, the retry's increment never fits: its cap checks alone say so,
    before any search that could run out of budget; an undecidable guard within its caps is UNKNOWN."""
    monkeypatch.setattr(cases_mod, "SEARCH_BUDGET", 1)
    p, sel = _selection("[{when: {attr: mid_tool_call}, to: ask}, {when: {attr: mid_tool_call}, do: [{increment: tries}], to: ask}, fail]",
                        continuation=())
    assert shadowing(sel, Domains(((2, 2), (0, 0), (0, 0)), None), 1) == [UNSAT]
    assert shadowing(sel, FREE, 1) == [UNKNOWN]


def test_when_the_search_gives_up_the_outcome_is_kept_unwitnessed_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A search out of budget excludes nothing: every outcome it could not decide is kept as a
    may-fire case (witnessed False, stepped as forced), counted in ``may``, including 'no transition
    enabled' for a state without a fallback."""
    monkeypatch.setattr(cases_mod, "SEARCH_BUDGET", 1)
    p, sel = _selection(NO_FALLBACK, continuation=())
    found = enumerate_cases(sel, FREE)
    # each outcome twice: with and without the monitor's attribute
    assert [(c.index, c.witnessed) for c in found] == [(0, False), (0, False), (None, False), (None, False)]
    assert sel.may == 4
    for c in found:
        [step] = case_steps(sel, _config(c), c)
        assert step.transition is c.transition


def test_a_search_out_of_budget_keeps_a_capped_transition_within_its_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The retry increments tries: kept undecided, its case is searched again with only its cap
    checks, in the domains given, and lands where tries is within its cap."""
    monkeypatch.setattr(cases_mod, "SEARCH_BUDGET", 1)
    p, sel = _selection(RETRY_AT_ONE, continuation=())
    retry = [c for c in enumerate_cases(sel, FREE) if c.index == 0]
    assert retry and all(not c.witnessed and c.counters[0] <= 1 for c in retry)


BUDGETED = HEAD.replace("templates:\n", "templates:\n  nearly: \"nearly spent\"\n") + (
    "budgets:\n  input_tokens: {max: 5000, warn_at: 4000, warning: nearly, exhausted: out}\n")


def _step_key(step: Any) -> tuple[Any, ...]:
    return (id(step.transition), step.after, step.redirected_from)


@pytest.mark.parametrize("spent", [False, True], ids=["budget not yet reached", "already reached"])
def test_a_step_into_a_call_state_gets_one_more_for_each_budget_level_not_yet_set(spent: bool) -> None:
    """Budgets are measured where a call is made, and the adversary may spend any amount: a step
    that enters a call state is also taken with the budget found reached (which sends it to the
    budget's halt), unless the configuration already has that flag. The warning level is left out,
    since no guard reads it. A step into a halt is taken once."""
    p, sel = _selection(RETRY_AT_ONE, continuation=(), head=BUDGETED)
    reached = frozenset({p.budgets["input_tokens"].flag("reached")})
    flags = reached if spent else frozenset()
    kinds = set()
    for c in enumerate_cases(sel, Domains(FREE.counters, flags)):
        cfg = _config(c)
        base = p.step(cfg, c.event)
        into_call = p.states[base.after.state].kind == "call"
        kinds.add(into_call)
        want = [base] + ([p.step(cfg, c.event, reached)] if into_call and not spent else [])
        got = case_steps(sel, cfg, c)
        assert [_step_key(s) for s in got] == [_step_key(s) for s in want]
        if into_call and not spent:
            assert got[1].after.state == "out"
    # with the flag already set, the retry is redirected to the budget's halt like a spent backstop
    assert kinds == ({False} if spent else {True, False})


def test_a_search_out_of_budget_still_measures_the_budgets_on_a_forced_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """A may-fire case is stepped with only its transition (guard taken as holding); entering a
    call state it is also taken with the budget found reached, which ends in the budget's halt."""
    monkeypatch.setattr(cases_mod, "SEARCH_BUDGET", 1)
    p, sel = _selection(RETRY_AT_ONE, continuation=(), head=BUDGETED)
    retry = [c for c in enumerate_cases(sel, FREE) if c.index == 0]
    assert retry and not any(c.witnessed for c in retry)
    for c in retry:
        steps = case_steps(sel, _config(c), c)
        assert _moves(steps) == [(sel.transitions[0], "ask"), (sel.transitions[0], "out")]


def test_a_witness_the_model_does_not_follow_keeps_both_steps() -> None:
    """The safety net for a bug in the search: a case said to be witnessed whose configuration
    selects another transition keeps the model's own step and the step the case names, so no edge
    is lost either way."""
    p, sel = _selection(RETRY_AT_ONE)
    cfg = Config("read", (0, 0, 0), frozenset())  # tries 0: the retry is not enabled
    wrong = Case(sel.transitions[0], Event("stalled", {"chars": 0}), cfg.counters, cfg.flags, True, 0)
    steps = case_steps(sel, cfg, wrong)
    assert _moves(steps) == [(sel.transitions[1], "fail"), (sel.transitions[0], "ask")]
    # with a budget, the step the case names enters a call: both are taken again with it reached
    p, sel = _selection(RETRY_AT_ONE, continuation=(), head=BUDGETED)
    wrong = Case(sel.transitions[0], Event("stalled", {"chars": 0}), cfg.counters, cfg.flags, True, 0)
    steps = case_steps(sel, cfg, wrong)
    assert _moves(steps) == [
        (sel.transitions[1], "fail"), (sel.transitions[0], "ask"), (sel.transitions[1], "fail"), (sel.transitions[0], "out")]


@pytest.mark.parametrize(
    "node, want",
    [
        ((cases_mod.OP_OR, ((0, 0), (0, 1))), {(True, True): True, (True, False): True, (False, True): True, (False, False): False,
                                               (None, False): None, (False, None): None, (None, True): True, (True, None): True}),
        ((cases_mod.OP_AND, ((0, 0), (0, 1))), {(True, True): True, (True, False): False, (False, True): False, (False, False): False,
                                                (None, True): None, (True, None): None, (None, False): False, (False, None): False}),
        ((cases_mod.OP_NOT, (0, 0)), {(True, None): False, (False, None): True, (None, None): None}),
    ],
    ids=["or", "and", "not"],
)
def test_three_valued_evaluation_decides_only_what_every_completion_agrees_on(node: Any, want: dict[Any, Any]) -> None:
    """The search prunes a branch on what ``_eval`` decides from a partial assignment (None:
    unassigned): a node is decided only when every way of assigning the rest agrees."""
    assert {assign: cases_mod._eval(node, list(assign)) for assign in want} == want


def test_event_cases_free_start_every_counter_at_zero() -> None:
    """``event_cases`` with counters free: an outcome only a counter at 0 allows (the retry needs
    tries == 0 and a long partial reply) gets its witness event."""
    guard = "[{when: {all: [{counter: tries, eq: 0}, {attr: chars, gt: 10}]}, to: ask}, fail]"
    p = policy(CALL, stream(stalled=guard), TOOLS, HALTS)
    assert any(e.attrs.get("chars", 0) > 10 for e in event_cases_free(p, "read", "stalled"))
