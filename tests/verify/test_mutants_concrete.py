"""Concrete search nodes: where every search of the checker starts, and what one step from a node
yields. ``model_steps`` in ``check --json`` counts the steps the searches ask for, so each step a
node's successors yield must be counted once."""

from __future__ import annotations

from loopspec import load_policy
from loopspec.language.model import Config
from loopspec.verify.abstraction import build_analysis
from loopspec.verify.concrete import initial_node, successors
from loopspec.verify.properties import monitor_step

from _paths import DEFAULT_POLICY


def test_every_search_starts_at_the_initial_configuration_with_no_silent_stub_in_flight() -> None:
    an = build_analysis(load_policy(str(DEFAULT_POLICY)))
    assert initial_node(an) == (an.policy.initial_config(), False)


def test_each_successor_is_one_step_counted_once_with_the_monitors_state_after_it() -> None:
    an = build_analysis(load_policy(str(DEFAULT_POLICY)))
    for silent in (False, True):
        node = (an.policy.initial_config(), silent)
        before = an.steps_evaluated
        got = list(successors(an, node))
        assert got and an.steps_evaluated - before == len(got)
        for step, (after, silent_after), violations in got:
            assert after == step.after and step.before == node[0]
            assert (silent_after, violations) == monitor_step(an, silent, step)
        assert {step.event.name for step, _, _ in got} == set(an.events_of(node[0].state))


def test_a_halt_has_no_successors_and_costs_no_step() -> None:
    an = build_analysis(load_policy(str(DEFAULT_POLICY)))
    halt = next(name for name, s in an.policy.states.items() if s.kind == "halt")
    start = an.policy.initial_config()
    before = an.steps_evaluated
    assert list(successors(an, (Config(halt, start.counters, start.flags), False))) == []
    assert an.steps_evaluated == before
