"""Turn a checker counterexample (an event path) into a cassette that replays to the same failure.

Each event the adversary chose becomes what the outside world would have said to make the
classifier emit it: an HTTP error for a call error, a built reply for a stream event, a stall or a
dropped connection, a tool result. Guardrail events are made real by repeating the failing call
until the policy's own detector fires. The cassette is then replayed under the policy once, and
that decision trace is stored in it, so ``loopspec replay`` shows the exact path again and its
expectations state the property that fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from loopspec.replay.cassette import Cassette, Expectations, RecordedStep, ToolOutcome, ToolSpec
from loopspec.replay.interactions import ErrorResponse, Interaction, StreamResponse
from loopspec.replay.synth import inside_tool_arguments, reply, reply_chunks
from loopspec.spec.properties import RUN_PROPERTIES
from loopspec.spec.model import Policy

from .explore import Counterexample

DEFAULT_TOOL = "tool_a"

# What a provider says to make the classifier emit each call error (bodies shaped like the
# recorded ones in fixtures/streams).
_CALL_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "rate_limit": (429, {"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}}),
    "transient": (503, {"error": {"message": "The engine is currently overloaded, please try again later", "type": "server_error"}}),
    "timeout": (408, {"error": {"message": "Request timed out", "type": "timeout"}}),
    "context_overflow": (400, {"error": {"message": "This model's maximum context length is 128000 tokens.", "type": "invalid_request_error", "code": "context_length_exceeded"}}),
    "auth": (401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}),
    "bad_request": (400, {"error": {"message": "Invalid value for 'temperature'", "type": "invalid_request_error"}}),
    "effort_unsupported": (400, {"error": {"message": "Unsupported parameter: 'reasoning_effort' is not supported with this model.", "type": "invalid_request_error"}}),
    "thinking_signature_invalid": (400, {"error": {"message": "Invalid signature in thinking block", "type": "invalid_request_error"}}),
}

def _tool_names(attrs: dict[str, Any], key: str = "tools") -> list[str]:
    names = [n for n in (attrs.get(key) or []) if n]
    return names or [attrs.get("tool") or DEFAULT_TOOL]


class _Builder:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.interactions: list[Interaction] = []
        self.tool_results: list[ToolOutcome] = []
        self.tools: dict[str, bool] = {}
        self.last_calls: list[str] = [DEFAULT_TOOL]
        self.notes: list[str] = []

    def tool(self, name: str, approval: bool = False) -> None:
        self.tools[name] = self.tools.get(name, False) or approval

    def stream(self, event: str, attrs: dict[str, Any], next_event: str | None) -> None:
        stall = self.policy.settings.stall_timeout * 2
        if event == "text":
            self.interactions.append(reply("Done."))
        elif event == "tool_calls":
            names = _tool_names(attrs)
            for n in names:
                self.tool(n)
            self.last_calls = names
            self.interactions.append(reply(tool_calls=[(n, {}) for n in names]))
        elif event == "length":
            if attrs.get("has_tool_calls"):
                names = _tool_names(attrs, "dropped_tools")
                self.interactions.append(reply(tool_calls=[(n, '{"content": "cut') for n in names], finish="length"))
            elif attrs.get("thinking_only"):
                self.interactions.append(reply(reasoning="Thinking until the budget runs out", finish="length"))
            else:
                self.interactions.append(reply("A reply cut off at the tok", finish="length"))
        elif event == "empty":
            self.interactions.append(reply())
        elif event == "thinking_only":
            self.interactions.append(reply(reasoning="Still thinking..."))
        elif event == "malformed_args":
            names = _tool_names(attrs)
            for n in names:
                self.tool(n)
            self.interactions.append(reply(tool_calls=[(n, '{"path": ') for n in names]))
        elif event == "unknown_tool":
            self.interactions.append(reply(tool_calls=[("no_such_tool", {})]))
        elif event == "stalled":
            if next_event == "mid_tool_call":
                chunks = reply_chunks(tool_calls=[(DEFAULT_TOOL, {"content": "a long argument"})])
                self.tool(DEFAULT_TOOL)
                k = inside_tool_arguments(chunks)[1]
            else:
                chunks = reply_chunks("A reply that stalls")
                k = 1
            self.interactions.append(StreamResponse(chunks=tuple(chunks), stall_after=k, stall_seconds=stall))
        elif event == "broken":
            cause = attrs.get("cause")
            if cause == "disconnect":
                self.interactions.append(StreamResponse(chunks=tuple(reply_chunks("A reply that is cut")), disconnect_after=1))
            else:
                message = "maximum context length exceeded" if cause == "overflow" else "upstream provider error"
                chunks = reply_chunks("Partial")[:2] + [{"error": {"message": message, "code": 400 if cause == "overflow" else 502}}]
                self.interactions.append(StreamResponse(chunks=tuple(chunks)))
        else:
            self.notes.append(f"stream event {event!r} cannot be recorded (the caller cancelled)")

    def tool_event(self, event: str, attrs: dict[str, Any]) -> None:
        names = self.last_calls
        if event == "ok":
            self.tool_results += [ToolOutcome(n, result=f"result {len(self.tool_results)}") for n in names]
        elif event == "failed":
            self.tool_results += [ToolOutcome(n, error=f"RuntimeError: failure {len(self.tool_results)}") for n in names]
        elif event == "approval_required":
            for n in names:
                self.tool(n, approval=True)
        elif event in self.policy.guardrails or "verdict" in attrs:
            # make the policy's own detector fire: repeat the identical failing call up to its threshold
            g = self.policy.guardrails.get(event)
            repeats = g.threshold if g is not None else 1
            same = ToolOutcome(names[0], error="RuntimeError: the same failure again")
            self.tool_results += [same] * len(names)
            for _ in range(repeats - 1):
                self.interactions.append(reply(tool_calls=[(n, {}) for n in names]))
                self.tool_results += [same] * len(names)
            if repeats > 1:
                self.notes.append(f"{event}: the failing call is repeated {repeats} times so the detector fires")
        else:
            self.notes.append(f"tool event {event!r} cannot be recorded (the caller cancelled)")


def cassette_from_counterexample(
    policy: Policy,
    cex: Counterexample,
    prop: str,
    *,
    name: str | None = None,
    max_fires: tuple[tuple[str, int], ...] = (),
) -> Cassette:
    """A cassette reproducing ``cex`` under ``policy``; its expectations state ``prop``.

    A path that stops short of a halt (a loop shown for a few rounds) is closed with a plain
    answer, so the replay ends instead of diverging; ``max_fires`` states a loop edge's own cap.
    """
    b = _Builder(policy)
    steps = cex.steps
    for i, step in enumerate(steps):
        kind = policy.states[step.state].kind
        nxt = steps[i + 1].event if i + 1 < len(steps) else None
        if kind == "call":
            if step.event in _CALL_ERRORS:
                status, body = _CALL_ERRORS[step.event]
                b.interactions.append(ErrorResponse(status, body))
            elif step.event != "opened":
                b.notes.append(f"call event {step.event!r} cannot be recorded")
        elif kind == "stream":
            b.stream(step.event, dict(step.attrs), nxt)
        elif kind == "tool_exec":
            b.tool_event(step.event, dict(step.attrs))
    expect = Expectations(
        properties=tuple(dict.fromkeys(p for p in ("history_valid", prop) if p in RUN_PROPERTIES)),
        all_played=prop == "stub_not_silent",
        max_fires=max_fires,
    )
    ends_in_halt = bool(steps) and policy.states[steps[-1].to].kind == "halt"
    if prop == "stub_not_silent" or not ends_in_halt:
        # what a recovering policy would go on to use; for a loop, the answer that closes the turn
        b.interactions.append(reply("The answer."))
    cassette = Cassette(
        name=name or f"{policy.name}-{prop}",
        file=f"{policy.name}-{prop}.cassette.yaml",
        doc=f"Counterexample for property '{prop}' of policy '{policy.name}': {cex.note}".strip()
        + ("" if not b.notes else " Notes: " + "; ".join(b.notes)),
        source={"checker": "loopspec check", "policy": policy.file, "property": prop},
        messages=({"role": "user", "content": "Reproduce the checker's counterexample."},),
        interactions=tuple(b.interactions),
        tools=tuple(ToolSpec(n, {"type": "object", "properties": {}}, needs_approval=a) for n, a in b.tools.items()),
        tool_results=tuple(b.tool_results),
        expect=expect,
    )
    from loopspec.replay.harness import replay

    report = asyncio.run(replay(cassette, policy))
    trace = tuple(RecordedStep(s.state, s.event, s.target, s.transition) for s in report.result.trace)
    return dataclasses.replace(cassette, trace=trace)


def counterexample_cassettes(policy: Policy, result: Any) -> dict[str, Cassette]:
    """One cassette per failed property of a :class:`CheckResult`, in the report's order."""
    out: dict[str, Cassette] = {}
    for prop, cex in result.counterexamples().items():
        max_fires: tuple[tuple[str, int], ...] = ()
        if prop == "no_backstop_only_loops":
            max_fires = tuple(
                (loop.edge, policy.counters[policy.counter_index(loop.counter)].max)
                for loop in result.backstop_only_loops
                if loop.counter and loop.edge in {s.transition for s in cex.steps}
            )
        out[prop] = cassette_from_counterexample(policy, cex, prop, max_fires=max_fires)
    return out


def write_counterexamples(policy: Policy, result: Any, out: str) -> list[str]:
    """Write the counterexample cassettes: into ``out`` when it is a folder, else the first to
    ``out`` and each further one beside it with its property in the name. Returns the paths."""
    import os

    from loopspec.replay.cassette import write_cassette

    cassettes = counterexample_cassettes(policy, result)
    paths: list[str] = []
    for i, (prop, c) in enumerate(cassettes.items()):
        if os.path.isdir(out) or out.endswith(os.sep):
            os.makedirs(out, exist_ok=True)
            path = os.path.join(out, f"{policy.name}-{prop}.cassette.yaml")
        elif i == 0:
            path = out
        else:
            stem = out.removesuffix(".yaml").removesuffix(".cassette")
            path = f"{stem}-{prop}.cassette.yaml"
        write_cassette(dataclasses.replace(c, file=path), path)
        paths.append(path)
    return paths
