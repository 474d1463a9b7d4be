"""The trajectory and its working copy, held to exact results (docs/quality.md, `history.py`).

The interpreter tests see the history only through whole turns, and they assert
`history_problems(...) == []`, which a checker that flags nothing also passes. Here the checker
gets known-bad histories, and compaction, thinking stripping and tool rounds get exact expected
message lists.
"""

from __future__ import annotations

from typing import Any

import pytest

from loopspec.engine.history import Trajectory, history_problems, tool_calls_of
from loopspec.engine.tools import ToolCall, ToolResult
from loopspec.wire.assemble import AssembledReply, AssembledToolCall


def _call(cid: str) -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": "f", "arguments": "{}"}}


def _round(*ids: str) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": None, "tool_calls": [_call(i) for i in ids]}] + [
        {"role": "tool", "tool_call_id": i, "content": "ok"} for i in ids
    ]


# ------------------------------------------------------------------------ the history checker


def test_a_valid_history_has_no_problems() -> None:
    msgs = [{"role": "user", "content": "q"}] + _round("a", "b") + [{"role": "assistant", "content": "done"}]
    assert history_problems(msgs) == []


def test_an_unanswered_call_is_a_problem() -> None:
    msgs = [{"role": "user", "content": "q"}] + _round("a", "b")[:-1]
    assert history_problems(msgs) == ["tool call 'b' answered 0 times"]


def test_a_call_answered_twice_is_a_problem() -> None:
    msgs = _round("a") + [{"role": "tool", "tool_call_id": "a", "content": "again"}]
    assert history_problems(msgs) == ["tool call 'a' answered 2 times"]


def test_an_orphan_result_is_a_problem_at_its_index() -> None:
    msgs = [{"role": "user", "content": "q"}, {"role": "tool", "tool_call_id": "zz", "content": "?"}] + _round("a")
    assert history_problems(msgs) == ["message 1: tool result for unknown call 'zz'"]


def test_a_result_before_its_call_is_an_orphan() -> None:
    msgs = list(reversed(_round("a")))
    assert history_problems(msgs) == ["message 0: tool result for unknown call 'a'", "tool call 'a' answered 0 times"]


def test_an_assistant_message_without_tool_calls_is_fine() -> None:
    assert history_problems([{"role": "assistant", "content": "x", "tool_calls": None}]) == []


# --------------------------------------------------------------------------- building history


def test_tool_calls_of_fills_missing_ids_names_and_arguments() -> None:
    reply = AssembledReply(tool_calls=[
        AssembledToolCall(index=0, id="c1", name="f", arguments='{"a": 1}'),
        AssembledToolCall(index=3, id=None, name=None, arguments=""),
    ])
    assert tool_calls_of(reply) == [ToolCall("c1", "f", '{"a": 1}'), ToolCall("call_3", "", "{}")]


def test_a_tool_round_is_the_calls_then_one_answer_each_in_order() -> None:
    t = Trajectory()
    calls = [ToolCall("a", "f", "{}"), ToolCall("b", "g", '{"x": 1}')]
    t.add_tool_round("", calls, [ToolResult(c, f"r-{c.id}", True) for c in calls])
    assert t.messages == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "b", "type": "function", "function": {"name": "g", "arguments": '{"x": 1}'}},
        ]},
        {"role": "tool", "tool_call_id": "a", "content": "r-a"},
        {"role": "tool", "tool_call_id": "b", "content": "r-b"},
    ]
    t.add_tool_round("thinking aloud", calls[:1], [ToolResult(calls[0], "r", True)])
    assert t.messages[3]["content"] == "thinking aloud"


def test_a_tool_round_refuses_answers_that_do_not_match_the_calls() -> None:
    calls = [ToolCall("a", "f", "{}"), ToolCall("b", "g", "{}")]
    with pytest.raises(AssertionError, match="^every call answered exactly once"):
        Trajectory().add_tool_round("", calls, [ToolResult(calls[0], "r", True)])


def test_empty_assistant_text_adds_nothing() -> None:
    t = Trajectory()
    t.add_assistant_text("")
    t.add_user("hi")
    t.add_assistant_text("there")
    assert t.messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "there"}]


# ----------------------------------------------------------------------------- the working copy


def _long(rounds: int) -> Trajectory:
    t = Trajectory(keep_last=5)
    t.messages.append({"role": "system", "content": "sys"})
    t.add_user("task")
    for i in range(rounds):
        t.messages.extend(_round(f"c{i}"))
        t.add_assistant_text(f"text {i}")
    return t


def test_the_working_copy_is_the_history_when_not_compacted() -> None:
    t = _long(2)
    copy = t.working_copy()
    assert copy == t.messages
    copy[0]["content"] = "changed"
    assert t.messages[0]["content"] == "sys"  # a copy, not the trajectory itself


def test_compaction_keeps_the_head_a_note_and_a_tail_that_never_starts_on_a_tool_result() -> None:
    t = _long(4)  # 2 head + 4 rounds of 3 messages
    assert t.compact() is True
    assert t.compaction_level == 1
    copy = t.working_copy()
    # keep_last 5 would start the tail on round 2's tool result: the tail starts one later
    assert copy[:2] == t.messages[:2]
    assert copy[2] == {"role": "user", "content": "[8 earlier messages were compacted to fit the context window]"}
    assert copy[3:] == t.messages[10:]
    assert history_problems(copy) == []


def test_deeper_compaction_keeps_fewer_and_stops_when_nothing_shrinks() -> None:
    t = _long(4)
    sizes = []
    for level in range(1, 20):  # bounded: a compaction that never stops must fail, not hang
        if not t.compact():
            break
        assert t.compaction_level == level
        sizes.append(len(t.working_copy()))
    else:
        pytest.fail("compaction never stopped shrinking")
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes) > 1
    assert t.working_copy()[-1] == t.messages[-1]
    level = t.compaction_level
    assert t.compact() is False and t.compaction_level == level


def test_compaction_of_a_short_history_changes_nothing() -> None:
    t = Trajectory()
    t.add_user("q")
    assert t.compact() is False
    assert t.compaction_level == 0
    assert t.working_copy() == [{"role": "user", "content": "q"}]


def test_the_head_is_only_system_and_user_messages_among_the_first_two() -> None:
    t = Trajectory(keep_last=1, compaction_level=1)
    t.messages = [{"role": "assistant", "content": "a0"}, {"role": "user", "content": "u1"},
                  {"role": "user", "content": "u2"}, {"role": "assistant", "content": "a3"}]
    assert t.working_copy() == [
        {"role": "user", "content": "u1"},
        {"role": "user", "content": "[2 earlier messages were compacted to fit the context window]"},
        {"role": "assistant", "content": "a3"},
    ]


def test_the_kept_tail_is_keep_last_divided_by_the_level_but_at_least_one() -> None:
    t = Trajectory(keep_last=6)
    t.messages = [{"role": "user", "content": "u"}] + [{"role": "assistant", "content": str(i)} for i in range(10)]
    kept = {}
    for level in (1, 2, 3, 7):
        t.compaction_level = level
        kept[level] = [m["content"] for m in t.working_copy()[2:]]
    assert kept == {1: ["4", "5", "6", "7", "8", "9"], 2: ["7", "8", "9"], 3: ["8", "9"], 7: ["9"]}


def test_a_tail_of_only_tool_results_is_dropped_not_kept_orphaned() -> None:
    t = Trajectory(keep_last=1, compaction_level=1)
    t.messages = [{"role": "user", "content": "u"}] + _round("a")
    copy = t.working_copy()
    assert copy == [{"role": "user", "content": "u"},
                    {"role": "user", "content": "[2 earlier messages were compacted to fit the context window]"}]


def test_one_dropped_message_gets_its_note_too() -> None:
    t = Trajectory(keep_last=2, compaction_level=1)
    t.messages = [{"role": "user", "content": "u"}] + [{"role": "assistant", "content": str(i)} for i in range(3)]
    assert t.working_copy() == [
        {"role": "user", "content": "u"},
        {"role": "user", "content": "[1 earlier messages were compacted to fit the context window]"},
        {"role": "assistant", "content": "1"},
        {"role": "assistant", "content": "2"},
    ]


def test_no_note_when_nothing_was_dropped() -> None:
    t = Trajectory(keep_last=6, compaction_level=1)
    t.messages = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
    assert t.working_copy() == t.messages


def test_strip_thinking_removes_thinking_and_reasoning_only() -> None:
    t = Trajectory(strip_thinking=True)
    t.messages = [{"role": "assistant", "content": "a", "thinking_blocks": [{"t": 1}], "reasoning_content": "r",
                   "other": 1}]
    assert t.working_copy() == [{"role": "assistant", "content": "a", "other": 1}]
    assert "thinking_blocks" in t.messages[0]
    t.strip_thinking = False
    assert t.working_copy() == t.messages
