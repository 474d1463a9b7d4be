"""Per-variable witnesses: a value of an attribute, or of a counter, that realises a conjunction of
literals (each atom wanted true or false), or the reason none exists."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from ..language.alphabet import Attr
from ..language.model import AttrTest, CounterCmp
from .atoms import ABSENT, SAT, UNKNOWN, UNSAT, realises
from .witness_numbers import float_candidates, int_candidates, is_finite
from .witness_strings import list_candidates, str_candidates


def attr_witness(attr: Attr | None, lits: Sequence[tuple[AttrTest, bool]]) -> tuple[str, Any]:
    """A value of ``attr`` (or ABSENT) on which every ``(atom, truth)`` literal holds.

    Returns ``(SAT, value)``, ``(UNSAT, None)`` when no value of the declared type realises the
    literals, or ``(UNKNOWN, None)`` when an atom form outside the validated language made the search
    for a witness incomplete and none was found.
    """
    if attr is None:  # not carried by this event: always absent
        cands: Iterable[Any] = [ABSENT]
        complete = True
    else:
        cands, complete = _candidates(attr, lits)
    for v in cands:
        if all(realises(a, v) is want for a, want in lits):
            return SAT, v
    return (UNSAT if complete else UNKNOWN), None


def _candidates(attr: Attr, lits: Sequence[tuple[AttrTest, bool]]) -> tuple[Iterable[Any], bool]:
    t = attr.type
    if t == "bool":
        return [False, True, ABSENT], True
    if t == "str" and attr.values:
        return [*attr.values, ABSENT], True
    if t == "int":
        return [*int_candidates(lits), ABSENT], True
    if t == "float":
        return [*float_candidates(lits), math.inf, -math.inf, math.nan, ABSENT], True
    if t == "str":
        return str_candidates(lits), True
    if t == "list":
        supported = all(a.op in ("eq", "ne", "in", "contains", "truthy") for a, _ in lits)
        return list_candidates(lits), supported
    return [ABSENT], False  # pragma: no cover - the alphabet has only the types above


def counter_witness(lo: int, hi: int, lits: Sequence[tuple[CounterCmp, bool]]) -> tuple[str, int | None]:
    """The least value in [lo, hi] on which every literal holds.

    Complete: comparisons with a constant c split the integers at c and c + 1 (at floor(c) + 1 and
    ceil(c) for a fractional c), so every region of [lo, hi] the literals tell apart starts at lo or at
    one of those points, and all are candidates.
    """
    cands = {lo, hi}
    for a, _ in lits:
        c = a.value
        if isinstance(c, (int, float)) and c == c and is_finite(c):
            for x in (math.floor(c), math.floor(c) + 1, math.ceil(c), math.ceil(c) + 1):
                if lo <= x <= hi:
                    cands.add(x)
    for v in sorted(cands):
        if all(a.holds(v) is want for a, want in lits):
            return SAT, v
    return UNSAT, None
