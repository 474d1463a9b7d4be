"""Witness values for numeric attributes: integers and floats on the right side of every comparison
a guard makes."""

from __future__ import annotations

import math
import sys
from typing import Any, Iterable, Sequence

from ..language.model import AttrTest
from .atoms import literal_constants


def _real_points(lits: Sequence[tuple[AttrTest, bool]]) -> list[Any]:
    pts: set[Any] = {0}
    for c in literal_constants(lits):
        if isinstance(c, (int, float)) and c == c:  # numbers (and bools), not NaN
            pts.add(c)
    return sorted(pts)


def _int_above(a: Any) -> int:
    """The least int strictly greater than the finite real ``a``."""
    return math.floor(a) + 1


def _int_below(b: Any) -> int:
    """The greatest int strictly less than the finite real ``b``."""
    return math.ceil(b) - 1


def is_finite(x: Any) -> bool:
    """A finite number: not an infinity or NaN (an int always is)."""
    return isinstance(x, int) or math.isfinite(x)


def _pretty_order(xs: Iterable[Any]) -> list[Any]:
    """Small non-negative values first: witnesses read naturally (status 0 before status -1)."""
    return sorted(set(xs), key=lambda x: (x < 0, abs(x)))


def int_candidates(lits: Sequence[tuple[AttrTest, bool]]) -> list[int]:
    """Integers that cover every outcome of the literals: each integer point and the nearest
    integer on either side of and between the points they compare with."""
    pts = [p for p in _real_points(lits) if is_finite(p)]  # ints never reach an infinity
    out: list[int] = []
    for p in pts:
        if isinstance(p, int) or p.is_integer():
            out.append(int(p))
    for a, b in zip(pts, pts[1:]):
        x = _int_above(a)
        if x < b:
            out.append(x)
    out.append(_int_below(pts[0]))
    out.append(_int_above(pts[-1]))
    return _pretty_order(out)


def _float_above(a: Any) -> float | None:
    """The least float strictly greater than the real ``a`` (None: there is none)."""
    if a == math.inf:
        return None
    try:
        x = float(a)
    except OverflowError:
        return None if a > 0 else -sys.float_info.max
    # float() rounds to the nearest float, so a lies less than one step above x (or is x): one
    # step up passes it (from -inf, the step is to the lowest float)
    return x if x > a else math.nextafter(x, math.inf)


def _float_between(a: Any, b: Any) -> float | None:
    """A float strictly between reals ``a < b`` (a readable one when possible), or None."""
    if is_finite(a) and is_finite(b):
        try:
            m = float(a) / 2 + float(b) / 2
            if a < m < b:
                return round(m, 6) if a < round(m, 6) < b else m
        except OverflowError:
            pass
    elif a == -math.inf and is_finite(b):
        try:
            m = float(math.ceil(b) - 1)
            if m < b:
                return m
        except OverflowError:
            pass
    elif is_finite(a) and b == math.inf:
        try:
            m = float(math.floor(a) + 1)
            if a < m:
                return m
        except OverflowError:
            pass
    x = _float_above(a)
    return x if x is not None and x < b else None


def float_candidates(lits: Sequence[tuple[AttrTest, bool]]) -> list[float]:
    """Floats that cover every outcome of the literals: each finite point and one float in each
    open interval between the points (infinities and NaN are added by the caller)."""
    pts = _real_points(lits)
    out: list[float] = []
    for p in pts:
        try:
            if float(p) == p and math.isfinite(float(p)):
                out.append(float(p))
        except OverflowError:
            pass
    ext = [-math.inf, *[p for p in pts if p not in (math.inf, -math.inf)], math.inf]
    for a, b in zip(ext, ext[1:]):
        x = _float_between(a, b)
        if x is not None and math.isfinite(x):
            out.append(x)
    return _pretty_order(out)


# -- strings ------------------------------------------------------------------------------------
#
# Completeness. A present string v must satisfy: bounds lo < v < hi (tightest, from the ordering
# literals with string constants; a non-strict bound adds the point lo or hi), needles P contained and
# N not contained, points X avoided, possibly v == c or v == "" (truthy false). Ordering, equality and
# membership with non-string constants are constant on strings, and evaluate decides them.
# Candidates: (1) ABSENT; (2) "", every string constant, every proper prefix of hi; (3) when no
# literal pins v to finitely many values, constructed strings q + c + tail (see _construct).
# If some v satisfies the literals and is not among (1)-(2), then lo < v < hi, v is not a prefix of
# hi, and the shortest prefix of v all of whose extensions lie in (lo, hi) is p* = q + c, with q a
# prefix of lo or of hi and c in the character range _settling_prefixes yields for q. p* is a
# substring of v, so it contains no needle of N; every needle that is a substring of a needle of P is
# in v, so not in N. _construct tries |N| + 1 characters of that range (at most |N| of them end a
# needle of N), appends sep + P joined by sep, sep being a character in no needle (so no needle
# occurrence crosses a boundary), and pads with up to |X| extra seps to avoid X. The result contains
# exactly the needles inside q + c or inside P: all of P, none of N; it lies in (lo, hi), is not in X
# and is non-empty. So it realises the literals.
