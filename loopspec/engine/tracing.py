"""OpenTelemetry spans for a turn, named and attributed as the GenAI semantic conventions say, so
Langfuse, Logfire, Phoenix, LangSmith and Datadog show a loopspec turn like any agent run.

One span tree per turn::

    invoke_agent {policy}          INTERNAL  the turn; its outcome, totals, and one event per step
    ├── chat {model}               CLIENT    one per model call: request sent -> stream classified
    └── execute_tool {tool}        INTERNAL  one per tool call

What only loopspec knows (the state, the event the stream was classified as, the transition taken,
the counters, a stall or a stub) goes under ``loopspec.*``. Prompt and response content is off
unless ``capture_content=True``, as the conventions ask; when on, it is redacted like every other
output (provider key shapes, ``key=``/``token=`` values, the request's API key, credential
environment values).

Only ``opentelemetry-api`` is used, and only if it is installed (the ``loopspec[otel]`` extra):
without it this observer does nothing. Spans go to the tracer provider the application set up
(``opentelemetry.trace.set_tracer_provider``) or the one given.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import urlparse

from loopspec.language.alphabet import Event
from loopspec.language.model import Step

from loopspec.wire.redaction import env_secrets, literal_secrets, redact, redact_text

from .observers import TurnInfo, TurnObserver

if TYPE_CHECKING:
    from loopspec.providers.base import ModelRequest
    from loopspec.wire.assemble import AssembledReply

    from .results import TraceStep, TurnResult
    from .tools import ToolCall, ToolResult

REPLY_EVENTS = frozenset({"text", "tool_calls", "length", "empty", "thinking_only", "malformed_args", "unknown_tool"})
"""Stream events that are a model's answer (any other ends a chat span as an error)."""

PROVIDER_NAMES = {
    "anthropic": "anthropic",
    "azure": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "deepseek": "deepseek",
    "gemini": "gcp.gemini",
    "groq": "groq",
    "mistral": "mistral_ai",
    "openai": "openai",
    "vertex_ai": "gcp.vertex_ai",
    "xai": "x_ai",
}
"""litellm's model prefixes -> ``gen_ai.provider.name`` values of the conventions."""


def provider_name(model: str) -> str:
    prefix = model.split("/", 1)[0] if "/" in model else "openai"
    return PROVIDER_NAMES.get(prefix, prefix)


class OpenTelemetryTracing(TurnObserver):
    """Emit one turn's spans (see the module docstring). Give each turn its own instance."""

    def __init__(self, tracer_provider: Any = None, *, capture_content: bool = False) -> None:
        self.capture_content = capture_content
        self._tracer: Any = None
        self._turn: Any = None
        self._info: TurnInfo | None = None
        self._chat: Any = None
        self._tools: dict[str, Any] = {}
        self._secrets: tuple[str, ...] = tuple(env_secrets()) if capture_content else ()
        try:
            from opentelemetry import trace
        except ImportError:  # the extra is not installed: a no-op observer
            return
        from importlib.metadata import PackageNotFoundError, version

        try:
            ours: str | None = version("loopspec")
        except PackageNotFoundError:  # running from a source tree that was never installed
            ours = None
        self._trace = trace
        self._tracer = trace.get_tracer("loopspec", ours, tracer_provider=tracer_provider)

    @property
    def enabled(self) -> bool:
        """opentelemetry-api is installed: spans are made (a provider may still drop them)."""
        return self._tracer is not None

    # ------------------------------------------------------------------------------ the turn

    def turn_started(self, info: TurnInfo, messages: Sequence[dict[str, Any]]) -> None:
        if self._tracer is None:
            return
        if self._turn is not None:
            raise RuntimeError("one OpenTelemetryTracing per turn: this one already traces a turn")
        self._info = info
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": provider_name(info.model),
            "gen_ai.agent.name": info.policy,
            "gen_ai.request.model": info.model,
            "loopspec.policy": info.policy,
            "loopspec.replayed": info.replayed,
        }
        self._turn = self._tracer.start_span(f"invoke_agent {info.policy}", kind=self._trace.SpanKind.INTERNAL, attributes=attrs)

    def turn_halted(self, result: "TurnResult") -> None:
        span = self._turn
        if self._tracer is None or span is None:
            return
        if self._chat is not None:  # a call the halt cut short (a cancel mid-stream)
            self._end_chat(Event("cancelled", {}), None)
        for call_id in list(self._tools):
            self._tools.pop(call_id).end()
        usage = result.usage
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
                "loopspec.outcome": result.outcome,
                "loopspec.halt_state": result.halt_state,
                "loopspec.model_calls": usage.model_calls,
                "loopspec.tool_batches": usage.tool_batches,
            }
        )
        if result.outcome != "completed":
            span.set_attribute("error.type", result.outcome)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, result.message[:200]))
        span.end()

    def step_taken(self, step: Step, record: "TraceStep") -> None:
        if self._tracer is None or self._turn is None:
            return
        attrs: dict[str, Any] = {
            "loopspec.state": record.state,
            "loopspec.event": record.event,
            "loopspec.target": record.target,
            "loopspec.counters": json.dumps(record.counters, sort_keys=True),
        }
        if record.transition is not None:
            attrs["loopspec.transition"] = record.transition
        if record.redirected_from is not None:
            attrs["loopspec.redirected_from"] = record.redirected_from
        self._turn.add_event("loopspec.step", attrs)

    # ------------------------------------------------------------------------------ model calls

    def model_call_started(self, index: int, request: "ModelRequest") -> None:
        if self._tracer is None or self._turn is None:
            return
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider_name(request.model),
            "gen_ai.request.model": request.model,
            "gen_ai.request.stream": True,
            "loopspec.call_index": index,
        }
        if request.max_tokens is not None:
            attrs["gen_ai.request.max_tokens"] = request.max_tokens
        base = request.api_base or (self._info.api_base if self._info else None)
        if base:
            url = urlparse(base)
            if url.hostname:
                attrs["server.address"] = url.hostname
            if url.port:
                attrs["server.port"] = url.port
        if request.tools:
            attrs["loopspec.tools_offered"] = len(request.tools)
        if self.capture_content:
            secrets = (*self._secrets, *literal_secrets(request.api_key))
            attrs["gen_ai.input.messages"] = json.dumps(redact(request.messages, secrets), ensure_ascii=False, default=str)
        parent = self._trace.set_span_in_context(self._turn)
        self._chat = self._tracer.start_span(f"chat {request.model}", context=parent, kind=self._trace.SpanKind.CLIENT, attributes=attrs)

    def model_call_finished(self, index: int, event: Event, reply: "AssembledReply | None") -> None:
        if self._tracer is None or self._chat is None:
            return
        self._end_chat(event, reply)

    def _end_chat(self, event: Event, reply: "AssembledReply | None") -> None:
        span, self._chat = self._chat, None
        span.set_attribute("loopspec.event", event.name)
        if reply is not None:
            if reply.finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [str(reply.finish_reason)])
            if reply.usage is not None:
                span.set_attributes(
                    {
                        "gen_ai.usage.input_tokens": reply.usage.prompt_tokens,
                        "gen_ai.usage.output_tokens": reply.usage.completion_tokens,
                        "gen_ai.usage.reasoning.output_tokens": reply.usage.reasoning_tokens,
                    }
                )
            if self.capture_content:
                out: dict[str, Any] = {"role": "assistant", "content": reply.text}
                if reply.tool_calls:
                    out["tool_calls"] = reply.tool_calls
                span.set_attribute("gen_ai.output.messages", json.dumps(redact([out], self._secrets), ensure_ascii=False, default=str))
        if event.name not in REPLY_EVENTS:
            span.set_attribute("error.type", event.name)
            status = event.attrs.get("status")
            if isinstance(status, int) and not isinstance(status, bool):
                span.set_attribute("http.response.status_code", status)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, event.name))
        span.end()

    # ------------------------------------------------------------------------------ tools

    def tool_started(self, call: "ToolCall") -> None:
        if self._tracer is None or self._turn is None:
            return
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call.id,
            "gen_ai.tool.type": "function",
        }
        if self.capture_content:
            attrs["gen_ai.tool.call.arguments"] = redact_text(call.arguments, self._secrets)
        parent = self._trace.set_span_in_context(self._turn)
        self._tools[call.id] = self._tracer.start_span(f"execute_tool {call.name}", context=parent, kind=self._trace.SpanKind.INTERNAL, attributes=attrs)

    def tool_finished(self, call: "ToolCall", result: "ToolResult") -> None:
        if self._tracer is None or self._turn is None:
            return
        span = self._tools.pop(call.id, None)
        if span is None:  # answered without running (refused, awaiting approval): a span all the same
            self.tool_started(call)
            span = self._tools.pop(call.id)
        span.set_attribute("loopspec.tool.ran", result.ran)
        if self.capture_content:
            span.set_attribute("gen_ai.tool.call.result", redact_text(result.content, self._secrets))
        if not result.ok:
            span.set_attribute("error.type", "tool_error" if result.ran else "not_run")
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, result.content[:200]))
        span.end()
