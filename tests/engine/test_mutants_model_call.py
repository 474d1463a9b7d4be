"""Tests against the mutants of ``engine/model_call.py`` that the suite let live (a mutation analysis
by hand: each bug planted in opening a model call and reading its stream, seen to survive the engine
tests, and killed by a test here). All run whole turns through the public API, in virtual time; each
names the plant it kills in its docstring."""

from __future__ import annotations

import asyncio
from typing import Any

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy, load_policy_text
from loopspec.journal import SqliteJournal
from loopspec.replay.interactions import ErrorResponse, StreamResponse
from loopspec.replay.synth import inside_tool_arguments, reply, reply_chunks

from _doubles import NeverOpens
from _paths import DEFAULT_POLICY

DEFAULT_TEXT = DEFAULT_POLICY.read_text()
POLICY = load_policy(str(DEFAULT_POLICY))
USER = [{"role": "user", "content": "What is the capital of the UK?"}]
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "reasoning_tokens": 2, "cost": 0.5}


def play(interactions: list[Any], policy: Any = POLICY, provider: Any = None, **kw: Any) -> Any:
    turn = Turn(policy, provider or InProcessProvider(interactions), model="replay", clock=VirtualClock(), **kw)

    async def main() -> Any:
        return await asyncio.wait_for(turn.run(USER), 10)  # a safety net, not an assertion

    return asyncio.run(main())


def checkpoints(journal: Any) -> list[tuple[str, str]]:
    """(state, text streamed so far) of each checkpoint turn ``t`` journaled."""
    return [(e.body["state"], e.body["streamed"]) for e in journal.entries("t") if e.kind == "checkpoint"]


def test_a_broken_stream_counts_its_usage_and_the_text_it_delivered() -> None:
    """Plants M08 (a stream that broke after its usage chunk was not counted: the tokens it cost
    were missing from the budgets) and M09 (``broken`` lost the number of characters that arrived
    before the break)."""
    chunks = reply_chunks("The capital is London.", usage=USAGE)
    whole_then_dropped = StreamResponse(chunks=tuple(chunks), disconnect_after=len(chunks))
    result = play([whole_then_dropped, reply("Hi.")])
    assert result.outcome == "completed" and result.trace[1].event == "broken"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.reasoning_tokens) == (10, 5, 2)
    assert result.usage.cost == 0.5
    cut = StreamResponse(chunks=tuple(chunks), disconnect_after=3)  # role chunk, "The capi", "tal is L"
    result = play([cut, reply("Hi.")])
    assert result.trace[1].event == "broken" and result.trace[1].attrs["chars"] == 16


def test_every_replys_tokens_and_cost_are_added_up() -> None:
    """Plant M11 (reasoning tokens not counted), and M19 (``cost =``: each reply's cost replaced the
    sum, so a cost budget saw only the last reply; test_budgets_turn.py catches it through a cassette)."""
    tool_call = StreamResponse(chunks=tuple(reply_chunks(tool_calls=[("get_capital", {"country": "UK"})], usage=USAGE)))
    answer = StreamResponse(chunks=tuple(reply_chunks("London.", usage={**USAGE, "cost": 0.25})))
    reg = ToolRegistry()
    reg.register(lambda country: "London", name="get_capital", parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    result = play([tool_call, answer], tools=reg)
    assert result.outcome == "completed"
    assert (result.usage.prompt_tokens, result.usage.reasoning_tokens, result.usage.cost) == (20, 4, 0.75)
    assert result.usage.cost_unknown is False


def test_a_request_that_does_not_open_in_time_is_a_408_timeout() -> None:
    """Plant M03: the request timeout was reported with another status; the event promises 408
    (what a policy's guard on ``status`` and the halt message read)."""
    text = DEFAULT_TEXT.replace("  request_timeout: 120 ", "  request_timeout: 0.05 ", 1)
    assert text != DEFAULT_TEXT
    result = play([], load_policy_text(text, "default.yaml"), provider=NeverOpens())
    assert result.trace[0].event == "timeout"
    assert result.trace[0].attrs["status"] == 408
    # (mutmut open_27..36) every attribute, as a provider's own 408 has them: no wait asked for, no code
    assert result.trace[0].attrs == {"status": 408, "message": "no response within the request timeout", "retry_after": 0.0, "code": "",
                                     "wait_too_long": False}
    served = play([ErrorResponse(408, {"error": {"message": "request timed out"}}), reply("Hi.")])
    assert served.trace[0].event == "timeout" and set(served.trace[0].attrs) == set(result.trace[0].attrs)


def test_a_turn_that_ends_on_a_failed_call_has_no_response_from_an_earlier_one() -> None:
    """Plant M01: opening a call did not clear the last reply, so a turn that ended because the next
    call failed reported (and a ``{response}`` halt message repeated) the preamble of the reply
    before it, which the consumers had already been given."""
    reg = ToolRegistry()
    reg.register(lambda country: "London", name="get_capital", parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    text = DEFAULT_TEXT.replace('    message: "The model provider rejected the credentials (HTTP {status}). Check your API key."',
                                '    message: "{response}(HTTP {status})"', 1)
    assert text != DEFAULT_TEXT
    preamble = reply("Looking it up.", tool_calls=[("get_capital", {"country": "UK"})])
    rejected = ErrorResponse(401, {"error": {"message": "Incorrect API key provided"}})
    result = play([preamble, rejected], load_policy_text(text, "default.yaml"), tools=reg)
    assert result.outcome == "auth_failed"
    assert result.response == "" and result.message == "(HTTP 401)"


def test_a_stall_inside_a_tool_calls_arguments_says_so() -> None:
    """Plant M07: ``stalled`` always said ``mid_tool_call: False``, so a policy could not tell a
    stall that cut a tool call from one that cut text."""
    chunks = reply_chunks("Checking.", tool_calls=[("get_capital", {"country": "United Kingdom"})])
    k = inside_tool_arguments(chunks)[1]
    ran: list[str] = []
    reg = ToolRegistry()
    reg.register(lambda country: ran.append(country) or "London", name="get_capital",
                 parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    cut = StreamResponse(chunks=tuple(chunks), stall_after=k, stall_seconds=600)
    result = play([cut, reply("London.")], tools=reg)
    assert result.trace[1].event == "stalled" and result.trace[1].attrs == {"chars": 9, "mid_tool_call": True}
    assert ran == []
    text_cut = StreamResponse(chunks=tuple(reply_chunks("The capital is London.")), stall_after=2, stall_seconds=600)
    result = play([text_cut, reply("London.")])
    assert result.trace[1].event == "stalled" and result.trace[1].attrs == {"chars": 8, "mid_tool_call": False}


class Watched:
    """A response stream that notes when it is closed (and may fail to close, as a socket the
    peer already dropped does)."""

    def __init__(self, inner: Any, closed: list[str], fail: bool) -> None:
        self.inner, self.closed, self.fail = inner, closed, fail

    def next_pause(self) -> float:
        return self.inner.next_pause()

    def __aiter__(self) -> "Watched":
        return self

    async def __anext__(self) -> Any:
        return await self.inner.__anext__()

    async def aclose(self) -> None:
        self.closed.append("closed")
        if self.fail:
            raise RuntimeError("socket already gone")


class WatchingProvider:
    """InProcessProvider whose streams are :class:`Watched`."""

    def __init__(self, interactions: list[Any], fail: bool = False) -> None:
        self.inner, self.fail = InProcessProvider(interactions), fail
        self.closed: list[str] = []

    async def open(self, request: Any) -> Watched:
        return Watched(await self.inner.open(request), self.closed, self.fail)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_stream_is_closed_when_it_stalls_and_only_then() -> None:
    """Plants M17 (a stalled stream was abandoned without closing it: the connection stayed open
    until the provider dropped it) and M18 (a stream read to its end was kept as the open one and
    closed again when the turn ended)."""
    stalled = reply("The capital is London.", stall_after=2, stall_seconds=600)
    provider = WatchingProvider([stalled, reply("London.")])
    result = play([], provider=provider)
    assert result.trace[1].event == "stalled" and result.outcome == "completed"
    assert provider.closed == ["closed"]
    provider = WatchingProvider([reply("London.")])
    assert play([], provider=provider).outcome == "completed"
    assert provider.closed == []


def test_a_stream_that_fails_to_close_is_dropped_all_the_same() -> None:
    """Plant M13: an error closing a stalled stream escaped into the turn, which crashed instead of
    going on to the stub."""
    stalled = reply("The capital is London.", stall_after=2, stall_seconds=600)
    provider = WatchingProvider([stalled, reply("London.")], fail=True)
    result = play([], provider=provider)
    assert provider.closed == ["closed"]
    assert [s.event for s in result.trace][:3] == ["opened", "stalled", "mid_text"] and result.outcome == "completed"


def test_a_stub_after_a_stall_past_a_tool_call_drops_the_call() -> None:
    """Plant M15 (a stall after a tool call's fragments and some text was stubbed as ``mid_text``:
    ``and`` for ``or``), and M16 (``cut_tools`` empty: the policy's message could not name the calls
    it dropped; test_interpreter.py catches it too)."""
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "replay",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = (chunk({"role": "assistant", "content": ""}),
              chunk({"tool_calls": [{"index": 0, "id": "call_0", "type": "function", "function": {"name": "get_capital", "arguments": '{"country": "UK"}'}}]}),
              chunk({"content": "Let me check."}),
              chunk({}, "tool_calls"))
    ran: list[str] = []
    reg = ToolRegistry()
    reg.register(lambda country: ran.append(country) or "London", name="get_capital",
                 parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    result = play([StreamResponse(chunks=chunks, stall_after=3, stall_seconds=600), reply("London.")], tools=reg)
    assert result.trace[1].event == "stalled" and result.trace[1].attrs["mid_tool_call"] is False
    assert (result.trace[2].event, result.trace[2].attrs) == ("mid_tool_call", {"chars": 13, "cut_tools": ["get_capital"]})
    assert ran == []


def test_a_stream_state_entered_before_any_call_hears_a_broken_stream(tmp_path: Any) -> None:
    """mutmut ``__init___5``: a turn's first stream state (a policy that starts there, which the
    validator only warns of, LS402) found a stream "open" before any call and failed reading it,
    instead of hearing ``broken`` with why and going on as the policy says. (``consume_5``: and
    the checkpoint after it says nothing was streamed.)"""
    policy = load_policy_text(DEFAULT_TEXT.replace("initial: call_model", "initial: read_stream", 1))
    journal = SqliteJournal(tmp_path / "j.db")
    result = play([reply("Hi.")], policy=policy, journal=journal, turn_id="t")
    assert checkpoints(journal) == [("call_model", "")], "the one checkpoint, before the call: nothing streamed"
    first = result.trace[0]
    assert (first.state, first.event, first.attrs["cause"], first.attrs["chars"]) == ("read_stream", "broken", "disconnect", 0)
    assert first.attrs["message"].startswith("no response is open")
    assert result.outcome == "completed" and [s.event for s in result.trace[1:]] == ["opened", "text"]


def test_a_checkpoint_journals_only_what_the_last_call_streamed(tmp_path: Any) -> None:
    """mutmut ``__init___8``/``_9`` and ``open_2``/``_3``: the streamed text a checkpoint keeps (a
    resumed halt continues it) was not empty before the first call, or after a call that failed
    to open it was the earlier call's. The text beside a batch stays until the next call opens."""
    reg = ToolRegistry()
    reg.register(lambda country: "London", name="get_capital",
                 parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    checking = reply("Let me check. ", tool_calls=[("get_capital", {"country": "UK"})])
    journal = SqliteJournal(tmp_path / "j.db")
    slow_down = ErrorResponse(429, {"error": {"message": "slow down", "type": "rate_limit"}})
    result = play([checking, slow_down, reply("London.")], tools=reg, journal=journal, turn_id="t")
    assert result.outcome == "completed"
    assert checkpoints(journal) == [("call_model", ""), ("run_tools", "Let me check. "), ("call_model", "Let me check. "), ("call_model", "")]


def pieces(*texts: str, stall_after: int | None = None, disconnect_after: int | None = None) -> StreamResponse:
    """A text reply streamed in the pieces given (a role chunk first, then one chunk per piece)."""
    role = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    text = [{"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]} for t in texts]
    done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    return StreamResponse(chunks=(role, *text, done), stall_after=stall_after, stall_seconds=1000.0 if stall_after else 0.0,
                          disconnect_after=disconnect_after)


def test_a_stall_keeps_every_piece_that_arrived_and_the_stub_counts_them(tmp_path: Any) -> None:
    """mutmut ``consume_45``/``_47`` (the text streamed before a stall was lost or joined wrong in
    what the next checkpoint keeps) and ``stub_28``/``_31``/``_32`` (``mid_text`` lost its count of
    characters, which a policy's guard or message may read)."""
    journal = SqliteJournal(tmp_path / "j.db")
    result = play([pieces("The ", "capital ", "is", stall_after=4), reply("London.")], journal=journal, turn_id="t")
    stub = next(s for s in result.trace if s.state == "make_stub")
    assert (stub.event, stub.attrs) == ("mid_text", {"chars": len("The capital is")})
    assert checkpoints(journal) == [("call_model", ""), ("call_model", "The capital is")]


def test_a_checkpoint_says_whether_the_history_holds_the_text_streamed(tmp_path: Any) -> None:
    """A stub keeps a stalled stream's text in the history; a broken stream's text is in no reply:
    the checkpoint after each says so, so a halt after a resume writes the text only when the
    history does not hold it."""
    journal = SqliteJournal(tmp_path / "j.db")
    play([pieces("The ", "capital ", "is", stall_after=4), reply("London.")], journal=journal, turn_id="t")
    stalled = [(e.body["streamed"], e.body["streamed_kept"]) for e in journal.entries("t") if e.kind == "checkpoint"]
    journal = SqliteJournal(tmp_path / "k.db")
    play([pieces("The ", "capital ", "is", disconnect_after=4), reply("London.")], journal=journal, turn_id="t")
    broken = [(e.body["streamed"], e.body["streamed_kept"]) for e in journal.entries("t") if e.kind == "checkpoint"]
    assert stalled == [("", False), ("The capital is", True)]
    assert broken == [("", False), ("The capital is", False)]


def test_a_checkpoint_from_before_the_flag_resumes_as_kept(tmp_path: Any) -> None:
    """Journals written before checkpoints said whether the history holds the streamed text are
    resumed as they were read then: as held, so a resumed halt never writes it a second time."""
    from dataclasses import replace

    from loopspec.engine.resume import resume_point

    journal = SqliteJournal(tmp_path / "j.db")
    play([pieces("The ", "capital ", "is", disconnect_after=4), reply("London.")], journal=journal, turn_id="t")
    entries = list(journal.entries("t"))
    cut = max(i for i, e in enumerate(entries) if e.kind == "checkpoint") + 1
    assert resume_point(POLICY, "t", entries[:cut]).streamed_kept is False
    old = {k: v for k, v in entries[cut - 1].body.items() if k != "streamed_kept"}
    assert resume_point(POLICY, "t", [*entries[: cut - 1], replace(entries[cut - 1], body=old)]).streamed_kept is True


def test_a_broken_stream_keeps_every_piece_that_arrived(tmp_path: Any) -> None:
    """mutmut ``consume_60``/``_62``: the text delivered before a disconnect was lost or joined
    wrong in what the checkpoint of the retry keeps."""
    journal = SqliteJournal(tmp_path / "j.db")
    result = play([pieces("The ", "capital ", "is", disconnect_after=4), reply("London.")], journal=journal, turn_id="t")
    assert [s.event for s in result.trace][:2] == ["opened", "broken"] and result.outcome == "completed"
    assert checkpoints(journal) == [("call_model", ""), ("call_model", "The capital is")]


def test_a_stream_state_entered_again_after_a_broken_stream_finds_no_response_open() -> None:
    """mutmut ``consume_59``: a broken stream left a stand-in where no stream should be, so a stream
    state entered again without a call (LS402 warns of such a policy) failed reading it instead of
    hearing ``broken``: no response is open."""
    retry = "        - do: [{backoff: stream, attempt: stream_retries}, {increment: stream_retries}]\n          to: call_model\n"
    assert DEFAULT_TEXT.count(retry) == 1
    policy = load_policy_text(DEFAULT_TEXT.replace(retry, retry.replace("to: call_model", "to: read_stream")))
    result = play([pieces("The ", disconnect_after=2)], policy=policy)
    broken = [s.attrs["message"] for s in result.trace if s.event == "broken"]
    assert len(broken) >= 2 and all(m.startswith("no response is open") for m in broken[1:])
    assert result.outcome == "provider_error"


def test_text_delivered_under_a_turn_deadline_reaches_the_consumer() -> None:
    """mutmut ``_deliver_20``: with a turn deadline every piece is delivered inside a bounded wait,
    and that path handed the consumer None instead of the text."""
    from loopspec import Consumers

    seen: list[Any] = []
    policy = load_policy_text(DEFAULT_TEXT.replace("  # turn_deadline: 900 ", "  turn_deadline: 900\n  # was: ", 1))
    result = play([pieces("The ", "capital ", "is London.")], policy=policy, consumers=Consumers(on_delta=seen.append))
    assert result.outcome == "completed" and seen == ["The ", "capital ", "is London."]
