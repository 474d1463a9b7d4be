"""Tests written against the mutants the approval rules' first mutation run left alive
(docs/quality.md): every comparison at its boundary, truthiness both ways, booleans never equal to
numbers, and conditions combined with all / any / not."""

from __future__ import annotations

import pytest

from loopspec.language.approvals import AllOf, AnyOf, ArgTest, NotThat


@pytest.mark.parametrize("op,value,holds", [
    ("lt", 3, False), ("lt", 4, True),
    ("le", 3, True), ("le", 2, False),
    ("ge", 3, True), ("ge", 4, False),
    ("gt", 3, False), ("gt", 2, True),
])
def test_each_order_test_at_its_boundary(op: str, value: int, holds: bool) -> None:
    assert ArgTest("n", op, value).holds({"n": 3}) is holds


def test_truthiness_both_ways() -> None:
    assert ArgTest("flag", "truthy").holds({"flag": "yes"}) is True
    assert ArgTest("flag", "truthy").holds({"flag": 0}) is False


@pytest.mark.parametrize("got,want,equal", [
    (True, True, True), (False, False, True), (True, False, False), (1, True, False), (True, 1, False), (0, False, False),
])
def test_a_boolean_equals_only_a_boolean(got: object, want: object, equal: bool) -> None:
    assert ArgTest("x", "eq", want).holds({"x": got}) is equal
    assert ArgTest("x", "ne", want).holds({"x": got}) is (not equal)


def test_conditions_combine() -> None:
    big, cpu = ArgTest("n", "gt", 10), ArgTest("hw", "eq", "cpu")
    args = {"n": 20, "hw": "gpu"}
    assert AllOf((big, NotThat(cpu))).holds(args) is True
    assert AllOf((big, cpu)).holds(args) is False
    assert AnyOf((cpu, big)).holds(args) is True
    assert AnyOf((cpu, NotThat(big))).holds(args) is False
    assert NotThat(cpu).holds({"hw": "cpu"}) is False


def test_numbers_of_either_type_are_equal_when_their_values_are() -> None:
    """Only booleans are kept apart from numbers: a whole number in a tool call's JSON may arrive
    as 2.0, and it still equals a rule's 2 (and is in [2, 3])."""
    assert ArgTest("gpus", "eq", 2).holds({"gpus": 2.0}) is True
    assert ArgTest("gpus", "ne", 2).holds({"gpus": 2.0}) is False
    assert ArgTest("gpus", "in", (2, 3)).holds({"gpus": 2.0}) is True
