"""Guards, evaluated one by one on known configurations and events (docs/quality.md, `guards.py`).

The policy tests reach guards only through whole machines, where a wrong comparator or a flipped
flag test often picks another enabled transition with the same outcome. Here every guard kind is
held to its full truth table, so a mutant that changes one cell fails.
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from loopspec.language.alphabet import COMPARATORS, Event
from loopspec.language.guards import AllOf, Always, AnyOf, AttrTest, CounterCmp, FlagIs, Not, _compare
from loopspec.language.model import Config

POLICY = cast(Any, None)  # no guard reads the policy
CFG = Config(state="s", counters=(5, 1), flags=frozenset({"on"}))
EVENT = Event("tool_result", {"n": 2, "s": "abc", "zero": 0, "none": None})

TRUTH = {  # op -> (1 op 2, 2 op 2, 3 op 2)
    "lt": (True, False, False),
    "le": (True, True, False),
    "eq": (False, True, False),
    "ne": (True, False, True),
    "ge": (False, True, True),
    "gt": (False, False, True),
}


def _ev(guard: Any) -> bool:
    return bool(guard.evaluate(POLICY, CFG, EVENT))


@pytest.mark.parametrize("op", COMPARATORS)
def test_compare_truth_table(op: str) -> None:
    assert tuple(_compare(op, left, 2) for left in (1, 2, 3)) == TRUTH[op]
    assert all(type(_compare(op, left, 2)) is bool for left in (1, 2, 3))


@pytest.mark.parametrize("op", ["lt", "le", "ge", "gt"])
def test_an_ordering_of_incomparable_values_is_false(op: str) -> None:
    assert _compare(op, None, 2) is False
    assert _compare(op, "a", 2) is False


def test_equality_of_incomparable_values_still_answers() -> None:
    assert _compare("eq", None, 2) is False
    assert _compare("ne", None, 2) is True


def test_boolean_combinators() -> None:
    yes, no = Always(), Not(Always())
    assert _ev(yes) is True and _ev(no) is False
    assert _ev(AllOf((yes, yes))) is True
    assert _ev(AllOf((yes, no))) is False
    assert _ev(AllOf(())) is True
    assert _ev(AnyOf((no, yes))) is True
    assert _ev(AnyOf((no, no))) is False
    assert _ev(AnyOf(())) is False
    assert _ev(Not(no)) is True


def test_combinators_hand_their_parts_the_configuration_and_the_event() -> None:
    on, low, has_s = FlagIs("on"), CounterCmp("b", 1, "lt", 2), AttrTest("s", "truthy")
    assert _ev(AllOf((on, low, has_s))) is True
    assert _ev(AnyOf((Not(on), low))) is True
    assert _ev(Not(has_s)) is False
    assert _ev(Not(low)) is False
    assert _ev(Not(FlagIs("off"))) is True


def test_an_unknown_comparator_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="^bogus$"):
        _compare("bogus", 1, 2)


def test_counter_comparison_reads_its_own_counter() -> None:
    assert _ev(CounterCmp("b", 1, "eq", 1)) is True
    assert _ev(CounterCmp("a", 0, "eq", 1)) is False
    assert _ev(CounterCmp("a", 0, "ge", 5)) is True
    assert _ev(CounterCmp("a", 0, "gt", 5)) is False


def test_flag_tests_both_ways() -> None:
    assert _ev(FlagIs("on")) is True
    assert _ev(FlagIs("off")) is False
    assert _ev(FlagIs("on", False)) is False
    assert _ev(FlagIs("off", False)) is True


def test_attribute_truthiness() -> None:
    assert _ev(AttrTest("s", "truthy")) is True
    assert _ev(AttrTest("zero", "truthy")) is False
    assert _ev(AttrTest("missing", "truthy")) is False


def test_attribute_membership() -> None:
    assert _ev(AttrTest("s", "in", ["abc", "x"])) is True
    assert _ev(AttrTest("s", "in", ["x"])) is False
    assert _ev(AttrTest("s", "contains", "b")) is True
    assert _ev(AttrTest("s", "contains", "z")) is False
    assert _ev(AttrTest("none", "contains", "b")) is False  # absent contains nothing
    assert _ev(AttrTest("missing", "contains", "b")) is False
    assert _ev(AttrTest("n", "contains", "b")) is False  # an int contains nothing either


@pytest.mark.parametrize("op", COMPARATORS)
def test_attribute_comparison(op: str) -> None:
    assert tuple(_ev(AttrTest("n", op, v)) for v in (3, 2, 1)) == TRUTH[op]
