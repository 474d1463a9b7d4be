"""How default.yaml ends a turn, as a user reads it: a spent tool budget has its own outcome, a
reasoning-only reply gets a nudge that says so, halt messages name a short typed reason (the raw
error stays in the result), and no halt message starts with blank lines."""

from __future__ import annotations

import asyncio
from typing import Any

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy
from loopspec.engine.history import history_problems
from loopspec.engine.results import TurnResult
from loopspec.replay.interactions import ErrorResponse, StreamResponse
from loopspec.replay.synth import reply_chunks

from _paths import DEFAULT_POLICY

DEFAULT = load_policy(str(DEFAULT_POLICY))
USER = [{"role": "user", "content": "go"}]
TOOL = StreamResponse(chunks=tuple(reply_chunks(tool_calls=[("lookup", {"q": "x"})])))


def play(interactions: list[Any], policy: Any = DEFAULT) -> TurnResult:
    tools = ToolRegistry()
    polls = iter(range(10_000))

    def lookup(q: str = "") -> str:
        return f"poll {next(polls)}"  # progress every time, so no loop guardrail fires

    tools.register(lookup, parameters={"type": "object", "properties": {"q": {"type": "string"}}})
    turn = Turn(policy, InProcessProvider(interactions), model="replay", tools=tools, clock=VirtualClock())
    return asyncio.run(turn.run(USER))


def spend_tool_budget() -> list[Any]:
    """Tool calls until the backstop: the one after the last batch goes to tools_spent instead."""
    return [TOOL] * (DEFAULT.backstops["tool_batches"].max + 1)


def test_an_answer_after_the_tool_budget_is_spent_ends_as_tool_budget_and_names_the_limit() -> None:
    result = play(spend_tool_budget() + [StreamResponse(chunks=tuple(reply_chunks("Here is what I found.")))])
    assert result.outcome == "tool_budget"
    assert result.message.startswith("Here is what I found.")
    assert f"all {DEFAULT.backstops['tool_batches'].max} tool batches" in result.message
    assert result.usage.tool_batches == DEFAULT.backstops["tool_batches"].max
    assert history_problems(result.messages) == []


def test_a_tool_call_after_the_tool_budget_is_spent_ends_as_tool_budget_and_runs_nothing() -> None:
    result = play(spend_tool_budget() + [TOOL])
    assert result.outcome == "tool_budget"
    assert "the limit for one turn" in result.message
    assert result.usage.tool_batches == DEFAULT.backstops["tool_batches"].max
    ran = sum(1 for m in result.messages if m.get("role") == "tool")
    assert ran == DEFAULT.backstops["tool_batches"].max
    assert history_problems(result.messages) == []


def test_an_empty_reply_after_the_tool_budget_is_spent_ends_as_tool_budget() -> None:
    result = play(spend_tool_budget() + [StreamResponse(chunks=tuple(reply_chunks()))])
    assert result.outcome == "tool_budget"


def test_a_reasoning_only_reply_is_nudged_as_reasoning_not_as_empty() -> None:
    thinking = StreamResponse(chunks=tuple(reply_chunks(reasoning="let me think")))
    empty = StreamResponse(chunks=tuple(reply_chunks()))
    answer = StreamResponse(chunks=tuple(reply_chunks("ok")))
    after_thinking = play([thinking, answer]).messages
    after_empty = play([empty, answer]).messages
    nudge_t = [m["content"] for m in after_thinking if m["role"] == "user"][-1]
    nudge_e = [m["content"] for m in after_empty if m["role"] == "user"][-1]
    assert "reasoning only" in nudge_t and "empty" not in nudge_t
    assert "empty" in nudge_e


RAW = "litellm.MidStreamFallbackError: litellm.ServiceUnavailableError: upstream connect error; TransferEncodingError: 400"


def test_a_provider_failure_halt_names_a_short_typed_reason_and_keeps_the_raw_error() -> None:
    failing = ErrorResponse(503, {"error": {"message": RAW, "type": "server_error"}})
    result = play([failing] * 10)
    assert result.outcome == "provider_error"
    assert "server error, HTTP 503" in result.message
    assert "litellm" not in result.message and "TransferEncodingError" not in result.message
    assert result.error is not None and "TransferEncodingError" in result.error
    assert result.to_json()["error"] == result.error


def test_a_truncated_halt_with_nothing_written_does_not_start_with_blank_lines() -> None:
    cut = StreamResponse(chunks=tuple(reply_chunks(tool_calls=[("lookup", '{"q": "x')], finish="length")))
    result = play([cut] * 10)
    assert result.outcome == "truncated"
    assert result.message == result.message.strip() and result.message.startswith("(My reply was cut off")
