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
from loopspec.language.step import CALLS_COMPLETE, FATE_RUN, Step

RECORDS = [Step, TraceStep]


def _arguments(cls: type) -> dict[str, Any]:
    """A distinct value for every field, so a constructor that swaps or drops one is seen."""
    if cls is Step:
        return dict(before=Config("a", (1,), frozenset()), event=Event("e", {"x": 1}), transition=None,
                    after=Config("b", (2,), frozenset({"f"})), directives=(), redirected_from="c",
                    calls=CALLS_COMPLETE, fate=FATE_RUN, refusal="r", offer=None, capped=frozenset({0}),
                    resets=frozenset({1}), measured=frozenset({"m"}))
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
    some = next(iter(values))
    assert record != cls(**{**values, some: None})


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_a_record_stays_immutable(cls: type) -> None:
    record = cls(**_arguments(cls))
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.event = "other"  # type: ignore[misc]


def test_a_fresh_default_is_never_shared() -> None:
    a = TraceStep(0, "s", "call", "e", {}, None, "t", {}, [], [])
    b = TraceStep(0, "s", "call", "e", {}, None, "t", {}, [], [])
    assert a.measured == [] and a.measured is not b.measured
