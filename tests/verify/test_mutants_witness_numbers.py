"""The checker's number witnesses (loopspec/verify/witness_numbers.py): the candidate values it
tries for an int or float attribute cover every region the guards' constants tell apart, the float
between two reals lies strictly inside, and the least float above a real is the least; written
against the survivors of its mutation runs."""

from __future__ import annotations

import math
import sys
from fractions import Fraction
from typing import Any, Sequence

import pytest
from hypothesis import given, strategies as st

from loopspec.language.guards import AttrTest
from loopspec.verify.witness_numbers import _float_above, _float_between, float_candidates, int_candidates


def test_the_least_float_above_a_real_number() -> None:
    assert _float_above(math.inf) is None
    assert _float_above(-math.inf) == -sys.float_info.max
    assert _float_above(1) == math.nextafter(1.0, math.inf)
    third = Fraction(1, 3)
    above = _float_above(third)
    assert above is not None and above > third and math.nextafter(above, -math.inf) <= third
    assert _float_above(2**53 + 3) == 2.0**53 + 4, "the float nearest a may lie above it already"


def test_past_the_largest_float_there_is_none_above_and_below_it_the_lowest_float() -> None:
    """A real too large for a float: none is above it; too small: the lowest float is above it."""
    assert _float_above(10**400) is None
    assert _float_above(-(10**400)) == -sys.float_info.max


# --------------------------------------------------------------------------- the candidates
#
# The checker decides whether the literals on a numeric attribute can all hold by trying these
# candidates only, so a region of the number line the literals tell apart and no candidate lies in
# is a branch the checker calls impossible: a false proof. The properties below state that every
# integer (every float) has a candidate that compares with every constant the same way.

HUGE = 10**400
"""An integer no float reaches."""

constants = st.lists(
    st.one_of(
        st.integers(-(10**20), 10**20),
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(-1e6, 1e6).map(lambda x: round(x, 1)),
        st.sampled_from([HUGE, -HUGE, 0.5, -2.5, 1e20, 2**53 + 1]),
    ),
    max_size=4,
)


def lits(*consts: Any) -> list[tuple[AttrTest, bool]]:
    return [(AttrTest("x", "eq", c), True) for c in consts]


def signature(x: Any, points: Sequence[Any]) -> tuple[int, ...]:
    """How ``x`` compares with each point: -1, 0 or 1 (exact, whatever the numbers' types)."""
    return tuple((x > p) - (x < p) for p in points)


def numeric_points(consts: Sequence[Any]) -> list[Any]:
    return [c for c in consts if isinstance(c, (int, float)) and c == c]


def int_probes(points: Sequence[Any]) -> set[int]:
    probes = {0, HUGE * 10, -HUGE * 10}
    for p in points:
        if p in (math.inf, -math.inf):
            continue
        for base in (math.floor(p), math.ceil(p)):
            probes.update(base + d for d in (-2, -1, 0, 1, 2))
    return probes


def float_probes(points: Sequence[Any]) -> set[float]:
    probes = {0.0, math.inf, -math.inf, sys.float_info.max, -sys.float_info.max}
    for p in points:
        try:
            x = float(p)
        except OverflowError:
            continue
        probes.update({x, math.nextafter(x, math.inf), math.nextafter(x, -math.inf)})
    finite = sorted(p for p in probes if math.isfinite(p))
    probes.update(a / 2 + b / 2 for a, b in zip(finite, finite[1:]))
    return probes


@given(constants)
def test_every_integer_has_an_integer_candidate_that_compares_alike_with_every_constant(consts: list[Any]) -> None:
    """Completeness of the integer witnesses: whatever an integer attribute's literals compare it
    with, each integer has a candidate on the same side of (or at) every constant; the candidates
    are integers."""
    points = [p for p in numeric_points(consts) if p not in (math.inf, -math.inf)]
    cands = int_candidates(lits(*consts))
    assert all(type(c) is int for c in cands)
    have = {signature(c, points) for c in cands}
    for x in int_probes(points):
        assert signature(x, points) in have, x


@given(constants)
def test_every_float_has_a_candidate_that_compares_alike_with_every_constant(consts: list[Any]) -> None:
    """Completeness of the float witnesses: with the infinities the caller adds, each float has a
    candidate on the same side of (or at) every constant; the candidates themselves are finite."""
    points = numeric_points(consts)
    cands = float_candidates(lits(*consts))
    assert all(type(c) is float and math.isfinite(c) for c in cands)
    have = {signature(c, points) for c in [*cands, math.inf, -math.inf]}
    for x in float_probes(points):
        assert signature(x, points) in have, x


reals = st.one_of(
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=True),
    st.sampled_from([HUGE, -HUGE, 1e20, 0.999999, 1.0, math.nextafter(1.0, 2)]),
    st.fractions(),
)


@given(reals, reals)
def test_a_float_between_two_reals_lies_strictly_between_and_is_missing_only_when_none_does(a: Any, b: Any) -> None:
    """``_float_between(a, b)`` for ``a < b``: a float strictly inside, or None exactly when the
    least float above ``a`` (tested above) is not below ``b``."""
    if not a < b:
        a, b = b, a
    if not a < b:
        return
    got = _float_between(a, b)
    above = _float_above(a)
    if got is None:
        assert above is None or above >= b
    else:
        assert type(got) is float and a < got < b


ONE_UP = math.nextafter(1.0, 2)


@pytest.mark.parametrize("a, b, want", [
    (1, 2, 1.5),  # the midpoint
    (0, 1 / 3, 0.166667),  # rounded to six places when that stays inside
    (0, 8e-7, 4e-7),  # not when rounding leaves the interval
    (0.999999, 1.0, 0.9999994999999999),  # rounding reaches the end: the midpoint as is
    (-math.inf, 0, -1.0),  # below a point: the integer under it
    (-math.inf, 2.5, 2.0),
    (-math.inf, 1e20, -sys.float_info.max),  # 10**20 - 1 is 1e20 as a float: the lowest float
    (2.5, math.inf, 3.0),  # above a point: the integer over it
    (1e20, math.inf, math.nextafter(1e20, math.inf)),  # 10**20 + 1 is 1e20 as a float: the next float
    (-math.inf, math.inf, -sys.float_info.max),
    (1.0, ONE_UP, None),  # adjacent floats: none between
    (ONE_UP, math.nextafter(ONE_UP, 2), None),
    (HUGE, math.inf, None),
    (HUGE, HUGE * 2, None),
    (-HUGE, 0, -sys.float_info.max),
])
def test_the_float_between_two_reals_is_the_readable_one(a: Any, b: Any, want: float | None) -> None:
    """A midpoint, rounded to six places when that stays inside; an integer next to a point when
    the other end is infinite; the least float above ``a`` when nothing readable fits; None when
    nothing fits."""
    assert _float_between(a, b) == want


@pytest.mark.parametrize("consts, want_ints, want_floats", [
    ((), [0, 1, -1], [0.0, 1.0, -1.0]),  # zero and its neighbours, small non-negative first
    ((-2.5,), [0, 1, -2, -3], [0.0, 1.0, -1.25, -2.5, -3.0]),
    ((3,), [0, 1, 3, 4, -1], [0.0, 1.5, 3.0, 4.0, -1.0]),
    # a point no float equals is no float candidate
    ((2**53 + 1,), [0, 1, 2**53 + 1, 2**53 + 2, -1], [0.0, 4503599627370496.0, 9007199254740994.0, -1.0]),
    ((math.inf, math.nan, "x"), [0, 1, -1], [0.0, 1.0, -1.0]),  # no finite point, or none at all
])
def test_the_number_candidates_are_each_point_and_the_nearest_value_in_each_gap(
        consts: tuple[Any, ...], want_ints: list[int], want_floats: list[float]) -> None:
    """Exactly: each constant an int (a float) can equal, the nearest integer on either side of and
    between the points, one readable float per open interval; in the order witnesses read best."""
    assert int_candidates(lits(*consts)) == want_ints
    assert float_candidates(lits(*consts)) == want_floats
