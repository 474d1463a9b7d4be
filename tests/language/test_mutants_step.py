"""The step record, held to exact results (docs/quality.md, `step.py`).

`calls_of` decides which events carry tool calls and in what shape, and `Offer.from_flags` what a
request offers; whole-policy tests reach only some cells of either table. Every cell is pinned
here, so a mutant that changes one fails.
"""

from __future__ import annotations

import pytest

from loopspec.language.actions import Append, Backoff, Compact, Directive
from loopspec.language.alphabet import Event
from loopspec.language.model import Config
from loopspec.language.step import CALLS_COMPLETE, CALLS_INVALID, CALLS_NONE, CALLS_PARTIAL, Offer, Step, calls_of

CASES = [
    ("stream", "tool_calls", {}, CALLS_COMPLETE),
    ("stream", "length", {"has_tool_calls": True}, CALLS_PARTIAL),
    ("stream", "length", {"has_tool_calls": False}, CALLS_NONE),
    ("stream", "length", {}, CALLS_NONE),
    ("stream", "stalled", {"mid_tool_call": True}, CALLS_PARTIAL),
    ("stream", "stalled", {"mid_tool_call": False}, CALLS_NONE),
    ("stream", "malformed_args", {}, CALLS_INVALID),
    ("stream", "unknown_tool", {}, CALLS_INVALID),
    ("stream", "text", {"has_tool_calls": True, "mid_tool_call": True}, CALLS_NONE),
    ("stub", "mid_tool_call", {}, CALLS_PARTIAL),
    ("stub", "tool_calls", {}, CALLS_NONE),
    ("stub", "length", {"has_tool_calls": True}, CALLS_NONE),
    ("call", "tool_calls", {}, CALLS_NONE),
    ("call", "mid_tool_call", {}, CALLS_NONE),
    ("tool_exec", "malformed_args", {}, CALLS_NONE),
]


@pytest.mark.parametrize(("kind", "name", "attrs", "expected"), CASES)
def test_calls_of(kind: str, name: str, attrs: dict[str, bool], expected: str) -> None:
    assert calls_of(kind, Event(name, attrs)) == expected


FLAG_OF = {
    "tools": ("tools_disabled", False),
    "tool_choice_auto": ("tool_choice_reset", True),
    "fallback_model": ("fallback_model", True),
    "max_tokens_boosted": ("max_tokens_boosted", True),
    "thinking_stripped": ("thinking_stripped", True),
}


def test_an_offer_with_no_flags() -> None:
    assert Offer.from_flags(frozenset()) == Offer(
        tools=True, tool_choice_auto=False, reasoning=True, fallback_model=False, max_tokens_boosted=False,
        thinking_stripped=False,
    )


@pytest.mark.parametrize("field", FLAG_OF)
def test_each_flag_changes_its_own_field_only(field: str) -> None:
    flag, value = FLAG_OF[field]
    base = Offer.from_flags(frozenset())
    offer = Offer.from_flags(frozenset({flag, "unrelated"}))
    assert getattr(offer, field) is value
    assert {f: getattr(offer, f) for f in vars(base) if f != field} == {f: getattr(base, f) for f in vars(base) if f != field}


@pytest.mark.parametrize("flag", ["effort_omitted", "reasoning_disabled"])
def test_either_reasoning_flag_withholds_reasoning(flag: str) -> None:
    assert Offer.from_flags(frozenset({flag})).reasoning is False
    assert Offer.from_flags(frozenset({flag})).tools is True


def test_a_step_names_its_target_and_the_templates_it_appends_in_order() -> None:
    cfg = Config("a", (0,), frozenset())
    step = Step(cfg, Event("x"), None, Config("b", (1,), frozenset()),
                (Directive(Append("one")), Directive(Backoff("s", None, None), 2.0), Directive(Compact()),
                 Directive(Append("two"))))
    assert step.target == "b"
    assert step.appended == ("one", "two")
