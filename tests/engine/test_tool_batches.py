"""Multi-call tool batches through the interpreter: every call answered exactly once, in order, in
the history and inside every request sent after it; refused batches; a batch cancelled half-way.

The two-call batch is a recorded gpt-4o stream (fixtures/streams/openai_stream_tool_call_parallel.sse);
no recorded stream has three calls, so that one is built with ``synth.reply``. Each batch runs
in process (virtual time) and over loopback HTTP through litellm.

The history checks here are written out rather than taken from ``history_problems``: a broken
``history_problems`` must not be able to turn them into no-ops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy, load_policy_text
from loopspec.replay.http import run_over_http
from loopspec.replay.interactions import StreamResponse
from loopspec.replay.synth import reply

from _paths import DEFAULT_POLICY, FIXTURES
from _policy_text import handles

POLICY = load_policy(str(DEFAULT_POLICY))
STREAMS = FIXTURES / "streams"
USER = [{"role": "user", "content": "What is the weather in Mexico City, and what is the product called?"}]


def recorded(name: str) -> StreamResponse:
    return StreamResponse(sse=(STREAMS / name).read_text())


PARALLEL_2 = recorded("openai_stream_tool_call_parallel.sse")
PARALLEL_3 = reply(
    "Checking three things.",
    tool_calls=[("get_weather", {"city": "Mexico City"}), ("get_product_name", {}), ("get_weather", {"city": "Oslo"})],
)
ANSWER = recorded("openai_stream_text.sse")


def registry(ran: list[str]) -> ToolRegistry:
    reg = ToolRegistry()

    def get_weather(city: str) -> str:
        ran.append(f"get_weather:{city}")
        return f"sunny in {city}"

    def get_product_name() -> str:
        ran.append("get_product_name")
        return "Widget"

    reg.register(get_weather, parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    reg.register(get_product_name, parameters={"type": "object", "properties": {}})
    return reg


def tool_rounds(messages: list[dict[str, Any]]) -> list[tuple[list[str], list[tuple[str, str]]]]:
    """Each assistant tool-call message: (its call ids, the (id, content) of the messages that
    directly follow it while they are tool results). Fails on any tool result outside a round."""
    rounds: list[tuple[list[str], list[tuple[str, str]]]] = []
    i = 0
    while i < len(messages):
        m = messages[i]
        assert m.get("role") != "tool", f"message {i} is a tool result that follows no tool call: {m}"
        i += 1
        if m.get("role") == "assistant" and m.get("tool_calls"):
            ids = [tc["id"] for tc in m["tool_calls"]]
            answers = []
            while i < len(messages) and messages[i].get("role") == "tool":
                answers.append((messages[i]["tool_call_id"], messages[i]["content"]))
                i += 1
            rounds.append((ids, answers))
    return rounds


def assert_every_call_answered_once_in_order(messages: list[dict[str, Any]]) -> None:
    """The OpenAI rule: an assistant message's tool calls are followed by exactly one result each,
    in the calls' order, before anything else."""
    for ids, answers in tool_rounds(messages):
        assert len(set(ids)) == len(ids), f"duplicate call ids {ids}"
        assert [a[0] for a in answers] == ids, f"calls {ids} answered by {[a[0] for a in answers]}"


def assert_requests_valid(bodies: list[list[dict[str, Any]]]) -> None:
    """Inside each request sent: no tool result without its call in the same request, every call
    answered exactly once, and the sent messages never start on a tool result."""
    for n, messages in enumerate(bodies):
        assert messages and messages[0].get("role") != "tool", f"request {n + 1} starts on a tool result"
        try:
            assert_every_call_answered_once_in_order(messages)
        except AssertionError as exc:
            raise AssertionError(f"request {n + 1}: {exc}") from None


def inproc(policy: Any, script: list[Any], tools: ToolRegistry, messages: list[dict[str, Any]] = USER) -> tuple[Any, InProcessProvider]:
    provider = InProcessProvider(script)
    turn = Turn(policy, provider, model="replay", tools=tools, clock=VirtualClock())
    return asyncio.run(turn.run(messages)), provider


EXPECTED = {
    2: (
        ["call_NS4iQj14cDFwc0BnrKqDHavt", "call_SkGkkGDvHQEEk0CGbnAh2AQw"],
        ["get_weather:Mexico City", "get_product_name"],
        ["sunny in Mexico City", "Widget"],
    ),
    3: (
        ["call_0_get_weather", "call_1_get_product_name", "call_2_get_weather"],
        ["get_weather:Mexico City", "get_product_name", "get_weather:Oslo"],
        ["sunny in Mexico City", "Widget", "sunny in Oslo"],
    ),
}


def check_batch(result: Any, bodies: list[list[dict[str, Any]]], ran: list[str], n: int) -> None:
    ids, runs, contents = EXPECTED[n]
    assert result.outcome == "completed" and result.usage.tool_batches == 1
    assert sorted(ran) == sorted(runs), "every call of the batch ran exactly once"
    (round_,) = tool_rounds(result.messages)
    assert round_[0] == ids
    assert round_[1] == list(zip(ids, contents)), "each call answered once, in order, with its own result"
    assert_every_call_answered_once_in_order(result.messages)
    # the request after the batch carries the whole round, last call's answer included
    assert len(bodies) == 2
    assert_requests_valid(bodies)
    (sent,) = tool_rounds(bodies[1])
    assert sent == round_


def _ids_of_recorded_parallel_stream() -> list[str]:
    out = []
    for line in (STREAMS / "openai_stream_tool_call_parallel.sse").read_text().splitlines():
        if line.startswith("data: {"):
            for ch in json.loads(line[6:]).get("choices") or []:
                out += [tc["id"] for tc in (ch.get("delta") or {}).get("tool_calls") or [] if tc.get("id")]
    return out


def test_the_expected_ids_are_the_recorded_ones() -> None:
    assert _ids_of_recorded_parallel_stream() == EXPECTED[2][0]


@pytest.mark.parametrize("n", [2, 3])
def test_a_parallel_batch_in_process_answers_every_call_once_in_order(n: int) -> None:
    ran: list[str] = []
    result, provider = inproc(POLICY, [PARALLEL_2 if n == 2 else PARALLEL_3, ANSWER], registry(ran))
    check_batch(result, [r.messages for r in provider.requests], ran, n)


@pytest.mark.parametrize("n", [2, 3])
def test_a_parallel_batch_over_http_answers_every_call_once_in_order(n: int, loop: asyncio.AbstractEventLoop) -> None:
    ran: list[str] = []
    result, server = loop.run_until_complete(
        run_over_http(POLICY, [PARALLEL_2 if n == 2 else PARALLEL_3, ANSWER], USER, tools=registry(ran), time_scale=0.05)
    )
    check_batch(result, [r.body["messages"] for r in server.requests], ran, n)


def test_the_request_checks_reject_an_orphan_and_an_unanswered_call() -> None:
    """The checks above can fail: a history cut before a tool result, or one that drops the last
    answer of a batch."""
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "b", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    good = [USER[0], call, {"role": "tool", "tool_call_id": "a", "content": "1"}, {"role": "tool", "tool_call_id": "b", "content": "2"}]
    assert_requests_valid([good])
    for bad in (good[:3], good[2:], [good[0], good[3]], [good[0], call, good[3], good[2]], good + [good[3]]):
        with pytest.raises(AssertionError):
            assert_requests_valid([bad])


# ------------------------------------------------------------------------------ refused batches

REFUSING = """\
loopspec: 1
initial: ask
templates:
  refused: "Not run: {tools} is not allowed here."
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
  done: {kind: halt, outcome: completed, message: "{response}"}
  out: {kind: halt, outcome: backstop, message: "stopped"}
""".replace("CALL_EVENTS", handles("call", "out", opened="read")).replace(
    "STREAM_EVENTS", handles("stream", "out", text='done', tool_calls='{do: [{refuse_tools: refused}], to: ask}')
)


@pytest.mark.parametrize("n", [2, 3])
def test_refuse_tools_on_a_transition_answers_each_call_with_the_refusal_and_runs_none(n: int) -> None:
    policy = load_policy_text(REFUSING)
    ran: list[str] = []
    result, provider = inproc(policy, [PARALLEL_2 if n == 2 else PARALLEL_3, ANSWER], registry(ran))
    assert ran == [], "a refused batch never runs"
    assert result.outcome == "completed"
    ids = EXPECTED[n][0]
    names = "get_weather, get_product_name" + (", get_weather" if n == 3 else "")
    (round_,) = tool_rounds(result.messages)
    assert round_ == (ids, [(i, f"Not run: {names} is not allowed here.") for i in ids])
    assert_requests_valid([r.messages for r in provider.requests])
    assert tool_rounds(provider.requests[1].messages) == [round_]


# ------------------------------------------------------------------------------ cancelling a batch


def test_cancelling_during_a_batch_keeps_finished_results_and_answers_the_rest() -> None:
    """The first call has finished, the second and third are running: cancel. The turn ends in its
    cancelled halt, every call is answered once in order, the finished call keeps its result."""
    reg = ToolRegistry()
    started: list[str] = []
    both_running = asyncio.Event()

    # async tools run as tasks in the order of the batch, so the first call has finished before the
    # other two start (a sync tool would finish on a thread, in no order the test could rely on)
    async def get_weather(city: str) -> str:
        if city == "Mexico City":
            return "sunny in Mexico City"
        started.append(city)
        if len(started) == 2:
            both_running.set()
        await asyncio.sleep(3600)
        return "never"

    async def get_product_name() -> str:
        started.append("product")
        if len(started) == 2:
            both_running.set()
        await asyncio.sleep(3600)
        return "never"

    reg.register(get_weather, parameters={"type": "object", "properties": {"city": {"type": "string"}}})
    reg.register(get_product_name, parameters={"type": "object", "properties": {}})
    provider = InProcessProvider([PARALLEL_3, ANSWER])
    turn = Turn(POLICY, provider, model="replay", tools=reg, clock=VirtualClock())

    async def main() -> Any:
        task = asyncio.create_task(turn.run(USER))
        await both_running.wait()
        turn.cancel()
        return await task

    result = asyncio.run(main())
    assert result.outcome == "cancelled" and turn.result is result
    assert [s.event for s in result.trace][-1] == "cancelled"
    ids = EXPECTED[3][0]
    (round_,) = tool_rounds(result.messages)
    assert round_[0] == ids
    assert round_[1][0] == (ids[0], "sunny in Mexico City"), "the finished call keeps its result"
    assert [c for _, c in round_[1][1:]] == ["Not run: the turn was cancelled."] * 2
    assert_every_call_answered_once_in_order(result.messages)
    assert len(provider.requests) == 1, "no call after the cancel"


# ------------------------------------------------------------------------------ batches that do not all succeed


def test_a_batch_with_a_failing_call_answers_it_with_the_error_in_its_place() -> None:
    reg = ToolRegistry()
    reg.register(lambda city: f"sunny in {city}", name="get_weather",
                 parameters={"type": "object", "properties": {"city": {"type": "string"}}})

    def get_product_name() -> str:
        raise LookupError("catalogue offline")

    reg.register(get_product_name, parameters={"type": "object", "properties": {}})
    result, provider = inproc(POLICY, [PARALLEL_3, ANSWER], reg)
    ids = EXPECTED[3][0]
    (round_,) = tool_rounds(result.messages)
    assert round_ == (ids, [(ids[0], "sunny in Mexico City"), (ids[1], "Error: LookupError: catalogue offline"),
                            (ids[2], "sunny in Oslo")])
    step = next(s for s in result.trace if s.state == "run_tools")
    assert step.event == "failed" and step.attrs["tools"] == ["get_product_name"]
    assert result.outcome == "completed"
    assert_requests_valid([r.messages for r in provider.requests])


def test_a_batch_with_one_call_awaiting_approval_runs_none_and_answers_all() -> None:
    ran: list[str] = []
    reg = registry(ran)
    product = reg.tools["get_product_name"]
    reg.tools["get_product_name"] = dataclasses.replace(product, needs_approval=True)
    result, provider = inproc(POLICY, [PARALLEL_3, ANSWER], reg)
    assert ran == [], "no call of a batch runs while one of them awaits approval"
    assert result.outcome == "approval_required" and len(provider.requests) == 1
    ids = EXPECTED[3][0]
    (round_,) = tool_rounds(result.messages)
    assert round_ == (ids, [(i, "Not run: this call is awaiting human approval.") for i in ids])


# ------------------------------------------------------------------------------ a recorded non-streaming batch

NONSTREAM_BODY = json.loads((STREAMS / "openai_nonstream_tool_calls_parallel.json").read_text())
NONSTREAM_IDS = [tc["id"] for tc in NONSTREAM_BODY["choices"][0]["message"]["tool_calls"]]


def file_tools(ran: list[str]) -> ToolRegistry:
    """Stand-ins named as in the recording; they only note the call."""
    reg = ToolRegistry()
    for name in ("delete_file", "create_file"):
        reg.register(lambda path, name=name: ran.append(f"{name}:{path}") or f"{name} {path}: done", name=name,
                     parameters={"type": "object", "properties": {"path": {"type": "string"}}})
    return reg


def check_file_batch(result: Any, bodies: list[list[dict[str, Any]]], ran: list[str]) -> None:
    assert result.outcome == "completed" and sorted(ran) == ["create_file:test.txt", "delete_file:.env"]
    (round_,) = tool_rounds(result.messages)
    assert round_ == (NONSTREAM_IDS, [(NONSTREAM_IDS[0], "delete_file .env: done"), (NONSTREAM_IDS[1], "create_file test.txt: done")])
    assert_requests_valid(bodies)
    assert tool_rounds(bodies[1]) == [round_]


def test_a_recorded_non_streaming_batch_in_process() -> None:
    from loopspec.replay.interactions import CompletionResponse

    ran: list[str] = []
    result, provider = inproc(POLICY, [CompletionResponse(NONSTREAM_BODY), ANSWER], file_tools(ran))
    check_file_batch(result, [r.messages for r in provider.requests], ran)


def test_a_recorded_non_streaming_batch_over_http_without_streaming(loop: asyncio.AbstractEventLoop) -> None:
    from loopspec.providers.litellm_provider import LiteLLMProvider
    from loopspec.replay.interactions import CompletionResponse
    from loopspec.replay.server import LoopbackServer

    ran: list[str] = []

    async def go() -> tuple[Any, list[list[dict[str, Any]]]]:
        async with LoopbackServer([CompletionResponse(NONSTREAM_BODY), ANSWER]) as server:
            turn = Turn(POLICY, LiteLLMProvider(stream=False), model="openai/x", api_base=server.api_base,
                        api_key="sk-test", tools=file_tools(ran), clock=VirtualClock())
            return await turn.run(USER), [r.body["messages"] for r in server.requests]

    result, bodies = loop.run_until_complete(go())
    check_file_batch(result, bodies, ran)


def test_a_refused_batch_keeps_the_text_beside_its_calls_and_tells_the_observers_which_call(tmp_path: Any) -> None:
    """mutmut ``_carry_out_34/41``: the refused round lost the reply's text beside its calls, and
    the observers (a journal here) heard of each refusal without the call it answers."""
    from loopspec.journal import SqliteJournal

    policy = load_policy_text(REFUSING)
    ran: list[str] = []
    asking = reply("Let me check the weather.", tool_calls=[("get_weather", {"city": "Paris"})])
    with SqliteJournal(tmp_path / "j.db") as journal:
        turn = Turn(policy, InProcessProvider([asking, ANSWER]), model="openai/x", tools=registry(ran), clock=VirtualClock(),
                    journal=journal, turn_id="t1")
        result = asyncio.run(turn.run(USER))
        finished = [e.body for e in journal.entries("t1") if e.kind == "tool_finish"]
    assert ran == [] and result.outcome == "completed" and result.observer_errors == []
    (call_message,) = [m for m in result.messages if m.get("tool_calls")]
    assert call_message["content"] == "Let me check the weather."
    call_id = call_message["tool_calls"][0]["id"]
    assert [(f["id"], f["name"], f["ran"]) for f in finished] == [(call_id, "get_weather", False)]


def test_the_text_beside_a_batch_that_ran_is_in_the_history_once() -> None:
    """mutmut ``_carry_out_5``: a step on any event but a reply's committed the last reply's text
    again, so the text beside a batch came back as an assistant message after the batch."""
    ran: list[str] = []
    asking = reply("Let me check the weather.", tool_calls=[("get_weather", {"city": "Paris"})])
    result, _ = inproc(POLICY, [asking, reply("Sunny.")], registry(ran))
    assert ran == ["get_weather:Paris"], ran
    assert [(m["role"], m.get("content")) for m in result.messages] == [
        ("user", USER[0]["content"]), ("assistant", "Let me check the weather."), ("tool", result.messages[2]["content"]),
        ("assistant", "Sunny."),
    ]
