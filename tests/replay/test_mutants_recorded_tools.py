"""The tools a replay runs: each call takes the cassette's next recorded result for its tool, in
order, and a resumed replay goes on after the results a crash already used. These tests drive
``RecordedTools`` directly, call by call, where a replay would only show the turn's outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loopspec.replay.cancel import CancelPlan
from loopspec.replay.cassette_model import CancelPoint, Cassette, ToolOutcome, ToolSpec
from loopspec.replay.recorded_tools import RecordedTools, ToolResultsExhausted

from _doubles import CancellableTurn

READ = ToolSpec("read_file", {"type": "object", "properties": {"path": {"type": "string"}}}, "Read a file.", False)
DELETE = ToolSpec("delete_file", {"type": "object"}, "Delete a file.", True)


def cassette(*results: ToolOutcome, tools: tuple[ToolSpec, ...] = (READ, DELETE), cancel: CancelPoint | None = None) -> Cassette:
    return Cassette("c", "c.yaml", ({"role": "user", "content": "hi"},), (), tools, results, cancel=cancel)


def call(tools: RecordedTools, name: str, **arguments: Any) -> Any:
    return asyncio.run(tools.registry.tools[name].fn(**arguments))


def test_every_recorded_tool_is_registered_as_the_cassette_declares_it_and_idempotent():
    tools = RecordedTools(cassette())
    assert list(tools.registry.tools) == ["read_file", "delete_file"]
    for spec in (READ, DELETE):
        t = tools.registry.tools[spec.name]
        assert (t.name, dict(t.parameters), t.description, t.needs_approval, t.idempotent) == (
            spec.name, spec.parameters, spec.description, spec.needs_approval, True,
        )
        assert asyncio.iscoroutinefunction(t.fn), "a coroutine runs on the loop, so a batch takes results in call order"


def test_calls_take_their_tools_results_in_order_and_record_what_ran():
    tools = RecordedTools(cassette(
        ToolOutcome("read_file", result="one"),
        ToolOutcome("delete_file", result="deleted"),
        ToolOutcome("read_file", result="two"),
        ToolOutcome("read_file", result=None),
    ))
    assert call(tools, "read_file", path="a") == "one"
    assert call(tools, "read_file", path="b") == "two"
    assert call(tools, "delete_file") == "deleted"
    assert call(tools, "read_file") == "", "a result recorded as null is the empty string"
    assert tools.ran == ["read_file", "read_file", "delete_file", "read_file"]
    assert tools.exhausted == []


def test_a_recorded_error_is_raised_with_its_message_and_still_uses_the_result():
    tools = RecordedTools(cassette(ToolOutcome("read_file", error="no such file"), ToolOutcome("read_file", result="ok")))
    with pytest.raises(RuntimeError, match="^no such file$"):
        call(tools, "read_file")
    assert call(tools, "read_file") == "ok"
    assert tools.ran == ["read_file", "read_file"]


def test_a_call_past_the_recorded_results_is_refused_and_counted():
    tools = RecordedTools(cassette(ToolOutcome("read_file", result="one")))
    call(tools, "read_file")
    with pytest.raises(ToolResultsExhausted) as info:
        call(tools, "read_file")
    assert str(info.value) == "the cassette recorded no further result for tool 'read_file'"
    with pytest.raises(ToolResultsExhausted, match="'delete_file'"):
        call(tools, "delete_file")
    assert tools.exhausted == ["read_file", "delete_file"]
    assert tools.ran == ["read_file"]


def test_results_of_a_tool_the_cassette_does_not_declare_are_kept_apart():
    tools = RecordedTools(cassette(ToolOutcome("ghost", result="boo"), ToolOutcome("read_file", result="r")))
    assert tools.queues == {"read_file": [ToolOutcome("read_file", result="r")], "delete_file": [], "ghost": [ToolOutcome("ghost", result="boo")]}
    assert "ghost" not in tools.registry.tools
    assert call(tools, "read_file") == "r"


def test_a_resumed_replay_goes_on_after_the_results_already_played():
    tools = RecordedTools(cassette(
        ToolOutcome("read_file", result="one"),
        ToolOutcome("read_file", result="two"),
        ToolOutcome("read_file", result="three"),
        ToolOutcome("delete_file", result="gone"),
    ))
    tools.skip_played({"read_file": 2, "delete_file": 3, "ghost": 1})
    assert tools.ran == ["read_file", "read_file", "delete_file"]
    assert tools.exhausted == ["delete_file", "delete_file", "ghost"]
    assert call(tools, "read_file") == "three"
    with pytest.raises(ToolResultsExhausted):
        call(tools, "delete_file")
    tools.skip_played({"read_file": 0})
    assert tools.ran == ["read_file", "read_file", "delete_file", "read_file"]


def test_a_tool_the_cassette_cancels_during_cancels_the_turn_once_as_it_starts():
    plan, turn = CancelPlan(CancelPoint(during_tool="read_file")), CancellableTurn()
    plan.attach(turn)  # type: ignore[arg-type]
    tools = RecordedTools(cassette(ToolOutcome("read_file", result="a"), ToolOutcome("read_file", result="b"),
                                   ToolOutcome("delete_file", result="d"), cancel=CancelPoint(during_tool="read_file")),
                          cancel=plan)
    assert call(tools, "delete_file") == "d" and turn.cancels == 0, "another tool does not cancel"
    assert call(tools, "read_file") == "a" and turn.cancels == 1
    assert call(tools, "read_file") == "b" and turn.cancels == 1, "the cancel fires once"


def test_a_blocking_result_waits_until_the_turn_is_cancelled():
    tools = RecordedTools(cassette(ToolOutcome("read_file", result="never", blocks=True), ToolOutcome("delete_file", result="d")))

    async def run() -> None:
        task = asyncio.ensure_future(tools.registry.tools["read_file"].fn())
        await asyncio.sleep(0.05)
        assert not task.done(), "a blocking tool does not answer"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await tools.registry.tools["delete_file"].fn() == "d"

    asyncio.run(run())
    assert tools.ran == ["read_file", "delete_file"]

