"""Witness values for string and list attributes: strings built to fall inside or outside every
prefix, suffix, substring and ordering test of a guard, and lists of the lengths it asks for."""

from __future__ import annotations

import sys
from typing import Any, Iterator, Sequence

from ..language.model import AttrTest
from .atoms import ABSENT, literal_constants


_SEPARATORS = " |#~/_-.:;,+=*"
_NICE_CHARS = "axyzm0AXZ "


def _str_bounds(lits: Sequence[tuple[AttrTest, bool]]) -> tuple[str | None, str | None]:
    """The tightest lower and upper constants of the ordering literals on strings.

    Whether a bound is strict does not matter: the constants themselves are candidates, so only the
    strings strictly between the bounds are built."""
    lo: str | None = None
    hi: str | None = None
    for a, want in lits:
        if a.op not in ("lt", "le", "gt", "ge") or not isinstance(a.value, str):
            continue
        c = a.value
        if (a.op in ("gt", "ge")) is want:  # "v > c", and for a present string "not v < c"
            if lo is None or c > lo:
                lo = c
        elif hi is None or c < hi:
            hi = c
    return lo, hi


def _pinned(lits: Sequence[tuple[AttrTest, bool]]) -> bool:
    """Some literal limits the value to finitely many (so the point candidates cover it)."""
    for a, want in lits:
        if (a.op == "eq" and want) or (a.op == "ne" and not want) or (a.op == "in" and want):
            return True
        if a.op == "truthy" and not want:
            return True
    return False


def str_candidates(lits: Sequence[tuple[AttrTest, bool]]) -> Iterator[Any]:
    """Strings that cover every outcome of the literals (see the completeness argument above),
    then ABSENT."""
    seen: set[str] = set()
    points = [""] + [c for c in literal_constants(lits) if isinstance(c, str)]
    lo, hi = _str_bounds(lits)
    if hi is not None:
        points += [hi[:k] for k in range(len(hi))]
    for p in points:
        if p not in seen:
            seen.add(p)
            yield p
    if not _pinned(lits):
        yield from _construct_strs(lits, lo, hi)
    yield ABSENT


def _needles(lits: Sequence[tuple[AttrTest, bool]], want: bool) -> list[Any]:
    out: list[Any] = []
    for a, w in lits:
        if a.op == "contains" and w is want and a.value not in out:
            out.append(a.value)
    return out


def _excluded(lits: Sequence[tuple[AttrTest, bool]]) -> list[Any]:
    out: list[Any] = []
    for a, want in lits:
        if (a.op == "eq" and not want) or (a.op == "ne" and want):
            out.append(a.value)
        elif a.op == "in" and not want:
            out.extend(literal_constants([(a, want)]))
    return out


def _separator(needles: Sequence[str]) -> str:
    for ch in _SEPARATORS:
        if not any(ch in n for n in needles):
            return ch
    used = {ch for n in needles for ch in n}
    code = 0x21
    while chr(code) in used:
        code += 1
    return chr(code)


def _first_difference(a: str, b: str) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None


def _settling_prefixes(lo: str | None, hi: str | None) -> Iterator[tuple[str, int, int]]:
    """(q, cmin, cmax): every string starting with q + chr(c), cmin <= c <= cmax, lies in (lo, hi).
    When both bounds are given, lo < hi (the caller builds nothing otherwise)."""
    top = sys.maxunicode

    def cmax_for(q: str) -> int:  # q + c and all its extensions stay below hi
        if hi is None or _first_difference(q, hi) is not None:
            return top  # a prefix of lo that already differs from hi is below it (lo < hi)
        return ord(hi[len(q)]) - 1  # a proper prefix of hi (lo < hi: no prefix of lo is longer)

    def cmin_for(q: str) -> int:  # q + c and all its extensions stay above lo
        if lo is None or _first_difference(q, lo) is not None:
            return 0  # a prefix of hi that already differs from lo is above it
        return ord(lo[len(q)]) + 1 if len(q) < len(lo) else 0

    if lo is not None:
        for i in range(len(lo) + 1):
            q = lo[:i]
            yield q, cmin_for(q), cmax_for(q)
    if hi is not None:
        for j in range(len(hi)):
            q = hi[:j]
            yield q, cmin_for(q), cmax_for(q)


def _construct_strs(lits: Sequence[tuple[AttrTest, bool]], lo: str | None, hi: str | None) -> Iterator[str]:
    if lo is not None and hi is not None and not lo < hi:
        return
    must = [n for n in _needles(lits, True) if isinstance(n, str)]
    avoid = [n for n in _needles(lits, False) if isinstance(n, str)]
    if "" in avoid or any(n in p for n in avoid for p in must):
        return  # every present string contains "" / a needle of a required needle
    xs = {x for x in _excluded(lits) if isinstance(x, str)}
    sep = _separator(must + avoid)
    body = sep.join(must)

    def pad(head: str) -> str:
        # head ends where the separator starts: no needle occurrence crosses it; each k gives
        # another string, so one of the first len(xs) + 1 is not excluded
        k = 0
        while (v := head + (sep + body if head else body or sep) + sep * k) in xs:
            k += 1
        return v

    if lo is None and hi is None:
        yield pad("")
        return
    for q, cmin, cmax in _settling_prefixes(lo, hi):
        if cmin > cmax or any(n in q for n in avoid):
            continue
        for code in _char_choices(cmin, cmax, len(avoid) + 1):
            head = q + chr(code)
            if not any(head.endswith(n) for n in avoid):
                yield pad(head)
                break


def _char_choices(cmin: int, cmax: int, need: int) -> Iterator[int]:
    """At least ``need`` distinct code points of [cmin, cmax] (all of them when fewer), nice ones first."""
    seen: set[int] = set()
    for ch in _NICE_CHARS:
        c = ord(ch)
        if cmin <= c <= cmax and c not in seen:
            seen.add(c)
            yield c
    c = cmin
    while c <= cmax and len(seen) < need:
        if c not in seen:
            seen.add(c)
            yield c
        c += 1


# -- lists --------------------------------------------------------------------------------------
#
# Completeness (for eq, ne, in, contains, truthy; the validator admits no other form on lists). A
# list's truth vector is fixed by: being equal to a constant, which items it holds (``contains`` is
# membership), being empty. Candidates: ABSENT, [], every list constant, and when nothing pins the
# value, the required items P followed by k fresh items (0 <= k <= |X| + 1, X the excluded
# constants): it holds exactly P, is non-empty for some k >= 1 and avoids X for some k.


def list_candidates(lits: Sequence[tuple[AttrTest, bool]]) -> Iterator[Any]:
    """Lists that cover every outcome of the literals: empty, the lists they compare with, and
    lists built to contain or avoid their needles."""
    yield []
    for c in literal_constants(lits):
        if isinstance(c, (list, tuple)):
            yield list(c)
    if not _pinned(lits):
        must = _needles(lits, True)
        avoid = _needles(lits, False)
        fresh = "other"
        n = 0
        while fresh in must or fresh in avoid:
            n += 1
            fresh = f"other{n}"
        for k in range(len(_excluded(lits)) + 2):
            yield list(must) + [fresh] * k
    yield ABSENT
