"""Tools and batch execution, held to exact results (docs/quality.md, `engine/tools.py`).

The interpreter tests run tools only inside whole turns; here each promise of the module gets its
own known input: the spec sent to the model, registration defaults, how a result becomes text,
the answer for an unknown tool or a tool that raises, async tools, and the approval hook.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loopspec.engine.approvals import decide_batch
from loopspec.engine.tools import Tool, ToolCall, ToolRegistry, result_text, run_one

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_spec_is_the_openai_tools_entry() -> None:
    tool = Tool("double", lambda n: n * 2, SCHEMA, "Double it")
    assert tool.spec() == {
        "type": "function",
        "function": {"name": "double", "description": "Double it", "parameters": SCHEMA},
    }


def test_register_as_decorator_and_call_with_defaults_and_overrides() -> None:
    reg = ToolRegistry()

    @reg.register
    def plain() -> str:
        """Says hi."""
        return "hi"

    def other() -> str:
        return "x"

    assert reg.register(other, name="renamed", parameters=SCHEMA, description="d", needs_approval=True) is other
    assert reg.register(name="deco", description="")(plain) is plain
    assert "plain" in reg and "renamed" in reg and "other" not in reg
    assert reg.tools["plain"] == Tool("plain", plain, {"type": "object", "properties": {}}, "Says hi.", False)
    assert reg.tools["renamed"] == Tool("renamed", other, SCHEMA, "d", True)
    assert reg.tools["deco"].description == ""  # an explicit empty description is kept
    assert reg.specs()[1]["function"]["name"] == "renamed"
    assert reg.schemas() == {"plain": {"type": "object", "properties": {}}, "renamed": SCHEMA,
                             "deco": {"type": "object", "properties": {}}}


def test_a_result_becomes_text() -> None:
    assert result_text("as is") == "as is"
    assert result_text({"b": 1, "a": [2]}) == '{"a": [2], "b": 1}'
    assert result_text({"when": object}) == '{"when": "' + str(object) + '"}'
    assert result_text({1: "a", "b": 2}) == str({1: "a", "b": 2})  # keys json cannot sort


def test_an_unknown_tool_is_answered_without_running() -> None:
    call = ToolCall("c1", "nope", "{}")
    r = _run(run_one(None, call))
    assert (r.call, r.content, r.ok, r.schema_valid, r.ran) == (call, "Error: unknown tool 'nope'", False, False, False)


def test_a_tool_that_raises_is_an_error_result() -> None:
    def boom(n: int) -> int:
        raise ValueError(f"bad {n}")

    r = _run(run_one(Tool("boom", boom, SCHEMA), ToolCall("c", "boom", '{"n": 3}')))
    assert (r.content, r.ok, r.schema_valid, r.ran) == ("Error: ValueError: bad 3", False, True, True)


def test_a_tool_that_raises_on_invalid_arguments_says_they_were_invalid() -> None:
    def strict(n: int) -> int:
        raise TypeError("n must be an int")

    r = _run(run_one(Tool("strict", strict, SCHEMA), ToolCall("c", "strict", '{"n": "x"}')))
    assert (r.content, r.ok, r.schema_valid) == ("Error: TypeError: n must be an int", False, False)


def test_a_tool_without_docstring_or_description_has_an_empty_description() -> None:
    reg = ToolRegistry()
    reg.register(lambda: "a", name="anon")
    assert reg.tools["anon"].description == ""


def test_a_call_with_invalid_arguments_still_runs_and_says_so() -> None:
    r = _run(run_one(Tool("echo", lambda **kw: kw, SCHEMA), ToolCall("c", "echo", '{"n": "x"}')))
    assert (r.content, r.ok, r.schema_valid) == ('{"n": "x"}', True, False)
    r = _run(run_one(Tool("echo", lambda **kw: kw, SCHEMA), ToolCall("c", "echo", "not json")))
    assert (r.content, r.ok, r.schema_valid) == ("{}", True, False)


def test_async_tools_are_awaited() -> None:
    async def slow(n: int) -> int:
        await asyncio.sleep(0)
        return n + 1

    r = _run(run_one(Tool("slow", slow, SCHEMA), ToolCall("c", "slow", '{"n": 1}')))
    assert (r.content, r.ok, r.schema_valid, r.ran) == ("2", True, True, True)


def test_cancellation_is_not_turned_into_a_result() -> None:
    async def cancelled(n: int) -> int:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        _run(run_one(Tool("c", cancelled, SCHEMA), ToolCall("c", "c", '{"n": 1}')))


def needs_approval(*args: Any) -> Any:
    """(waiting, denied) of a batch, as the approval decision gives them."""

    async def decide() -> Any:
        d = await decide_batch(*args)
        return d.waiting, d.denied

    return decide()


def _registry() -> ToolRegistry:
    reg = ToolRegistry()
    reg.register(lambda: "a", name="free")
    reg.register(lambda: "b", name="guarded", needs_approval=True)
    reg.register(lambda: "c", name="guarded2", needs_approval=True)
    return reg


CALLS = [ToolCall("1", "free", "{}"), ToolCall("2", "unknown", "{}"), ToolCall("3", "guarded", "{}"),
         ToolCall("4", "guarded2", "{}")]


def test_without_a_hook_every_guarded_call_waits() -> None:
    assert _run(needs_approval(_registry(), CALLS, None)) == ([CALLS[2], CALLS[3]], [])
    assert _run(needs_approval(_registry(), CALLS[:2], None)) == ([], [])


def test_the_hook_decides_each_guarded_call_sync_or_async() -> None:
    asked: list[str] = []

    def only_first(call: ToolCall) -> bool:
        asked.append(call.id)
        return call.name == "guarded"

    async def yes(call: ToolCall) -> bool:
        return True

    async def no(call: ToolCall) -> bool:
        return False

    assert _run(needs_approval(_registry(), CALLS, only_first)) == ([CALLS[3]], [])
    assert asked == ["3", "4"]  # never asked about calls that need no approval
    assert _run(needs_approval(_registry(), CALLS, yes)) == ([], [])
    assert _run(needs_approval(_registry(), CALLS, no)) == ([CALLS[2], CALLS[3]], [])


def test_a_persons_answers_come_before_the_hook_and_a_no_is_a_denial_not_a_wait() -> None:
    asked: list[str] = []

    def never(call: ToolCall) -> bool:
        asked.append(call.id)
        return False

    assert _run(needs_approval(_registry(), CALLS, never, {"3": True, "4": False})) == ([], [CALLS[3]])
    assert asked == [], "a call a person answered is not asked about again"
    assert _run(needs_approval(_registry(), CALLS, never, {"4": True})) == ([CALLS[2]], [])
    assert asked == ["3"]
