"""Every attribute of every span a turn emits, by name, and the observer's own edges.

Planting mutmut's mutants of ``engine/tracing.py`` showed the suite read a handful of attributes
per span, so a renamed attribute (``gen_ai.request.model``, ``loopspec.halt_state``, the token
counts), the tracer's name and version, a span's kind or an error status's text could change
unnoticed, though dashboards built on the GenAI semantic conventions select by exactly those
names. These tests compare whole attribute sets; and they drive the observer in the orders a
turn may call it (a halt with a chat or a tool still open, a halt or a step before any turn)."""

from __future__ import annotations

import asyncio
import json
import time
from importlib.metadata import version
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy
from loopspec.engine.observers import TurnInfo
from loopspec.engine.results import TraceStep, TurnResult, TurnUsage
from loopspec.engine.tools import ToolCall, ToolResult
from loopspec.engine.tracing import OpenTelemetryTracing, provider_name
from loopspec.language.alphabet import Event
from loopspec.providers.base import ModelRequest
from loopspec.replay.interactions import StreamResponse

from _paths import DEFAULT_POLICY, FIXTURES

POLICY = load_policy(str(DEFAULT_POLICY))
STREAMS = FIXTURES / "streams"
USER = [{"role": "user", "content": "What is the capital of the UK?"}]
MODEL = "openai/gpt-4o-mini"


def exporter_and_tracing(**kw: Any) -> tuple[InMemorySpanExporter, OpenTelemetryTracing]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, OpenTelemetryTracing(provider, **kw)


def traced(interactions: list[Any], **kw: Any) -> tuple[TurnResult, list[Any]]:
    exporter, tracing = exporter_and_tracing()
    reg = ToolRegistry()
    reg.register(lambda country: "London", name="get_capital",
                 parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    turn = Turn(POLICY, InProcessProvider(interactions), model=MODEL, tools=reg, clock=VirtualClock(),
                api_base="http://127.0.0.1:8931/v1", observers=[tracing], **kw)
    result = asyncio.run(turn.run(USER))
    assert result.observer_errors == []
    return result, list(exporter.get_finished_spans())


def recorded(name: str) -> StreamResponse:
    return StreamResponse(sse=(STREAMS / name).read_text())


def test_a_tool_turns_spans_carry_exactly_these_attributes() -> None:
    result, spans = traced([recorded("openai_stream_tool_call_single.sse"), recorded("openai_stream_text.sse")])
    agent = next(s for s in spans if s.name == "invoke_agent default")
    assert agent.kind == SpanKind.INTERNAL
    assert dict(agent.attributes) == {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai", "gen_ai.agent.name": "default",
        "gen_ai.request.model": MODEL, "loopspec.policy": "default", "loopspec.replayed": True,
        "gen_ai.usage.input_tokens": result.usage.prompt_tokens, "gen_ai.usage.output_tokens": result.usage.completion_tokens,
        "loopspec.outcome": "completed", "loopspec.halt_state": result.halt_state, "loopspec.model_calls": 2,
        "loopspec.tool_batches": 1,
    }
    assert result.usage.prompt_tokens > 0 and result.halt_state
    chats = sorted((s for s in spans if s.name == f"chat {MODEL}"), key=lambda s: s.start_time)
    for index, (chat, event, finish) in enumerate(zip(chats, ["tool_calls", "text"], ["tool_calls", "stop"]), 1):
        attrs = dict(chat.attributes)
        usage = {k: attrs.pop(k) for k in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.reasoning.output_tokens")}
        assert attrs == {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": MODEL,
            "gen_ai.request.stream": True, "loopspec.call_index": index, "server.address": "127.0.0.1", "server.port": 8931,
            "loopspec.tools_offered": 1, "loopspec.event": event, "gen_ai.response.finish_reasons": (finish,),
        }
        assert usage["gen_ai.usage.input_tokens"] > 0 and usage["gen_ai.usage.reasoning.output_tokens"] == 0
    assert sum(c.attributes["gen_ai.usage.input_tokens"] for c in chats) == result.usage.prompt_tokens
    assert sum(c.attributes["gen_ai.usage.output_tokens"] for c in chats) == result.usage.completion_tokens
    (tool,) = [s for s in spans if s.name == "execute_tool get_capital"]
    call_id = next(m for m in result.messages if m["role"] == "tool")["tool_call_id"]
    assert tool.kind == SpanKind.INTERNAL and dict(tool.attributes) == {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_capital", "gen_ai.tool.call.id": call_id,
        "gen_ai.tool.type": "function", "loopspec.tool.ran": True,
    }
    for s in spans:
        assert s.instrumentation_scope.name == "loopspec" and s.instrumentation_scope.version == version("loopspec")


def test_a_turn_that_fails_says_why_in_its_status_cut_at_200_characters() -> None:
    exporter, tracing = exporter_and_tracing()
    tracing.turn_started(turn_info(), USER)
    result = halted("bad_request")
    result.message = "why " * 100
    tracing.turn_halted(result)
    (agent,) = exporter.get_finished_spans()
    assert agent.attributes["error.type"] == "bad_request"
    assert agent.status.status_code == StatusCode.ERROR and agent.status.description == result.message[:200]


def test_a_steps_counters_are_written_with_sorted_keys() -> None:
    result, spans = traced([recorded("openai_stream_text.sse")])
    assert list(result.trace[-1].counters) != sorted(result.trace[-1].counters), "the policy's own order is not sorted"
    agent = next(s for s in spans if s.name.startswith("invoke_agent"))
    steps = [e for e in agent.events if e.name == "loopspec.step"]
    assert [e.attributes["loopspec.counters"] for e in steps] == [json.dumps(t.counters, sort_keys=True) for t in result.trace]


def test_model_prefixes_are_read_up_to_the_first_slash() -> None:
    assert provider_name("openai/org/model") == "openai"
    assert provider_name("vertex_ai/publishers/google/gemini") == "gcp.vertex_ai"
    assert provider_name("bedrock/anthropic.claude/v2") == "aws.bedrock"
    assert provider_name("gpt-4o") == "openai" and provider_name("someone/else") == "someone"


def test_content_is_off_unless_asked() -> None:
    _, tracing = exporter_and_tracing()
    assert tracing.capture_content is False


def turn_info() -> TurnInfo:
    return TurnInfo("default", MODEL, "http://127.0.0.1:8931/v1", replayed=False)


def halted(outcome: str = "cancelled") -> TurnResult:
    return TurnResult(outcome=outcome, halt_state="halt_cancelled", message="stopped", response="", messages=list(USER),
                      trace=[], usage=TurnUsage())


def test_a_halt_ends_a_chat_still_open_as_cancelled_and_every_tool_still_running() -> None:
    exporter, tracing = exporter_and_tracing()
    tracing.turn_started(turn_info(), USER)
    tracing.tool_started(ToolCall("call_1", "get_capital", "{}"))
    tracing.tool_started(ToolCall("call_2", "get_capital", "{}"))
    tracing.model_call_started(1, ModelRequest(model=MODEL, messages=list(USER)))
    tracing.turn_halted(halted())
    spans = {s.name + ":" + str(s.attributes.get("gen_ai.tool.call.id", "")): s for s in exporter.get_finished_spans()}
    assert sorted(spans) == [f"chat {MODEL}:", "execute_tool get_capital:call_1", "execute_tool get_capital:call_2",
                             "invoke_agent default:"]
    chat = spans[f"chat {MODEL}:"]
    assert chat.attributes["loopspec.event"] == "cancelled" and chat.attributes["error.type"] == "cancelled"
    assert chat.status.status_code == StatusCode.ERROR and chat.status.description == "cancelled"
    assert "gen_ai.response.finish_reasons" not in chat.attributes
    assert spans[f"chat {MODEL}:"].attributes["server.address"] == "127.0.0.1"


def test_the_turns_address_is_used_when_a_request_names_none() -> None:
    exporter, tracing = exporter_and_tracing()
    tracing.turn_started(turn_info(), USER)
    tracing.model_call_started(1, ModelRequest(model=MODEL, messages=list(USER), max_tokens=64))
    tracing.model_call_finished(1, Event("text", {}), None)
    (chat,) = [s for s in exporter.get_finished_spans() if s.name.startswith("chat")]
    assert chat.attributes["server.address"] == "127.0.0.1" and chat.attributes["server.port"] == 8931
    assert chat.attributes["gen_ai.request.max_tokens"] == 64


def test_a_halt_or_a_step_with_no_turn_started_does_nothing() -> None:
    """The turn did not start this observer's span (it was refused, or never called): the calls
    that follow make no span and raise nothing."""
    exporter, tracing = exporter_and_tracing()
    step = POLICY.step(POLICY.initial_config(), Event("opened", {}))
    tracing.step_taken(step, TraceStep.of(POLICY, step, 0))
    tracing.model_call_finished(1, Event("text", {}), None)
    tracing.turn_halted(halted("completed"))
    assert list(exporter.get_finished_spans()) == []


def test_a_turn_cancelled_before_its_first_call_ends_its_span_and_records_no_error() -> None:
    exporter, tracing = exporter_and_tracing()
    turn = Turn(POLICY, InProcessProvider([recorded("openai_stream_text.sse")]), model=MODEL, clock=VirtualClock(),
                observers=[tracing])
    turn.cancel()
    result = asyncio.run(turn.run(USER))
    assert result.outcome == "cancelled" and result.observer_errors == []
    (agent,) = exporter.get_finished_spans()
    assert agent.name == "invoke_agent default" and agent.attributes["loopspec.outcome"] == "cancelled"


def started(**kw: Any) -> tuple[InMemorySpanExporter, OpenTelemetryTracing]:
    exporter, tracing = exporter_and_tracing(**kw)
    tracing.turn_started(turn_info(), USER)
    return exporter, tracing


def test_a_step_names_its_transition_and_where_a_redirect_came_from_only_when_it_has_them() -> None:
    exporter, tracing = started()
    step = POLICY.step(POLICY.initial_config(), Event("opened", {}))
    named = TraceStep(0, "call_model", "model_call", "opened", {}, "on_opened", "read_stream", {"model_calls": 1}, [], [],
                      redirected_from="compact")
    bare = TraceStep(1, "read_stream", "stream", "text", {}, None, "halt_completed", {"model_calls": 1}, [], [])
    tracing.step_taken(step, named)
    tracing.step_taken(step, bare)
    tracing.turn_halted(halted("completed"))
    (agent,) = exporter.get_finished_spans()
    first, second = [dict(e.attributes) for e in agent.events]
    assert first == {"loopspec.state": "call_model", "loopspec.event": "opened", "loopspec.target": "read_stream",
                     "loopspec.counters": '{"model_calls": 1}', "loopspec.transition": "on_opened",
                     "loopspec.redirected_from": "compact"}
    assert second == {"loopspec.state": "read_stream", "loopspec.event": "text", "loopspec.target": "halt_completed",
                      "loopspec.counters": '{"model_calls": 1}'}


def test_calls_before_any_turn_make_no_span() -> None:
    exporter, tracing = exporter_and_tracing()
    tracing.model_call_started(1, ModelRequest(model=MODEL, messages=list(USER)))
    tracing.model_call_finished(1, Event("text", {}), None)
    call = ToolCall("call_1", "get_capital", "{}")
    tracing.tool_started(call)
    tracing.tool_finished(call, ToolResult(call, "London", ok=True))
    assert list(exporter.get_finished_spans()) == []


class Opaque:
    def __str__(self) -> str:
        return "an opaque part"


def test_recorded_prompts_keep_their_text_redact_the_requests_key_and_write_any_value(monkeypatch: Any) -> None:
    """Content capture writes text as it is (not \\u escapes), drops the request's own API key,
    which has no provider shape, and writes a value JSON cannot hold as its text."""
    exporter, tracing = started(capture_content=True)
    key = "plain-words-key-0123456789"
    messages = [{"role": "user", "content": f"Où est Londres? {key}"}, {"role": "user", "content": Opaque()}]
    tracing.model_call_started(1, ModelRequest(model=MODEL, messages=messages, api_key=key))
    tracing.model_call_finished(1, Event("text", {}), None)
    (chat,) = [s for s in exporter.get_finished_spans() if s.name.startswith("chat")]
    text = chat.attributes["gen_ai.input.messages"]
    assert "Où est Londres?" in text and key not in text and "an opaque part" in text
    assert json.loads(text)[0]["content"].startswith("Où est Londres? ")


def test_recorded_replies_are_the_assistants_message_redacted_in_its_own_text(monkeypatch: Any) -> None:
    from loopspec.wire.assemble import AssembledReply

    monkeypatch.setenv("ACME_API_KEY", "acme-secret-0123456789")
    exporter, tracing = started(capture_content=True)
    tracing.model_call_started(1, ModelRequest(model=MODEL, messages=list(USER)))
    reply = AssembledReply(text="Londres, où la clé acme-secret-0123456789 vit", finish_reason="stop")
    tracing.model_call_finished(1, Event("text", {}), reply)
    tracing.model_call_started(2, ModelRequest(model=MODEL, messages=list(USER)))
    call = ToolCall("call_1", "get_capital", '{"country": "UK"}')
    tracing.model_call_finished(2, Event("tool_calls", {}), AssembledReply(text="", tool_calls=[call], finish_reason="tool_calls"))
    first, second = sorted((s for s in exporter.get_finished_spans() if s.name.startswith("chat")), key=lambda s: s.start_time)
    out = first.attributes["gen_ai.output.messages"]
    assert "où" in out and "acme-secret-0123456789" not in out
    (message,) = json.loads(out)
    assert message["role"] == "assistant" and message["content"].startswith("Londres, où la clé ") and set(message) == {"role", "content"}
    (with_call,) = json.loads(second.attributes["gen_ai.output.messages"])
    assert with_call["role"] == "assistant" and with_call["content"] == "" and "get_capital" in json.dumps(with_call["tool_calls"])


def test_only_an_integer_status_is_written_as_the_http_status() -> None:
    exporter, tracing = started()
    for index, status in enumerate([429, "429", True, None], 1):
        tracing.model_call_started(index, ModelRequest(model=MODEL, messages=list(USER)))
        tracing.model_call_finished(index, Event("rate_limit", {"status": status}), None)
    chats = sorted((s for s in exporter.get_finished_spans() if s.name.startswith("chat")), key=lambda s: s.start_time)
    assert [c.attributes.get("http.response.status_code") for c in chats] == [429, None, None, None]
    assert all(c.attributes["error.type"] == "rate_limit" and c.status.status_code == StatusCode.ERROR for c in chats)


def test_a_call_answered_without_running_still_gets_a_span_and_a_failed_one_says_why() -> None:
    """A refused call or one awaiting approval never started: tool_finished alone makes its span.
    A failed call's span is an error, ``not_run`` or ``tool_error``, its status the answer cut at
    200 characters; the tool arguments are redacted of the environment's secrets when recorded."""
    exporter, tracing = started(capture_content=True)
    refused = ToolCall("call_1", "get_capital", "{}")
    tracing.tool_finished(refused, ToolResult(refused, "Denied: " + "no " * 100, ok=False, ran=False))
    failed = ToolCall("call_2", "get_capital", "{}")
    tracing.tool_started(failed)
    time.sleep(0.005)  # the call runs: its span is the one started before it, not one made at its end
    tracing.tool_finished(failed, ToolResult(failed, "Error: boom", ok=False, ran=True))
    spans = {s.attributes["gen_ai.tool.call.id"]: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"call_1", "call_2"}
    first = spans["call_1"]
    assert first.name == "execute_tool get_capital" and first.attributes["loopspec.tool.ran"] is False
    assert first.attributes["error.type"] == "not_run" and first.status.status_code == StatusCode.ERROR
    assert first.status.description == ("Denied: " + "no " * 100)[:200]
    assert spans["call_2"].attributes["error.type"] == "tool_error" and spans["call_2"].status.description == "Error: boom"
    assert spans["call_2"].end_time - spans["call_2"].start_time >= 5_000_000


def test_recorded_tool_arguments_are_redacted_of_the_environments_secrets(monkeypatch: Any) -> None:
    monkeypatch.setenv("ACME_API_KEY", "acme-secret-0123456789")
    exporter, tracing = started(capture_content=True)
    call = ToolCall("call_1", "get_capital", '{"country": "acme-secret-0123456789"}')
    tracing.tool_started(call)
    tracing.tool_finished(call, ToolResult(call, "London", ok=True))
    (tool,) = [s for s in exporter.get_finished_spans() if s.name.startswith("execute_tool")]
    assert "acme-secret-0123456789" not in tool.attributes["gen_ai.tool.call.arguments"]
