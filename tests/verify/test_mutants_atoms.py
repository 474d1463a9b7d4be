"""The atoms' theories (loopspec/verify/atoms.py), written against the survivors of planting its
mutants: the value a witness gives an attribute no guard constrains is still a value the attribute
can carry, of its declared type and, for a closed enumeration, one of its values."""

from __future__ import annotations

import pytest

from loopspec.language.alphabet import KINDS, Attr, Event
from loopspec.language.model import Config, CounterCmp, FlagIs
from loopspec.verify.atoms import default_value

PYTHON_TYPES: dict[str, tuple[type, ...]] = {"bool": (bool,), "int": (int,), "float": (float,), "str": (str,), "list": (list,)}

EVERY_ATTR = sorted({(a.name, a.type, a.values): a for kind in KINDS.values() for ev in kind.events for a in ev.attrs}.values(),
                    key=lambda a: (a.name, a.type))


@pytest.mark.parametrize("attr", EVERY_ATTR, ids=lambda a: f"{a.name}:{a.type}")
def test_an_unconstrained_attribute_gets_a_value_of_its_own_type(attr: Attr) -> None:
    """Every attribute of every event: a list attribute gets a list, a number a number of its
    kind (an int is no bool), a closed string attribute its first value."""
    value = default_value(attr)
    assert isinstance(value, PYTHON_TYPES[attr.type]), (attr, value)
    if attr.type == "int":
        assert not isinstance(value, bool)
    if attr.values:
        assert value == attr.values[0]


def test_every_attribute_type_is_checked() -> None:
    """The alphabet uses every declared type, so each default above is met by some attribute."""
    assert {a.type for a in EVERY_ATTR} == set(PYTHON_TYPES)


@pytest.mark.parametrize("wanted", [True, False])
def test_a_flag_atom_holds_exactly_when_the_flag_is_as_it_asks(wanted: bool) -> None:
    """``{flag: f}`` holds with f set and not without it; ``{flag: f, is: false}`` the reverse."""
    atom = FlagIs("wrapping_up", wanted)
    assert atom.holds(True) is wanted
    assert atom.holds(False) is (not wanted)
    for flags in (frozenset({"wrapping_up"}), frozenset()):  # what the interpreter asks: one semantics
        assert atom.evaluate(None, Config("", (), flags), Event("")) is atom.holds(bool(flags))


@pytest.mark.parametrize("index", [0, 1, 3])
@pytest.mark.parametrize(("op", "bound", "holds_at"), [
    ("lt", 2, {0, 1}), ("le", 2, {0, 1, 2}), ("eq", 2, {2}), ("ne", 2, {0, 1, 3}), ("gt", 2, {3}), ("ge", 2, {2, 3})])
def test_a_counter_atom_holds_at_the_values_its_comparison_admits(index: int, op: str, bound: int, holds_at: set[int]) -> None:
    """The counter at any position, its value 0 to 3 against the bound 2: the atom holds exactly
    where the comparison does (the other counters' values are not its business)."""
    atom = CounterCmp("tries", index, op, bound)
    assert {v for v in range(4) if atom.holds(v)} == holds_at
    for v in range(4):  # what the interpreter asks, the counter at its position: one semantics
        assert atom.evaluate(None, Config("", (9,) * index + (v,), frozenset()), Event("")) is atom.holds(v)
