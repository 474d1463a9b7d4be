"""Full turns over litellm against a loopback OpenAI-compatible server (127.0.0.1 only).

One scenario per row of docs/design.md's incident table, under machines/default.yaml. Each runs over
HTTP (litellm's real SSE parser, exception mapping and sockets) and in-process, and the two
transports must agree on the outcome, the event path and the counts.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy
from loopspec.engine.history import history_problems
from loopspec.replay.http import run_over_http
from loopspec.replay.interactions import ErrorResponse, Interaction, StreamResponse
from loopspec.replay.synth import reply

from _paths import DEFAULT_POLICY, FIXTURES

POLICY = load_policy(str(DEFAULT_POLICY))
STREAMS = FIXTURES / "streams"
USER = [{"role": "user", "content": "What is the capital of the UK?"}]


def recorded(name: str, **faults: Any) -> StreamResponse:
    return StreamResponse(sse=(STREAMS / name).read_text(), **faults)


def tools(behaviour: str = "ok") -> Callable[[], ToolRegistry]:
    def make() -> ToolRegistry:
        reg = ToolRegistry()
        polls = iter(range(1000))

        def get_capital(country: str) -> str:
            if behaviour == "fail":
                raise TimeoutError("upstream timed out")
            if behaviour == "poll":
                return f"step {next(polls)}"
            return "London"

        reg.register(get_capital, parameters={"type": "object", "properties": {"country": {"type": "string"}}})
        return reg

    return make


@dataclass
class Scenario:
    incident: str
    script: list[Interaction]
    outcome: str
    make_tools: Callable[[], ToolRegistry] = field(default_factory=lambda: tools())
    messages: list[dict[str, Any]] = field(default_factory=lambda: list(USER))
    check: Callable[[Any], None] = lambda result: None


def _no_truncated_call_ran(result: Any) -> None:
    assert result.trace[1].event == "length" and result.trace[1].attrs["dropped_tools"] == ["get_capital"]
    assert sum(1 for m in result.messages if m["role"] == "tool") == 1


def _guardrail_message(result: Any) -> None:
    assert "get_capital" in result.message and "repeated_exact_failure" in result.message
    assert result.messages[-1]["content"] == result.message


def _ceiling_not_backstop(result: Any) -> None:
    assert result.trace[-1].counters["empty_total"] == 6
    assert result.usage.model_calls < POLICY.backstops["model_calls"].max


def _compaction_on_copy(result: Any) -> None:
    assert result.trace[-1].counters["compactions"] == 2
    assert len(result.messages) >= 21


def _thinking_only_stream() -> StreamResponse:
    return reply(reasoning="Let me think about which tool to call next...")


LONG_HISTORY = USER + [
    {"role": "assistant", "content": f"note {i}"} if i % 2 else {"role": "user", "content": f"more {i}"} for i in range(20)
]

SCENARIOS = [
    Scenario(
        "hermes-31998 stall mid tool call is continued",
        [
            recorded("openai_stream_tool_call_single.sse", stall_after=3, stall_seconds=300),
            recorded("openai_stream_tool_call_single.sse"),
            recorded("openai_stream_text.sse"),
        ],
        "completed",
    ),
    Scenario(
        "hermes-30770 guardrail halt delivers its message",
        [recorded("openai_stream_tool_call_single.sse")] * 2 + [recorded("openai_stream_text.sse")],
        "guardrail",
        make_tools=tools("fail"),
        check=_guardrail_message,
    ),
    Scenario(
        "netclaw-1346 thinking-only interleaved with tools ends at the ceiling",
        [_thinking_only_stream(), recorded("openai_stream_tool_call_single.sse")] * 8,
        "tools_disabled",
        make_tools=tools("poll"),
        check=_ceiling_not_backstop,
    ),
    Scenario(
        "ml-intern length with tool calls drops them",
        [
            reply(tool_calls=[("get_capital", '{"country": "U')], finish="length"),
            recorded("openai_stream_tool_call_single.sse"),
            recorded("openai_stream_text.sse"),
        ],
        "completed",
        check=_no_truncated_call_ran,
    ),
    Scenario(
        "ml-intern malformed arguments streak halts",
        [reply(tool_calls=[("get_capital", '{"country": ')])] * 3,
        "malformed",
    ),
    Scenario(
        "ml-intern overflow, compaction, overflow ends",
        [ErrorResponse(400, json.loads((STREAMS / "openai_error_400_context_length_exceeded.json").read_text()))] * 4,
        "context_exceeded",
        messages=LONG_HISTORY,
        check=_compaction_on_copy,
    ),
    Scenario(
        "rate limit retried on schedule, then halted",
        [ErrorResponse(429, json.loads((STREAMS / "openai_error_429_rate_limit_requests.json").read_text()))] * 3,
        "rate_limited",
    ),
    Scenario(
        "dropped connection is retried",
        [recorded("openai_stream_text.sse", disconnect_after=3), recorded("openai_stream_text.sse")],
        "completed",
    ),
]


def summary(result: Any) -> tuple[Any, ...]:
    return (result.outcome, [s.event for s in result.trace], result.usage.model_calls, result.usage.tool_batches)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.incident)
def test_incident_over_http_agrees_with_in_process(scenario: Scenario, loop: asyncio.AbstractEventLoop) -> None:
    http_result, server = loop.run_until_complete(
        run_over_http(POLICY, scenario.script, scenario.messages, tools=scenario.make_tools())
    )
    assert http_result.outcome == scenario.outcome, [(s.state, s.event) for s in http_result.trace]
    assert history_problems(http_result.messages) == []
    assert len(server.requests) == http_result.usage.model_calls
    scenario.check(http_result)

    provider = InProcessProvider(scenario.script)
    inproc_result = loop.run_until_complete(
        Turn(POLICY, provider, model="replay", tools=scenario.make_tools(), clock=VirtualClock()).run(scenario.messages)
    )
    assert summary(inproc_result) == summary(http_result)


def test_escalation_call_carries_no_tools_on_the_wire(loop: asyncio.AbstractEventLoop) -> None:
    """After the empty-reply escalation, the request litellm sends has no tools at all."""
    script = [_thinking_only_stream()] * 4
    result, server = loop.run_until_complete(run_over_http(POLICY, script, USER, tools=tools()()))
    assert result.outcome == "empty"
    bodies = [r.body for r in server.requests]
    assert [bool(b.get("tools")) for b in bodies] == [True, True, True, False]
    assert "Tools are now disabled" in json.dumps(bodies[-1]["messages"])


def test_non_streaming_mode_runs_the_same_turn(loop: asyncio.AbstractEventLoop) -> None:
    """stream=False: the recorded non-streaming tool call, then the answer, same decisions."""
    from loopspec.providers.litellm_provider import LiteLLMProvider
    from loopspec.replay.interactions import CompletionResponse
    from loopspec.replay.server import LoopbackServer

    body = json.loads((STREAMS / "openai_nonstream_tool_call.json").read_text())
    name = body["choices"][0]["message"]["tool_calls"][0]["function"]["name"]
    reg = ToolRegistry()
    reg.register(lambda **kw: "sunny", name=name, parameters={"type": "object", "properties": {}})

    async def go():  # type: ignore[no-untyped-def]
        async with LoopbackServer([CompletionResponse(body), recorded("openai_stream_text.sse")]) as server:
            turn = Turn(POLICY, LiteLLMProvider(stream=False), model="openai/x", api_base=server.api_base,
                        api_key="sk-test", tools=reg)
            return await turn.run(USER), server

    result, server = loop.run_until_complete(go())
    assert [s.event for s in result.trace] == ["opened", "tool_calls", "ok", "opened", "text"]
    assert all(r.body.get("stream") in (False, None) for r in server.requests)
    assert result.message == "The capital of Mexico is Mexico City."


def test_cli_run_streams_the_answer_and_prints_the_trace(capsys: pytest.CaptureFixture[str]) -> None:
    """`loopspec run` against an OpenAI-compatible server: the demo tools are offered, the answer
    is streamed to stdout and the trace summary goes to stderr."""
    from loopspec.cli import main as cli_main
    from loopspec.replay.server import LoopbackServer

    with LoopbackServer([recorded("openai_stream_text.sse")]) as server:
        code = cli_main(["run", "--machine", str(DEFAULT_POLICY), "--model", "openai/x", "--api-base", server.api_base,
                         "What is the capital of Mexico?"])
        tools = [t["function"]["name"] for t in server.requests[0].body["tools"]]
    out = capsys.readouterr()
    assert code == 0 and "The capital of Mexico is Mexico City." in out.out
    assert "completed (halt_completed): 1 model calls" in out.err
    assert sorted(tools) == ["current_time", "word_count"]


def test_non_streaming_mode_retries_a_planned_disconnect(loop: asyncio.AbstractEventLoop) -> None:
    """stream=False and a recording that drops the connection: the whole answer is lost before it
    began, so the call fails (transient, not a broken stream) and the retry completes the turn."""
    from loopspec.providers.litellm_provider import LiteLLMProvider
    from loopspec.replay.server import LoopbackServer

    async def go():  # type: ignore[no-untyped-def]
        async with LoopbackServer([recorded("openai_stream_text.sse", disconnect_after=3), recorded("openai_stream_text.sse")]) as server:
            turn = Turn(POLICY, LiteLLMProvider(stream=False), model="openai/x", api_base=server.api_base,
                        api_key="sk-test", clock=VirtualClock())
            return await turn.run(USER), server, turn.clock

    result, server, clock = loop.run_until_complete(go())
    assert [s.event for s in result.trace] == ["transient", "opened", "text"]
    assert clock.slept == [5.0] and len(server.requests) == 2
    assert result.outcome == "completed" and result.message == "The capital of Mexico is Mexico City."


def test_cli_run_writes_the_journal_and_names_the_turn(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`loopspec run --journal FILE`: the live turn's journal, begin to halt, under the id it prints."""
    from loopspec.cli import main as cli_main
    from loopspec.journal import SqliteJournal
    from loopspec.replay.server import LoopbackServer

    path = tmp_path / "turns.db"
    with LoopbackServer([recorded("openai_stream_text.sse")]) as server:
        code = cli_main(["run", "--machine", str(DEFAULT_POLICY), "--model", "openai/x", "--api-base", server.api_base,
                         "--journal", str(path), "--json", "What is the capital of Mexico?"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["journal"]["file"] == str(path)
    with SqliteJournal(path) as journal:
        assert journal.turn_ids() == [data["journal"]["turn_id"]]
        kinds = [e.kind for e in journal.entries(data["journal"]["turn_id"])]
    assert kinds[0] == "begin" and kinds[-1] == "halt" and kinds.count("request") == 1
