"""The interpreter under default.yaml, over in-process replay of real and built streams.

Each incident of docs/design.md's table has a test here (in-process, virtual time) and another in
test_interpreter_http.py (litellm against a loopback server).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from loopspec import Consumers, InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy
from loopspec.engine.history import history_problems
from loopspec.replay.interactions import ErrorResponse, StreamResponse
from loopspec.replay.synth import reply

from _paths import DEFAULT_POLICY, FIXTURES

POLICY = load_policy(str(DEFAULT_POLICY))
STREAMS = FIXTURES / "streams"
USER = [{"role": "user", "content": "What is the capital of the UK?"}]


def recorded(name: str, **faults: Any) -> StreamResponse:
    return StreamResponse(sse=(STREAMS / name).read_text(), **faults)


def error_body(name: str) -> Any:
    return json.loads((STREAMS / name).read_text())


class Recorder:
    """Collects what a streaming client and a non-streaming client would see."""

    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.ends = 0
        self.interims: list[tuple[str, bool]] = []

    def consumers(self) -> Consumers:
        def end() -> None:
            self.ends += 1

        return Consumers(
            on_delta=self.deltas.append, on_end=end, on_interim=lambda t, s: self.interims.append((t, s))
        )


def capital_tools(calls: list[dict[str, Any]] | None = None) -> ToolRegistry:
    reg = ToolRegistry()

    def get_capital(country: str) -> str:
        if calls is not None:
            calls.append({"country": country})
        return {"UK": "London"}.get(country, "unknown")

    reg.register(
        get_capital,
        parameters={"type": "object", "properties": {"country": {"type": "string"}}, "required": ["country"]},
    )
    return reg


def run(interactions: list[Any], tools: ToolRegistry | None = None, rec: Recorder | None = None, **kw: Any):  # type: ignore[no-untyped-def]
    provider = InProcessProvider(interactions)
    turn = Turn(
        POLICY,
        provider,
        model="replay",
        tools=tools or capital_tools(),
        consumers=(rec or Recorder()).consumers(),
        clock=VirtualClock(),
        **kw,
    )
    result = asyncio.run(turn.run(USER))
    assert history_problems(result.messages) == []
    assert result.messages[0] == USER[0], "the trajectory keeps the initial messages"
    return result, provider


def events(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [s.event for s in result.trace]


def test_plain_text_turn_completes_and_streams_once() -> None:
    rec = Recorder()
    result, provider = run([recorded("openai_stream_text.sse")], rec=rec)
    assert result.outcome == "completed"
    assert result.message == "The capital of Mexico is Mexico City."
    assert "".join(rec.deltas) == result.message, "the halt text was already streamed, not sent twice"
    assert rec.ends == 1 and rec.interims == [(result.message, True)]
    assert result.usage.model_calls == 1 and provider.unconsumed == 0


def test_tool_loop_runs_recorded_call_and_answers_it() -> None:
    calls: list[dict[str, Any]] = []
    result, _ = run(
        [recorded("openai_stream_tool_call_single.sse"), recorded("openai_stream_text.sse")],
        tools=capital_tools(calls),
    )
    assert calls == [{"country": "UK"}]
    assert result.outcome == "completed" and result.usage.tool_batches == 1
    tool_msg = next(m for m in result.messages if m["role"] == "tool")
    assert tool_msg["content"] == "London"


def test_hermes_31998_stall_mid_tool_call_is_continued_not_ended() -> None:
    """A stream stalls inside a tool call: the partial call never runs, the stub goes through
    continuation, and the retried call completes the turn."""
    calls: list[dict[str, Any]] = []
    result, _ = run(
        [
            recorded("openai_stream_tool_call_single.sse", stall_after=3, stall_seconds=300),
            recorded("openai_stream_tool_call_single.sse"),
            recorded("openai_stream_text.sse"),
        ],
        tools=capital_tools(calls),
    )
    assert events(result)[:4] == ["opened", "stalled", "mid_tool_call", "done"]
    assert calls == [{"country": "UK"}], "only the complete call ran, once"
    assert result.outcome == "completed"
    prompts = [m["content"] for m in result.messages if m["role"] == "user"]
    assert any("get_capital" in p and "NOT run" in p for p in prompts)


def test_stall_budget_is_bounded_then_halts_with_message() -> None:
    stall = recorded("openai_stream_tool_call_single.sse", stall_after=2, stall_seconds=300)
    rec = Recorder()
    result, _ = run([stall, stall, stall], rec=rec)
    assert result.outcome == "stalled" and result.trace[-1].counters["stalls"] == 2
    assert "stalled" in "".join(rec.deltas) and rec.ends == 1


def test_hermes_30770_guardrail_halt_reaches_streaming_client() -> None:
    """The tool fails identically twice: the guardrail halts, and the explanation is streamed
    (delta, then end) and handed to interim consumers, naming the tool and the guardrail."""
    reg = ToolRegistry()

    def flaky(country: str) -> str:
        raise TimeoutError("upstream timed out")

    reg.register(flaky, name="get_capital", parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    rec = Recorder()
    call = recorded("openai_stream_tool_call_single.sse")
    result, _ = run([call, call, recorded("openai_stream_text.sse")], tools=reg, rec=rec)
    assert result.outcome == "guardrail"
    assert events(result)[-1] == "repeated_exact_failure"
    assert "get_capital" in result.message and "repeated_exact_failure" in result.message
    assert rec.deltas == [result.message] and rec.ends == 1
    assert rec.interims == [(result.message, False)]
    assert result.messages[-1] == {"role": "assistant", "content": result.message}


def test_netclaw_1346_thinking_only_interleaved_with_tools_hits_the_turn_ceiling() -> None:
    """Thinking-only replies interleaved with tool batches: the streak resets on each batch, but
    the per-turn ceiling ends the loop long before the 90-call backstop."""
    thinking = reply(reasoning="Let me think about which tool to call next...")
    tool = recorded("openai_stream_tool_call_single.sse")
    script: list[Any] = []
    for _ in range(12):
        script += [thinking, tool]
    polls = iter(range(100))
    reg = ToolRegistry()  # a poll whose result changes: progress, so no loop guardrail fires
    reg.register(lambda country: f"step {next(polls)}", name="get_capital",
                 parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    result, provider = run(script, tools=reg)
    assert result.trace[-1].counters["empty_total"] == 6
    assert result.usage.model_calls < 20 < POLICY.backstops["model_calls"].max
    assert "tools_disabled" in result.trace[-1].flags
    assert result.outcome == "tools_disabled" and "get_capital" in result.message
    # once disabled, no later request carried tools
    first_off = next(i for i, r in enumerate(result.requests) if not r.tools)
    assert all(not r.tools for r in result.requests[first_off:])


def test_ml_intern_length_with_tool_calls_drops_them_and_asks_for_smaller() -> None:
    calls: list[dict[str, Any]] = []
    cut = reply(tool_calls=[("get_capital", '{"country": "U')], finish="length")
    result, _ = run([cut, recorded("openai_stream_tool_call_single.sse"), recorded("openai_stream_text.sse")], tools=capital_tools(calls))
    assert events(result)[1] == "length" and result.trace[1].attrs["dropped_tools"] == ["get_capital"]
    assert calls == [{"country": "UK"}], "the truncated call was never executed"
    assert result.trace[1].target == "continue_chunking"
    assert any("get_capital" in m["content"] and "smaller" in m["content"] for m in result.messages if m["role"] == "user")


def test_length_thinking_only_disables_reasoning_once() -> None:
    result, _ = run(
        [recorded("openai_stream_finish_length_reasoning_only_gpt5nano.sse"), recorded("openai_stream_text.sse")],
        reasoning_effort="high",
    )
    assert result.trace[1].target == "continue_brief"
    assert [r.reasoning_effort for r in result.requests] == ["high", None]
    assert result.outcome == "completed"


def test_length_continuation_is_capped_at_three() -> None:
    cut = recorded("openai_stream_finish_length_text.sse")
    rec = Recorder()
    result, _ = run([cut] * 5, rec=rec)
    assert result.outcome == "truncated" and result.usage.model_calls == 4
    assert result.trace[-1].counters["continuations"] == 3


def test_malformed_argument_streak_halts_with_the_tool_named() -> None:
    bad = reply(tool_calls=[("get_capital", '{"country": ')])
    calls: list[dict[str, Any]] = []
    result, _ = run([bad, bad, bad], tools=capital_tools(calls))
    assert calls == []
    assert result.outcome == "malformed" and "get_capital" in result.message
    assert result.trace[-1].counters["bad_call_streak"] == 2


def test_overflow_compaction_overflow_ends() -> None:
    overflow = ErrorResponse(400, error_body("openai_error_400_context_length_exceeded.json"))
    long_history = USER + [
        {"role": "assistant", "content": f"note {i}"} if i % 2 else {"role": "user", "content": f"more {i}"} for i in range(20)
    ]
    provider = InProcessProvider([overflow] * 6)
    turn = Turn(POLICY, provider, model="replay", clock=VirtualClock())
    result = asyncio.run(turn.run(long_history))
    assert result.outcome == "context_exceeded"
    assert [s.event for s in result.trace].count("context_overflow") == 3
    assert result.trace[-1].counters["compactions"] == 2
    sizes = [len(r.messages) for r in provider.requests]
    assert sizes[0] == len(long_history) and sizes[1] < sizes[0] and sizes[2] <= sizes[1]
    assert result.messages[: len(long_history)] == long_history, "compaction worked on a copy"


def test_rate_limit_backs_off_on_schedule_in_virtual_time() -> None:
    body = error_body("openai_error_429_rate_limit_requests.json")
    clock = VirtualClock()
    provider = InProcessProvider([ErrorResponse(429, body)] * 3)
    result = asyncio.run(Turn(POLICY, provider, model="replay", clock=clock).run(USER))
    assert result.outcome == "rate_limited"
    assert clock.slept == [30.0, 60.0], "the schedule; the body's 'try again in 20s' is shorter"
    assert len(provider.requests) == 3
    assert "429" in result.message


def test_auth_error_halts_with_friendly_message() -> None:
    result, _ = run([ErrorResponse(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})])
    assert result.outcome == "auth_failed" and "API key" in result.message


def test_policy_diverges_when_it_asks_for_more_than_recorded() -> None:
    result, provider = run([recorded("openai_stream_tool_call_single.sse")])
    assert provider.diverged_at == 1
    assert result.outcome == "bad_request" and "loopspec_diverged" in result.message


def test_a_consumer_that_raises_never_stops_the_turn() -> None:
    def boom(_: str) -> None:
        raise RuntimeError("client went away")

    provider = InProcessProvider([recorded("openai_stream_text.sse")])
    turn = Turn(POLICY, provider, model="replay", clock=VirtualClock(), consumers=Consumers(on_delta=boom))
    result = asyncio.run(turn.run(USER))
    assert result.outcome == "completed"
    assert result.consumer_errors and "client went away" in result.consumer_errors[0]


def test_cancellation_during_a_tool_ends_in_cancelled_halt_with_valid_history() -> None:
    reg = ToolRegistry()
    started = asyncio.Event()

    async def slow(country: str) -> str:
        started.set()
        await asyncio.sleep(30)
        return "never"

    reg.register(slow, name="get_capital", parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    provider = InProcessProvider([recorded("openai_stream_tool_call_single.sse")])

    async def main():  # type: ignore[no-untyped-def]
        turn = Turn(POLICY, provider, model="replay", tools=reg, clock=VirtualClock())
        task = asyncio.create_task(turn.run(USER))
        await started.wait()
        turn.cancel()
        return await task

    result = asyncio.run(main())
    assert result.outcome == "cancelled"
    assert history_problems(result.messages) == []
    assert result.messages[-2]["content"].startswith("Not run: the turn was cancelled")


def test_approval_required_halts_with_the_call_answered_and_not_run() -> None:
    ran: list[str] = []
    asked: list[str] = []
    reg = ToolRegistry()
    reg.register(lambda country: ran.append(country) or "x", name="get_capital", needs_approval=True,
                 parameters={"type": "object", "properties": {"country": {"type": "string"}}})

    def approve(call: Any) -> bool:
        asked.append(call.name)
        return False

    result, provider = run([recorded("openai_stream_tool_call_single.sse"), recorded("openai_stream_text.sse")],
                           tools=reg, approve=approve)
    assert ran == [], "a call awaiting approval never runs"
    assert asked == ["get_capital"]
    assert result.outcome == "approval_required" and "get_capital" in result.message
    assert [m["role"] for m in result.messages] == ["user", "assistant", "tool", "assistant"]
    assert result.messages[2] == {"role": "tool", "tool_call_id": "call_ZR5UUuTt3pf61kjwAJIYdVMj",
                                  "content": "Not run: this call is awaiting human approval."}
    assert len(provider.requests) == 1


def test_an_approved_call_runs() -> None:
    ran: list[str] = []
    reg = ToolRegistry()
    reg.register(lambda country: ran.append(country) or "London", name="get_capital", needs_approval=True,
                 parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    result, _ = run([recorded("openai_stream_tool_call_single.sse"), recorded("openai_stream_text.sse")],
                    tools=reg, approve=lambda call: True)
    assert ran == ["UK"] and result.outcome == "completed"


def test_trace_records_counters_flags_and_actions() -> None:
    result, _ = run([recorded("openai_stream_tool_call_single.sse"), recorded("openai_stream_text.sse")])
    step = next(s for s in result.trace if s.event == "tool_calls")
    assert step.state == "read_stream" and step.target == "run_tools"
    assert step.actions == ["reset empty_streak", "reset bad_call_streak", "set tool_choice_reset"]
    assert step.counters["model_calls"] == 1 and step.counters["tool_batches"] == 1
    assert json.loads(json.dumps(result.to_json()))["outcome"] == "completed"


def test_a_recorded_mid_stream_error_event_is_broken_and_retried_after_the_stream_backoff() -> None:
    """Groq's in-band ``event: error`` after some reasoning: the stream is broken, the turn waits
    the stream schedule's first entry and sends the same request again, which completes."""
    clock = VirtualClock()
    provider = InProcessProvider([recorded("groq_stream_reasoning_then_error_event.sse"), recorded("openai_stream_text.sse")])
    result = asyncio.run(Turn(POLICY, provider, model="replay", tools=capital_tools(), clock=clock).run(USER))
    assert [(s.event, s.target) for s in result.trace] == [
        ("opened", "read_stream"), ("broken", "call_model"), ("opened", "read_stream"), ("text", "halt_completed")]
    assert result.trace[1].attrs["cause"] == "provider_error" and result.trace[-1].counters["stream_retries"] == 1
    assert clock.slept == [2.0]
    assert len(provider.requests) == 2 and provider.requests[1].messages == provider.requests[0].messages
    assert result.outcome == "completed" and result.message == "The capital of Mexico is Mexico City."


def test_a_recorded_overflow_error_chunk_is_compacted_then_retried_not_retried_as_is() -> None:
    """OpenRouter's error chunk after a length cut says the context overflowed: the turn compacts
    and retries with a smaller prompt (no backoff), never the same request again."""
    history = USER + [
        {"role": "assistant", "content": f"note {i}"} if i % 2 else {"role": "user", "content": f"more {i}"} for i in range(20)
    ]
    clock = VirtualClock()
    provider = InProcessProvider([recorded("openrouter_stream_length_then_error_chunk.sse"), recorded("openai_stream_text.sse")])
    result = asyncio.run(Turn(POLICY, provider, model="replay", tools=capital_tools(), clock=clock).run(history))
    assert [(s.event, s.target) for s in result.trace] == [
        ("opened", "read_stream"), ("broken", "compact_context"), ("done", "call_model"), ("opened", "read_stream"),
        ("text", "halt_completed")]
    assert result.trace[1].attrs["cause"] == "overflow" and clock.slept == []
    assert len(provider.requests) == 2 and len(provider.requests[1].messages) < len(provider.requests[0].messages)
    assert result.outcome == "completed"


def test_a_recorded_overflow_error_chunk_with_nothing_to_compact_ends_the_turn() -> None:
    result, provider = run([recorded("openrouter_stream_length_then_error_chunk.sse"), recorded("openai_stream_text.sse")])
    assert [(s.event, s.target) for s in result.trace] == [
        ("opened", "read_stream"), ("broken", "compact_context"), ("failed", "halt_context_exceeded")]
    assert result.outcome == "context_exceeded" and len(provider.requests) == 1


def test_turn_deadline_cancels_the_turn_in_virtual_time() -> None:
    """litellm's timeouts bound each read, not the turn: settings.turn_deadline does. With a 45 s
    deadline, the first 30 s rate-limit backoff fits and the retry after the 60 s one does not."""
    text = DEFAULT_POLICY.read_text().replace("  stall_timeout: 60", "  turn_deadline: 45\n  stall_timeout: 60")
    from loopspec import load_policy_text

    policy = load_policy_text(text)
    body = error_body("openai_error_429_rate_limit_requests.json")
    provider = InProcessProvider([ErrorResponse(429, body)] * 3 + [recorded("openai_stream_text.sse")])
    clock = VirtualClock()
    result = asyncio.run(Turn(policy, provider, model="replay", clock=clock).run(USER))
    assert result.outcome == "cancelled"
    assert [s.event for s in result.trace] == ["rate_limit", "rate_limit", "cancelled"]
    assert len(provider.requests) == 2 and clock.now() >= 45
    assert history_problems(result.messages) == []


def test_external_task_cancellation_still_propagates_after_the_halt() -> None:
    """Cancelling the task from outside ends the turn validly and then re-raises, as asyncio expects."""
    started = asyncio.Event()

    async def slow(country: str) -> str:
        started.set()
        await asyncio.sleep(30)
        return "never"

    reg = ToolRegistry()
    reg.register(slow, name="get_capital", parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    turn = Turn(POLICY, InProcessProvider([recorded("openai_stream_tool_call_single.sse")]), model="replay",
                tools=reg, clock=VirtualClock())

    async def main() -> None:
        task = asyncio.create_task(turn.run(USER))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert turn.result is not None and turn.result.outcome == "cancelled"
    assert history_problems(turn.result.messages) == []
