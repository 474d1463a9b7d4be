"""The least float above a real number (loopspec/verify/witness_numbers.py), which the checker's
number witnesses fall back on between two reals with no readable float between them; written
against the survivors of its mutation run."""

from __future__ import annotations

import math
import sys
from fractions import Fraction

from loopspec.verify.witness_numbers import _float_above


def test_the_least_float_above_a_real_number() -> None:
    assert _float_above(math.inf) is None
    assert _float_above(-math.inf) == -sys.float_info.max
    assert _float_above(1) == math.nextafter(1.0, math.inf)
    third = Fraction(1, 3)
    above = _float_above(third)
    assert above is not None and above > third and math.nextafter(above, -math.inf) <= third


def test_past_the_largest_float_there_is_none_above_and_below_it_the_lowest_float() -> None:
    """A real too large for a float: none is above it; too small: the lowest float is above it."""
    assert _float_above(10**400) is None
    assert _float_above(-(10**400)) == -sys.float_info.max
