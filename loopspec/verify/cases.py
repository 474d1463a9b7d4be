"""Event cases: which transition an event can select, each with a concrete witness.

Why this module exists. The checker explores a finite abstraction, so it must turn "the model may
answer anything the alphabet allows" into finitely many events. Sampling a few attribute values
around each guard constant is not enough: it silently dropped edges (a list constant never matched,
two ``contains`` on one string were never true together, nothing fell strictly between two
constants), and a dropped edge can turn a looping policy into a false "proven". Taking the product of
per-attribute (and per-counter) cases instead is exponential. Here the cases are a partition by
OUTCOME, computed by a small decision procedure, with a witness that really realises each.

What an event can change. A state's transitions on one event are tried in document order; the first
enabled one (guard holds, increments within caps) is selected (:meth:`Policy.select`). Everything the
checker records about a step (target, actions, redirect, flags, backstop phases) follows from the
configuration and the selected transition, except what the property monitor reads from the event
(:data:`MONITOR_ATTRS`) and from the counters (whether the continuation budget lasts); the caller
keeps each backstop counter within a region where the redirect and the phase after the step do not
change (:meth:`.abstraction.Analysis.contexts`), or pins every counter and flag to one configuration
(:meth:`.abstraction.Analysis.steps_at`, for the explicit searches). So the outcomes of a state and
event are the triples (selected transition or none, monitor attribute truth, budget truth), and for
T transitions there are at most 4(T+1) of them, whatever the number of attributes, counters or
constants.

How an outcome is decided. Outcome (j, m, b) holds for a configuration and event iff

    not enabled(t_0) and ... and not enabled(t_{j-1}) and enabled(t_j) and monitor = m and budget = b

("none": every transition disabled). Guards are And/Or/Not trees over atoms, and every atom reads one
VARIABLE: an event attribute (:class:`AttrTest`), a counter (:class:`CounterCmp`, also each cap
check ``counter <= max - amount``) or a flag (:class:`FlagIs`). :func:`_solve` searches the atoms'
truth values depth first, pruning a partial assignment only when three-valued evaluation shows that
every completion falsifies the query, and asks a per-variable THEORY whether the literals on one
variable can hold together: ``attr_witness`` for attributes, ``counter_witness`` for counters. Since
each atom reads one variable, a conjunction of literals is realisable iff it is realisable variable by
variable, and the witness is the tuple of per-variable witnesses.

The theories are complete for every atom form the validator admits (proofs in their docstrings):
each builds a finite candidate list from the literals' constants and tests every candidate with the
model's own ``evaluate``, and the candidates meet every region of the domain the literals can tell
apart: an absent attribute; bools; enum strings; numbers at, between, below and above the constants
(and NaN and the infinities for floats); strings equal to a constant, empty, a proper prefix of an
upper bound, or built as a settling prefix followed by the required needles between separators; lists
equal to a constant or made of the required items plus fresh ones. A witness found is therefore a real
value of the attribute's declared type that realises exactly the literals asked for.

Soundness (never drop an edge). Take any configuration in the caller's domains and any event, let
(j, m, b) be its outcome and A its truth assignment to all atoms; A satisfies query (j, m, b). The
search branches on both values of each atom it picks, so one branch agrees with A at every decision.
On that branch no conjunct is ever falsified (three-valued evaluation only reports what every
completion, A included, agrees on) and no theory answers "unsatisfiable" (the literals on each
variable are a subset of A's, which the variable's concrete value realises, and a theory says
"unsatisfiable" only when no value of the declared domain does). Atoms are finitely many, so the
branch ends with every conjunct true. Hence the search never answers UNSAT for (j, m, b): it returns
some witness for it (possibly another one), or keeps the outcome as MAY FIRE (below). Every witnessed
case is stepped with the model's own :meth:`Policy.step`; should that select another transition than
the query said (which would be a bug here), both steps are kept.

Cost. Each query is a depth-first search capped at :data:`SEARCH_BUDGET` decisions, and a state and
event need one query per outcome and counter region: polynomial in the policy size, with no product
over attributes, counters or constants. The results are cached under the values of the counters and
flags the guards read, so abstract nodes that differ elsewhere share them. Deciding a query exactly
is NP-hard in general (counter atoms can encode SAT), so the cap is what keeps the cost polynomial.

May fire. When a theory cannot decide a form (only forms the validator rejects, e.g. ordering on a
list) or a search reaches its cap, the outcome is kept WITHOUT a witness (``Case.witnessed`` is
False): it may fire. Its step comes from :func:`forced_step`, the model's own ``Policy.step`` on a
copy of the policy where that transition's guard is ``Always`` (its cap checks still apply), on
counters chosen to pass its caps. Such an edge over-approximates, which is sound for every proof the
checker makes. For validated policies the forced step only appears past the search cap.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Hashable, Iterable, Iterator, Mapping, Sequence, cast

from ..language.alphabet import KINDS, Attr, Event
from ..language.model import (
    AllOf,
    Always,
    AnyOf,
    AttrTest,
    Config,
    CounterCmp,
    FlagIs,
    Guard,
    Not,
    Policy,
    Step,
    Transition,
)

SEARCH_BUDGET = 20_000
"""Decisions one query may take before its outcome is kept as "may fire" without a witness."""

# Attributes the property monitor reads, split even when no guard tests them.
MONITOR_ATTRS: dict[tuple[str, str], tuple[str, ...]] = {
    ("stream", "length"): ("has_tool_calls",),
    ("stream", "stalled"): ("mid_tool_call",),
}

BUDGET_EVENTS = ("mid_tool_call", "stalled")
"""Events on which the monitor reads whether the continuation budget lasts."""


class _Absent:
    """The value of an attribute the event does not carry (``attrs.get`` returns None)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()

SAT, UNSAT, UNKNOWN = "sat", "unsat", "unknown"

_NO_POLICY = cast(Policy, None)  # AttrTest, CounterCmp and FlagIs never read the policy
_NO_CONFIG = Config("", (), frozenset())


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
    attrs = {} if value is ABSENT else {atom.attr: value}
    return atom.evaluate(_NO_POLICY, _NO_CONFIG, Event("", attrs))


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
        return [*_int_candidates(lits), ABSENT], True
    if t == "float":
        return [*_float_candidates(lits), math.inf, -math.inf, math.nan, ABSENT], True
    if t == "str":
        return _str_candidates(lits), True
    if t == "list":
        supported = all(a.op in ("eq", "ne", "in", "contains", "truthy") for a, _ in lits)
        return _list_candidates(lits), supported
    return [ABSENT], False  # pragma: no cover - the alphabet has only the types above


def _constants(lits: Sequence[tuple[AttrTest, bool]]) -> list[Any]:
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


def _real_points(lits: Sequence[tuple[AttrTest, bool]]) -> list[Any]:
    pts: set[Any] = {0}
    for c in _constants(lits):
        if isinstance(c, (int, float)) and c == c:  # numbers (and bools), not NaN
            pts.add(c)
    return sorted(pts)


def _int_above(a: Any) -> int:
    """The least int strictly greater than the finite real ``a``."""
    return a + 1 if isinstance(a, int) else math.floor(a) + 1


def _int_below(b: Any) -> int:
    return b - 1 if isinstance(b, int) else math.ceil(b) - 1


def _finite(x: Any) -> bool:
    return isinstance(x, int) or math.isfinite(x)


def _pretty_order(xs: Iterable[Any]) -> list[Any]:
    """Small non-negative values first: witnesses read naturally (status 0 before status -1)."""
    return sorted(set(xs), key=lambda x: (x < 0, abs(x)))


def _int_candidates(lits: Sequence[tuple[AttrTest, bool]]) -> list[int]:
    pts = [p for p in _real_points(lits) if _finite(p)]  # ints never reach an infinity
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
    if a == -math.inf:
        return -sys.float_info.max
    try:
        x = float(a)
    except OverflowError:
        return None if a > 0 else -sys.float_info.max
    for _ in range(4):
        if x > a:
            return x
        x = math.nextafter(x, math.inf)
    return x if x > a else None  # pragma: no cover - rounding is within one ulp


def _float_between(a: Any, b: Any) -> float | None:
    """A float strictly between reals ``a < b`` (a readable one when possible), or None."""
    if _finite(a) and _finite(b):
        try:
            m = float(a) / 2 + float(b) / 2
            if a < m < b:
                return round(m, 6) if a < round(m, 6) < b else m
        except OverflowError:
            pass
    elif a == -math.inf and _finite(b):
        try:
            m = float(math.floor(b) - 1)
            if m < b:
                return m
        except OverflowError:
            pass
    elif _finite(a) and b == math.inf:
        try:
            m = float(math.floor(a) + 1)
            if a < m:
                return m
        except OverflowError:
            pass
    x = _float_above(a)
    return x if x is not None and x < b else None


def _float_candidates(lits: Sequence[tuple[AttrTest, bool]]) -> list[float]:
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

_SEPARATORS = " |#~/_-.:;,+=*"
_NICE_CHARS = "axyzm0AXZ "


def _str_bounds(
    lits: Sequence[tuple[AttrTest, bool]],
) -> tuple[tuple[str, bool] | None, tuple[str, bool] | None]:
    """Tightest (lower, upper) bounds as (value, strict) from ordering literals on strings."""
    flip = {"lt": "ge", "le": "gt", "gt": "le", "ge": "lt"}
    lo: tuple[str, bool] | None = None
    hi: tuple[str, bool] | None = None
    for a, want in lits:
        if a.op not in flip or not isinstance(a.value, str):
            continue
        op = a.op if want else flip[a.op]  # a present string: "not v < c" is "v >= c"
        c = a.value
        if op in ("gt", "ge"):
            strict = op == "gt"
            if lo is None or c > lo[0] or (c == lo[0] and strict):
                lo = (c, strict)
        else:
            strict = op == "lt"
            if hi is None or c < hi[0] or (c == hi[0] and strict):
                hi = (c, strict)
    return lo, hi


def _pinned(lits: Sequence[tuple[AttrTest, bool]]) -> bool:
    """Some literal limits the value to finitely many (so the point candidates cover it)."""
    for a, want in lits:
        if (a.op == "eq" and want) or (a.op == "ne" and not want) or (a.op == "in" and want):
            return True
        if a.op == "truthy" and not want:
            return True
    return False


def _str_candidates(lits: Sequence[tuple[AttrTest, bool]]) -> Iterator[Any]:
    seen: set[str] = set()
    points = [""] + [c for c in _constants(lits) if isinstance(c, str)]
    lo, hi = _str_bounds(lits)
    if hi is not None:
        points += [hi[0][:k] for k in range(len(hi[0]))]
    for p in points:
        if p not in seen:
            seen.add(p)
            yield p
    if not _pinned(lits):
        yield from _construct_strs(lits, lo[0] if lo else None, hi[0] if hi else None)
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
            out.extend(_constants([(a, want)]))
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
    """(q, cmin, cmax): every string starting with q + chr(c), cmin <= c <= cmax, lies in (lo, hi)."""
    top = sys.maxunicode

    def cmax_for(q: str) -> int:  # q + c and all its extensions stay below hi
        if hi is None:
            return top
        d = _first_difference(q, hi)
        if d is None:
            return ord(hi[len(q)]) - 1 if len(q) < len(hi) else -1
        return top if q[d] < hi[d] else -1

    def cmin_for(q: str) -> int:  # q + c and all its extensions stay above lo
        if lo is None:
            return 0
        d = _first_difference(q, lo)
        if d is None:
            return ord(lo[len(q)]) + 1 if len(q) < len(lo) else 0
        return 0 if q[d] > lo[d] else top + 1

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
        # head ends where the separator starts: no needle occurrence crosses it
        for k in range(len(xs) + 2):
            v = head + (sep + body if head else body or sep) + sep * k
            if v not in xs:
                return v
        return head + sep * (len(xs) + 2)  # pragma: no cover - pigeonhole

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
    while c <= cmax and len(seen) < need + len(_NICE_CHARS):
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


def _list_candidates(lits: Sequence[tuple[AttrTest, bool]]) -> Iterator[Any]:
    yield []
    for c in _constants(lits):
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


def default_value(attr: Attr) -> Any:
    """The value an unconstrained attribute gets in a witness (any value would do)."""
    return {"bool": False, "int": 0, "float": 0.0, "list": []}.get(attr.type, attr.values[0] if attr.values else "")


# =========================================================================== counter and flag theories


def counter_holds(atom: CounterCmp, value: int) -> bool:
    return atom.evaluate(_NO_POLICY, Config("", (0,) * atom.index + (value,), frozenset()), Event(""))


def counter_witness(lo: int, hi: int, lits: Sequence[tuple[CounterCmp, bool]]) -> tuple[str, int | None]:
    """The least value in [lo, hi] on which every literal holds.

    Complete: comparisons with a constant c split the integers at c and c + 1 (at floor(c) + 1 and
    ceil(c) for a fractional c), so every region of [lo, hi] the literals tell apart starts at lo or at
    one of those points, and all are candidates.
    """
    cands = {lo, hi}
    for a, _ in lits:
        c = a.value
        if isinstance(c, (int, float)) and c == c and _finite(c):
            for x in (math.floor(c), math.floor(c) + 1, math.ceil(c), math.ceil(c) + 1):
                if lo <= x <= hi:
                    cands.add(x)
    for v in sorted(cands):
        if all(counter_holds(a, v) is want for a, want in lits):
            return SAT, v
    return UNSAT, None


def flag_holds(atom: FlagIs, present: bool) -> bool:
    return atom.evaluate(_NO_POLICY, Config("", (), frozenset({atom.flag}) if present else frozenset()), Event(""))


# =========================================================================== compiled selection

_ATOM, _AND, _OR, _NOT, _CONST = 0, 1, 2, 3, 4
Node = tuple[Any, ...]
TRUE: Node = (_CONST, True)

Var = tuple[str, Any]
"""("attr", name), ("counter", index), ("flag", name) or ("opaque", atom index)."""


def _freeze(v: Any) -> Hashable:
    if isinstance(v, (list, tuple)):
        return ("list" if isinstance(v, list) else "tuple", tuple(_freeze(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple(sorted((repr(k), _freeze(x)) for k, x in v.items())))
    try:
        hash(v)
    except TypeError:  # pragma: no cover - YAML gives lists, dicts and scalars only
        return ("repr", repr(v))
    return (type(v).__name__, v)


@dataclass
class Selection:
    """A state's transitions on one event, compiled for the outcome search."""

    policy: Policy
    state: str
    event: str
    attrs: tuple[Attr, ...]
    transitions: tuple[Transition, ...]
    atoms: list[Guard] = field(default_factory=list)
    vars: list[Var] = field(default_factory=list)
    enabled: list[Node] = field(default_factory=list)
    """Per transition: its guard and its cap checks (``counter <= max - amount``), as in Policy.enabled."""
    caps: list[Node] = field(default_factory=list)
    """Per transition: its cap checks alone (for a "may fire" step)."""
    monitor: list[Node] = field(default_factory=list)
    """The truthiness of each attribute the monitor reads (:data:`MONITOR_ATTRS`)."""
    budget: Node | None = None
    _keys: dict[Hashable, int] = field(default_factory=dict)
    _theory: dict[Hashable, tuple[str, Any]] = field(default_factory=dict)
    _forced: dict[tuple[int | None, str], Policy] = field(default_factory=dict)
    _outcomes: dict[Hashable, list[tuple[int | None, dict[Var, Any], bool]]] = field(default_factory=dict)
    counter_vars: tuple[int, ...] = ()
    flag_vars: frozenset[str] = frozenset()
    queries: int = 0
    may: int = 0

    # -- compilation -------------------------------------------------------------------------

    def atom(self, g: Guard) -> Node:
        if isinstance(g, AttrTest):
            key: Hashable = ("attr", g.attr, g.op, _freeze(g.value))
            var: Var = ("attr", g.attr)
        elif isinstance(g, CounterCmp):
            key = ("counter", g.index, g.op, _freeze(g.value))
            var = ("counter", g.index)
        elif isinstance(g, FlagIs):
            key = ("flag", g.flag, g.value)
            var = ("flag", g.flag)
        else:  # pragma: no cover - a guard form this module does not know: undecided, may fire
            key = ("opaque", id(g))
            var = ("opaque", len(self.atoms))
        i = self._keys.get(key)
        if i is None:
            i = self._keys[key] = len(self.atoms)
            self.atoms.append(g)
            self.vars.append(var)
        return (_ATOM, i)

    def compile(self, g: Guard) -> Node:
        if isinstance(g, Always):
            return TRUE
        if isinstance(g, AllOf):
            return (_AND, tuple(self.compile(p) for p in g.parts))
        if isinstance(g, AnyOf):
            return (_OR, tuple(self.compile(p) for p in g.parts))
        if isinstance(g, Not):
            return (_NOT, self.compile(g.part))
        return self.atom(g)

    def cap_node(self, t: Transition) -> Node:
        checks = []
        for inc in t.increments():
            c = self.policy.counters[inc.index]
            checks.append(self.atom(CounterCmp(c.name, c.index, "le", c.max - inc.amount)))
        return (_AND, tuple(checks))

    # -- per-variable theories -----------------------------------------------------------------

    def theory(self, var: Var, lits: Sequence[tuple[int, bool]], domains: "Domains") -> tuple[str, Any]:
        kind, name = var
        if kind == "counter":
            lo, hi = domains.counters[name]
            key: Hashable = (var, lo, hi, frozenset(lits))
        else:
            key = (var, frozenset(lits))
        got = self._theory.get(key)
        if got is not None:
            return got
        if kind == "attr":
            spec = next((a for a in self.attrs if a.name == name), None)
            got = attr_witness(spec, [(cast(AttrTest, self.atoms[i]), w) for i, w in lits])
        elif kind == "counter":
            got = counter_witness(lo, hi, [(cast(CounterCmp, self.atoms[i]), w) for i, w in lits])
        elif kind == "flag":
            got = (UNSAT, None)
            for present in (False, True):
                if all(flag_holds(cast(FlagIs, self.atoms[i]), present) is w for i, w in lits):
                    got = (SAT, present)
                    break
        else:  # pragma: no cover
            got = (UNKNOWN, None)
        self._theory[key] = got
        return got

    def context_key(self, cfg: Config) -> tuple[bool, ...]:
        """The truth of every counter and flag atom in ``cfg``: all that the cases depend on in it."""
        ev = Event(self.event)
        return tuple(
            self.atoms[i].evaluate(self.policy, cfg, ev) for i, (kind, _n) in enumerate(self.vars) if kind != "attr"
        )

    def fixed(self, domains: "Domains") -> list[bool | None]:
        """Truth values of the atoms whose variable the domains pin to one value."""
        out: list[bool | None] = [None] * len(self.atoms)
        cfg = domains.config()
        for i, (kind, name) in enumerate(self.vars):
            if kind == "counter" and domains.counters[name][0] == domains.counters[name][1]:
                out[i] = self.atoms[i].evaluate(self.policy, cfg, Event(self.event))
            elif kind == "flag" and domains.flags is not None:
                out[i] = self.atoms[i].evaluate(self.policy, cfg, Event(self.event))
        return out

    # -- forced ("may fire") steps ---------------------------------------------------------------

    def forced_policy(self, j: int | None) -> Policy:
        """The policy with transition ``j`` alone on this event, its guard Always (None: no transition)."""
        key = (j, self.event)
        got = self._forced.get(key)
        if got is None:
            p = self.policy
            s = p.states[self.state]
            ts = dict(s.transitions)
            ts[self.event] = () if j is None else (replace(self.transitions[j], guard=Always()),)
            states = dict(p.states)
            states[self.state] = replace(s, transitions=ts)
            got = self._forced[key] = replace(p, states=states)
        return got


def compile_selection(policy: Policy, state: str, event: str, continuation: Sequence[int] = ()) -> Selection:
    """Compile a state's transitions on ``event``; ``continuation``: the counters the budget reads."""
    s = policy.states[state]
    spec = KINDS[s.kind].event(event)
    attrs = spec.attrs if spec is not None else ()
    sel = Selection(policy, state, event, attrs, s.transitions.get(event, ()))
    for t in sel.transitions:
        caps = sel.cap_node(t)
        sel.caps.append(caps)
        sel.enabled.append((_AND, (sel.compile(t.guard), caps)))
    sel.monitor = [sel.atom(AttrTest(name, "truthy")) for name in MONITOR_ATTRS.get((s.kind, event), ())]
    if event in BUDGET_EVENTS and continuation:
        parts = []
        for i in continuation:
            c = policy.counters[i]
            parts.append(sel.atom(CounterCmp(c.name, i, "lt", c.max)))
        sel.budget = (_OR, tuple(parts))
    sel.counter_vars = tuple(sorted({name for kind, name in sel.vars if kind == "counter"}))
    sel.flag_vars = frozenset(name for kind, name in sel.vars if kind == "flag")
    return sel


# =========================================================================== domains and cases


@dataclass(frozen=True)
class Domains:
    """Where the counters and flags may be: each counter in an inclusive range; flags fixed or free."""

    counters: tuple[tuple[int, int], ...]
    flags: frozenset[str] | None
    """The set flags, or None when every flag may be either."""

    @staticmethod
    def of_config(cfg: Config) -> "Domains":
        return Domains(tuple((v, v) for v in cfg.counters), cfg.flags)

    def config(self, values: Mapping[int, int] | None = None, state: str = "") -> Config:
        vals = values or {}
        counters = tuple(vals.get(i, lo) for i, (lo, _hi) in enumerate(self.counters))
        return Config(state, counters, self.flags or frozenset())


@dataclass(frozen=True)
class Case:
    """One outcome of a state on an event: the transition selected and a configuration and event for it."""

    transition: Transition | None
    """The transition the witness selects; None: no transition is enabled (policy_error)."""
    event: Event
    counters: tuple[int, ...]
    flags: frozenset[str]
    witnessed: bool = True
    """False: no witness was found but the outcome could not be excluded; it may fire."""
    index: int | None = None
    """The transition's position on the event (None with transition None)."""


def enumerate_cases(sel: Selection, domains: Domains, split_budget: bool = True) -> list[Case]:
    """Every outcome (selected transition, monitor attribute, budget) some configuration in
    ``domains`` and some event can produce, each with a witness (or kept as may-fire).

    The outcomes depend on the domains only through the counters and flags the selection reads, so
    they are cached under that projection and only the cases are rebuilt for other domains."""
    key = (
        tuple(domains.counters[i] for i in sel.counter_vars),
        None if domains.flags is None else domains.flags & sel.flag_vars,
        split_budget,
    )
    found = sel._outcomes.get(key)
    if found is None:
        found = sel._outcomes[key] = _outcomes(sel, domains, split_budget)
    return [_case(sel, domains, j, wit, witnessed) for j, wit, witnessed in found]


def _outcomes(sel: Selection, domains: Domains, split_budget: bool) -> list[tuple[int | None, dict[Var, Any], bool]]:
    fixed = sel.fixed(domains)
    out: list[tuple[int | None, dict[Var, Any], bool]] = []
    n = len(sel.transitions)
    splits: list[list[tuple[Node, bool]]] = [[]]
    for node in sel.monitor:  # the plain value first: counterexamples read naturally
        splits = [s + [(node, m)] for s in splits for m in (False, True)]
    if split_budget and sel.budget is not None:
        splits = [s + [(sel.budget, b)] for s in splits for b in (True, False)]
    for j in [*range(n), None]:
        if j is None:
            base = [(sel.enabled[i], False) for i in range(n)]
        else:
            base = [(sel.enabled[i], False) for i in range(j)] + [(sel.enabled[j], True)]
        status, wit = _solve(sel, domains, fixed, base)
        if status != UNSAT:
            done: list[tuple[Node, bool]] | None = None
            if status == SAT:
                assert wit is not None
                done = _split_of(sel, domains, j, wit, splits)
                out.append((j, wit, True))
            for extra in splits:
                if extra == done:
                    continue
                status, wit = _solve(sel, domains, fixed, base + extra)
                if status == SAT:
                    assert wit is not None
                    out.append((j, wit, True))
                elif status == UNKNOWN:
                    # may fire: a configuration that passes the caps (guards assumed to hold)
                    sel.may += 1
                    reduced = ([(sel.caps[j], True)] if j is not None else []) + extra
                    status, wit = _solve(sel, domains, fixed, reduced)
                    if status != UNSAT:
                        out.append((j, wit or {}, False))
        if j is not None and _eval(sel.enabled[j], fixed) is True:
            break  # enabled whatever the event: no later outcome
    return out


def _split_of(
    sel: Selection, domains: Domains, j: int | None, wit: Mapping[Var, Any], splits: list[list[tuple[Node, bool]]]
) -> list[tuple[Node, bool]]:
    """The split (monitor, budget values) the witness itself realises."""
    case = _case(sel, domains, j, wit, True)
    cfg = Config(sel.state, case.counters, case.flags)
    truth = [a.evaluate(sel.policy, cfg, case.event) for a in sel.atoms]
    for extra in splits:
        if all(_eval(node, truth) is want for node, want in extra):
            return extra
    return []  # pragma: no cover - the splits cover every truth value


def enabled_case(sel: Selection, domains: Domains, j: int) -> Case | None:
    """A configuration in ``domains`` and an event on which transition ``j`` is ENABLED (whether or
    not an earlier one is selected); None when there is none. Unwitnessed when it cannot be excluded."""
    fixed = sel.fixed(domains)
    status, wit = _solve(sel, domains, fixed, [(sel.enabled[j], True)])
    if status == SAT:
        assert wit is not None
        return _case(sel, domains, j, wit, True)
    if status == UNSAT:
        return None
    status, wit = _solve(sel, domains, fixed, [(sel.caps[j], True)])
    return None if status == UNSAT else _case(sel, domains, j, wit or {}, False)


def _case(sel: Selection, domains: Domains, j: int | None, wit: Mapping[Var, Any], witnessed: bool) -> Case:
    attrs: dict[str, Any] = {}
    for a in sel.attrs:
        v = wit.get(("attr", a.name), default_value(a))
        if v is not ABSENT:
            attrs[a.name] = v
    counters = {i: v for (kind, i), v in wit.items() if kind == "counter"}
    flags = domains.flags
    if flags is None:
        flags = frozenset(name for (kind, name), v in wit.items() if kind == "flag" and v)
    cfg = domains.config(counters)
    return Case(
        sel.transitions[j] if j is not None else None,
        Event(sel.event, attrs),
        cfg.counters,
        flags,
        witnessed,
        j,
    )


def case_steps(sel: Selection, cfg: Config, case: Case) -> list[Step]:
    """The model's step(s) for a case from ``cfg`` (a configuration agreeing with the case)."""
    if case.witnessed:
        step = sel.policy.step(cfg, case.event)
        if step.transition is case.transition:
            return [step]
        # The search said another transition is selected: that is a bug here. Keep both edges.
        return [step, forced_step(sel, cfg, case)]  # pragma: no cover
    return [forced_step(sel, cfg, case)]


def forced_step(sel: Selection, cfg: Config, case: Case) -> Step:
    """The step of a may-fire case: the model's own step with only that transition, guard Always."""
    step = sel.forced_policy(case.index).step(cfg, case.event)
    return replace(step, transition=case.transition)


# =========================================================================== the search


def _eval(node: Node, assign: Sequence[bool | None]) -> bool | None:
    k = node[0]
    if k == _ATOM:
        return assign[node[1]]
    if k == _AND:
        res: bool | None = True
        for ch in node[1]:
            v = _eval(ch, assign)
            if v is False:
                return False
            if v is None:
                res = None
        return res
    if k == _OR:
        res = False
        for ch in node[1]:
            v = _eval(ch, assign)
            if v is True:
                return True
            if v is None:
                res = None
        return res
    if k == _NOT:
        v = _eval(node[1], assign)
        return None if v is None else not v
    return bool(node[1])


def _pick(node: Node, want: bool, assign: Sequence[bool | None]) -> tuple[int, bool] | None:
    """An unassigned atom in an undecided part of ``node``, and the value that moves it toward ``want``."""
    k = node[0]
    if k == _ATOM:
        return (node[1], want) if assign[node[1]] is None else None
    if k == _NOT:
        return _pick(node[1], not want, assign)
    if k in (_AND, _OR):
        for ch in node[1]:
            if _eval(ch, assign) is None:
                got = _pick(ch, want, assign)
                if got is not None:
                    return got
    return None


def _solve(
    sel: Selection, domains: Domains, fixed: list[bool | None], query: list[tuple[Node, bool]]
) -> tuple[str, dict[Var, Any] | None]:
    """Decide the conjunction ``query`` of (formula, truth): (SAT, witness), (UNSAT, None) or
    (UNKNOWN, None) when the outcome could not be excluded (theory undecided or budget spent).

    Depth-first over atom truth values. A branch is cut only when three-valued evaluation falsifies a
    conjunct (every completion does) or a variable's theory reports its literals unsatisfiable."""
    sel.queries += 1
    assign: list[bool | None] = list(fixed)
    lits: dict[Var, list[tuple[int, bool]]] = {}
    trail: list[tuple[int, bool, bool]] = []  # (atom, value, the other value was tried already)
    maybe = False

    def push(i: int, value: bool, flipped: bool) -> bool:
        assign[i] = value
        var = sel.vars[i]
        lits.setdefault(var, []).append((i, value))
        trail.append((i, value, flipped))
        return sel.theory(var, lits[var], domains)[0] != UNSAT

    def backtrack() -> bool:
        while trail:
            i, value, flipped = trail.pop()
            assign[i] = None
            lits[sel.vars[i]].pop()
            if not flipped and push(i, not value, True):
                return True
        return False

    for _ in range(SEARCH_BUDGET):
        state: bool | None = True
        choice: tuple[int, bool] | None = None
        for node, want in query:
            v = _eval(node, assign)
            if v is None:
                state = None
                if choice is None:
                    choice = _pick(node, want, assign)
            elif v is not want:
                state = False
                break
        if state is None:
            if choice is None:  # pragma: no cover - an undecided formula has an unassigned atom
                return UNKNOWN, None
            if push(choice[0], choice[1], False):
                continue
        elif state is True:
            wit: dict[Var, Any] = {}
            for var, lst in lits.items():
                if lst:
                    status, value = sel.theory(var, lst, domains)
                    if status != SAT:
                        break
                    wit[var] = value
            else:
                return SAT, wit
            maybe = True  # satisfiable as far as the theories can tell, but no witness
        if not backtrack():
            return (UNKNOWN if maybe else UNSAT), None
    return UNKNOWN, None


# =========================================================================== conveniences


def event_cases_free(policy: Policy, state: str, event: str) -> list[Event]:
    """One witness event per outcome, counters anywhere within their caps and flags free.

    Each outcome the state can produce on the event in SOME configuration has a witness here; a
    particular configuration may need another witness: :func:`enumerate_cases` with its
    :meth:`Domains.of_config` gives the complete set for one configuration.
    """
    sel = compile_selection(policy, state, event)
    domains = Domains(tuple((0, c.max) for c in policy.counters), None)
    out: list[Event] = []
    for case in enumerate_cases(sel, domains):
        if case.event not in out:
            out.append(case.event)
    return out
