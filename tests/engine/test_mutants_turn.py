"""Tests against the mutants of ``engine/turn.py`` that the suite let live (a mutation analysis by
hand: each bug planted in the interpreter's loop, seen to survive the engine and replay tests, and
killed by a test here). Each test names the plant it kills in its docstring; all run whole turns
through the public API, in virtual time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loopspec import Consumers, InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy, load_policy_text
from loopspec.replay.interactions import ErrorResponse, StreamResponse
from loopspec.replay.synth import reply

from _paths import DEFAULT_POLICY
from _policy_text import tool_loop

DEFAULT_TEXT = DEFAULT_POLICY.read_text()
POLICY = load_policy(str(DEFAULT_POLICY))
USER = [{"role": "user", "content": "What is the capital of the UK?"}]


def variant(old: str, new: str) -> Any:
    """default.yaml with one line changed (the change must apply)."""
    assert DEFAULT_TEXT.count(old) == 1, old
    return load_policy_text(DEFAULT_TEXT.replace(old, new))


def capital_tools(runs: list[str] | None = None) -> ToolRegistry:
    reg = ToolRegistry()

    def get_capital(country: str) -> str:
        if runs is not None:
            runs.append(country)
        return "London"

    reg.register(get_capital, parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    return reg


def play(interactions: list[Any], policy: Any = POLICY, opening: list[dict[str, Any]] = USER, **kw: Any) -> tuple[Any, Turn]:
    kw.setdefault("tools", capital_tools())
    kw.setdefault("clock", VirtualClock())
    turn = Turn(policy, InProcessProvider(interactions), model="replay", **kw)
    return asyncio.run(turn.run(opening)), turn


def halt_only(message: str) -> Any:
    """A policy whose turn starts in its one state, a completed halt with ``message``."""
    return load_policy_text(
        "loopspec: 1\ninitial: closed\n"
        "backstops:\n  model_calls: {max: 1, exhausted: closed}\n  tool_batches: {max: 1, exhausted: closed}\nstates:\n"
        f"  closed: {{kind: halt, outcome: completed, message: \"{message}\"}}\n"
    )


class OwnTask:
    """The turn's task, for a consumer or a tool that cancels it as a caller outside the turn would."""

    task: "asyncio.Task[Any] | None" = None

    async def cancel(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.sleep(0)  # the cancel lands here, inside the turn


def run_cancelled_from_outside(turn: Turn, own: OwnTask) -> Any:
    """Run ``turn`` as ``own.task``; an outside cancel is raised again once the turn has halted,
    so the result is the one the turn kept."""

    async def main() -> None:
        own.task = asyncio.ensure_future(turn.run(USER))
        with pytest.raises(asyncio.CancelledError):
            await own.task

    asyncio.run(main())
    assert turn.result is not None
    return turn.result

def test_the_policys_reasoning_effort_is_sent_when_the_caller_gives_none() -> None:
    """Plant T01: ``reasoning_effort or policy.settings.reasoning_effort`` lost its fallback."""
    policy = variant("  stall_timeout: 60 ", "  reasoning_effort: high\n  stall_timeout: 60 ")
    result, _ = play([reply("Hi.")], policy)
    assert [r.reasoning_effort for r in result.requests] == ["high"]
    result, _ = play([reply("Hi.")], policy, reasoning_effort="low")
    assert [r.reasoning_effort for r in result.requests] == ["low"], "the caller's effort wins"


def test_the_journal_hears_of_each_step_before_the_callers_observers(tmp_path: Any) -> None:
    """Plant T06: the JournalWriter put after the caller's observers, so an observer that ends the
    turn (as a crash would) on a step leaves that step out of the journal."""
    from loopspec.journal import SqliteJournal

    from _doubles import CutAfter, Stop

    journal = SqliteJournal(tmp_path / "j.db")
    turn = Turn(POLICY, InProcessProvider([reply("Hi.")]), model="replay", clock=VirtualClock(),
                journal=journal, turn_id="t", observers=[CutAfter(1)])
    with pytest.raises(Stop):
        asyncio.run(turn.run(USER))
    assert [e.kind for e in journal.entries("t")].count("step") == 1


def test_the_callers_api_key_is_redacted_from_the_journal(tmp_path: Any) -> None:
    """Plant T07: the JournalWriter built without the turn's api_key, so the key (a literal the
    redaction patterns do not know) is journaled as written wherever it shows up."""
    from loopspec.journal import SqliteJournal

    key = "plainkey0123456789abcdef"
    journal = SqliteJournal(tmp_path / "j.db")
    said = [{"role": "user", "content": f"my key is {key}"}]
    turn = Turn(POLICY, InProcessProvider([reply("Hi.")]), model="replay", clock=VirtualClock(),
                journal=journal, turn_id="t", api_key=key)
    assert asyncio.run(turn.run(said)).outcome == "completed"
    begin = journal.entries("t")[0]
    assert begin.kind == "begin" and key not in str(begin.body) and "my key is" in str(begin.body)


def test_before_and_after_state_change_see_the_machine_before_and_after_the_move() -> None:
    """Plant T14: ``Turn.before_state_change`` registered the callback as an after callback."""
    before: list[str] = []
    after: list[str] = []
    turn = Turn(POLICY, InProcessProvider([reply("Hi.")]), model="replay", clock=VirtualClock())
    turn.before_state_change(lambda e: before.append(e.model.state))
    turn.after_state_change(lambda e: after.append(e.model.state))
    result = asyncio.run(turn.run(USER))
    assert before == [s.before.state for s in result.steps]
    assert after == [s.after.state for s in result.steps]
    assert before[0] == "call_model" and after[-1] == "halt_completed"


def test_a_cancel_asked_before_the_halt_never_interrupts_its_delivery() -> None:
    """Plant T12: ``_interrupt`` lost its ``not self._cancel_seen`` guard, so a cancel asked from
    inside the turn (here: a status consumer during a backoff) lands, one loop iteration later, in
    the delivery of the cancelled halt it already caused, and cuts an async consumer short."""
    ends: list[str] = []

    def status(text: str) -> None:
        if "retrying" in text:
            turn.cancel()

    async def end() -> None:
        await asyncio.sleep(0)
        ends.append("end")

    clock = VirtualClock()
    turn = Turn(POLICY, InProcessProvider([ErrorResponse(429, {"error": {"message": "slow down"}})]), model="replay",
                clock=clock, consumers=Consumers(on_status=status, on_end=end))
    result = asyncio.run(turn.run(USER))
    assert result.outcome == "cancelled"
    assert ends == ["end"], "the halt is delivered whole"
    assert clock.slept == [], "plant T136: no backoff starts once the turn is cancelled"


def test_a_turn_deadline_counts_from_when_the_turn_starts_not_from_zero() -> None:
    """Plant T19: the deadline set at ``turn_deadline`` itself, not ``now() + turn_deadline``: on
    a clock that does not start at 0 every turn is already past it."""
    policy = variant("  # turn_deadline: 900 ", "  turn_deadline: 900\n  # was: ")
    result, _ = play([reply("Hi.")], policy, clock=VirtualClock(start=10_000.0))
    assert result.outcome == "completed" and len(result.requests) == 1


LONG = [m for k in range(5) for m in ({"role": "user", "content": f"question {k}"}, {"role": "assistant", "content": f"answer {k}"})] + USER
OVERFLOW = ErrorResponse(400, {"error": {"message": "maximum context length exceeded", "code": "context_length_exceeded"}})


class CutAtCheckpoint:
    """A turn observer (a named test double) that ends the turn, as a crash would, once the
    checkpoint before ``state``'s effect is journaled (the journal hears of it first)."""

    def __init__(self, state: str, n: int = 1) -> None:
        self.state, self.n = state, n

    def checkpoint(self, point: dict[str, Any]) -> None:
        from _doubles import Stop

        self.n -= point["state"] == self.state
        if self.n == 0:
            raise Stop

    def __getattr__(self, name: str) -> Any:
        return lambda *a: None


def cut_and_resume(tmp_path: Any, interactions: list[Any], cut_at: int | str | CutAtCheckpoint, opening: list[dict[str, Any]] = USER,
                   policy: Any = POLICY, same_turn_id: bool = True, **kw: Any) -> tuple[Any, Any, Any]:
    """The uninterrupted turn, and the same turn cut once its ``cut_at``-th model call has opened
    (or at the checkpoint of the state named ``cut_at``) and resumed from its journal by a new Turn (on the recording from where it was cut)."""
    from loopspec.journal import SqliteJournal

    from _doubles import CutAtCall, Stop, answered_before_resume

    def make(journal: Any, skip: int, turn_id: str | None = "t") -> Turn:
        return Turn(policy, InProcessProvider(interactions[skip:]), model="replay",
                    clock=VirtualClock(), journal=journal, turn_id=turn_id, **{"tools": capital_tools(), **kw})

    whole = asyncio.run(make(SqliteJournal(tmp_path / "whole.db"), 0).run(opening))
    journal = SqliteJournal(tmp_path / "cut.db")
    cut = make(journal, 0)
    cutter = CutAtCall(cut_at) if isinstance(cut_at, int) else CutAtCheckpoint(cut_at) if isinstance(cut_at, str) else cut_at
    cut.observers.observers.append(cutter)
    with pytest.raises(Stop):
        asyncio.run(cut.run(opening))
    again = make(journal, answered_before_resume(journal, "t"), "t" if same_turn_id else None)
    return whole, asyncio.run(again.resume("t")), journal


def same_end(whole: Any, resumed: Any) -> None:
    assert (resumed.outcome, resumed.message, resumed.messages) == (whole.outcome, whole.message, whole.messages)
    # a call the crash cut (here always the last) is journaled once and sent again on resume
    assert resumed.requests in (whole.requests, whole.requests + whole.requests[-1:])
    assert [s.to_json() for s in resumed.trace] == [s.to_json() for s in whole.trace]
    assert resumed.usage.tool_batches == whole.usage.tool_batches


def test_a_turn_resumed_after_a_compaction_sends_the_compacted_history(tmp_path: Any) -> None:
    """Plant T24: resume forgot the trajectory's compaction level, so the call after the crash
    sent the whole history again."""
    whole, resumed, _ = cut_and_resume(tmp_path, [OVERFLOW, reply("Hi.")], 1, LONG)
    assert whole.outcome == "completed" and whole.requests[1].message_count < whole.requests[0].message_count
    same_end(whole, resumed)


def test_a_turn_resumed_by_a_turn_of_another_name_journals_under_the_resumed_name(tmp_path: Any) -> None:
    """Plant T23: the journal writer kept the new Turn's own (random) name, so what the resumed
    turn did went into the journal under a turn nobody asked for."""
    tool_call = reply(tool_calls=[("get_capital", {"country": "UK"})])
    whole, resumed, journal = cut_and_resume(tmp_path, [tool_call, reply("London.")], 2, same_turn_id=False)
    same_end(whole, resumed)
    assert journal.turn_ids() == ["t"] and journal.entries("t")[-1].kind == "halt"


def test_a_turn_resumed_before_its_batch_keeps_what_was_already_streamed(tmp_path: Any) -> None:
    """Plant T29: resume forgot the text already streamed to the consumers before the crash, so
    the resumed halt wrote the answer into the history differently than the uninterrupted turn."""
    policy = variant("      ok: call_model\n      failed: call_model", "      ok: halt_completed\n      failed: call_model")
    checking = reply("Let me check. ", tool_calls=[("get_capital", {"country": "UK"})])
    whole, resumed, _ = cut_and_resume(tmp_path, [checking], "run_tools", policy=policy)
    assert whole.outcome == "completed" and whole.message == "Let me check. "
    same_end(whole, resumed)


SLOW_DOWN = ErrorResponse(429, {"error": {"message": "slow down", "type": "rate_limit"}})


def test_a_resumed_turn_counts_the_time_before_the_crash(tmp_path: Any) -> None:
    """Plant T33: resume did not move the turn's start back by the time it ran before the crash,
    so its checkpoints journaled only the time since the resume."""
    policy = variant("  # turn_deadline: 900 ", "  turn_deadline: 500\n  # was: ")
    _, resumed, journal = cut_and_resume(tmp_path, [SLOW_DOWN, SLOW_DOWN, reply("Hi.")], CutAtCheckpoint("call_model", 2), policy=policy)
    from loopspec.journal import SqliteJournal

    def elapsed(j: Any) -> list[float]:
        return [e.body["elapsed"] for e in j.entries("t") if e.kind == "checkpoint"]

    whole_elapsed = elapsed(SqliteJournal(tmp_path / "whole.db"))
    assert resumed.outcome == "completed" and whole_elapsed == [0.0, 30.0, 90.0]
    assert elapsed(journal) == [0.0, 30.0, 30.0, 90.0], "the cut checkpoint, then the same one written again on resume"


def test_a_resumed_turn_has_only_what_is_left_of_its_deadline(tmp_path: Any) -> None:
    """Plant T31: resume added the time already spent to the deadline instead of taking it off."""
    policy = variant("  # turn_deadline: 900 ", "  turn_deadline: 50\n  # was: ")
    whole, resumed, _ = cut_and_resume(tmp_path, [SLOW_DOWN, SLOW_DOWN, reply("Hi.")], CutAtCheckpoint("call_model", 2), policy=policy)
    assert whole.outcome == "cancelled", "the second backoff (60 s) is cut at the deadline"
    same_end(whole, resumed)


def cut_journal(tmp_path: Any, interactions: list[Any], cutter: Any, policy: Any = POLICY) -> Any:
    """The journal of a turn that an observer ended (as a crash would) part-way."""
    from loopspec.journal import SqliteJournal

    from _doubles import Stop

    journal = SqliteJournal(tmp_path / "cut.db")
    turn = Turn(policy, InProcessProvider(interactions), model="replay", tools=capital_tools(), clock=VirtualClock(),
                journal=journal, turn_id="t", observers=[cutter])
    with pytest.raises(Stop):
        asyncio.run(turn.run(USER))
    return journal


def test_a_crash_never_refunds_what_the_session_spent_on_auto_approval(tmp_path: Any) -> None:
    """Plant T37: resume set the session's spending to the journal's figure, so a session that
    spent more (in its other turns) got the difference back."""
    from loopspec.engine.approvals import ApprovalSession

    journal = cut_journal(tmp_path, [SLOW_DOWN, reply("Hi.")], CutAtCheckpoint("call_model", 2))
    session = ApprovalSession(auto_approve=True, spent=7.5)
    turn = Turn(POLICY, InProcessProvider([reply("Hi.")]), model="replay", clock=VirtualClock(), journal=journal,
                approvals=session)
    assert asyncio.run(turn.resume("t")).outcome == "completed"
    assert session.spent == 7.5


@pytest.mark.parametrize("answer", [{"approve": ["call_1"]}, {"deny": ["call_1"]}])
def test_answers_to_a_turn_that_awaits_no_approval_are_refused(tmp_path: Any, answer: dict[str, list[str]]) -> None:
    """Plant T39: a ``deny`` alone for a turn that was not paused for approval was ignored."""
    from loopspec.engine.resume import ResumeError

    journal = cut_journal(tmp_path, [SLOW_DOWN, reply("Hi.")], CutAtCheckpoint("call_model", 2))
    turn = Turn(POLICY, InProcessProvider([reply("Hi.")]), model="replay", clock=VirtualClock(), journal=journal)
    with pytest.raises(ResumeError, match="is not awaiting approval: there is nothing to --approve or --deny"):
        asyncio.run(turn.resume("t", **answer))


def test_max_steps_is_the_number_of_decisions_a_turn_may_take() -> None:
    """Plant T46: the step limit compared with ``>``, so a turn took one decision more than
    ``max_steps`` allows."""
    from loopspec.engine.turn import STEP_LIMIT_MESSAGE

    result, _ = play([reply("Hi.")], max_steps=2)
    assert result.outcome == "completed" and len(result.steps) == 2
    result, _ = play([reply("Hi.")], max_steps=1)
    assert result.outcome == "policy_error" and len(result.steps) == 1
    assert result.message == STEP_LIMIT_MESSAGE.format(n=1) and result.halt_state == POLICY.policy_error_state()


def test_an_outside_cancel_is_not_raised_again_once_the_turn_was_cancelled_through_its_api() -> None:
    """Plant T54: an outside cancel of the task was raised again after the halt even when
    ``Turn.cancel()`` was asked too (here by a consumer during the halt): the caller who asked for
    the cancelled halt gets it as the result."""
    from _doubles import BlockingClock

    def status(text: str) -> None:
        if text.startswith("halt:"):
            turn.cancel()

    clock = BlockingClock()
    turn = Turn(POLICY, InProcessProvider([SLOW_DOWN]), model="replay", clock=clock, consumers=Consumers(on_status=status))

    async def go() -> Any:
        task = asyncio.create_task(turn.run(USER))
        await clock.sleeping.wait()
        task.cancel()
        return await task

    assert asyncio.run(go()).outcome == "cancelled"
    plain = Turn(POLICY, InProcessProvider([SLOW_DOWN]), model="replay", clock=(clock := BlockingClock()))

    async def outside_only() -> Any:
        task = asyncio.create_task(plain.run(USER))
        await clock.sleeping.wait()
        task.cancel()
        return await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(outside_only())
    assert plain.result is not None and plain.result.outcome == "cancelled"


class SlowToClose:
    """A provider (a named test double) whose one response opens and then takes a loop iteration to
    close, as a connection does: ``closed`` says whether its ``aclose`` ran to the end."""

    def __init__(self) -> None:
        self.closed = False

    async def open(self, request: Any) -> "SlowToClose":
        return self

    def __aiter__(self) -> "SlowToClose":
        return self

    async def __anext__(self) -> Any:
        raise StopAsyncIteration

    async def aclose(self) -> None:
        await asyncio.sleep(0)
        self.closed = True


class CancelOnOpen:
    """A turn observer (a named test double) that cancels its turn, from inside it, once the
    response has opened."""

    def __init__(self) -> None:
        self.turn: Turn | None = None

    def step_taken(self, step: Any, record: Any) -> None:
        if record.event == "opened" and self.turn is not None:
            self.turn.cancel()

    def __getattr__(self, name: str) -> Any:
        return lambda *a: None


def test_a_cancel_from_inside_the_turn_lets_the_open_stream_close() -> None:
    """Plant T86: the ``cancelled`` event taken before the stream effect no longer marked the
    cancel as seen before closing the stream, so the cancel (scheduled from inside the turn) landed
    in the close and the connection was never released."""
    provider, observer = SlowToClose(), CancelOnOpen()
    turn = Turn(POLICY, provider, model="replay", clock=VirtualClock(), observers=[observer])
    observer.turn = turn
    result = asyncio.run(turn.run(USER))
    assert result.outcome == "cancelled" and [s.event for s in result.trace] == ["opened", "cancelled"]
    assert provider.closed


class ToolResults:
    """A turn observer (a named test double) that keeps every tool result it hears of."""

    def __init__(self) -> None:
        self.results: list[Any] = []

    def tool_finished(self, call: Any, result: Any) -> None:
        self.results.append(result)

    def __getattr__(self, name: str) -> Any:
        return lambda *a: None


def test_a_refused_call_is_reported_failed_and_not_run() -> None:
    """Plant T126: the results of calls the policy refused were reported ``ok`` to the observers
    (the journal, the traces)."""
    from test_tool_batches import REFUSING

    seen = ToolResults()
    ask = reply(tool_calls=[("get_capital", {"country": "UK"}), ("get_capital", {"country": "FR"})])
    result, _ = play([ask, reply("Done.")], load_policy_text(REFUSING), observers=[seen])
    assert result.outcome == "completed"
    assert [(r.ok, r.ran, r.content) for r in seen.results] == [(False, False, "Not run: get_capital, get_capital is not allowed here.")] * 2


def test_a_halt_that_continues_the_streamed_text_keeps_it_byte_for_byte() -> None:
    """Plant T140: the halt message was always stripped, so an answer streamed with a trailing
    newline was written to the history and returned without it."""
    result, _ = play([reply("London.\n")])
    assert result.message == "London.\n" and result.messages[-1] == {"role": "assistant", "content": "London.\n"}
    result, _ = play([reply(tool_calls=[("get_capital", {"country": "UK"})]), reply("")])
    assert not result.message.startswith("\n"), "a message over nothing streamed is stripped"


def test_a_halt_message_that_goes_on_from_the_streamed_answer_is_written_to_the_history() -> None:
    """Plant T142: the halt wrote nothing to the history whenever the last message was the
    model's (``or`` for ``and``), so the part of the message after the streamed answer was lost."""
    policy = variant('''    outcome: completed
    message: "{response}"''', '''    outcome: completed
    message: "{response}\\n\\n(checked)"''')
    deltas: list[str] = []
    result, _ = play([reply("London.")], policy, consumers=Consumers(on_delta=deltas.append))
    assert result.message == "London.\n\n(checked)" and "".join(deltas) == result.message
    assert [m["content"] for m in result.messages if m["role"] == "assistant"] == ["London.", "\n\n(checked)"]


def boom(text: str) -> ErrorResponse:
    return ErrorResponse(500, {"error": {"message": text, "type": "server_error"}})


def test_the_turns_error_is_the_last_message_a_step_carried() -> None:
    """Plant T150: ``TurnResult.error`` took the first provider message of the turn, not the last."""
    result, _ = play([boom("first failure"), boom("second failure"), reply("Hi.")])
    assert result.outcome == "completed" and "second failure" in (result.error or "")


def test_a_consumer_that_fails_while_the_halt_is_delivered_is_reported() -> None:
    """Plant T155: the result's consumer errors were taken before the halt's delivery, so a
    consumer that raised in ``on_end`` went unreported."""

    def end() -> None:
        raise RuntimeError("the socket is gone")

    result, _ = play([reply("Hi.")], consumers=Consumers(on_end=end))
    assert result.outcome == "completed" and result.consumer_errors == ["on_end: RuntimeError: the socket is gone"]


def test_run_turn_and_run_turn_sync_pass_their_options_to_the_turn() -> None:
    """Plant T157: ``run_turn`` dropped its options (tools, clock, ...)."""
    from loopspec import run_turn_sync

    runs: list[str] = []
    ask = reply(tool_calls=[("get_capital", {"country": "UK"})])
    result = run_turn_sync(POLICY, USER, InProcessProvider([ask, reply("London.")]), model="replay",
                           tools=capital_tools(runs), clock=VirtualClock(), max_tokens=77)
    assert result.outcome == "completed" and runs == ["UK"] and [r.max_tokens for r in result.requests] == [77, 77]


def test_answers_given_on_resume_survive_a_second_crash(tmp_path: Any) -> None:
    """Plant T68: the checkpoint left out the person's answers, so a turn that crashed again
    before its approved batch ran was back to waiting for them."""
    from loopspec.journal import SqliteJournal

    from _doubles import Stop

    ran: list[str] = []
    reg = ToolRegistry()
    reg.register(lambda country: ran.append(country) or "London", name="get_capital", needs_approval=True,
                 parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    ask = reply(tool_calls=[("get_capital", {"country": "UK"})])
    journal = SqliteJournal(tmp_path / "j.db")

    def turn(interactions: list[Any], *observers: Any) -> Turn:
        return Turn(POLICY, InProcessProvider(interactions), model="replay", tools=reg, clock=VirtualClock(),
                    journal=journal, turn_id="t", observers=list(observers))

    first = asyncio.run(turn([ask]).run(USER))
    assert first.pause is not None
    with pytest.raises(Stop):
        asyncio.run(turn([reply("London.")], CutAtCheckpoint("run_tools")).resume("t", approve=[first.pause.calls[0]["id"]]))
    result = asyncio.run(turn([reply("London.")]).resume("t"))
    assert ran == ["UK"] and result.outcome == "completed"


def test_a_halt_message_renders_the_turns_counts_and_limits() -> None:
    """Plants T76, T77, T78: ``{tool_batches}`` rendered the model call count,
    ``{max_tool_batches}`` the model call limit, ``{max_wait}`` 0."""
    policy = variant('''    outcome: completed
    message: "{response}"''', '''    outcome: completed
    message: "{response} [{model_calls} {tool_batches} {max_model_calls} {max_tool_batches} {max_wait} {event}]"''')
    result, _ = play([reply(tool_calls=[("get_capital", {"country": "UK"})]), reply("London.")], policy)
    assert result.message == "London. [2 1 90 60 60 text]"


def test_an_escalation_tells_the_consumers_where_it_goes() -> None:
    """Plant T121: the escalation's status line (``escalate: <state>``) was never sent."""
    statuses: list[str] = []
    result, _ = play([OVERFLOW, reply("Hi.")], opening=LONG, consumers=Consumers(on_status=statuses.append))
    assert result.outcome == "completed" and "escalate: compact_context" in statuses


def test_the_text_that_arrived_before_a_stall_stays_in_the_history() -> None:
    """Plant T123: a partial-stream stub's text was not committed, so the history lost what the
    model had written before the stall (and the continuation asked it to go on from nothing)."""
    stalled = reply("The capital of the United Kingdom is London.", stall_after=3, stall_seconds=300)
    result, _ = play([stalled, reply("London.")])
    partial = "The capital of"
    assert result.outcome == "completed"
    assert any(m["role"] == "assistant" and str(m.get("content", "")).startswith(partial) for m in result.messages), result.messages


class CallEnds:
    """A turn observer (a named test double) that keeps how each model call ended and when tools
    started."""

    def __init__(self) -> None:
        self.ends: list[tuple[int, str]] = []
        self.started: list[str] = []

    def model_call_finished(self, index: int, event: Any, reply: Any) -> None:
        self.ends.append((index, event.name))

    def tool_started(self, call: Any) -> None:
        self.started.append(call.name)

    def __getattr__(self, name: str) -> Any:
        return lambda *a: None


def test_a_call_cut_by_the_deadline_is_reported_finished_once() -> None:
    """Plant T90: a call in flight when the deadline passed was never reported finished to the
    observers (the journal kept a request with no response)."""
    from _doubles import NeverOpens

    policy = variant("  # turn_deadline: 900 ", "  turn_deadline: 0.05\n  # was: ")  # within() waits real time
    ends = CallEnds()
    turn = Turn(policy, NeverOpens(), model="replay", clock=VirtualClock(), observers=[ends])
    assert asyncio.run(turn.run(USER)).outcome == "cancelled"
    assert ends.ends == [(1, "cancelled")]


def test_a_call_is_reported_finished_once_even_when_a_later_batch_is_cancelled() -> None:
    """Plant T108: the call stayed "in flight" after it was reported finished, so a cancel in the
    tool batch that followed reported it finished a second time."""
    ends = CallEnds()
    reg = ToolRegistry()

    async def get_capital(country: str) -> str:
        turn.cancel()
        await asyncio.sleep(0)
        return "London"

    reg.register(get_capital, parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    turn = Turn(POLICY, InProcessProvider([reply(tool_calls=[("get_capital", {"country": "UK"})])]), model="replay",
                tools=reg, clock=VirtualClock(), observers=[ends])
    assert asyncio.run(turn.run(USER)).outcome == "cancelled"
    assert ends.ends == [(1, "tool_calls")]


class CancelOnToolCalls(CancelOnOpen):
    """Cancels its turn, from inside it, once the model has asked for tools."""

    def step_taken(self, step: Any, record: Any) -> None:
        if record.event == "tool_calls" and self.turn is not None:
            self.turn.cancel()


def test_a_cancel_before_the_batch_starts_runs_no_tool() -> None:
    """Plant T85: a cancel asked before the tool effect was not looked at there, so the batch
    started (and was cut) instead of the turn halting before any tool ran."""
    ends, cancel = CallEnds(), CancelOnToolCalls()
    turn = Turn(POLICY, InProcessProvider([reply(tool_calls=[("get_capital", {"country": "UK"})])]), model="replay",
                tools=capital_tools(), clock=VirtualClock(), observers=[cancel, ends])
    cancel.turn = turn
    result = asyncio.run(turn.run(USER))
    assert result.outcome == "cancelled" and ends.started == []
    assert [s.event for s in result.trace] == ["opened", "tool_calls", "cancelled"]


def test_the_stream_is_closed_before_the_cancelled_step_is_recorded() -> None:
    """Plant T87: the cancelled effect did not close the open stream itself, so the connection was
    still open when the observers (the journal) heard of the cancelled step."""
    provider, cancel = SlowToClose(), CancelOnOpen()
    closed_at_cancel: list[bool] = []

    class Watch(CancelOnOpen):
        def step_taken(self, step: Any, record: Any) -> None:
            if record.event == "cancelled":
                closed_at_cancel.append(provider.closed)

    turn = Turn(POLICY, provider, model="replay", clock=VirtualClock(), observers=[cancel, Watch()])
    cancel.turn = turn
    assert asyncio.run(turn.run(USER)).outcome == "cancelled"
    assert closed_at_cancel == [True]


def test_a_cancel_absorbed_by_the_turn_leaves_its_task_uncancelled() -> None:
    """Plant T94: the turn absorbed a cancellation without ``uncancel()``, so its task still
    counted as being cancelled while it delivered the halt (asyncio.timeout and TaskGroup in a
    consumer would misread it)."""
    from _doubles import BlockingClock

    seen: list[int] = []

    async def end() -> None:
        task = asyncio.current_task()
        seen.append(task.cancelling() if task is not None else -1)

    clock = BlockingClock()
    turn = Turn(POLICY, InProcessProvider([SLOW_DOWN]), model="replay", clock=clock, consumers=Consumers(on_end=end))

    async def go() -> Any:
        task = asyncio.create_task(turn.run(USER))
        await clock.sleeping.wait()
        turn.cancel()
        return await task

    assert asyncio.run(go()).outcome == "cancelled" and seen == [0]


def test_nothing_blank_is_streamed_when_the_halt_adds_nothing() -> None:
    """Plant T151: the halt sent its (empty) remainder to ``on_delta`` even when the message was
    all streamed already."""
    deltas: list[str] = []
    result, _ = play([reply("London is the capital.")], consumers=Consumers(on_delta=deltas.append))
    assert "".join(deltas) == result.message == "London is the capital." and "" not in deltas


def test_the_text_before_a_tool_call_stays_in_the_history() -> None:
    """Plant T124: the batch the policy ran was committed without the text the model wrote before
    its calls."""
    result, _ = play([reply("Let me check. ", tool_calls=[("get_capital", {"country": "UK"})]), reply("London.")])
    (asked,) = [m for m in result.messages if m.get("tool_calls")]
    assert asked["content"] == "Let me check. "


def test_appended_and_refusal_templates_see_the_counters_after_the_step() -> None:
    """Plants T130 and T131: a refusal and an appended prompt were rendered with the counters
    before their step, not the configuration the step leads to."""
    from test_tool_batches import REFUSING

    counting = REFUSING.replace('refused: "Not run: {tools} is not allowed here."', 'refused: "Not run ({model_calls})."')
    seen = ToolResults()
    result, _ = play([reply(tool_calls=[("get_capital", {"country": "UK"})]), reply("Done.")], load_policy_text(counting),
                     observers=[seen])
    assert result.outcome == "completed" and [r.content for r in seen.results] == ["Not run (2)."], "the refusal leads to the second call"
    warned = variant("    max: 90\n    warn_at: 68", "    max: 90\n    warn_at: 2")
    ask = reply(tool_calls=[("get_capital", {"country": "UK"})])
    result, _ = play([ask, ask, reply("London.")], warned)
    warnings = [m["content"] for m in result.messages if m["role"] == "user" and "model calls" in str(m["content"])]
    assert warnings == ["This turn has used 2 of 90 model calls. Start wrapping up."]


def test_after_a_bad_thinking_signature_the_next_request_goes_without_thinking() -> None:
    """Plant T96: the call never applied the offer's ``thinking_stripped``, so the heal resent the
    thinking blocks the provider had just refused."""
    thought = {"role": "assistant", "content": "Earlier answer.", "reasoning_content": "hmm",
               "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "abc"}]}
    opening = [{"role": "user", "content": "Earlier question."}, thought, *USER]
    bad = ErrorResponse(400, {"error": {"message": "Invalid signature in thinking block", "type": "invalid_request_error"}})
    result, turn = play([bad, reply("London.")], opening=opening)
    sent = turn.provider.requests  # type: ignore[attr-defined]
    assert result.outcome == "completed" and [s.event for s in result.trace][:2] == ["thinking_signature_invalid", "done"]
    assert "thinking_blocks" in sent[0].messages[1]
    assert all("thinking_blocks" not in m and "reasoning_content" not in m for m in sent[1].messages)


class Started:
    """A turn observer (a named test double) that keeps what ``turn_started`` told it."""

    def __init__(self) -> None:
        self.infos: list[Any] = []

    def turn_started(self, info: Any, messages: Any) -> None:
        self.infos.append(info)

    def __getattr__(self, name: str) -> Any:
        return lambda *a: None


def test_the_observers_hear_where_the_turn_sends_its_calls() -> None:
    """Plant T17: ``turn_started`` was told no api_base."""
    seen = Started()
    play([reply("Hi.")], api_base="http://127.0.0.1:9/v1", observers=[seen])
    (info,) = seen.infos
    assert (info.model, info.api_base, info.replayed, info.resumed) == ("replay", "http://127.0.0.1:9/v1", True, False)


def test_a_turn_that_halts_with_its_response_open_closes_it() -> None:
    """Plant T51: the stream still open when the loop ended (here: the step limit, right after the
    response opened) was never closed."""
    provider = SlowToClose()
    result = asyncio.run(Turn(POLICY, provider, model="replay", clock=VirtualClock(), max_steps=1).run(USER))
    assert result.outcome == "policy_error" and provider.closed


def test_a_halt_message_is_held_to_max_message_bytes() -> None:
    """Plant T156: the halt message was rendered without the policy's byte limit."""
    text = DEFAULT_TEXT.replace("  stall_timeout: 60 ", "  max_message_bytes: 64\n  stall_timeout: 60 ").replace(
        'message: "The model provider rejected the credentials (HTTP {status}). Check your API key."', 'message: "Rejected: {message}"')
    denied = ErrorResponse(401, {"error": {"message": "no " * 200, "type": "invalid_api_key"}})
    result, _ = play([denied], load_policy_text(text))
    assert result.outcome == "auth_failed" and result.message.startswith("Rejected: ") and len(result.message.encode()) < 200


def test_a_cancel_asked_on_the_step_into_a_halt_never_interrupts_its_delivery() -> None:
    """mutmut ``_drive_77``: the loop's end kept ``_cancel_seen and _cancel_requested``, so a
    cancel asked from inside the turn on its last step (here: a callback on entering the halt),
    which the loop never turned into a ``cancelled`` event, still landed in the delivery of the
    halt already decided and cut an async consumer short."""
    ends: list[str] = []

    def cancel_on_halt(event: Any) -> None:
        if event.state.name == "halt_completed":
            turn.cancel()

    async def end() -> None:
        await asyncio.sleep(0)
        ends.append("end")

    turn = Turn(POLICY, InProcessProvider([reply("Hi.")]), model="replay", clock=VirtualClock(),
                consumers=Consumers(on_end=end))
    turn.on_enter("halt_completed", cancel_on_halt)
    result = asyncio.run(turn.run(USER))
    assert result.outcome == "completed" and not result.callback_errors
    assert ends == ["end"], "the halt is delivered whole"


CARRY_ON_AFTER_CANCEL = load_policy_text(DEFAULT_TEXT.replace(
    "      cancelled: halt_cancelled\n",
    "      cancelled:\n        - do: [{increment: transient_retries}]\n          to: call_model\n        - halt_cancelled\n"))
"""default.yaml, but a cancelled call, stream or batch calls the model again (twice at most)."""


def test_an_outside_cancel_absorbed_by_the_turn_cancels_one_effect_only() -> None:
    """mutmut ``_effect_16``: the pending cancel left set once the next effect turned it into its
    ``cancelled`` event. A cancel of the turn's task that lands in a consumer (here: the backoff's
    status line) cancels the next call, once; a policy that goes on after a cancel then makes its
    next call. With the flag left set every later call was cancelled too."""
    own = OwnTask()
    statuses: list[str] = []

    async def status(text: str) -> None:
        statuses.append(text)
        if "retrying" in text:
            await own.cancel()

    turn = Turn(CARRY_ON_AFTER_CANCEL, InProcessProvider([ErrorResponse(429, {"error": {"message": "slow down"}}), reply("Hi.")]),
                model="replay", clock=VirtualClock(), consumers=Consumers(on_status=status))
    result = run_cancelled_from_outside(turn, own)
    assert result.outcome == "completed", (result.outcome, statuses)
    assert [s.event.name for s in result.steps] == ["rate_limit", "cancelled", "opened", "text"]
    assert len(result.requests) == 2


def test_an_outside_cancel_caught_in_an_effect_cancels_that_effect_only() -> None:
    """mutmut ``_effect_72``: after a cancel caught inside an effect (here: a tool that cancels its
    turn's task from inside and awaits) the pending cancel was left set, so a policy that goes on
    after a cancelled batch had its next call cancelled too."""
    own = OwnTask()
    reg = ToolRegistry()

    async def get_capital(country: str) -> str:
        await own.cancel()
        return "London"

    reg.register(get_capital, parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    turn = Turn(CARRY_ON_AFTER_CANCEL, InProcessProvider([reply(tool_calls=[("get_capital", {"country": "UK"})]), reply("London.")]),
                model="replay", tools=reg, clock=VirtualClock())
    result = run_cancelled_from_outside(turn, own)
    assert [s.event.name for s in result.steps] == ["opened", "tool_calls", "cancelled", "opened", "text"]
    assert result.outcome == "completed" and len(result.requests) == 2


def test_the_time_a_backoff_waits_is_left_out_of_the_working_time_and_nothing_else() -> None:
    """mutmut ``_directive_54``: the wait excluded as ``now + start`` instead of ``now - start``
    took the consumer's own time (three seconds before the wait, same measurement) out too."""
    clock = VirtualClock()

    async def status(text: str) -> None:
        if "retrying" in text:
            await clock.sleep(3)  # a consumer that takes three seconds: working time

    turn = Turn(POLICY, InProcessProvider([ErrorResponse(429, {"error": {"message": "slow down"}}), reply("Hi.")]),
                model="replay", clock=clock, consumers=Consumers(on_status=status))
    result = asyncio.run(turn.run(USER))
    assert result.outcome == "completed" and clock.slept == [3, 30]
    assert result.usage.working_time == pytest.approx(3)


def test_a_backoff_waits_what_its_schedule_says_when_the_event_brings_no_retry_after() -> None:
    """mutmut ``_directive_24/25/52``: a broken stream has no Retry-After; the wait is the
    schedule's, 0 s and then 0.5 s, not a second made up for a missing or zero Retry-After, and a
    wait of 0 s sleeps not at all."""
    policy = variant("  stream: [2, 5]", "  stream: [0, 0.5]")
    clock = VirtualClock()
    broken = reply("Hel", disconnect_after=1)
    result, _ = play([broken, broken, reply("Hello.")], policy, clock=clock)
    assert [s.event.name for s in result.steps].count("broken") == 2 and result.outcome == "completed"
    assert clock.slept == [0.5]


def test_a_compaction_with_nothing_left_to_compact_says_so() -> None:
    """mutmut ``_directive_58/59``: the escalation's failure carries the reason the policy's halt
    can show."""
    overflow = ErrorResponse(400, {"error": {"message": "maximum context length exceeded", "code": "context_length_exceeded"}})
    result, _ = play([overflow], POLICY)
    failed = [s for s in result.steps if s.event.name == "failed"]
    assert len(failed) == 1 and failed[0].event.attrs == {"message": "nothing left to compact"}
    assert result.outcome == "context_exceeded", result.outcome


def test_a_turn_that_starts_in_a_halt_renders_its_message_for_the_start_event() -> None:
    """mutmut ``run_12/14/16``: before any step the turn's last event is ``start``, which a halt
    it starts in can name (``{event}``)."""
    policy = halt_only("nothing to do ({event})")
    result, _ = play([], policy)
    assert (result.outcome, result.message, result.steps) == ("completed", "nothing to do (start)", [])


def test_a_deadline_that_passes_while_the_text_is_delivered_ends_the_turn_without_raising() -> None:
    """mutmut ``_note_cancel_2``: the stream's read is stopped by the turn itself once the deadline
    has passed (here: a consumer of the text takes 20 s of a 10 s turn). That cancel is the turn's
    own, not the caller's: the turn halts cancelled and returns, it does not raise afterwards."""
    policy = variant("  # turn_deadline: 900 ", "  turn_deadline: 10\n  # was: ")
    clock = VirtualClock()

    async def slow_reader(text: str) -> None:
        await clock.sleep(20)

    turn = Turn(policy, InProcessProvider([reply("Hello there, this is a long answer.")]), model="replay", clock=clock,
                consumers=Consumers(on_delta=slow_reader))
    result = asyncio.run(turn.run(USER))  # raises CancelledError if the turn took its own stop for the caller's
    assert result.outcome == "cancelled" and [s.event.name for s in result.steps] == ["opened", "cancelled"]


def test_the_guardrail_variable_is_empty_unless_a_guardrail_fired() -> None:
    """mutmut ``_variables_23/27``: ``{guardrail}`` names the detector only for a guardrail's event
    (one with a verdict); for any other event it renders empty."""
    policy = halt_only("stopped [{guardrail}]")
    result, _ = play([], policy)
    assert result.message == "stopped []"


def test_compaction_keeps_as_many_recent_messages_as_the_policy_says() -> None:
    """mutmut ``_prepare_7``: the history was built with the default ``keep_last`` (6), not the
    policy's ``compaction_keep_last``; two policies that differ only there send differently
    compacted requests after an overflow."""
    sent = {}
    for keep in (2, 6):
        policy = variant("  compaction_keep_last: 6 ", f"  compaction_keep_last: {keep} ")
        result, _ = play([OVERFLOW, reply("Hi.")], policy, opening=LONG)
        assert result.outcome == "completed" and len(result.requests) == 2
        sent[keep] = result.requests[1].message_count
    assert sent[2] < sent[6] < len(LONG)


def test_a_halt_message_that_does_not_continue_the_streamed_text_is_delivered_whole() -> None:
    """mutmut ``_halt_24``: only a message that starts with the text already streamed is cut to
    what follows it; any other is delivered and kept whole (here: "Hello th" was streamed, then
    the provider kept failing). The history keeps the broken stream's text the consumer saw,
    then the message."""
    deltas: list[str] = []
    broken = reply("Hello there friend", disconnect_after=2)
    result, _ = play([broken] * 4, consumers=Consumers(on_delta=deltas.append))
    assert result.outcome == "provider_error" and not result.message.startswith("Hello")
    assert deltas[-1] == result.message and "".join(deltas).endswith("Hello th" + result.message)
    assert [m["content"] for m in result.messages if m["role"] == "assistant"] == ["Hello th", result.message]


def test_a_turn_with_no_opening_messages_halts_with_its_message_as_the_history() -> None:
    """mutmut ``_halt_30``: the halt looked at the last message of an empty history."""
    policy = halt_only("nothing to do")
    result, _ = play([], policy, opening=[])
    assert result.messages == [{"role": "assistant", "content": "nothing to do"}]


def test_a_halt_with_an_empty_message_delivers_nothing_and_writes_nothing() -> None:
    """mutmut ``_halt_12``: a halt whose message template is empty (allowed, with a warning)
    rendered a made-up text."""
    interims: list[tuple[str, bool]] = []
    deltas: list[str] = []
    result, _ = play([], policy=halt_only(""),
                     consumers=Consumers(on_delta=deltas.append, on_interim=lambda m, final: interims.append((m, final))))
    assert result.outcome == "completed" and result.message == ""
    assert result.messages == USER
    assert deltas == [] and interims == [("", True)]


def test_a_halt_that_adds_only_blanks_to_the_streamed_answer_writes_no_blank_message() -> None:
    """mutmut ``_halt_33``: whatever the message added after the streamed answer was written to the
    history as a message of its own, even blanks (``or`` for ``and``)."""
    policy = variant('''    outcome: completed
    message: "{response}"''', '''    outcome: completed
    message: "{response}  "''')
    result, _ = play([reply("London.")], policy)
    assert result.message == "London.  "
    assert [m["content"] for m in result.messages if m["role"] == "assistant"] == ["London."]


def test_a_halt_message_already_last_in_the_history_is_not_written_twice() -> None:
    """mutmut ``_halt_27``, ``_29``, ``_36`` and ``_37``: the halt wrote its message into the
    history even when the history already ended with that same assistant message (a caller's
    history that ends in it, as a turn replayed over its own result has)."""
    opening = USER + [{"role": "assistant", "content": "Closed for today."}]
    result, _ = play([], policy=halt_only("Closed for today."), opening=opening)
    assert result.message == "Closed for today."
    assert result.messages == opening
    result, _ = play([], policy=halt_only("Closed for today."), opening=USER + [{"role": "user", "content": "Closed for today."}])
    assert result.messages[-1] == {"role": "assistant", "content": "Closed for today."}, "only the model's own message counts"


def test_the_result_a_consumer_reads_during_the_halt_already_lists_the_consumer_errors() -> None:
    """mutmut ``_halt_60``: the result kept on the turn before the halt is delivered had no
    consumer errors (None) until the delivery was over, so a consumer reading it then saw none."""
    seen: list[Any] = []
    turn: Turn | None = None

    def failing_delta(text: str) -> None:
        raise RuntimeError("display gone")

    def on_end() -> None:
        assert turn is not None and turn.result is not None
        seen.append(list(turn.result.consumer_errors))

    turn = Turn(POLICY, InProcessProvider([reply("London.")]), model="replay", tools=capital_tools(),
                clock=VirtualClock(), consumers=Consumers(on_delta=failing_delta, on_end=on_end))
    result = asyncio.run(turn.run(USER))
    assert seen and seen[0] and all("display gone" in e for e in seen[0])
    assert result.consumer_errors[: len(seen[0])] == seen[0]


def test_a_turn_without_a_journal_refuses_to_resume_and_says_how_to_give_it_one() -> None:
    """mutmut ``resume_3``/``_4``: the error's advice (``journal=`` to ``Turn``) is what a caller
    acts on, so its words are pinned."""
    from loopspec.engine.resume import ResumeError

    turn = Turn(POLICY, InProcessProvider([]), model="replay", clock=VirtualClock())
    with pytest.raises(ResumeError, match=r"^a turn resumes from a journal: pass journal= to Turn$"):
        asyncio.run(turn.resume("t"))


def test_a_turn_resumed_under_a_given_name_takes_that_name(tmp_path: Any) -> None:
    """mutmut ``resume_16``: resume kept the new Turn's own (random) name, so what it reports of
    itself (``turn_id``, and the id a later pause hands back) named a turn nobody asked for."""
    tool_call = reply(tool_calls=[("get_capital", {"country": "UK"})])
    journal = cut_journal(tmp_path, [tool_call, reply("London.")], CutAtCheckpoint("run_tools"))
    again = Turn(POLICY, InProcessProvider([reply("London.")]), model="replay", tools=capital_tools(),
                 clock=VirtualClock(), journal=journal)
    assert again.turn_id != "t"
    assert asyncio.run(again.resume("t")).outcome == "completed"
    assert again.turn_id == "t"


def test_a_resumed_turn_cuts_a_stalled_stream_at_what_is_left_of_its_deadline(tmp_path: Any) -> None:
    """mutmut ``resume_39``: resume moved the turn's deadline back by the time spent before the
    crash but left the model call without it, so a stream stalled after the resume waited the whole
    stall timeout (60 s, past the deadline) and the turn went on to a stub instead of ending."""
    import dataclasses

    policy = variant("  # turn_deadline: 900 ", "  turn_deadline: 50\n  # was: ")
    stalls = dataclasses.replace(reply("The capital is London."), stall_after=1, stall_seconds=1000.0)
    whole, resumed, _ = cut_and_resume(tmp_path, [SLOW_DOWN, stalls, reply("Hi.")], CutAtCheckpoint("call_model", 2), policy=policy)
    assert whole.outcome == "cancelled", "30 s of backoff, then the stall is cut 20 s later, at the deadline"
    same_end(whole, resumed)


def _halts_on_a_broken_stream(message: str) -> Any:
    """One call; a broken stream halts with ``message``, anything else completes."""
    return load_policy_text(
        "loopspec: 1\ninitial: ask\n"
        "backstops:\n  model_calls: {max: 3, exhausted: done}\n  tool_batches: {max: 1, exhausted: done}\nstates:\n"
        + tool_loop("done", {"opened": "read"}, {"broken": "cut"}, {})
        + '  done: {kind: halt, outcome: completed, message: "{response}"}\n'
        + f'  cut: {{kind: halt, outcome: provider_error, message: "{message}"}}\n'
    )


@pytest.mark.parametrize(("message", "kept"), [
    ("{response}", ["Hello th"]),
    ("{response} [cut off]", ["Hello th [cut off]"]),
    ("The connection dropped.", ["Hello th", "The connection dropped."]),
])
def test_a_halt_after_a_broken_stream_keeps_what_the_consumer_saw(message: str, kept: list[str]) -> None:
    """The stream breaks after "Hello th"; no reply keeps that text, so the halt does: a message
    that continues it is written whole (the streamed text and what follows), any other after it.
    The history's assistant text is what the consumer saw, in order."""
    deltas: list[str] = []
    result, _ = play([reply("Hello there friend", disconnect_after=2)], _halts_on_a_broken_stream(message),
                     consumers=Consumers(on_delta=deltas.append))
    assert result.outcome == "provider_error"
    assert [m["content"] for m in result.messages if m["role"] == "assistant"] == kept
    assert "".join(deltas) == "".join(kept)
