"""Message templates (``loopspec/language/templates.py``), written against the survivors of
planting mutmut's mutants of it: how a number reads in a message, the cap's edges (a message
exactly at the cap, a cap smaller than the marker), and each value rendered once."""

from __future__ import annotations

import pytest

from loopspec.language.templates import render_template, truncation_marker


@pytest.mark.parametrize("value, text", [
    (3600.0, "3600"),
    (1_000_000.0, "1000000"),  # a whole number reads whole, not as 1e+06
    (2.5, "2.5"),
    (0.1, "0.1"),
    (float("inf"), "inf"),  # an unbounded wait: no int() of it
    (7, "7"),
])
def test_a_number_reads_as_a_person_writes_it(value: float, text: str) -> None:
    assert render_template("wait {wait} s", {"wait": value}) == f"wait {text} s"


def test_a_message_exactly_at_the_cap_is_not_cut() -> None:
    text = "é" * 10  # 20 bytes
    assert render_template("{m}", {"m": text}, limit=20) == text
    cut = render_template("{m}", {"m": text}, limit=19)
    assert cut != text and cut.endswith(truncation_marker(20 - len(cut.split("\n[...")[0].encode())))


def test_a_cap_smaller_than_the_marker_keeps_nothing_but_the_marker() -> None:
    """The marker alone is over the cap: no byte of the text is kept (the room left is 0, never
    less and never a byte more)."""
    assert render_template("{m}", {"m": "abcdefghij"}, limit=5) == truncation_marker(10)


class _Counted:
    """A value that counts how often it is rendered."""

    def __init__(self) -> None:
        self.rendered = 0

    def __str__(self) -> str:
        self.rendered += 1
        return "v"


def test_a_value_named_many_times_is_rendered_once() -> None:
    """A template that repeats a long value measures it once (the cap's promise that an
    oversized message is never built): each name is looked up and rendered a single time."""
    value = _Counted()
    assert render_template("{a}-{a}-{a}", {"a": value}) == "v-v-v"
    assert value.rendered == 1
