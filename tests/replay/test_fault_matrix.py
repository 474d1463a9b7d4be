"""Every provider fault, in every state it can strike, on both transports.

Each cell plays one fault (an HTTP error, a stall at some data event, a dropped connection, a broken
stream) at one point of a turn under machines/default.yaml: the first call, the call after a tool
batch, a continuation call, a retry. The recording then answers, so a policy that recovers can finish; in a last state the fault comes
back on every call, so the policy must give up within its caps.
Every run, in-process and over HTTP through litellm to the loopback server, must:

- halt, in a halt state, delivering its message once (one end, one final message, the streamed text
  ending with it);
- leave a valid message history (``history_problems`` empty);
- keep every counter and backstop within its cap at every step;
- have sent the provider exactly ``model_calls`` requests;

and the two transports must take the same decisions.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from loopspec import Consumers, InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy
from loopspec.engine.history import history_problems
from loopspec.engine.results import TurnResult
from loopspec.replay.http import run_over_http
from loopspec.replay.interactions import ErrorResponse, Interaction, StreamResponse
from loopspec.replay.synth import reply, reply_chunks

from _paths import DEFAULT_POLICY, FIXTURES

POLICY = load_policy(str(DEFAULT_POLICY))
STREAMS = FIXTURES / "streams"
USER = [{"role": "user", "content": "What is the capital of the UK?"}]
TIME_SCALE = 0.0001
"""Recorded pauses and backoffs at a ten-thousandth: a 60 s stall timeout is 6 ms. Safe at any scale,
since the server, not a timer, says where a stream stalls."""


def error(name: str, status: int, **headers: str) -> ErrorResponse:
    return ErrorResponse(status, json.loads((STREAMS / name).read_text()), headers)


ANSWER_TEXT = "The capital of the UK is London."
ANSWER = reply(ANSWER_TEXT)
TEXT_CHUNKS = reply_chunks("London, as ever.", piece=6)  # role, 3 pieces, finish
TOOL_CHUNKS = reply_chunks(tool_calls=[("get_capital", {"country": "UK"})], piece=8)  # role, header, 3 pieces, finish

FAULTS: dict[str, Interaction] = {
    "429 with Retry-After": error("openai_error_429_rate_limit_requests.json", 429, **{"retry-after": "2"}),
    "429 without Retry-After": error("openai_error_429_rate_limit_requests.json", 429),
    "500": error("openai_error_500_server_error.json", 500),
    "503 overloaded": error("openai_error_503_model_overloaded.json", 503),
    "408 timeout": ErrorResponse(408, {"error": {"message": "Request timed out.", "type": "timeout"}}),
    "504 gateway timeout": ErrorResponse(504, "upstream request timeout"),
    "quota": error("openai_error_429_insufficient_quota.json", 429),
    "disconnect mid-stream": StreamResponse(chunks=TEXT_CHUNKS, disconnect_after=2),
    "disconnect mid tool call": StreamResponse(chunks=TOOL_CHUNKS, disconnect_after=3),
    "connection reset before any event": StreamResponse(chunks=TEXT_CHUNKS, disconnect_after=0),
    "malformed SSE": StreamResponse(sse='data: {"id":"x","choices":[{"index":0,"delta":{"content":"Lon"}}]}\n\ndata: {"id":"x","choices":[{"ind\n\n'),
    "in-stream error event": StreamResponse(sse=(STREAMS / "groq_stream_reasoning_then_error_event.sse").read_text()),
    "in-stream error chunk": StreamResponse(sse=(STREAMS / "openrouter_stream_length_then_error_chunk.sse").read_text()),
}
FAULTS.update(
    {f"stall in text after {k}": StreamResponse(chunks=TEXT_CHUNKS, stall_after=k, stall_seconds=300) for k in range(len(TEXT_CHUNKS) + 1)}
)
FAULTS.update(
    {f"stall in tool call after {k}": StreamResponse(chunks=TOOL_CHUNKS, stall_after=k, stall_seconds=300, keepalive=20)
     for k in range(len(TOOL_CHUNKS) + 1)}
)

STATES: dict[str, list[Interaction]] = {
    "first call": [],
    "after a tool batch": [StreamResponse(chunks=TOOL_CHUNKS)],
    "during a continuation": [reply("The capital of the", finish="length")],
    "during a retry": [error("openai_error_500_server_error.json", 500)],
    "on every call until the policy gives up": [],
}
REPEATS = 12
"""How often the fault comes back in the last state: past every retry budget of default.yaml."""

FOLLOW_UPS = 3
"""Answers recorded after the fault: enough for every recovery default.yaml makes after one fault."""


@dataclass
class Cell:
    state: str
    fault: str

    @property
    def script(self) -> list[Interaction]:
        repeats = REPEATS if self.state == "on every call until the policy gives up" else 1
        return [*STATES[self.state], *[FAULTS[self.fault]] * repeats, *[ANSWER] * FOLLOW_UPS]

    def __str__(self) -> str:
        return f"{self.fault} / {self.state}"


CELLS = [Cell(state, fault) for state in STATES for fault in FAULTS]

XFAIL: dict[tuple[str, str], str] = {}
"""(state, fault) -> the engine bug that fails the cell; each is xfail(strict=True)."""


def params() -> list[Any]:
    out = []
    for cell in CELLS:
        reason = XFAIL.get((cell.state, cell.fault))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(cell, id=str(cell), marks=marks))
    return out


@dataclass
class Delivered:
    """What a consumer received."""

    deltas: list[str] = field(default_factory=list)
    ends: int = 0
    finals: list[str] = field(default_factory=list)

    def consumers(self) -> Consumers:
        def end() -> None:
            self.ends += 1

        def interim(message: str, already_streamed: bool) -> None:
            self.finals.append(message)

        return Consumers(on_delta=self.deltas.append, on_end=end, on_interim=interim)


def tools() -> ToolRegistry:
    reg = ToolRegistry()
    reg.register(lambda country: "London", name="get_capital",
                 parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    return reg


def judge(cell: Cell, result: TurnResult, delivered: Delivered, requests: int) -> None:
    """The four properties every run must have."""
    where = f"{cell}: {[(s.state, s.event) for s in result.trace]}"
    halt = POLICY.states.get(result.halt_state)
    assert halt is not None and halt.kind == "halt", where
    assert result.message.strip(), where
    assert delivered.ends == 1 and delivered.finals == [result.message], where
    assert "".join(delivered.deltas).endswith(result.message), where
    assert history_problems(result.messages) == [], where
    caps = {c.name: c.max for c in POLICY.counters}
    for step in result.trace:
        over = {n: v for n, v in step.counters.items() if v > caps[n]}
        assert not over, f"{where}: step {step.index} past its cap: {over}"
    assert result.usage.model_calls <= POLICY.backstops["model_calls"].max, where
    assert result.usage.tool_batches <= POLICY.backstops["tool_batches"].max, where
    assert requests == result.usage.model_calls, f"{where}: {requests} requests for {result.usage.model_calls} model calls"


def decisions(result: TurnResult) -> tuple[Any, ...]:
    return (result.outcome, [(s.state, s.event, s.target) for s in result.trace], result.usage.model_calls, result.usage.tool_batches)


def run_in_process(cell: Cell) -> TurnResult:
    delivered = Delivered()
    provider = InProcessProvider(cell.script)
    turn = Turn(POLICY, provider, model="replay", tools=tools(), consumers=delivered.consumers(), clock=VirtualClock())
    result = asyncio.run(turn.run(USER))
    judge(cell, result, delivered, len(provider.requests))
    return result


@pytest.mark.parametrize("cell", params())
def test_fault_in_process(cell: Cell) -> None:
    run_in_process(cell)


@pytest.mark.parametrize("cell", params())
def test_fault_over_http(cell: Cell, loop: asyncio.AbstractEventLoop) -> None:
    delivered = Delivered()
    result, server = loop.run_until_complete(
        run_over_http(POLICY, cell.script, USER, time_scale=TIME_SCALE, tools=tools(), consumers=delivered.consumers())
    )
    judge(cell, result, delivered, len(server.requests))
    assert decisions(result) == decisions(run_in_process(cell)), "the transports disagree"


def test_the_matrix_covers_every_fault_in_every_state() -> None:
    """A fault or a state dropped from the tables would silently shrink the matrix."""
    assert len(CELLS) == len(STATES) * len(FAULTS) == 5 * 26
    assert {"first call", "after a tool batch", "during a continuation", "during a retry"} < set(STATES)


def test_a_recorded_504_is_a_timeout_in_process_as_litellm_raises_it() -> None:
    """litellm raises a gateway timeout as ``litellm.Timeout``; in-process replay must say the same."""
    from loopspec.providers.base import ModelRequest, ProviderError

    provider = InProcessProvider([FAULTS["504 gateway timeout"]])
    with pytest.raises(ProviderError) as raised:
        asyncio.run(provider.open(ModelRequest(model="replay", messages=list(USER))))
    assert raised.value.event.name == "timeout" and raised.value.event.attrs["status"] == 504
