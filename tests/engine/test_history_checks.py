"""``history_problems`` on known-bad histories: every other history assertion in the suite leans on
it, so it must flag each way a history can be invalid, with a message that says where."""

from __future__ import annotations

from typing import Any

import pytest

from loopspec.engine.history import history_problems

USER = {"role": "user", "content": "go"}


def calls(*ids: str) -> dict[str, Any]:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids]}


def answer(i: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": i, "content": "ok"}


def test_a_valid_history_has_no_problem() -> None:
    assert history_problems([USER, calls("a", "b", "c"), answer("a"), answer("b"), answer("c"),
                             {"role": "assistant", "content": "done"}]) == []
    assert history_problems([]) == []


@pytest.mark.parametrize(
    ("messages", "problems"),
    [
        ([USER, calls("a")], ["tool call 'a' answered 0 times"]),
        ([USER, calls("a", "b", "c"), answer("a"), answer("b")], ["tool call 'c' answered 0 times"]),
        ([USER, calls("a", "b"), answer("b")], ["tool call 'a' answered 0 times"]),
        ([USER, calls("a"), answer("a"), answer("a")], ["tool call 'a' answered 2 times"]),
        ([USER, answer("x")], ["message 1: tool result for unknown call 'x'"]),
        ([answer("a"), calls("a")], ["message 0: tool result for unknown call 'a'", "tool call 'a' answered 0 times"]),
        ([USER, calls("a"), answer("a"), answer("b")], ["message 3: tool result for unknown call 'b'"]),
        ([USER, calls("a"), answer("a"), calls("b", "c"), answer("c")], ["tool call 'b' answered 0 times"]),
    ],
    ids=["unanswered", "last of a batch unanswered", "first of a batch unanswered", "answered twice",
         "orphan result", "result before its call", "result for a call never made", "second round half answered"],
)
def test_each_kind_of_invalid_history_is_flagged(messages: list[dict[str, Any]], problems: list[str]) -> None:
    assert history_problems(messages) == problems
