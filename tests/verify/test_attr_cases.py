"""Event cases on int, float and string attributes: the checker's partition of an event by the
transition it selects must meet every region the guard constants cut the domain into (below the
least constant, at each, strictly between two, above the greatest, absent, NaN), and ``check`` must
find an edge that only a value in such a region takes.

- ``check``: a policy loops forever only when ``rate_limit`` carries a value strictly between two
  constants (or beyond them, or a string between bounds with a needle); the halts counterexample
  carries such a value. The same guards with an empty region prove halts.
- the partition: a ladder of transitions, one per region; the cases select every transition, and
  every value of a dense sample selects a transition some case selects.
- the theories at their edges: constants past the float range, fractional constants on ints, NaN
  and infinities, needles using every separator, a list item named like the fresh filler, and every
  string the constructor yields (not only the first) realising its literals.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable

import pytest

from loopspec import load_policy_text
from loopspec.language.alphabet import Event
from loopspec.language.model import AttrTest, CounterCmp, Policy, Transition
from loopspec.verify import check_policy
from loopspec.verify.abstraction import event_cases
from loopspec.verify.cases import ABSENT, SAT, UNSAT, attr_witness, counter_witness, enumerate_cases
from loopspec.verify.selection import Domains, compile_selection
from loopspec.verify.witness_strings import _construct_strs, _str_bounds

from _soundness import replays_as_cycle
from test_cases import MESSAGE, RETRY, STATUS, TOOLS_ATTR, check_all_vectors, holds
from test_check import CALL, HALTS, TOOLS, policy, stream

FIX = "  fix:\n    kind: escalate\n    apply: [compact]\n    on: {done: fail, failed: fix}\n"


def looping_on(guard: str) -> Policy:
    """``ask`` sends a rate_limit that satisfies ``guard`` to ``fix``, which fails over to itself
    forever; every other rate_limit halts."""
    call = CALL.replace("      rate_limit: fail\n", f"      rate_limit: [{{when: {guard}, to: fix}}, {{to: fail}}]\n")
    assert call != CALL
    return policy(call, stream(), TOOLS, FIX, HALTS)


ONE_UP = math.nextafter(1.0, 2.0)
TWO_UP = math.nextafter(ONE_UP, 2.0)

# guard, attribute, what the value entering the loop must satisfy
ONLY_SUCH_A_VALUE: dict[str, tuple[str, str, Callable[[Any], bool]]] = {
    "float between": ("{all: [{attr: retry_after, gt: 1.0}, {attr: retry_after, lt: 2.5}]}", "retry_after", lambda v: 1.0 < v < 2.5),
    "float between adjacent": (
        f"{{all: [{{attr: retry_after, gt: 1.0}}, {{attr: retry_after, lt: {TWO_UP!r}}}]}}",
        "retry_after",
        lambda v: v == ONE_UP,
    ),
    "float beyond": ("{all: [{attr: retry_after, gt: 1.0e308}, {attr: retry_after, ne: .inf}]}", "retry_after", lambda v: 1e308 < v < math.inf),
    "float nan": (
        "{all: [{attr: retry_after}, {not: {attr: retry_after, le: 0}}, {not: {attr: retry_after, gt: 0}}]}",
        "retry_after",
        lambda v: isinstance(v, float) and math.isnan(v),
    ),
    "int between": ("{all: [{attr: status, gt: 429}, {attr: status, lt: 431}]}", "status", lambda v: v == 430),
    "int beyond": ("{all: [{attr: status, ne: 0}, {not: {attr: status, le: 599}}, {not: {attr: status, in: [600, 601]}}]}", "status", lambda v: v > 601),
    "int below": ("{all: [{attr: status, lt: 0}, {attr: status, ne: -1}]}", "status", lambda v: v < -1),
    "string between": ("{all: [{attr: message, gt: b}, {attr: message, lt: ba}]}", "message", lambda v: "b" < v < "ba"),
    "string prefix with needles": (
        '{all: [{attr: message, ge: quota}, {attr: message, lt: quotb}, {attr: message, ne: quota},'
        ' {attr: message, contains: retry}, {not: {attr: message, contains: " "}}]}',
        "message",
        lambda v: v.startswith("quota") and v != "quota" and "retry" in v and " " not in v,
    ),
    "string among constants": (
        "{all: [{attr: code, in: [insufficient_quota, rate_limit_exceeded, x]}, {attr: code, gt: j}, {attr: code, lt: w}]}",
        "code",
        lambda v: v == "rate_limit_exceeded",
    ),
}

EMPTY_REGION = {
    "no int between": "{all: [{attr: status, gt: 429}, {attr: status, lt: 430}]}",
    "no float between": f"{{all: [{{attr: retry_after, gt: 1.0}}, {{attr: retry_after, lt: {ONE_UP!r}}}]}}",
    "no string between": '{all: [{attr: message, gt: b}, {attr: message, lt: "b\\0"}]}',
    "needle inside a forbidden one": "{all: [{attr: message, contains: quota}, {not: {attr: message, contains: quo}}]}",
}


@pytest.mark.parametrize("name", sorted(ONLY_SUCH_A_VALUE))
def test_check_finds_the_loop_only_such_a_value_enters(name: str) -> None:
    guard, attr, region = ONLY_SUCH_A_VALUE[name]
    p = looping_on(guard)
    halts = check_policy(p).properties["halts"]
    assert halts.status == "fail", halts.reason
    cex = halts.counterexample
    assert cex is not None and cex.concrete and cex.loop_start is not None
    assert replays_as_cycle(p, [s.as_tuple() for s in cex.steps], cex.loop_start)
    entry = cex.steps[0]
    assert (entry.state, entry.event, entry.to) == ("ask", "rate_limit", "fix")
    assert region(entry.attrs[attr]), entry.attrs


@pytest.mark.parametrize("name", sorted(EMPTY_REGION))
def test_check_proves_halts_when_no_value_enters(name: str) -> None:
    r = check_policy(looping_on(EMPTY_REGION[name]))
    assert r.properties["halts"].status == "pass", r.properties["halts"].reason


# --------------------------------------------------------------------------- the partition

HEAD = """\
loopspec: 1
initial: ask
counters:
  tries: {max: 2}
backstops:
  model_calls: {max: 5, exhausted: out}
  tool_batches: {max: 3, exhausted: out}
"""


def ladder(rows: list[str]) -> Policy:
    """``ask`` on rate_limit: row i (a guard, or "" for none) goes to halt ``h{i}``."""
    body = ", ".join(f"{{when: {g}, to: h{i}}}" if g else f"{{to: h{i}}}" for i, g in enumerate(rows))
    call = CALL.replace("      rate_limit: fail\n", f"      rate_limit: [{body}]\n")
    halts = "".join(f"  h{i}: {{kind: halt, outcome: provider_error, message: row {i}}}\n" for i in range(len(rows)))
    return load_policy_text(HEAD + "states:\n" + call + stream() + TOOLS + HALTS + halts, "ladder.yaml")


def selected(p: Policy, attrs: dict[str, Any]) -> Transition | None:
    return p.step(p.initial_config(), Event("rate_limit", attrs)).transition


def assert_partition_meets(p: Policy, attr: str, values: list[Any], rows: int) -> None:
    """Every row is selected by some case, and every sampled value selects a row a case selects."""
    by_cases = {selected(p, dict(ev.attrs)) for ev in event_cases(p, "ask", "rate_limit")}
    assert len(by_cases) == rows, sorted(t.target for t in by_cases if t is not None)
    for v in values:
        t = selected(p, {} if v is ABSENT else {attr: v})
        assert t in by_cases, (v, t and t.target)


INT_ROWS = [
    "{attr: status, lt: 429}",
    "{attr: status, eq: 429}",
    "{attr: status, lt: 503}",
    "{attr: status, in: [503, 504]}",
    "{attr: status, gt: 504}",
    "",  # absent
]
FLOAT_ROWS = [
    "{attr: retry_after, lt: 1.0}",
    "{attr: retry_after, eq: 1.0}",
    "{attr: retry_after, lt: 2.5}",
    "{attr: retry_after, eq: 2.5}",
    "{all: [{attr: retry_after, gt: 2.5}, {attr: retry_after, ne: .inf}]}",
    "{attr: retry_after, eq: .inf}",
    "{attr: retry_after}",  # NaN: truthy, on no side of any constant
    "",  # absent
]
STR_ROWS = [
    "{attr: message, eq: quota}",
    "{all: [{attr: message, ge: quota}, {attr: message, lt: quotb}]}",  # starts with quota
    "{attr: message, contains: retry}",
    "{attr: message, lt: quota}",
    "{attr: message}",  # above every bound, no needle
    "",  # absent
]


def test_int_partition_meets_below_at_between_and_beyond() -> None:
    values = [ABSENT, *range(-3, 10), *range(425, 510), 600, 10**6, -(10**6)]
    assert_partition_meets(ladder(INT_ROWS), "status", values, len(INT_ROWS))


def test_float_partition_meets_nan_infinities_and_adjacent_floats() -> None:
    values: list[Any] = [ABSENT, math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, -0.5, 0.5, 1.7, 3.0]
    for c in (1.0, 2.5):
        values += [c, math.nextafter(c, -math.inf), math.nextafter(c, math.inf)]
    assert_partition_meets(ladder(FLOAT_ROWS), "retry_after", values, len(FLOAT_ROWS))


def test_string_partition_meets_prefixes_needles_and_bounds() -> None:
    letters = "aqoturyb z"
    values: list[Any] = [ABSENT, "", "quota", "quotb", "quot", "quotaretry", "quota retry", "zretry", "retry", "quo"]
    values += ["".join(t) for n in (1, 2) for t in itertools.product(letters, repeat=n)]
    values += ["quota" + c for c in letters] + ["quot" + c for c in letters]
    assert_partition_meets(ladder(STR_ROWS), "message", values, len(STR_ROWS))


def test_flag_guards_get_a_case_for_each_flag_value() -> None:
    """With flags left free (event_cases), the flag theory picks the flag value of each case."""
    head = HEAD.replace("backstops:", "flags:\n  f: {doc: a flag}\nbackstops:")
    rows = "[{when: {all: [{flag: f, is: true}, {flag: f, is: false}]}, to: h0}, {when: {flag: f, is: true}, to: h1}, {to: h2}]"
    call = CALL.replace("      rate_limit: fail\n", f"      rate_limit: {rows}\n")
    halts = "".join(f"  h{i}: {{kind: halt, outcome: provider_error, message: row {i}}}\n" for i in range(3))
    p = load_policy_text(head + "states:\n" + call + stream() + TOOLS + HALTS + halts, "flags.yaml")
    sel = compile_selection(p, "ask", "rate_limit")
    cases = enumerate_cases(sel, Domains(tuple((0, c.max) for c in p.counters), None))
    got = {(c.transition.target if c.transition else None, c.flags) for c in cases}
    assert got == {("h1", frozenset({"f"})), ("h2", frozenset())}, got


# --------------------------------------------------------------------------- theories at their edges


def test_constants_past_the_float_range() -> None:
    huge = 10**400  # an int no float reaches: float(huge) overflows
    got = check_all_vectors(RETRY, [AttrTest("retry_after", "gt", huge)])
    assert got[(True,)] == math.inf
    got = check_all_vectors(RETRY, [AttrTest("retry_after", "lt", huge), AttrTest("retry_after", "gt", 1e308)])
    assert 1e308 < got[(True, True)] < math.inf
    got = check_all_vectors(RETRY, [AttrTest("retry_after", "gt", -huge), AttrTest("retry_after", "lt", -1e308)])
    assert -math.inf < got[(True, True)] < -1e308
    got = check_all_vectors(RETRY, [AttrTest("retry_after", "lt", -huge)])
    assert got[(True,)] == -math.inf
    # between two constants past the range, only the infinity above both
    got = check_all_vectors(RETRY, [AttrTest("retry_after", "gt", huge), AttrTest("retry_after", "lt", huge * 2)])
    assert (True, True) not in got and got[(True, False)] == math.inf


def test_infinite_and_nan_constants() -> None:
    got = check_all_vectors(RETRY, [AttrTest("retry_after", "lt", math.inf), AttrTest("retry_after", "gt", -math.inf)])
    assert math.isfinite(got[(True, True)])
    assert got[(False, True)] == math.inf and got[(True, False)] == -math.inf
    got = check_all_vectors(RETRY, [AttrTest("retry_after", "eq", math.nan)])
    assert (True,) not in got, "nothing equals NaN"
    # ints: infinities and NaN bound nothing an int can pass
    got = check_all_vectors(STATUS, [AttrTest("status", "lt", math.inf), AttrTest("status", "ne", math.nan)])
    assert got[(True, True)] == 0
    assert (False, True) in got and got[(False, True)] is ABSENT


def test_fractional_constants_on_an_int_attribute() -> None:
    """Built in code (the validator refuses a float constant on an int attribute): the theory
    still finds the integers between and refuses an empty gap."""
    got = check_all_vectors(STATUS, [AttrTest("status", "gt", 1.5), AttrTest("status", "lt", 2.5)])
    assert got[(True, True)] == 2
    got = check_all_vectors(STATUS, [AttrTest("status", "gt", 1.5), AttrTest("status", "lt", 1.9)])
    assert (True, True) not in got
    got = check_all_vectors(STATUS, [AttrTest("status", "ge", -0.5), AttrTest("status", "lt", 0.5)])
    assert got[(True, True)] == 0


def test_counter_constants_that_bound_nothing() -> None:
    inf = CounterCmp("a", 0, "lt", math.inf)
    nan = CounterCmp("a", 0, "eq", math.nan)
    assert counter_witness(0, 3, [(inf, True), (nan, False)]) == (SAT, 0)
    assert counter_witness(0, 3, [(inf, False)]) == (UNSAT, None)


def test_an_attribute_the_event_does_not_carry_is_absent() -> None:
    assert attr_witness(None, [(AttrTest("tool", "truthy"), False)]) == (SAT, ABSENT)
    assert attr_witness(None, [(AttrTest("tool", "truthy"), True)]) == (UNSAT, None)


def test_needles_that_use_every_separator() -> None:
    seps = " |#~/_-.:;,+=*"
    # joined by " " (a separator some needle uses), the two required needles would make "* !"
    atoms = [AttrTest("message", "contains", seps), AttrTest("message", "contains", "!x"), AttrTest("message", "contains", "* !")]
    got = check_all_vectors(MESSAGE, atoms)
    both = got[(True, True, False)]
    assert seps in both and "!x" in both and "* !" not in both
    assert set(got) == set(itertools.product((True, False), repeat=3))


def test_a_list_item_named_like_the_filler() -> None:
    atoms = [
        AttrTest("cut_tools", "contains", "other"),
        AttrTest("cut_tools", "contains", "other1"),
        AttrTest("cut_tools", "truthy"),
        AttrTest("cut_tools", "ne", ["other"]),
    ]
    got = check_all_vectors(TOOLS_ATTR, atoms)
    v = got[(True, False, True, True)]
    assert "other" in v and "other1" not in v and v != ["other"]
    assert got[(False, False, True, True)]  # non-empty, holds neither


BOUNDED = [
    # (literals as (op, value, wanted)); every constructed string must realise all of them
    [("gt", "a", True), ("lt", "cd", True)],
    [("ge", "quota", True), ("contains", "retry", True)],
    [("lt", "quotb", True), ("contains", "a", False), ("contains", "x", False)],
    [("gt", "b", True), ("lt", "bab", True), ("contains", "a", False), ("ne", "ba", True)],
    [("ge", "m", True), ("contains", "ab", True), ("contains", "b ", False), ("eq", "m ab", False)],
    [("contains", "retry", True), ("contains", "y", True), ("eq", "retry", False), ("eq", "retry y", False)],
    [("lt", "b", False), ("lt", "bb", True), ("contains", "b", True)],
]


@pytest.mark.parametrize("lits", BOUNDED, ids=[" ".join(f"{o}{v!r}{'' if w else '!'}" for o, v, w in ls) for ls in BOUNDED])
def test_every_constructed_string_realises_its_literals(lits: list[tuple[str, str, bool]]) -> None:
    typed = [(AttrTest("message", op, v), want) for op, v, want in lits]
    lo, hi = _str_bounds(typed)
    built = list(_construct_strs(typed, lo, hi))
    assert built, "a satisfiable set of literals gets a constructed witness"
    for v in built:
        assert all(holds(a, v) is want for a, want in typed), (v, lits)
    status, v = attr_witness(MESSAGE, typed)
    assert status == SAT and all(holds(a, v) is want for a, want in typed)


def test_the_constructor_walks_past_characters_that_end_a_forbidden_needle() -> None:
    """Between "b" and "b\\x03" only "b\\x00", "b\\x01", "b\\x02" (and their extensions) start the
    strings: with the first two forbidden, the witness starts with the third; with all three, none."""

    def lits(*needles: str) -> list[tuple[AttrTest, bool]]:
        return [(AttrTest("message", "gt", "b"), True), (AttrTest("message", "lt", "b\x03"), True)] + [
            (AttrTest("message", "contains", n), False) for n in needles
        ]

    status, v = attr_witness(MESSAGE, lits("\x00", "\x01"))
    assert status == SAT and v.startswith("b\x02"), repr(v)
    assert list(_construct_strs(lits("\x00", "\x01", "\x02"), "b", "b\x03")) == []
    assert attr_witness(MESSAGE, lits("\x00", "\x01", "\x02")) == (UNSAT, None)
