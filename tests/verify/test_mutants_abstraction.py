"""The abstraction's caches (loopspec/verify/abstraction.py), written against the survivors of
planting its mutants: what the check asks of the analysis over and over is worked out once."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
from hypothesis import given, note, settings

from loopspec import load_policy, load_policy_text
from loopspec.language.actions import Increment
from loopspec.language.alphabet import Event
from loopspec.language.model import WRAP_UP_FLAG, Config, Policy
from loopspec.verify.abstraction import PHASE_LAST, PHASE_LOW, PHASE_SPENT, build_analysis, event_cases, phase_of

import _soundness as S
from _paths import DEFAULT_POLICY
from _policies import property_policies


def test_each_state_and_event_is_compiled_once() -> None:
    """The selection of a state's transitions for an event (compiled guards, cap checks) is kept:
    asking again returns the same one, for every state and event of the default policy, and a
    different pair gets its own."""
    an = build_analysis(load_policy(str(DEFAULT_POLICY)))
    pairs = [(name, ev) for name, st in an.policy.states.items() for ev in st.transitions]
    first = {pair: an.selection(*pair) for pair in pairs}
    assert len(pairs) > 20
    assert all(an.selection(*pair) is first[pair] for pair in pairs)
    assert len({id(sel) for sel in first.values()}) == len(pairs)


# --------------------------------------------------------------------------- low-phase regions
#
# A backstop in phase ``low`` (0..max-2) is not one value to the checker: ``contexts`` splits it into
# regions, and the case search takes one witness per region and outcome. That is sound only if every
# value of a region gives the same step beyond the guards (which the search decides on the whole
# region): the same target after the backstop redirects and the same phases after it. A coarser
# region hides an edge (from low straight to last, say) behind a witness that never reaches it.


def _region_points(ranges: tuple[tuple[int, int], ...], backstops: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Counter vectors of a context: each backstop over its whole range while the others sit at
    either end of theirs (the redirect reads each backstop on its own, so this meets every pair of
    values that could differ); an ordinary counter, which only guards and cap checks read (the
    search's business), stays at its low end."""
    points: set[tuple[int, ...]] = set()
    for b in backstops:
        axes = [
            range(lo, hi + 1) if i == b else ((lo, hi) if i in backstops else (lo,))
            for i, (lo, hi) in enumerate(ranges)
        ]
        points.update(itertools.product(*axes))
    return sorted(points)


def region_breaks(policy: Policy) -> list[str]:
    """Each place a low-phase region of ``policy`` holds two values a step tells apart: the
    transition taken alone (guard Always, as the checker's forced steps do) from every value of the
    region, under each flag set the redirect reads."""
    an = build_analysis(policy)
    if not an.backstop_names:
        return []
    flag_sets = [frozenset(), frozenset({WRAP_UP_FLAG}), an.tracked_flags]
    out: list[str] = []
    for state, st_ in policy.states.items():
        for event, transitions in st_.transitions.items():
            sel = an.selection(state, event)
            witness = next(iter(event_cases(policy, state, event)), Event(event, {}))
            for phases in itertools.product((PHASE_LOW, PHASE_LAST, PHASE_SPENT), repeat=len(an.backstop_names)):
                if PHASE_LOW not in phases:
                    continue
                for ranges in an.contexts(state, event, phases):
                    for j in range(len(transitions)):
                        forced = sel.forced_policy(j)
                        for flags in flag_sets:
                            seen: dict[Any, tuple[int, ...]] = {}
                            for counters in _region_points(ranges, an.backstop_index):
                                step = forced.step(Config(state, counters, flags), witness)
                                if step.transition is None:
                                    continue  # a cap check refused it: the search decides those
                                key = (step.after.state, an.phases_of(step.after.counters))
                                seen.setdefault(key, counters)
                            if len(seen) > 1:
                                out.append(f"{state} --{event}[{j}]--> flags {sorted(flags)} region {ranges}: {seen}")
    return out


def _with_state(policy: Policy, name: str, **changes: Any) -> Policy:
    """``policy`` with state ``name``'s fields replaced, as a policy built in code may have them."""
    return dataclasses.replace(policy, states={**policy.states, name: dataclasses.replace(policy.states[name], **changes)})


def _with_backstop_increment(policy: Policy, state: str, event: str, counter: str, amount: int) -> Policy:
    """``policy`` with the first transition of ``state`` on ``event`` also incrementing backstop
    ``counter`` by ``amount``: the validator refuses that (LS209), a policy built in code may not."""
    s = policy.states[state]
    first, *rest = s.transitions[event]
    inc = Increment(counter, policy.counter_index(counter), amount)
    moved = dataclasses.replace(first, actions=(*first.actions, inc))
    return _with_state(policy, state, transitions={**s.transitions, event: (moved, *rest)})


@pytest.mark.parametrize("name", sorted(property_policies()))
def test_every_low_region_of_the_bundled_policy_is_one_step_outcome(name: str) -> None:
    """The default policy and its two resized variants: no low-phase region mixes two outcomes."""
    assert region_breaks(property_policies()[name]) == []


@pytest.mark.parametrize("amount", [1, 2, 3])
def test_low_regions_hold_for_a_transition_that_counts_its_own_backstop(amount: int) -> None:
    """A transition that increments the model-call backstop itself moves every threshold down by
    its amount; the regions must follow, for each amount (the validator refuses this in YAML)."""
    base = property_policies()["calls_first"]
    policy = _with_backstop_increment(base, "call_model", "opened", "model_calls", amount)
    assert region_breaks(policy) == []
    # and the check really sees such a step: splitting the low phase is what it is for
    an = build_analysis(policy)
    low = an.contexts("call_model", "opened", (PHASE_LOW, PHASE_LOW))
    assert len({r[an.backstop_index[0]] for r in low}) > 1


@settings(max_examples=40, deadline=None)
@given(text=S.policies())
def test_low_regions_are_homogeneous_on_generated_policies(text: str) -> None:
    """Small generated policies (backstops of 1 to 7, escalations with apply lists, wrap_up states):
    every low-phase region gives one step outcome per transition and flag set."""
    note(text)
    assert region_breaks(load_policy_text(text, "generated.yaml")) == []


RETRIES_ONLY = """
loopspec: 1
name: retries
initial: ask
backoff: {again: [1]}
backstops:
  model_calls: {max: 6, exhausted: failed}
  tool_batches: {max: 2, exhausted: failed}
states:
  ask:
    kind: call
    on:
      opened: read
      rate_limit: [{do: [{backoff: again}], to: ask}, failed]
      transient: ask
      timeout: failed
      context_overflow: failed
      bad_request: failed
      effort_unsupported: failed
      thinking_signature_invalid: failed
      cancelled: failed
  read:
    kind: stream
    on: {text: done, tool_calls: done, length: ask, empty: ask, thinking_only: failed, malformed_args: failed,
         unknown_tool: failed, stalled: failed, broken: failed, cancelled: failed}
  done: {kind: halt, outcome: completed, message: "{response}"}
  failed: {kind: halt, outcome: provider_error, message: "failed: {reason}"}
"""
"""A policy with no escalate state, and an event its call state does not handle (auth: the turn
ends in policy_error)."""


def _small_policies() -> dict[str, Policy]:
    return {**property_policies(), "retries": load_policy_text(RETRIES_ONLY, "retries.yaml")}


def test_a_policy_without_escalations_splits_a_retry_only_below_last() -> None:
    """No escalate state counts the backstop when there is none: a retry into the call state is
    split only where the next call makes the backstop last, as the steps show; an event the call
    state does not handle has no transition to split by."""
    policy = _small_policies()["retries"]
    an = build_analysis(policy)
    assert "auth" in an.events_of("ask") and "auth" not in policy.states["ask"].transitions
    i = an.backstop_index[0]
    for event in ("rate_limit", "transient"):
        regions = sorted({ranges[i] for ranges in an.contexts("ask", event, (PHASE_LOW, PHASE_LOW))})
        assert regions == _outcome_classes(policy, "ask", event, i) == [(0, 3), (4, 4)]
    assert {ranges[i] for ranges in an.contexts("ask", "auth", (PHASE_LOW, PHASE_LOW))} == {(0, 4)}
    assert region_breaks(policy) == []


def test_the_contexts_of_a_node_cover_exactly_its_counter_values() -> None:
    """For every state, event and backstop phases, the contexts' ranges hold every value of each
    backstop's phase and nothing else (an empty range loses the node's steps; a range past the
    phase lends it another node's steps), and each ordinary counter ranges over ``0..max``."""
    for name, policy in _small_policies().items():
        an = build_analysis(policy)
        for state in policy.states:
            for event in an.events_of(state):  # an event nothing handles included (policy_error)
                for phases in itertools.product((PHASE_LOW, PHASE_LAST, PHASE_SPENT), repeat=len(an.backstop_names)):
                    contexts = an.contexts(state, event, phases)
                    for i, cap in enumerate(an.caps):
                        values = [v for ranges in contexts for v in range(ranges[i][0], ranges[i][1] + 1)]
                        if i not in an.backstop_index:
                            assert {r[i] for r in contexts} == {(0, cap)}, (name, state, event, i)
                            continue
                        phase = phases[an.backstop_index.index(i)]
                        expected = {v for v in range(cap + 1) if phase_of(v, cap) == phase}
                        assert set(values) == expected, (name, state, event, phases, i)


def test_the_analysis_works_out_contexts_and_concrete_cases_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``contexts``, a node's abstract cases and the concrete cases of ``steps_at`` are asked for
    again and again by the check: the second ask returns the kept answer (the same list; no new
    case search)."""
    import loopspec.verify.abstraction as abstraction

    an = build_analysis(property_policies()["calls_first"])
    first = an.contexts("call_model", "opened", (PHASE_LOW, PHASE_LOW))
    assert an.contexts("call_model", "opened", (PHASE_LOW, PHASE_LOW)) is first
    assert an.contexts("call_model", "opened", (PHASE_LAST, PHASE_LOW)) is not first
    # the abstract cases of a node and event, which every graph build asks for each node
    cases = an.abstract_cases("call_model", frozenset(), (PHASE_LOW, PHASE_LOW), "opened")
    assert cases and an.abstract_cases("call_model", frozenset(), (PHASE_LOW, PHASE_LOW), "opened") is cases
    assert an.abstract_cases("call_model", frozenset(), (PHASE_LAST, PHASE_LOW), "opened") is not cases

    searches: list[object] = []
    real = abstraction.enumerate_cases

    def counting(*args: Any) -> Any:
        searches.append(args)
        return real(*args)

    monkeypatch.setattr(abstraction, "enumerate_cases", counting)
    cfg = an.policy.initial_config()
    event = next(iter(an.events_of(cfg.state)))
    steps = an.steps_at(cfg, event)
    assert len(searches) == 1
    again = an.steps_at(cfg, event)
    assert len(searches) == 1
    assert [(s.transition, s.after) for s in again] == [(s.transition, s.after) for s in steps]


def _with_apply_increment(policy: Policy, state: str, counter: str, amount: int) -> Policy:
    """``policy`` with escalate state ``state`` also incrementing backstop ``counter`` on entry:
    the validator refuses increments in an apply list (LS209), a policy built in code may not."""
    inc = Increment(counter, policy.counter_index(counter), amount)
    return _with_state(policy, state, apply=(*policy.states[state].apply, inc))


@pytest.mark.parametrize("amount", [1, 2])
@pytest.mark.parametrize("escalation", ["escalate_no_tools", "compact_context"])
def test_low_regions_hold_when_an_escalation_counts_the_backstop_on_entry(escalation: str, amount: int) -> None:
    """An escalate state whose apply list increments the model-call backstop moves the thresholds
    of every event that may enter it (by the largest such amount): the regions stay homogeneous for
    the events into it, those that may also enter a call (an empty reply into escalate_no_tools)
    and those that enter only the escalation (a context overflow into compact_context)."""
    base = property_policies()["calls_first"]
    policy = _with_apply_increment(base, escalation, "model_calls", amount)
    assert region_breaks(policy) == []
    both = _with_backstop_increment(policy, "call_model", "opened", "model_calls", 1)
    assert region_breaks(both) == []
    # an event whose every transition enters the escalation (no halt beside it)
    ts = policy.states["call_model"].transitions
    alone = _with_state(policy, "call_model", transitions={**ts, "context_overflow": ts["context_overflow"][:1]})
    assert region_breaks(alone) == []


def _outcome_classes(policy: Policy, state: str, event: str, i: int) -> list[tuple[int, int]]:
    """The low phase of backstop ``i`` cut where the step from ``state`` on ``event`` (each
    transition forced alone, every flag set the redirect reads) changes target or phases: the
    coarsest regions that are still sound, found by running the steps, with the other backstop low."""
    an = build_analysis(policy)
    sel = an.selection(state, event)
    witness = next(iter(event_cases(policy, state, event)), Event(event, {}))
    top = an.caps[i] - 2
    outcomes = []
    for v in range(top + 1):
        counters = tuple(v if k == i else 0 for k in range(len(an.caps)))
        outcome = []
        for j in range(len(policy.states[state].transitions[event])):
            for flags in (frozenset(), frozenset({WRAP_UP_FLAG}), an.tracked_flags):
                step = sel.forced_policy(j).step(Config(state, counters, flags), witness)
                outcome.append((step.after.state, an.phases_of(step.after.counters)))
        outcomes.append(outcome)
    starts = [v for v in range(top + 1) if v == 0 or outcomes[v] != outcomes[v - 1]]
    return [(lo, nxt - 1) for lo, nxt in zip(starts, starts[1:] + [top + 1])]


@pytest.mark.parametrize(
    "state,event",
    [("call_model", "rate_limit"), ("call_model", "transient"), ("run_tools", "ok"), ("read_stream", "text"),
     ("read_stream", "malformed_args"), ("escalate_no_tools", "done"), ("call_model", "context_overflow"),
     ("call_model", "effort_unsupported")],
)
def test_low_regions_are_no_finer_than_the_steps_tell_apart(state: str, event: str) -> None:
    """Each region costs the check one more search: on a validated policy (no increments of a
    backstop but the entry count) the model-call backstop's low phase is split exactly where the
    step's outcome changes (a retry into the call state from the value below last makes it last),
    and an event that never enters a call (a text reply halts; a context overflow escalates without
    counting) leaves it whole."""
    policy = property_policies()["calls_first"]
    an = build_analysis(policy)
    i = an.backstop_index[an.backstop_names.index("model_calls")]
    phases = (PHASE_LOW, PHASE_LOW)
    regions = sorted({ranges[i] for ranges in an.contexts(state, event, phases)})
    assert regions == _outcome_classes(policy, state, event, i)
