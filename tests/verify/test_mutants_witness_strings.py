"""The string witnesses the checker tries (loopspec/verify/witness_strings.py), written against the
survivors of its mutation run. The candidates for a set of literals are pinned exactly, in order:
the first that realises the literals is the value a counterexample shows and a cassette records, so
the readable one (a nice character, the needles joined by a separator no needle uses) must come
first; and where only one character fits between two bounds, or only a control character below
one, the witness must still be found."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from loopspec.language.model import AttrTest
from loopspec.verify.atoms import ABSENT, SAT, UNSAT, realises
from loopspec.verify.witness_strings import list_candidates, str_candidates
from loopspec.verify.witnesses import attr_witness

from test_cases import MESSAGE

SEPS = " |#~/_-.:;,+=*"


def lits(*xs: tuple[str, str, bool]) -> list[tuple[AttrTest, bool]]:
    return [(AttrTest("message", op, v), want) for op, v, want in xs]


# the literal constants (and the prefixes of an upper bound) come first, then the built strings:
# one per prefix that settles the order, its next character the nicest that fits, then a separator
CANDIDATES: dict[str, tuple[list[tuple[AttrTest, bool]], list[Any]]] = {
    # above "`": "a" is the first character past it; "`" itself continues with any character
    "above a bound": (lits(("gt", "`", True)), ["", "`", "a ", "`a ", ABSENT]),
    # below "b": "a" is the last character before it, the nicest of those that fit
    "below a bound": (lits(("lt", "b", True)), ["", "b", "a ", ABSENT]),
    # no bound: the needle alone, no separator before it
    "one needle": (lits(("contains", "retry", True)), ["", "retry", "retry", ABSENT]),
    # two needles joined by the first separator neither uses
    "two needles": (lits(("contains", "ab", True), ("contains", "cd", True)), ["", "ab", "cd", "ab cd", ABSENT]),
    # "a " is forbidden, so the separator is "|", and it keeps "a" apart from the needle
    "a forbidden needle across the join": (
        lits(("gt", "`", True), ("contains", "retry", True), ("contains", "a ", False)),
        ["", "`", "retry", "a ", "a|retry", "`a|retry", ABSENT],
    ),
    # every separator is used: the first unused printable character joins
    "needles using every separator": (
        lits(("contains", SEPS, True), ("contains", "x", True)),
        ["", SEPS, "x", SEPS + "!x", ABSENT],
    ),
    "needles using every separator and !": (
        lits(("contains", SEPS + "!", True), ("contains", "x", True)),
        ["", SEPS + "!", "x", SEPS + '!"x', ABSENT],
    ),
    # every string containing "" is forbidden, or every string containing "abc" contains "b": none built
    "the empty needle forbidden": (lits(("contains", "", False)), ["", ABSENT]),
    "a required needle holding a forbidden one": (
        lits(("contains", "abc", True), ("contains", "b", False)),
        ["", "abc", "b", ABSENT],
    ),
    # between "a" and "b\x01": "a" continued, or "b" followed by the one character below "\x01"
    "one character between the bounds": (
        lits(("gt", "a", True), ("lt", "b\x01", True)),
        ["", "a", "b\x01", "b", "aa ", "b\x00 ", ABSENT],
    ),
    # between "ab" and "bc": a character past "a" ("b" is taken by "ab", so the nice "x"), "ab"
    # continued, or "b" followed by anything below "c"
    "bounds that differ in their first character": (
        lits(("gt", "ab", True), ("lt", "bc", True)),
        ["", "ab", "bc", "b", "ax ", "aba ", "ba ", ABSENT],
    ),
    # a literal that pins the value to finitely many strings: the constants (and "") are all there is
    "pinned by eq": (lits(("eq", "x", True), ("contains", "y", True)), ["", "x", "y", ABSENT]),
    "pinned by a false ne": (lits(("ne", "x", False), ("gt", "a", True)), ["", "x", "a", ABSENT]),
    "pinned by in": (lits(("in", ["x", "zz"], True), ("contains", "z", True)), ["", "x", "zz", "z", ABSENT]),
    "pinned by a false truthy": (lits(("truthy", None, False), ("lt", "b", True)), ["", "b", ABSENT]),
    # an excluded value is never built: "x" (ne, a false eq, a false in) is passed over for "x "
    "excluded by ne": (lits(("contains", "x", True), ("ne", "x", True)), ["", "x", "x ", ABSENT]),
    "excluded by a false eq": (lits(("contains", "x", True), ("eq", "x", False)), ["", "x", "x ", ABSENT]),
    "excluded by a false in": (lits(("contains", "x", True), ("in", ["x", "x "], False)), ["", "x", "x ", "x  ", ABSENT]),
    "not excluded by a true in": (lits(("contains", "x", True), ("in", ["x", "y"], True)), ["", "x", "y", ABSENT]),
    # every nice character past "a" and the first two past it are forbidden needles: "d" is the next
    "forbidden characters pass over to the next": (
        lits(("gt", "a", True), *(("contains", ch, False) for ch in "xyzmbc")),
        ["", "a", "x", "y", "z", "m", "b", "c", "d ", "aa ", ABSENT],
    ),
    # below "\x01" only "\x00" starts a string
    "below the second code point": (lits(("lt", "\x01", True), ("ne", "", True)), ["", "\x01", "\x00 ", ABSENT]),
}


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_string_candidates_in_order(name: str) -> None:
    given, want = CANDIDATES[name]
    assert list(str_candidates(given)) == want


def between_b_and(top: str, *forbidden: str) -> list[tuple[AttrTest, bool]]:
    return lits(("gt", "b", True), ("lt", top, True), *(("contains", n, False) for n in forbidden))


def test_the_only_strings_between_two_bounds_are_found() -> None:
    """Only "b\\x00..." lies between "b" and "b\\x01"; with "\\x00" and "\\x02" forbidden, only
    "b\\x01..." lies between "b" and "b\\x03"."""
    assert attr_witness(MESSAGE, between_b_and("b\x01")) == (SAT, "b\x00 ")
    assert attr_witness(MESSAGE, between_b_and("b\x03", "\x00", "\x02")) == (SAT, "b\x01 ")
    assert attr_witness(MESSAGE, between_b_and("b\x03", "\x00", "\x01", "\x02")) == (UNSAT, None)


def test_a_non_empty_string_below_the_second_code_point() -> None:
    assert attr_witness(MESSAGE, lits(("lt", "\x01", True), ("ne", "", True))) == (SAT, "\x00 ")


def test_a_string_with_declared_values_is_witnessed_only_by_one_of_them() -> None:
    """A broken stream's ``cause`` is one of three words. Literals that rule out all three have no
    witness (the transition is dead), not some other string; ruling out two leaves the third."""
    from loopspec.language.alphabet import KINDS
    from loopspec.language.model import AttrTest
    from loopspec.verify.atoms import ABSENT, SAT, UNSAT
    from loopspec.verify.witnesses import attr_witness

    spec = KINDS["stream"].event("broken")
    assert spec is not None
    cause = next(a for a in spec.attrs if a.name == "cause")
    assert attr_witness(cause, [(AttrTest("cause", "in", ["overflow", "disconnect", "provider_error"]), False),
                                (AttrTest("cause", "truthy", None), True)]) == (UNSAT, None)
    assert attr_witness(cause, [(AttrTest("cause", "in", ["overflow", "provider_error"]), False),
                                (AttrTest("cause", "truthy", None), True)]) == (SAT, "disconnect")
    assert attr_witness(cause, [(AttrTest("cause", "truthy", None), False)]) == (SAT, ABSENT)


def test_list_literals_of_the_language_are_decided_completely() -> None:
    """``eq`` is one of the list tests the candidates cover: a contradiction on it is no witness
    (UNSAT, the transition is dead), not an unknown."""
    from loopspec.language.alphabet import KINDS
    from loopspec.language.model import AttrTest
    from loopspec.verify.atoms import UNSAT
    from loopspec.verify.witnesses import attr_witness

    spec = KINDS["stream"].event("tool_calls")
    assert spec is not None
    tools = next(a for a in spec.attrs if a.name == "tools")
    same = AttrTest("tools", "eq", ["search"])
    assert attr_witness(tools, [(same, True), (same, False)]) == (UNSAT, None)


# --------------------------------------------------------------------------- completeness
#
# The checker decides whether literals on a string attribute can all hold by trying only the
# candidates: a string that realises the literals but has no candidate realising them too is an
# edge the abstract graph loses (a possible false proof). Strings here are drawn from a small
# alphabet rich in edge cases (the lowest and highest code points, a character the separators use),
# and the constants from the same alphabet, so bounds, prefixes and needles collide often.

_CHARS = "ab \x00\x01" + chr(sys.maxunicode)
_texts = st.text(alphabet=_CHARS, max_size=4)


@st.composite
def _string_atom(draw: st.DrawFn, pool: list[str]) -> AttrTest:
    """An atom whose constants come mostly from ``pool``, so that literals share them."""
    const = st.sampled_from(pool) | _texts
    op = draw(st.sampled_from(["lt", "le", "gt", "ge", "eq", "ne", "contains", "in", "truthy"]))
    if op == "truthy":
        return AttrTest("message", op)
    if op == "in":
        return AttrTest("message", op, draw(st.lists(const, min_size=1, max_size=3)))
    return AttrTest("message", op, draw(const))


@st.composite
def _value_near(draw: st.DrawFn, atoms: list[AttrTest]) -> Any:
    """ABSENT, a free string, or a constant of the atoms cut, extended or with one character changed."""
    consts = [c for a in atoms for c in (a.value if a.op == "in" else [a.value]) if isinstance(c, str)]
    kind = draw(st.sampled_from(["absent", "free", "near"] if consts else ["absent", "free"]))
    if kind == "absent":
        return ABSENT
    if kind == "free":
        return draw(_texts)
    c = draw(st.sampled_from(consts))
    cut = draw(st.integers(0, len(c)))
    return c[:cut] + draw(_texts) + (c[cut + 1 :] if draw(st.booleans()) else "")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_every_string_that_realises_the_literals_has_a_candidate_that_does(data: st.DataObject) -> None:
    """Completeness of the string candidates: for any literals (orderings, equality, membership,
    needles, truthiness) and any value, some candidate realises exactly the truth vector that value
    does. Dropping or loosening a bound, a prefix or a needle makes one of these vectors
    unrealisable to the checker while a real event realises it."""
    pool = data.draw(st.lists(_texts, min_size=1, max_size=3))
    atoms = data.draw(st.lists(_string_atom(pool), min_size=1, max_size=4))
    value = data.draw(_value_near(atoms))
    literals = [(a, realises(a, value)) for a in atoms]
    note(f"value {value!r}, literals {literals}")
    found = next((c for c in str_candidates(literals) if all(realises(a, c) is w for a, w in literals)), None)
    assert found is not None, f"{value!r} realises {literals} and no candidate does"


@pytest.mark.parametrize(
    "literals,value",
    [
        # only "\x00\x00..." lies above "\x00" and at most "\x00\x01" without being it (le bounds)
        (lits(("gt", "\x00", True), ("le", "\x00\x01", True), ("ne", "\x00\x01", True)), "\x00\x00"),
        # only "b\x00" followed by something past "!" lies in ["b\x00!", "b\x01") (ge bounds)
        (lits(("ge", "b\x00!", True), ("lt", "b\x01", True), ("ne", "b\x00!", True)), "b\x00a"),
        # the same regions reached through a false lt and a false gt
        (lits(("lt", "b\x00!", False), ("lt", "b\x01", True), ("ne", "b\x00!", True)), "b\x00a"),
        (lits(("gt", "\x00", True), ("gt", "\x00\x01", False), ("ne", "\x00\x01", True)), "\x00\x00"),
    ],
)
def test_a_narrow_region_between_two_bounds_has_a_candidate(literals: list[tuple[AttrTest, bool]], value: str) -> None:
    """Each of the four ordering forms, wanted true or false, is a bound the built strings must
    respect: with any of them ignored the candidates miss a region that only a few strings realise."""
    assert all(realises(a, value) is w for a, w in literals)
    assert any(all(realises(a, c) is w for a, w in literals) for c in str_candidates(literals))


_items = st.sampled_from(["a", "b", "other", "other1", ""])
_lists = st.lists(_items, max_size=3)


@st.composite
def _list_atom(draw: st.DrawFn) -> AttrTest:
    op = draw(st.sampled_from(["eq", "ne", "in", "contains", "truthy"]))
    if op == "truthy":
        return AttrTest("tools", op)
    if op == "contains":
        return AttrTest("tools", op, draw(_items))
    if op == "in":
        return AttrTest("tools", op, draw(st.lists(_lists, min_size=1, max_size=3)))
    return AttrTest("tools", op, draw(_lists))


@settings(max_examples=300, deadline=None)
@given(st.lists(_list_atom(), min_size=1, max_size=4), st.one_of(st.just(ABSENT), _lists))
def test_every_list_that_realises_the_literals_has_a_candidate_that_does(atoms: list[AttrTest], value: Any) -> None:
    """Completeness of the list candidates (eq, ne, in, contains, truthy: the list tests the
    language has): some candidate realises the truth vector of any list, items named like the
    fresh item included."""
    literals = [(a, realises(a, value)) for a in atoms]
    note(f"value {value!r}, literals {literals}")
    assert any(all(realises(a, c) is w for a, w in literals) for c in list_candidates(literals))
