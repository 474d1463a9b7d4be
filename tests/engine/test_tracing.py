"""OpenTelemetry spans of a turn, read back with the SDK's in-memory exporter: one `invoke_agent`
span per turn, a `chat {model}` span per model call and an `execute_tool {name}` span per tool
call, all children of the turn, with the GenAI semantic conventions' attributes and loopspec's own
facts under `loopspec.*`. Content is recorded only when asked; a broken observer never breaks a
turn."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy
from loopspec.engine.observers import TurnObserver
from loopspec.engine.tracing import OpenTelemetryTracing, provider_name
from loopspec.replay.interactions import ErrorResponse, StreamResponse

from _paths import DEFAULT_POLICY, FIXTURES

POLICY = load_policy(str(DEFAULT_POLICY))
STREAMS = FIXTURES / "streams"
USER = [{"role": "user", "content": "What is the capital of the UK?"}]


def recorded(name: str, **faults: Any) -> StreamResponse:
    return StreamResponse(sse=(STREAMS / name).read_text(), **faults)


def capital_tools() -> ToolRegistry:
    reg = ToolRegistry()
    reg.register(lambda country: {"UK": "London"}.get(country, "unknown"), name="get_capital",
                 parameters={"type": "object", "properties": {"country": {"type": "string"}}, "required": ["country"]})
    return reg


def traced(interactions: list[Any], capture_content: bool = False, model: str = "openai/gpt-4o-mini", **kw: Any):  # type: ignore[no-untyped-def]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = OpenTelemetryTracing(provider, capture_content=capture_content)
    turn = Turn(POLICY, InProcessProvider(interactions), model=model, tools=capital_tools(), clock=VirtualClock(),
                api_base="http://127.0.0.1:8931/v1", observers=[tracing], **kw)
    result = asyncio.run(turn.run(USER))
    return result, exporter.get_finished_spans()


def test_a_tool_turn_is_one_agent_span_with_two_chats_and_one_tool_as_children() -> None:
    result, spans = traced([recorded("openai_stream_tool_call_single.sse"), recorded("openai_stream_text.sse")])
    assert result.outcome == "completed" and result.observer_errors == []
    names = [s.name for s in spans]
    assert sorted(names) == sorted(["invoke_agent default", "chat openai/gpt-4o-mini", "chat openai/gpt-4o-mini", "execute_tool get_capital"])
    agent = next(s for s in spans if s.name.startswith("invoke_agent"))
    assert agent.parent is None and agent.kind == SpanKind.INTERNAL
    for s in spans:
        if s is not agent:
            assert s.parent is not None and s.parent.span_id == agent.context.span_id, s.name
            assert s.context.trace_id == agent.context.trace_id
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.provider.name"] == "openai"
    assert agent.attributes["gen_ai.agent.name"] == "default"
    assert agent.attributes["loopspec.outcome"] == "completed" and agent.attributes["loopspec.replayed"] is True
    assert agent.attributes["loopspec.model_calls"] == 2 and agent.attributes["loopspec.tool_batches"] == 1
    assert agent.status.status_code != StatusCode.ERROR and "error.type" not in agent.attributes
    # the spans happen in order: first chat, tool, second chat
    chats = sorted((s for s in spans if s.name.startswith("chat")), key=lambda s: s.start_time)
    tool = next(s for s in spans if s.name.startswith("execute_tool"))
    assert chats[0].end_time <= tool.start_time <= tool.end_time <= chats[1].start_time
    assert [c.attributes["loopspec.event"] for c in chats] == ["tool_calls", "text"]
    assert chats[0].kind == SpanKind.CLIENT and chats[0].attributes["gen_ai.operation.name"] == "chat"
    assert chats[0].attributes["server.address"] == "127.0.0.1" and chats[0].attributes["server.port"] == 8931
    assert chats[1].attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert tool.attributes["gen_ai.tool.name"] == "get_capital" and tool.attributes["gen_ai.tool.type"] == "function"
    assert tool.attributes["gen_ai.tool.call.id"] == next(m for m in result.messages if m["role"] == "tool")["tool_call_id"]
    assert tool.attributes["loopspec.tool.ran"] is True and "error.type" not in tool.attributes


def test_every_step_is_an_event_on_the_turn_span_with_its_counters() -> None:
    result, spans = traced([recorded("openai_stream_text.sse")])
    agent = next(s for s in spans if s.name.startswith("invoke_agent"))
    steps = [e for e in agent.events if e.name == "loopspec.step"]
    assert [(e.attributes["loopspec.state"], e.attributes["loopspec.event"], e.attributes["loopspec.target"]) for e in steps] == [
        (t.state, t.event, t.target) for t in result.trace
    ]
    assert json.loads(steps[-1].attributes["loopspec.counters"]) == result.trace[-1].counters


def test_a_rate_limited_turn_marks_each_chat_and_the_turn_as_errors() -> None:
    body = json.loads((STREAMS / "openai_error_429_rate_limit_requests.json").read_text())
    result, spans = traced([ErrorResponse(429, body)] * 3)
    assert result.outcome == "rate_limited"
    chats = [s for s in spans if s.name.startswith("chat")]
    assert len(chats) == 3 == result.usage.model_calls
    for c in chats:
        assert c.attributes["error.type"] == "rate_limit" and c.attributes["http.response.status_code"] == 429
        assert c.status.status_code == StatusCode.ERROR
    agent = next(s for s in spans if s.name.startswith("invoke_agent"))
    assert agent.attributes["error.type"] == "rate_limited" and agent.status.status_code == StatusCode.ERROR


def test_a_stalled_stream_ends_its_chat_span_as_stalled() -> None:
    result, spans = traced([recorded("openai_stream_text.sse", stall_after=2, stall_seconds=120), recorded("openai_stream_text.sse")])
    chats = sorted((s for s in spans if s.name.startswith("chat")), key=lambda s: s.start_time)
    assert [c.attributes["loopspec.event"] for c in chats] == ["stalled", "text"]
    assert chats[0].attributes["error.type"] == "stalled" and "error.type" not in chats[1].attributes


def test_content_is_recorded_only_when_asked() -> None:
    _, plain = traced([recorded("openai_stream_tool_call_single.sse"), recorded("openai_stream_text.sse")])
    content_keys = {"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result"}
    assert not any(content_keys & set(s.attributes or {}) for s in plain)
    _, spans = traced([recorded("openai_stream_tool_call_single.sse"), recorded("openai_stream_text.sse")], capture_content=True)
    chat = min((s for s in spans if s.name.startswith("chat")), key=lambda s: s.start_time)
    assert json.loads(chat.attributes["gen_ai.input.messages"]) == USER
    tool = next(s for s in spans if s.name.startswith("execute_tool"))
    assert json.loads(tool.attributes["gen_ai.tool.call.arguments"]) == {"country": "UK"}
    assert tool.attributes["gen_ai.tool.call.result"] == "London"


def test_an_observer_that_raises_is_recorded_and_the_turn_goes_on() -> None:
    class Broken(TurnObserver):
        def step_taken(self, step: Any, record: Any) -> None:
            raise ValueError("disk full")

    turn = Turn(POLICY, InProcessProvider([recorded("openai_stream_text.sse")]), model="replay", clock=VirtualClock(), observers=[Broken()])
    result = asyncio.run(turn.run(USER))
    assert result.outcome == "completed"
    assert result.observer_errors and all(e == "Broken.step_taken: ValueError: disk full" for e in result.observer_errors)
    assert len(result.observer_errors) == len(result.trace)


def test_one_tracer_per_turn_a_second_turn_is_refused_not_mixed() -> None:
    tracing = OpenTelemetryTracing(TracerProvider())
    first = Turn(POLICY, InProcessProvider([recorded("openai_stream_text.sse")]), model="replay", clock=VirtualClock(), observers=[tracing])
    assert asyncio.run(first.run(USER)).observer_errors == []
    second = Turn(POLICY, InProcessProvider([recorded("openai_stream_text.sse")]), model="replay", clock=VirtualClock(), observers=[tracing])
    errors = asyncio.run(second.run(USER)).observer_errors
    assert errors[0].startswith("OpenTelemetryTracing.turn_started: RuntimeError: one OpenTelemetryTracing per turn")


@pytest.mark.parametrize("model,name", [("anthropic/claude-3", "anthropic"), ("gpt-4o", "openai"), ("gemini/x", "gcp.gemini"), ("ollama/llama3", "ollama")])
def test_litellm_prefixes_become_semantic_convention_provider_names(model: str, name: str) -> None:
    assert provider_name(model) == name


def test_without_opentelemetry_installed_the_observer_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # `import opentelemetry` raises ImportError
    tracing = OpenTelemetryTracing()
    assert not tracing.enabled
    turn = Turn(POLICY, InProcessProvider([recorded("openai_stream_tool_call_single.sse"), recorded("openai_stream_text.sse")]),
                model="replay", tools=capital_tools(), clock=VirtualClock(), observers=[tracing])
    result = asyncio.run(turn.run(USER))
    assert result.outcome == "completed" and result.observer_errors == []


def test_recorded_content_is_redacted_like_every_other_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_API_KEY", "acme-secret-0123456789")

    def leaky(country: str) -> str:
        return "failed: GET https://x.test/v1?token=abcdef0123456789 with acme-secret-0123456789"

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reg = ToolRegistry()
    reg.register(leaky, name="get_capital", parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    user = [{"role": "user", "content": "my key is sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"}]
    turn = Turn(POLICY, InProcessProvider([recorded("openai_stream_tool_call_single.sse"), recorded("openai_stream_text.sse")]),
                model="openai/x", tools=reg, clock=VirtualClock(), observers=[OpenTelemetryTracing(provider, capture_content=True)])
    asyncio.run(turn.run(user))
    text = json.dumps([dict(s.attributes or {}) for s in exporter.get_finished_spans()])
    assert "gen_ai.tool.call.result" in text and "gen_ai.input.messages" in text
    for secret in ("acme-secret-0123456789", "abcdef0123456789", "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"):
        assert secret not in text, secret
