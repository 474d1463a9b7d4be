"""Records built once per decision (``Step``, ``TraceStep``) have hand-written constructors that
set every field in one update, for speed. They must stay the dataclasses they replace: the same
parameters in the same order, the same defaults, equality, and immutability."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from loopspec.engine.results import TraceStep
from loopspec.language.alphabet import Event
from loopspec.language.config import Config
from loopspec.language.guards import Always
from loopspec.language.step import CALLS_COMPLETE, FATE_RUN, Offer, Step
from loopspec.language.structure import Transition

RECORDS = [Step, TraceStep]


def _arguments(cls: type) -> dict[str, Any]:
    """A distinct value for every field, so a constructor that swaps or drops one is seen."""
    if cls is Step:
        return dict(before=Config("a", (1,), frozenset()), event=Event("e", {"x": 1}),
                    transition=Transition("a", "e", 0, Always(), (), "b"),
                    after=Config("b", (2,), frozenset({"f"})), directives=(), redirected_from="c",
                    calls=CALLS_COMPLETE, fate=FATE_RUN, refusal="r", offer=Offer(True, False, True, False, False, False),
                    capped=frozenset({0}), resets=frozenset({1}), measured=frozenset({"m"}))
    return dict(index=3, state="a", kind="call", event="e", attrs={"x": 1}, transition="t", target="b",
                counters={"model_calls": 1}, flags=["f"], actions=["increment x"], redirected_from="c",
                measured=["m"])


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_the_constructor_takes_exactly_the_fields_in_order_with_their_defaults(cls: type) -> None:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields):
        if f.default_factory is not dataclasses.MISSING:  # a mutable default: None stands for a fresh one
            assert p.default is None, p.name
            assert getattr(cls(**{k: v for k, v in _arguments(cls).items() if k != f.name}), f.name) == f.default_factory()
        else:
            assert p.default == (inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default), p.name


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_every_argument_lands_in_its_own_field(cls: type) -> None:
    values = _arguments(cls)
    record = cls(**values)
    assert {f.name: getattr(record, f.name) for f in dataclasses.fields(cls)} == values
    assert record == cls(**values)
    assert cls(*values.values()) == record  # positionally, in field order
    for name in values:  # each field on its own: a constructor that drops or swaps one is seen
        assert record != cls(**{**values, name: None}), name


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_a_record_stays_immutable(cls: type) -> None:
    record = cls(**_arguments(cls))
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.event = "other"  # type: ignore[misc]


def test_a_fresh_default_is_never_shared() -> None:
    a = TraceStep(0, "s", "call", "e", {}, None, "t", {}, [], [])
    b = TraceStep(0, "s", "call", "e", {}, None, "t", {}, [], [])
    assert a.measured == [] and a.measured is not b.measured


def test_a_trace_record_holds_what_its_step_decided() -> None:
    """Every field of ``TraceStep.of``, on a step that a budget redirected (so it has a transition
    with actions, a redirect and measured flags) and on one no transition matched."""
    from loopspec import load_policy_text
    from loopspec.engine.results import TraceStep
    from loopspec.language.graph import describe_action

    from _paths import ROOT

    text = (ROOT / "docs" / "examples" / "budgets.yaml").read_text()
    text = text.replace("      ok: {to: ask, bounded_by: cost}", "      ok: {do: [reset_tool_choice, {set: looped}], to: ask, bounded_by: cost}")
    p = load_policy_text(text.replace("states:\n", "flags:\n  looped: {}\nstates:\n", 1), "budgets.yaml")
    cfg = p.step(p.step(p.initial_config(), Event("opened")).after,
                 Event("tool_calls", {"tools": ["search"], "count": 1, "chars": 0})).after
    cfg = Config(cfg.state, tuple(range(1, len(cfg.counters) + 1)), frozenset({"noted_z", "noted_a"}))  # unsorted
    step = p.step(cfg, Event("ok", {"tools": ["search"]}), frozenset({"cost_reached", "cost_warned"}))
    assert step.transition is not None and step.transition.actions and step.redirected_from == "ask"
    record = TraceStep.of(p, step, 7)
    assert record == TraceStep(
        7, cfg.state, p.states[cfg.state].kind, "ok", {"tools": ["search"]}, step.transition.label, "summarize",
        dict(zip(p.counter_names, step.after.counters)), sorted(step.after.flags),
        [describe_action(a) for a in step.transition.actions], "ask", ["cost_reached", "cost_warned"],
    )
    assert record.kind == "tool_exec" and record.flags == sorted(record.flags) and "noted_a" in record.flags
    assert record.attrs is not step.event.attrs, "the record holds a copy of the event's attributes"
    lost = p.step(cfg, Event("stalled", {}))
    assert lost.transition is None
    none = TraceStep.of(p, lost, 0)
    assert (none.transition, none.actions, none.redirected_from, none.measured) == (None, [], None, [])
