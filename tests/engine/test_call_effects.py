"""What a ``call`` effect sends and waits for: the backoff it sleeps (schedule and Retry-After), a
cancel during that sleep, the request-open timeout, the fallback model and boosted token limit,
and the history inside every request after compaction.

In process with virtual time, and over loopback HTTP through litellm where the wire matters.
Requests are captured where they arrive (``InProcessProvider.requests``, the server's record), not
read back from the final history.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import threading
from typing import Any

import pytest

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy, load_policy_text
from loopspec.engine.history import history_problems
from loopspec.providers.base import ModelRequest
from loopspec.providers.litellm_provider import LiteLLMProvider
from loopspec.replay.http import run_over_http
from loopspec.replay.interactions import ErrorResponse, StreamResponse
from loopspec.replay.server import LoopbackServer
from loopspec.replay.synth import reply

from _paths import DEFAULT_POLICY, FIXTURES
from _policy_text import handles
from _doubles import BlockingClock, NeverOpens

POLICY = load_policy(str(DEFAULT_POLICY))
STREAMS = FIXTURES / "streams"
USER = [{"role": "user", "content": "What is the capital of the UK?"}]
HTTP_SCALE = 0.05
"""Replay over HTTP compresses time by this: the stall timer is 3 s of wall time, which a loaded
machine does not miss between two chunks (at the default 0.01 it is 0.6 s)."""
RATE_LIMIT = json.loads((STREAMS / "openai_error_429_rate_limit_requests.json").read_text())  # "try again in 20s"


def recorded(name: str, **faults: Any) -> StreamResponse:
    return StreamResponse(sse=(STREAMS / name).read_text(), **faults)


def with_settings(**settings: Any) -> Any:
    """The default policy with settings replaced or added."""
    text = DEFAULT_POLICY.read_text()
    for key, value in settings.items():
        line = f"  {key}: {value}\n"
        if f"\n  {key}:" in text:
            start = text.index(f"\n  {key}:") + 1
            text = text[:start] + line + text[text.index("\n", start) + 1 :]
        else:
            text = text.replace("settings:\n", "settings:\n" + line, 1)
    return load_policy_text(text)


# ------------------------------------------------------------------------------ backoff


@pytest.mark.parametrize(
    ("headers", "slept"),
    [
        ({}, [30.0, 60.0]),  # the body's "try again in 20s" is below the schedule: the schedule
        ({"retry-after": "45"}, [45.0, 60.0]),  # above the first entry only
        ({"retry-after": "90"}, [90.0, 90.0]),  # above both, within max_wait
        ({"retry-after-ms": "75000"}, [75.0, 75.0]),
        ({"retry-after": "0"}, [30.0, 60.0]),
    ],
)
def test_rate_limit_backoff_is_the_larger_of_schedule_and_retry_after(headers: dict[str, str], slept: list[float]) -> None:
    """Two retries of [30, 60] s; each sleep is exactly max(schedule entry, Retry-After), with
    backoff.max_wait raised to 120 s so these Retry-After values are honoured (default.yaml's 60 s
    cap and its wait_too_long halt are tests/engine/test_retry_after.py)."""
    clock = VirtualClock()
    provider = InProcessProvider([ErrorResponse(429, RATE_LIMIT, headers)] * 3)
    policy = load_policy_text(DEFAULT_POLICY.read_text().replace("  max_wait: 60 ", "  max_wait: 120 ", 1))
    assert policy.settings.max_wait == 120.0
    result = asyncio.run(Turn(policy, provider, model="replay", clock=clock).run(USER))
    assert result.outcome == "rate_limited"
    assert clock.slept == slept
    assert len(provider.requests) == 3


def test_retry_after_reaches_the_event_over_http(loop: asyncio.AbstractEventLoop) -> None:
    """The header travels through litellm's exception to the rate_limit event the backoff reads."""
    script = [ErrorResponse(429, RATE_LIMIT, {"retry-after": "31"}), recorded("openai_stream_text.sse")]
    result, server = loop.run_until_complete(run_over_http(POLICY, script, USER, time_scale=HTTP_SCALE))
    assert result.outcome == "completed" and len(server.requests) == 2
    assert result.trace[0].event == "rate_limit" and result.trace[0].attrs["retry_after"] == 31.0


def _tool_then_rate_limit() -> tuple[list[Any], ToolRegistry]:
    reg = ToolRegistry()
    reg.register(lambda country: "London", name="get_capital",
                 parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    return [recorded("openai_stream_tool_call_single.sse"), ErrorResponse(429, RATE_LIMIT)], reg


def test_cancel_during_a_backoff_ends_the_turn_cleanly() -> None:
    """turn.cancel() while the turn sleeps before a retry: no further request, the cancelled halt,
    the tool round before it kept and valid, the result kept on the turn."""
    script, reg = _tool_then_rate_limit()
    provider = InProcessProvider(script)
    clock = BlockingClock()
    turn = Turn(POLICY, provider, model="replay", tools=reg, clock=clock)

    async def main() -> Any:
        task = asyncio.create_task(turn.run(USER))
        await clock.sleeping.wait()
        turn.cancel()
        return await asyncio.wait_for(task, 5)

    result = asyncio.run(main())
    assert result.outcome == "cancelled" and turn.result is result
    assert [s.event for s in result.trace] == ["opened", "tool_calls", "ok", "rate_limit", "cancelled"]
    assert clock.slept == [30.0] and len(provider.requests) == 2
    assert [m["role"] for m in result.messages] == ["user", "assistant", "tool", "assistant"]
    assert result.messages[2]["content"] == "London" and result.messages[-1]["content"] == "Cancelled."
    assert history_problems(result.messages) == []


def test_external_task_cancel_during_a_backoff_halts_then_propagates() -> None:
    script, reg = _tool_then_rate_limit()
    provider = InProcessProvider(script)
    clock = BlockingClock()
    turn = Turn(POLICY, provider, model="replay", tools=reg, clock=clock)

    async def main() -> None:
        task = asyncio.create_task(turn.run(USER))
        await clock.sleeping.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert turn.result is not None and turn.result.outcome == "cancelled"
    assert [s.event for s in turn.result.trace][-1] == "cancelled" and len(provider.requests) == 2
    assert history_problems(turn.result.messages) == []


# ------------------------------------------------------------------------------ request-open timeout

OPEN_TIMEOUT = 0.2  # real seconds: nothing else bounds a request that never opens



def _assert_timed_out(result: Any, n_requests: int) -> None:
    assert [s.event for s in result.trace] == ["timeout"] * 4
    for step in result.trace:
        assert step.attrs["status"] == 408 and step.attrs["message"] == "no response within the request timeout"
    assert [s.target for s in result.trace] == ["call_model"] * 3 + ["halt_provider_error"]
    assert result.outcome == "provider_error" and n_requests == 4


def test_a_request_that_never_opens_is_a_timeout_in_process() -> None:
    policy = with_settings(request_timeout=OPEN_TIMEOUT)
    provider, clock = NeverOpens(), VirtualClock()
    result = asyncio.run(Turn(policy, provider, model="replay", clock=clock).run(USER))
    _assert_timed_out(result, len(provider.requests))
    assert clock.slept == [5.0, 15.0, 30.0], "timeout retries use the transient schedule"
    assert all(r.timeout == OPEN_TIMEOUT for r in provider.requests)


class SilentServer:
    """Accepts connections and reads requests, never answers: a provider that hangs before headers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.accepted = 0
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)

    def __enter__(self) -> "SilentServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


class PatientLiteLLM(LiteLLMProvider):
    """litellm with its own timeout far above the policy's: only the turn's request timer can end
    the wait, which is the path under test."""

    async def open(self, request: ModelRequest) -> Any:
        return await super().open(dataclasses.replace(request, timeout=60.0))


def test_a_server_that_never_sends_headers_is_a_timeout_over_http(loop: asyncio.AbstractEventLoop) -> None:
    policy = with_settings(request_timeout=OPEN_TIMEOUT)
    clock = VirtualClock()
    with SilentServer() as server:
        turn = Turn(policy, PatientLiteLLM(), model="openai/x", api_base=server.api_base, api_key="sk-test", clock=clock)
        result = loop.run_until_complete(turn.run(USER))
        accepted = server.accepted
    _assert_timed_out(result, len(result.requests))
    assert accepted >= 1, "litellm reached the server: the wait was for headers"
    assert clock.slept == [5.0, 15.0, 30.0]


# ------------------------------------------------------------------------------ fallback model, boosted max_tokens

ESCALATING = """\
loopspec: 1
initial: ask
settings:
  boosted_max_tokens: 16384
FALLBACK
backstops:
  model_calls: {max: 6, exhausted: out}
  tool_batches: {max: 3, exhausted: out}
states:
  ask:
    kind: call
    on: CALL_EVENTS
  read:
    kind: stream
    on: STREAM_EVENTS
  bigger:
    kind: escalate
    apply: [switch_model, boost_max_tokens]
    on: {done: ask, failed: no_fallback}
  done: {kind: halt, outcome: completed, message: "{response}"}
  no_fallback: {kind: halt, outcome: provider_error, message: "cannot escalate: {message}"}
  out: {kind: halt, outcome: backstop, message: "stopped"}
""".replace("CALL_EVENTS", handles("call", "out", opened="read")).replace(
    "STREAM_EVENTS", handles("stream", "out", text='done', length='bigger')
)


def escalating(fallback: str | None) -> Any:
    return load_policy_text(ESCALATING.replace("FALLBACK", f"  fallback_model: {fallback}" if fallback else ""))


def test_fallback_model_and_boosted_max_tokens_are_sent_after_the_escalation() -> None:
    provider = InProcessProvider([recorded("openai_stream_finish_length_text.sse"), recorded("openai_stream_text.sse")])
    turn = Turn(escalating("openai/bigger"), provider, model="openai/small", max_tokens=512, clock=VirtualClock())
    result = asyncio.run(turn.run(USER))
    assert result.outcome == "completed"
    assert [(r.model, r.max_tokens) for r in provider.requests] == [("openai/small", 512), ("openai/bigger", 16384)]
    assert [(r.model, r.max_tokens) for r in result.requests] == [("openai/small", 512), ("openai/bigger", 16384)]


def test_switching_model_without_a_fallback_fails_the_escalation() -> None:
    provider = InProcessProvider([recorded("openai_stream_finish_length_text.sse"), recorded("openai_stream_text.sse")])
    result = asyncio.run(Turn(escalating(None), provider, model="openai/small", clock=VirtualClock()).run(USER))
    assert result.outcome == "provider_error" and result.message == "cannot escalate: no fallback_model in settings"
    assert len(provider.requests) == 1


def test_fallback_model_and_boosted_max_tokens_go_on_the_wire(loop: asyncio.AbstractEventLoop) -> None:
    async def go() -> tuple[Any, list[dict[str, Any]]]:
        async with LoopbackServer([recorded("openai_stream_finish_length_text.sse"), recorded("openai_stream_text.sse")]) as srv:
            turn = Turn(escalating("openai/bigger"), LiteLLMProvider(), model="openai/small", max_tokens=512,
                        api_base=srv.api_base, api_key="sk-test")
            return await turn.run(USER), [r.body for r in srv.requests]

    result, bodies = loop.run_until_complete(go())
    assert result.outcome == "completed"
    assert [(b["model"], b["max_tokens"]) for b in bodies] == [("small", 512), ("bigger", 16384)]


# ------------------------------------------------------------------------------ compaction, request by request


def batch(i: int) -> list[dict[str, Any]]:
    """One earlier tool round of two calls: an assistant message and two results."""
    ids = [f"call_{i}a", f"call_{i}b"]
    return [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": c, "type": "function", "function": {"name": "get_capital", "arguments": '{"country": "UK"}'}} for c in ids]},
        *({"role": "tool", "tool_call_id": c, "content": "London"} for c in ids),
    ]


def history_of(rounds: int, tail: int) -> list[dict[str, Any]]:
    """The user's question, ``rounds`` tool rounds, then ``tail`` plain messages: by varying the
    tail, every compaction level's cut lands in turn on an assistant call and on each tool result."""
    msgs = list(USER)
    for i in range(rounds):
        msgs += batch(i)
    for j in range(tail):
        msgs.append({"role": "user" if j % 2 == 0 else "assistant", "content": f"note {j}"})
    return msgs


def orphans(messages: list[dict[str, Any]]) -> list[str]:
    """Tool results whose call is not earlier in the same message list, and a list starting on one."""
    out = [f"starts on a tool result: {messages[0]}"] if messages and messages[0].get("role") == "tool" else []
    seen: set[str] = set()
    for m in messages:
        if m.get("role") == "assistant":
            seen |= {tc["id"] for tc in m.get("tool_calls") or []}
        elif m.get("role") == "tool" and m.get("tool_call_id") not in seen:
            out.append(f"orphan result for {m.get('tool_call_id')}")
    return out


def unanswered(messages: list[dict[str, Any]]) -> list[str]:
    answered = [m.get("tool_call_id") for m in messages if m.get("role") == "tool"]
    calls = [tc["id"] for m in messages if m.get("role") == "assistant" for tc in m.get("tool_calls") or []]
    return [c for c in calls if answered.count(c) != 1]


OVERFLOW = ErrorResponse(400, json.loads((STREAMS / "openai_error_400_context_length_exceeded.json").read_text()))


@pytest.mark.parametrize("tail", range(6))
def test_every_compacted_request_is_a_valid_history_in_process(tail: int) -> None:
    messages = history_of(3, tail)
    provider = InProcessProvider([OVERFLOW, OVERFLOW, recorded("openai_stream_text.sse")])
    result = asyncio.run(Turn(POLICY, provider, model="replay", clock=VirtualClock()).run(messages))
    assert result.outcome == "completed" and result.trace[-1].counters["compactions"] == 2
    sent = [r.messages for r in provider.requests]
    assert len(sent) == 3 and len(sent[2]) < len(sent[1]) < len(sent[0]) == len(messages)
    for n, msgs in enumerate(sent, 1):
        assert orphans(msgs) == [] and unanswered(msgs) == [], f"request {n}: {msgs}"
    assert result.messages[: len(messages)] == messages, "compaction worked on a copy"


def test_a_cut_that_lands_on_a_tool_result_moves_past_the_round() -> None:
    """The naive cut for keep_last 6 lands on the second tool result of the last round: the
    request must skip the whole round's results rather than send them without their call."""
    messages = history_of(3, 4)
    assert messages[len(messages) - 6]["role"] == "tool"
    provider = InProcessProvider([OVERFLOW, recorded("openai_stream_text.sse")])
    asyncio.run(Turn(POLICY, provider, model="replay", clock=VirtualClock()).run(messages))
    compacted = provider.requests[1].messages
    assert compacted[0] == USER[0] and "compacted" in compacted[1]["content"]
    assert compacted[2:] == messages[-4:]


@pytest.mark.parametrize("tail", [0, 4])
def test_every_compacted_request_is_a_valid_history_over_http(tail: int, loop: asyncio.AbstractEventLoop) -> None:
    messages = history_of(3, tail)
    script = [OVERFLOW, OVERFLOW, recorded("openai_stream_text.sse")]
    result, server = loop.run_until_complete(run_over_http(POLICY, script, messages, time_scale=HTTP_SCALE))
    assert result.outcome == "completed" and len(server.requests) == 3
    for n, req in enumerate(server.requests, 1):
        msgs = req.body["messages"]
        assert orphans(msgs) == [] and unanswered(msgs) == [], f"request {n}: {msgs}"
    assert len(server.requests[2].body["messages"]) < len(messages)


def test_a_silent_server_is_a_timeout_whichever_timer_fires_first(loop: asyncio.AbstractEventLoop) -> None:
    """The plain provider passes the same request_timeout to litellm: its Timeout and the turn's
    own timer race, and either way the event is ``timeout`` (HTTP 408), never ``transient``."""
    policy = with_settings(request_timeout=OPEN_TIMEOUT)
    with SilentServer() as server:
        turn = Turn(policy, LiteLLMProvider(), model="openai/x", api_base=server.api_base, api_key="sk-test",
                    clock=VirtualClock())
        result = loop.run_until_complete(turn.run(USER))
    assert [s.event for s in result.trace] == ["timeout"] * 4
    assert all(s.attrs["status"] == 408 for s in result.trace)
    assert result.outcome == "provider_error" and len(result.requests) == 4
