"""The atoms' theories (loopspec/verify/atoms.py), written against the survivors of planting its
mutants: the value a witness gives an attribute no guard constrains is still a value the attribute
can carry, of its declared type and, for a closed enumeration, one of its values."""

from __future__ import annotations

import pytest

from loopspec.language.alphabet import KINDS, Attr
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
