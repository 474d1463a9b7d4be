"""Every wait bounded, nothing leaked (loopspec issue #14).

The turn's deadline cuts every wait (a backoff, a chunk, a request, a tool); tools have their own
timeouts, answered "timed out" in a history that stays valid; sync tools run off the event loop; a
cancel keeps the halt it lands in, sends nothing before ``run()``, and the usage counts what was
sent; tool call ids never repeat within a history.

In process, in virtual time where the wait is one the clock owns (backoffs, recorded pauses). A
tool or a request that never returns is bounded in real time by a fraction of a second: the tests
assert what the turn observed, never how long it took.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy_text
from loopspec.engine.consumers import Consumers
from loopspec.engine.history import Trajectory, history_problems, tool_calls_of
from loopspec.providers.base import ModelRequest
from loopspec.replay.interactions import ErrorResponse
from loopspec.replay.synth import reply
from loopspec.wire.assemble import AssembledReply, AssembledToolCall

from _paths import DEFAULT_POLICY
from _doubles import BlockingClock, NeverOpens

USER = [{"role": "user", "content": "Run the tests."}]
SHORT = 0.05
"""Real seconds: the timeout of a tool or request that never returns (it always runs out)."""
RATE_LIMITED = {"error": {"message": "slow down", "type": "requests"}}


def policy_with(**settings: Any) -> Any:
    """default.yaml with settings replaced or added (backoff.max_wait via ``max_wait``)."""
    text = DEFAULT_POLICY.read_text()
    if "max_wait" in settings:
        text = text.replace("  max_wait: 60 ", f"  max_wait: {settings.pop('max_wait')} ", 1)
    for key, value in settings.items():
        line = f"  {key}: {value}\n"
        if f"\n  {key}:" in text:
            start = text.index(f"\n  {key}:") + 1
            text = text[:start] + line + text[text.index("\n", start) + 1 :]
        else:
            text = text.replace("settings:\n", "settings:\n" + line, 1)
    return load_policy_text(text)


def tools(**fns: Any) -> ToolRegistry:
    reg = ToolRegistry()
    for name, fn in fns.items():
        reg.register(fn, name=name, parameters={"type": "object", "properties": {}})
    return reg


def events(result: Any) -> list[str]:
    return [s.event for s in result.trace]


def tool_answers(result: Any) -> dict[str, str]:
    """tool_call_id -> answer, over the whole history."""
    return {m["tool_call_id"]: m["content"] for m in result.messages if m["role"] == "tool"}


def run(turn: Turn, messages: Any = USER) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(turn.run(messages), 30)  # a safety net, not an assertion

    return asyncio.run(main())


async def hang(**_: Any) -> str:
    await asyncio.Event().wait()
    return "never"


# ------------------------------------------------------------------------------ the turn's deadline


def test_the_deadline_cuts_a_retry_after_backoff() -> None:
    """Retry-After: 3600 within max_wait, turn_deadline 2: the turn sleeps 2 s, not an hour, and ends
    cancelled with the one request it sent (once it slept the whole hour)."""
    clock = VirtualClock()
    provider = InProcessProvider([ErrorResponse(429, RATE_LIMITED, {"retry-after": "3600"}), reply("late")])
    result = run(Turn(policy_with(max_wait=3600, turn_deadline=2), provider, model="replay", clock=clock))
    assert clock.slept == [2.0] and clock.now() == 2.0
    assert result.outcome == "cancelled" and events(result) == ["rate_limit", "cancelled"]
    assert len(provider.requests) == 1


def test_the_deadline_cuts_a_pause_in_the_stream() -> None:
    """A 50 s pause in the stream is not a stall (60 s), but the turn has 20 s: the read stops at 20 s
    (it once waited out the pause and read on)."""
    clock = VirtualClock()
    provider = InProcessProvider([reply("Still thinking about it.", stall_after=2, stall_seconds=50)])
    result = run(Turn(policy_with(turn_deadline=20), provider, model="replay", clock=clock))
    assert clock.now() == 20.0
    assert result.outcome == "cancelled" and events(result) == ["opened", "cancelled"]
    assert history_problems(result.messages) == []


def test_text_streamed_before_the_deadline_stays_in_the_history() -> None:
    """The deadline cuts a reply mid-stream: the consumer saw its first words, and the history
    keeps them (as an assistant message, before the halt's), not only the halt message."""
    seen: list[str] = []
    provider = InProcessProvider([reply("Still thinking about it.", stall_after=2, stall_seconds=50)])
    turn = Turn(policy_with(turn_deadline=20), provider, model="replay", clock=VirtualClock(), consumers=Consumers(on_delta=seen.append))
    result = run(turn)
    partial = "".join(seen)[: -len(result.message)]
    assert result.outcome == "cancelled" and partial and "Still thinking about it.".startswith(partial)
    assert result.messages[len(USER):] == [{"role": "assistant", "content": partial}, {"role": "assistant", "content": result.message}]



def test_a_stall_long_before_the_deadline_is_a_stall_not_the_deadline() -> None:
    """A 100 s pause with a 60 s stall timeout and 900 s left: the read ends at 60 s as a stall,
    which the policy handles, not as the deadline passing (which would end the turn cancelled)."""
    clock = VirtualClock()
    provider = InProcessProvider([reply("Half an ans", stall_after=2, stall_seconds=100), reply("The whole answer.")])
    result = run(Turn(policy_with(turn_deadline=900), provider, model="replay", clock=clock))
    assert events(result)[:2] == ["opened", "stalled"]
    assert result.outcome != "cancelled"


def test_the_deadline_cuts_a_request_that_never_opens() -> None:
    """request_timeout is 120 s; the turn has SHORT: the call observes cancelled, not timeout."""
    provider = NeverOpens()
    result = run(Turn(policy_with(turn_deadline=SHORT), provider, model="replay", clock=VirtualClock()))
    assert result.outcome == "cancelled" and events(result) == ["cancelled"]
    assert len(provider.requests) == 1 and result.usage.model_calls == 1


def test_the_deadline_cuts_a_tool_that_never_returns() -> None:
    provider = InProcessProvider([reply(tool_calls=[("run_tests", {})]), reply("never asked")])
    result = run(Turn(policy_with(turn_deadline=SHORT), provider, model="replay", tools=tools(run_tests=hang), clock=VirtualClock()))
    assert result.outcome == "cancelled" and events(result) == ["opened", "tool_calls", "cancelled"]
    assert list(tool_answers(result).values()) == ["Not run: the turn's deadline passed before this call finished."]
    assert history_problems(result.messages) == [] and len(provider.requests) == 1


# ------------------------------------------------------------------------------ tool timeouts


def test_a_hanging_tool_times_out_and_the_model_hears_it() -> None:
    """tool_timeout: the call is answered "timed out" once, the batch emits timeout, and default.yaml
    gives the model another call."""
    provider = InProcessProvider([reply(tool_calls=[("run_tests", {})]), reply("The tests hang; I stopped them.")])
    result = run(Turn(policy_with(tool_timeout=SHORT), provider, model="replay", tools=tools(run_tests=hang), clock=VirtualClock()))
    assert events(result) == ["opened", "tool_calls", "timeout", "opened", "text"]
    assert result.trace[2].attrs == {"tools": ["run_tests"]} and result.trace[2].counters["tool_timeouts"] == 1
    assert result.outcome == "completed"
    (answer,) = tool_answers(result).values()
    assert answer == f"Timed out: 'run_tests' did not finish within {SHORT:g} s and was abandoned; it returned nothing."
    assert history_problems(result.messages) == []
    sent = provider.requests[1].messages
    assert [m["content"] for m in sent if m["role"] == "tool"] == [answer], "the model is told"


def test_a_sync_tool_that_hangs_times_out_too() -> None:
    """A blocking sync tool runs in a thread, so the timer that times it out still fires."""
    release = threading.Event()

    def blocks() -> str:
        release.wait(30)
        return "late"

    provider = InProcessProvider([reply(tool_calls=[("run_tests", {})]), reply("Stopped.")])
    try:
        result = run(Turn(policy_with(tool_timeout=SHORT), provider, model="replay", tools=tools(run_tests=blocks), clock=VirtualClock()))
    finally:
        release.set()
    assert events(result)[2] == "timeout" and result.outcome == "completed"
    assert list(tool_answers(result).values())[0].startswith("Timed out: 'run_tests'")


def test_the_batch_timeout_keeps_finished_calls_and_times_out_the_rest() -> None:
    provider = InProcessProvider([reply(tool_calls=[("git_status", {}), ("run_tests", {})]), reply("Half done.")])
    reg = tools(git_status=lambda: "clean", run_tests=hang)
    result = run(Turn(policy_with(tool_batch_timeout=SHORT), provider, model="replay", tools=reg, clock=VirtualClock()))
    assert events(result)[:3] == ["opened", "tool_calls", "timeout"] and result.trace[2].attrs == {"tools": ["run_tests"]}
    answers = list(tool_answers(result).values())
    assert answers[0] == "clean" and answers[1].startswith(f"Timed out: 'run_tests' did not finish within {SHORT:g} s")
    assert history_problems(result.messages) == []


def test_the_batch_timeout_times_out_a_batch_of_one_call() -> None:
    """A batch of one call runs without a task of its own, still bounded by the batch timeout: the
    call is answered with the batch's timeout and the batch reports ``timeout``."""
    provider = InProcessProvider([reply(tool_calls=[("run_tests", {})]), reply("Gave up.")])
    result = run(Turn(policy_with(tool_batch_timeout=SHORT), provider, model="replay", tools=tools(run_tests=hang), clock=VirtualClock()))
    assert events(result)[:3] == ["opened", "tool_calls", "timeout"] and result.trace[2].attrs == {"tools": ["run_tests"]}
    assert list(tool_answers(result).values())[0].startswith(f"Timed out: 'run_tests' did not finish within {SHORT:g} s")
    assert history_problems(result.messages) == [] and result.outcome == "completed"


def test_tools_that_keep_timing_out_end_the_turn() -> None:
    """Three batches time out (different arguments, so no guardrail): default.yaml retries twice and
    then halts with its tool_timeout outcome and a message naming the tool."""
    calls = [reply(tool_calls=[("run_tests", {"attempt": i})]) for i in range(3)]
    provider = InProcessProvider([*calls, reply("never asked")])
    reg = ToolRegistry()
    reg.register(hang, name="run_tests", parameters={"type": "object", "properties": {"attempt": {"type": "integer"}}})
    result = run(Turn(policy_with(tool_timeout=SHORT), provider, model="replay", tools=reg, clock=VirtualClock()))
    assert events(result).count("timeout") == 3
    assert result.outcome == "tool_timeout" and result.halt_state == "halt_tool_timeout"
    assert "(last: ['run_tests'])" in result.message or "run_tests" in result.message
    assert history_problems(result.messages) == [] and len(provider.requests) == 3


def test_the_checker_explores_the_timeout_event() -> None:
    """A tool_exec state that does not handle timeout is an unhandled event to `check`."""
    from loopspec.verify import check_policy

    text = DEFAULT_POLICY.read_text()
    start = text.index("      timeout:                              # the calls were answered")
    end = text.index("      cancelled: halt_cancelled", start)
    report = check_policy(load_policy_text(text[:start] + text[end:]))
    assert "events_handled" in report.failed
    assert "run_tools" in " ".join(report.properties["events_handled"].findings) and "timeout" in " ".join(report.properties["events_handled"].findings)


# ------------------------------------------------------------------------------ sync tools off the loop


def test_sync_tools_of_concurrent_turns_run_at_the_same_time() -> None:
    """Two turns, each with a sync tool that waits for the other's: on the event loop the first
    would block the second from ever starting (the barrier breaks); in threads they meet."""
    barrier = threading.Barrier(2, timeout=10)

    def meet() -> str:
        barrier.wait()
        return "met"

    def turn() -> Turn:
        provider = InProcessProvider([reply(tool_calls=[("meet", {})]), reply("done")])
        return Turn(policy_with(), provider, model="replay", tools=tools(meet=meet), clock=VirtualClock())

    async def main() -> list[Any]:
        return list(await asyncio.gather(turn().run(USER), turn().run(USER)))

    results = asyncio.run(main())
    assert [list(tool_answers(r).values()) for r in results] == [["met"], ["met"]]


def test_a_sync_tool_may_cancel_its_turn_from_its_thread() -> None:
    """Turn.cancel() is safe from the tool's thread: the turn ends cancelled, the call answered once."""
    release = threading.Event()
    holder: dict[str, Turn] = {}

    def stop_and_block() -> str:
        holder["turn"].cancel()
        release.wait(30)
        return "late"

    provider = InProcessProvider([reply(tool_calls=[("run_tests", {})]), reply("never asked")])
    holder["turn"] = Turn(policy_with(), provider, model="replay", tools=tools(run_tests=stop_and_block), clock=VirtualClock())
    try:
        result = run(holder["turn"])
    finally:
        release.set()
    assert result.outcome == "cancelled" and events(result)[-1] == "cancelled"
    assert list(tool_answers(result).values()) == ["Not run: the turn was cancelled."]
    assert len(provider.requests) == 1


# ------------------------------------------------------------------------------ cancelling


def test_cancel_before_run_sends_nothing() -> None:
    provider = InProcessProvider([reply("Hello.")])
    turn = Turn(policy_with(), provider, model="replay", clock=VirtualClock())
    turn.cancel()
    result = run(turn)
    assert result.outcome == "cancelled" and events(result) == ["cancelled"]
    assert provider.requests == [] and result.requests == [] and result.usage.model_calls == 0
    assert result.messages == [*USER, {"role": "assistant", "content": "Cancelled."}]


class HangingOnHalt:
    """Consumers whose on_delta hangs when the halt message is delivered."""

    def __init__(self) -> None:
        self.delivering = asyncio.Event()
        self.seen: list[tuple[str, Any]] = []

    def consumers(self) -> Consumers:
        async def on_delta(text: str) -> None:
            self.seen.append(("delta", text))
            if text == "Cancelled." or text.startswith("I stopped"):
                self.delivering.set()
                await asyncio.Event().wait()

        return Consumers(
            on_delta=on_delta,
            on_end=lambda: self.seen.append(("end", None)),
            on_interim=lambda text, streamed: self.seen.append(("interim", text)),
        )


def _halting_turn(h: HangingOnHalt) -> Turn:
    """A turn that halts at once: the provider's only response is an auth error."""
    provider = InProcessProvider([ErrorResponse(401, {"error": {"message": "bad key", "type": "invalid_request_error"}}, {})])
    policy = load_policy_text(DEFAULT_POLICY.read_text().replace(
        "message: \"The model provider rejected the credentials (HTTP {status}). Check your API key.\"",
        "message: \"I stopped: the credentials were rejected (HTTP {status}).\""))
    return Turn(policy, provider, model="replay", consumers=h.consumers(), clock=VirtualClock())


def test_a_cancel_during_halt_delivery_keeps_the_result() -> None:
    """turn.cancel() while a consumer hangs on the halt message: the hung delivery is interrupted,
    the rest is delivered once, and run() returns the halt it was delivering."""
    h = HangingOnHalt()
    turn = _halting_turn(h)

    async def main() -> Any:
        task = asyncio.create_task(turn.run(USER))
        await h.delivering.wait()
        turn.cancel()
        done, _ = await asyncio.wait([task], timeout=30)  # a safety net: the cancel must end the hang
        assert task in done, "turn.cancel() did not interrupt the hung delivery"
        return task.result()

    result = asyncio.run(main())
    assert result.outcome == "auth_failed" and turn.result is result
    assert h.seen == [("delta", result.message), ("end", None), ("interim", result.message)]
    assert result.messages[-1] == {"role": "assistant", "content": result.message}


def test_an_outside_cancel_during_halt_delivery_keeps_the_result_and_propagates() -> None:
    h = HangingOnHalt()
    turn = _halting_turn(h)

    async def main() -> None:
        task = asyncio.create_task(turn.run(USER))
        await h.delivering.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert turn.result is not None and turn.result.outcome == "auth_failed"
    assert history_problems(turn.result.messages) == []


def test_a_consumer_that_cancels_mid_stream_halts_cancelled_once() -> None:
    """Turn.cancel() from the turn's own task (a consumer reacting to a delta) ends the stream in
    the cancelled halt; the message is delivered once, and the history keeps what the consumer
    saw: the text streamed before the cancel, then the message."""
    seen: list[str] = []
    holder: dict[str, Turn] = {}

    def on_delta(text: str) -> None:
        seen.append(text)
        if len(seen) == 1:
            holder["turn"].cancel()

    provider = InProcessProvider([reply("One two three four five six seven eight nine ten.", stall_after=3, stall_seconds=5)])
    holder["turn"] = Turn(policy_with(), provider, model="replay", consumers=Consumers(on_delta=on_delta), clock=VirtualClock())
    result = run(holder["turn"])
    assert result.outcome == "cancelled" and events(result) == ["opened", "cancelled"]
    assert seen.count("Cancelled.") == 1 and seen[-1] == "Cancelled." and len(seen) == 2
    assert result.messages == [*USER, {"role": "assistant", "content": seen[0]}, {"role": "assistant", "content": "Cancelled."}]
    assert history_problems(result.messages) == []


def test_usage_counts_the_requests_sent_not_the_budget_spent() -> None:
    """A cancel during a backoff: the policy spent two model calls of its backstop (the retry
    entered call_model), but only one request went out, and the usage says one."""
    clock = BlockingClock()
    provider = InProcessProvider([ErrorResponse(429, RATE_LIMITED, {}), reply("never asked")])
    turn = Turn(policy_with(), provider, model="replay", clock=clock)

    async def main() -> Any:
        task = asyncio.create_task(turn.run(USER))
        await clock.sleeping.wait()
        turn.cancel()
        return await asyncio.wait_for(task, 30)

    result = asyncio.run(main())
    assert result.outcome == "cancelled" and len(provider.requests) == 1
    assert result.trace[-1].counters["model_calls"] == 2, "the backstop was charged for the cancelled retry"
    assert result.usage.model_calls == 1 and result.usage.tool_batches == 0


# ------------------------------------------------------------------------------ tool call ids


def test_replayed_tool_call_ids_are_unique_in_the_history_and_the_requests() -> None:
    """Recorded replies reuse call_0_<name> every round; a live provider rejects a history with a
    repeated id, so the turn gives the later calls fresh ids, the same in the call and its answer."""
    same = reply(tool_calls=[("git_status", {})])
    provider = InProcessProvider([same, same, reply("Clean twice.")])
    reg = ToolRegistry()
    reg.register(lambda: "clean", name="git_status", parameters={"type": "object"})
    result = run(Turn(policy_with(), provider, model="replay", tools=reg, clock=VirtualClock()))
    assert result.outcome == "completed"
    ids = [tc["id"] for m in provider.requests[-1].messages for tc in m.get("tool_calls") or []]
    assert ids == ["call_0_git_status", "call_0_git_status_2"]
    assert list(tool_answers(result)) == ids and history_problems(result.messages) == []


def test_calls_without_ids_get_fresh_ones_against_the_history() -> None:
    first = AssembledReply(tool_calls=[AssembledToolCall(0, None, "f", "{}"), AssembledToolCall(1, "call_0", "g", "{}")])
    assert [c.id for c in tool_calls_of(first)] == ["call_0", "call_0_2"]
    history = Trajectory([{"role": "assistant", "content": None, "tool_calls": [{"id": "call_0", "type": "function",
                          "function": {"name": "f", "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "call_0", "content": "x"}])
    again = AssembledReply(tool_calls=[AssembledToolCall(0, None, "f", "{}")])
    assert [c.id for c in history.calls_of(again)] == ["call_0_2"]


def test_a_repeated_tool_call_id_is_a_history_problem() -> None:
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    answer = {"role": "tool", "tool_call_id": "c", "content": "x"}
    assert history_problems([call, answer, call, answer]) == ["message 2: tool call id 'c' is used by an earlier call"]


def test_the_deadline_cuts_a_wait_for_approval() -> None:
    """An approval hook that never answers (nobody at the keyboard) is a wait like any other: the
    deadline ends it, and the call is answered "not run"."""
    async def never_answers(call: Any) -> bool:
        await asyncio.Event().wait()
        return True

    reg = ToolRegistry()
    reg.register(lambda: "deployed", name="deploy", parameters={"type": "object"}, needs_approval=True)
    provider = InProcessProvider([reply(tool_calls=[("deploy", {})]), reply("never asked")])
    turn = Turn(policy_with(turn_deadline=SHORT), provider, model="replay", tools=reg, approve=never_answers, clock=VirtualClock())
    result = run(turn)
    assert result.outcome == "cancelled" and events(result) == ["opened", "tool_calls", "cancelled"]
    assert list(tool_answers(result).values()) == ["Not run: the turn's deadline passed before this call finished."]
    assert history_problems(result.messages) == []


def test_the_deadline_cuts_a_consumer_that_holds_the_stream() -> None:
    """A streaming client that stops reading (its on_delta never returns) holds the turn: the
    deadline ends that wait too, and the halt message still goes out."""
    seen: list[str] = []

    async def stuck_client(text: str) -> None:
        seen.append(text)
        if len(seen) == 1:
            await asyncio.Event().wait()

    provider = InProcessProvider([reply("A long answer, streamed in many small pieces.")])
    turn = Turn(policy_with(turn_deadline=SHORT), provider, model="replay", consumers=Consumers(on_delta=stuck_client), clock=VirtualClock())
    result = run(turn)
    assert result.outcome == "cancelled" and events(result) == ["opened", "cancelled"]
    assert seen[-1] == "Cancelled." and len(seen) == 2


def test_async_tools_stay_on_the_loop_and_sync_ones_leave_it() -> None:
    """Where each tool runs: an async tool (also behind functools.partial) in the turn's event-loop
    thread, where it may use the loop; a sync tool in a thread of its own."""
    import functools

    where: dict[str, bool] = {}

    async def probe(name: str) -> str:
        asyncio.get_running_loop()  # raises off the loop
        where[name] = threading.current_thread() is threading.main_thread()
        return name

    def sync_probe() -> str:
        where["sync"] = threading.current_thread() is threading.main_thread()
        return "sync"

    reg = ToolRegistry()
    reg.register(functools.partial(probe, "partial"), name="partial", parameters={"type": "object"})
    reg.register(sync_probe, name="sync", parameters={"type": "object"})
    provider = InProcessProvider([reply(tool_calls=[("partial", {}), ("sync", {})]), reply("done")])
    result = run(Turn(policy_with(), provider, model="replay", tools=reg, clock=VirtualClock()))
    assert list(tool_answers(result).values()) == ["partial", "sync"]
    assert where == {"partial": True, "sync": False}


def test_a_cancel_after_the_turn_ended_changes_nothing() -> None:
    provider = InProcessProvider([reply("Hello.")])
    turn = Turn(policy_with(), provider, model="replay", clock=VirtualClock())
    result = run(turn)
    turn.cancel()
    assert turn.result is result and result.outcome == "completed" and len(provider.requests) == 1
