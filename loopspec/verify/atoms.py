"""The atoms of a guard and what makes them true: a value's truth for an attribute test, a counter
comparison or a flag, the constants a guard names, and :data:`ABSENT` for an attribute an event
leaves out."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from ..language.alphabet import Attr
from ..language.model import AllOf, AnyOf, AttrTest, CounterCmp, FlagIs, Guard, Not


class _Absent:
    """The value of an attribute the event does not carry (``attrs.get`` returns None)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()

SAT, UNSAT, UNKNOWN = "sat", "unsat", "unknown"


def guard_atoms(g: Guard) -> Iterator[Guard]:
    """Every leaf predicate of a guard (AttrTest, CounterCmp, FlagIs)."""
    if isinstance(g, (AllOf, AnyOf)):
        for p in g.parts:
            yield from guard_atoms(p)
    elif isinstance(g, Not):
        yield from guard_atoms(g.part)
    elif isinstance(g, (AttrTest, CounterCmp, FlagIs)):
        yield g


# =========================================================================== attribute theory


def realises(atom: AttrTest, value: Any) -> bool:
    """The atom's truth on an event whose attribute is ``value`` (ABSENT: not carried)."""
    return atom.holds(None if value is ABSENT else value)


def literal_constants(lits: Sequence[tuple[AttrTest, bool]]) -> list[Any]:
    """The constants the literals compare with (an ``in`` list's members included): the witness
    searches try values at and around them."""
    out: list[Any] = []
    for a, _ in lits:
        if a.op == "in":
            try:
                out.extend(a.value)
            except TypeError:
                pass
        elif a.op != "truthy":
            out.append(a.value)
    return out


# -- numbers ----------------------------------------------------------------------------------
#
# Completeness. Let C be the finite real constants of the literals plus 0. For a number v, every
# literal's truth is a function of v's position relative to each c in C (or of v being NaN): a
# comparison or membership with a number compares positions; with anything else it is constant (False
# for ==, <, ..., `in`; True for !=); ``contains`` on a number raises inside evaluate, hence False;
# truthiness is v != 0 and 0 is in C. Positions form the classes "equal to c" and "strictly between
# two consecutive constants" (and below the least, above the greatest). Each class that holds a value
# of the domain type gets one candidate in it, so every realisable combination has a candidate.


def default_value(attr: Attr) -> Any:
    """The value an unconstrained attribute gets in a witness (any value would do)."""
    return {"bool": False, "int": 0, "float": 0.0, "list": []}.get(attr.type, attr.values[0] if attr.values else "")
