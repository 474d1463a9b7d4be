"""What ``resume_point`` reads from a journal, and what it says when it refuses one.

Planting mutmut's mutants of ``engine/resume.py`` showed the suite checked that a refusal happened
and that a resumed turn ended well, but not the refusals' words (each names the turn and what does
not fit, so a person can act on it), nor the fields a resume point takes from a checkpoint only when
they are there: the last event, usage, compaction level, batches run, the time spent, the reply's
text, each with the default an older journal without it gets, and an answered call's ``ran`` and
``timed_out``. These tests read the resume point itself."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy, load_policy_text
from loopspec.engine.resume import ResumeError, resume_point
from loopspec.engine.results import TurnUsage
from loopspec.journal import Entry, SqliteJournal
from loopspec.language.alphabet import Event
from loopspec.replay.interactions import StreamResponse

from _paths import DEFAULT_POLICY, FIXTURES

POLICY = load_policy(str(DEFAULT_POLICY))
TOOL_CALL = (FIXTURES / "streams" / "openai_stream_tool_call_single.sse").read_text()
TEXT = (FIXTURES / "streams" / "openai_stream_text.sse").read_text()
USER = [{"role": "user", "content": "What is the capital of the UK?"}]


def journal_of(tmp_path: Path, needs_approval: bool = False, replies: tuple[str, ...] = (TOOL_CALL, TEXT)) -> list[Entry]:
    reg = ToolRegistry()
    reg.register(lambda country: "London", name="get_capital", needs_approval=needs_approval,
                 parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    with SqliteJournal(tmp_path / "j.db") as journal:
        turn = Turn(POLICY, InProcessProvider([StreamResponse(sse=r) for r in replies]), model="openai/x", tools=reg,
                    clock=VirtualClock(), journal=journal, turn_id="t")
        asyncio.run(turn.run(USER))
        return journal.entries("t")


def cut_after(entries: list[Entry], kind: str, nth: int = 1) -> list[Entry]:
    """The entries up to and with the ``nth`` entry of ``kind``: a crash right after it."""
    seen = 0
    for i, e in enumerate(entries):
        seen += e.kind == kind
        if seen == nth:
            return entries[: i + 1]
    raise AssertionError(f"no {nth}th {kind}")


def with_body(entries: list[Entry], seq: int, **changes: Any) -> list[Entry]:
    """``entries`` with entry ``seq``'s body changed (a value of ``...`` removes the field)."""
    out = []
    for e in entries:
        if e.seq == seq:
            body = {**e.body, **changes}
            body = {k: v for k, v in body.items() if v is not ...}
            e = dataclasses.replace(e, body=body)
        out.append(e)
    return out


def refusal(policy: Any, entries: list[Entry]) -> str:
    with pytest.raises(ResumeError) as err:
        resume_point(policy, "t", entries)
    return str(err.value)


def test_each_refusal_names_the_turn_and_what_does_not_fit(tmp_path: Path) -> None:
    whole = journal_of(tmp_path)
    crashed = cut_after(whole, "tool_finish")
    last_checkpoint = [e for e in crashed if e.kind == "checkpoint"][-1]
    assert refusal(POLICY, crashed[1:]) == "turn 't' has no beginning in the journal (its first entry is 'checkpoint')"
    halt = whole[-1].body
    assert refusal(POLICY, whole) == f"turn 't' already ended: completed ({halt['halt_state']})" and halt["halt_state"]
    other = load_policy_text(DEFAULT_POLICY.read_text().replace("name: default", "name: other", 1), "other.yaml")
    assert refusal(other, crashed) == "turn 't' ran under policy 'default', not 'other'"
    assert refusal(POLICY, with_body(crashed, last_checkpoint.seq, message_count=5)) == \
        "turn 't': the journal's messages do not add up (1 != 5)"
    assert refusal(POLICY, with_body(crashed, last_checkpoint.seq, step=9)) == \
        "turn 't': its checkpoint follows 9 decisions, the journal holds 2"
    assert refusal(POLICY, with_body(crashed, last_checkpoint.seq, state="call_model")) == \
        "turn 't': the journal's decisions lead to run_tools, its checkpoint says call_model"


def test_a_pause_that_does_not_fit_its_checkpoint_names_both_states(tmp_path: Path) -> None:
    paused = journal_of(tmp_path, needs_approval=True, replies=(TOOL_CALL,))
    pause = next(e for e in paused if e.kind == "pause")
    assert refusal(POLICY, with_body(paused, pause.seq, state="call_model")) == (
        "turn 't' paused in 'call_model', not in the tool_exec state its last checkpoint holds ('run_tools'): "
        "the journal does not fit this policy")


def test_a_resume_point_takes_what_its_checkpoint_holds(tmp_path: Path) -> None:
    """The second call's checkpoint: the tool round's messages, usage after one call, one batch
    run, the last event (the batch's ``ok``), the first reply's text."""
    crashed = cut_after(journal_of(tmp_path), "checkpoint", 3)
    body = crashed[-1].body
    point = resume_point(POLICY, "t", crashed)
    assert point.last_event == Event(body["last_event"]["name"], body["last_event"]["attrs"]) and point.last_event.name == "ok"
    assert point.usage == TurnUsage(**body["usage"]) and point.usage.prompt_tokens > 0 and point.usage.completion_tokens > 0
    assert point.batches_run == body["batches_run"] == 1
    assert point.compaction_level == body["compaction_level"] and point.elapsed == body["elapsed"]
    assert point.reply_text == body["reply_text"] and [m["role"] for m in point.messages] == ["user", "assistant", "tool"]


def test_a_checkpoint_without_the_optional_fields_gets_their_defaults(tmp_path: Path) -> None:
    """A journal from before those fields were written: the turn goes on from the start of its
    counts (no event yet, no usage, level 0, no batch, no time spent, no reply text)."""
    crashed = cut_after(journal_of(tmp_path), "checkpoint", 3)
    seq = crashed[-1].seq
    bare = with_body(crashed, seq, last_event=..., usage=..., compaction_level=..., batches_run=..., elapsed=...,
                     reply_text=..., guardrails=..., streamed=..., streamed_kept=...)
    point = resume_point(POLICY, "t", bare)
    assert point.last_event == Event("start", {})
    assert point.usage == TurnUsage()
    assert (point.compaction_level, point.batches_run, point.elapsed, point.reply_text) == (0, 0, 0.0, "")
    assert point.streamed == "" and point.streamed_kept is True
    attrs_only = with_body(crashed, seq, last_event={"name": "ok"})
    assert resume_point(POLICY, "t", attrs_only).last_event == Event("ok", {})


def test_a_begin_or_checkpoint_without_messages_adds_none(tmp_path: Path) -> None:
    crashed = cut_after(journal_of(tmp_path), "checkpoint", 3)
    begin_seq = crashed[0].seq
    firsts = [e for e in crashed if e.kind == "checkpoint"]
    no_begin_messages = with_body(crashed, begin_seq, messages=...)
    for e in firsts:
        no_begin_messages = with_body(no_begin_messages, e.seq, message_count=e.body["message_count"] - 1)
    assert [m["role"] for m in resume_point(POLICY, "t", no_begin_messages).messages] == ["assistant", "tool"]
    no_round = with_body(crashed, firsts[-1].seq, messages=..., message_count=1)
    assert resume_point(POLICY, "t", no_round).messages == USER


@pytest.mark.parametrize("ran, timed_out", [(True, True), (False, False), (True, False)])
def test_an_answered_call_keeps_whether_it_ran_and_whether_it_timed_out(tmp_path: Path, ran: bool, timed_out: bool) -> None:
    crashed = cut_after(journal_of(tmp_path), "tool_finish")
    finish = crashed[-1]
    point = resume_point(POLICY, "t", with_body(crashed, finish.seq, ran=ran, timed_out=timed_out, content="late"))
    (answer,) = point.answered.values()
    assert (answer.ran, answer.timed_out, answer.content, answer.ok) == (ran, timed_out, "late", finish.body["ok"])
    without = resume_point(POLICY, "t", with_body(crashed, finish.seq, timed_out=...))
    assert next(iter(without.answered.values())).timed_out is False


def test_a_damaged_halt_is_named_as_the_entry_that_does_not_read(tmp_path: Path) -> None:
    whole = journal_of(tmp_path)
    halt = whole[-1]
    damaged = whole[:-1] + [dataclasses.replace(halt, body=[])]  # type: ignore[arg-type]
    assert refusal(POLICY, damaged).startswith(f"turn 't': the journal is damaged at entry {halt.seq} (halt): ")


def test_a_pause_lifted_and_cut_after_its_batchs_checkpoint_is_no_longer_a_pause(tmp_path: Path) -> None:
    """The last of the pauses and checkpoints decides: a checkpoint after the pause means a person
    answered and the batch went on, so the turn resumes as after any crash, asking no one again."""
    paused = journal_of(tmp_path, needs_approval=True, replies=(TOOL_CALL,))
    pause = next(e for e in paused if e.kind == "pause")
    assert resume_point(POLICY, "t", paused).waiting == [c["id"] for c in pause.body["calls"]]
    reg = ToolRegistry()
    reg.register(lambda country: "London", name="get_capital", needs_approval=True,
                 parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    with SqliteJournal(tmp_path / "j.db") as journal:
        turn = Turn(POLICY, InProcessProvider([StreamResponse(sse=TEXT)]), model="openai/x", tools=reg, clock=VirtualClock(),
                    journal=journal, turn_id="t")
        asyncio.run(turn.resume("t", approve=[c["id"] for c in pause.body["calls"]]))
        lifted = journal.entries("t")
    after = next(i for i, e in enumerate(lifted) if e.seq > pause.seq and e.kind == "checkpoint")
    point = resume_point(POLICY, "t", lifted[: after + 1])
    assert point.waiting is None and point.paused_in == ""


def test_a_checkpoints_level_time_answers_and_text_are_read_as_written(tmp_path: Path) -> None:
    """Values other than the defaults (a compacted history, time spent, a person's answers to the
    waiting batch, approved and refused), so that reading the wrong field shows."""
    crashed = cut_after(journal_of(tmp_path), "checkpoint", 3)
    point = resume_point(POLICY, "t", with_body(crashed, crashed[-1].seq, compaction_level=2, elapsed=3.5,
                                                decisions={"call_1": True, "call_2": False}, reply_text="Paris is",
                                                streamed="Paris", streamed_kept=False))
    assert (point.compaction_level, point.elapsed) == (2, 3.5)
    assert (point.reply_text, point.streamed, point.streamed_kept) == ("Paris is", "Paris", False)
    assert point.decisions == {"call_1": True, "call_2": False}


def test_what_auto_approved_calls_spent_is_read_and_defaults_to_nothing(tmp_path: Path) -> None:
    crashed = cut_after(journal_of(tmp_path), "checkpoint", 3)
    assert resume_point(POLICY, "t", with_body(crashed, crashed[-1].seq, approval_spent=0.25)).approval_spent == 0.25
    assert resume_point(POLICY, "t", with_body(crashed, crashed[-1].seq, approval_spent=...)).approval_spent == 0.0


def test_the_requests_sent_are_read_back_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    crashed = cut_after(journal_of(tmp_path), "checkpoint", 3)
    request = next(e for e in crashed if e.kind == "request")
    (record,) = resume_point(POLICY, "t", crashed).requests
    assert (record.model, record.message_count, record.tools) == ("openai/x", 1, ["get_capital"])
    damaged = [dataclasses.replace(e, body=[]) if e.seq == request.seq else e for e in crashed]  # type: ignore[arg-type]
    assert refusal(POLICY, damaged).startswith(f"turn 't': the journal is damaged at entry {request.seq} (request): ")


def test_a_pause_without_its_calls_is_named_as_the_damaged_entry(tmp_path: Path) -> None:
    paused = journal_of(tmp_path, needs_approval=True, replies=(TOOL_CALL,))
    pause = next(e for e in paused if e.kind == "pause")
    assert refusal(POLICY, with_body(paused, pause.seq, calls=...)) == (
        f"turn 't': the journal is damaged at entry {pause.seq} (pause): its field 'calls' is missing; "
        "it cannot be resumed: run the turn again from its messages")


def test_a_placeholder_that_ran_is_an_answer(tmp_path: Path) -> None:
    """"Awaiting approval" written for a call that did not run is a placeholder, not an answer; the
    same words from a call that ran are its answer."""
    from loopspec.engine.tool_batch import AWAITING

    crashed = cut_after(journal_of(tmp_path), "tool_finish")
    finish = crashed[-1]
    placeholder = resume_point(POLICY, "t", with_body(crashed, finish.seq, content=AWAITING, ran=False))
    assert placeholder.answered == {}
    ran = resume_point(POLICY, "t", with_body(crashed, finish.seq, content=AWAITING, ran=True))
    assert [a.content for a in ran.answered.values()] == [AWAITING]


def test_an_earlier_checkpoint_without_its_step_drops_no_decision(tmp_path: Path) -> None:
    crashed = cut_after(journal_of(tmp_path), "checkpoint", 3)
    second = [e for e in crashed if e.kind == "checkpoint"][1]
    point = resume_point(POLICY, "t", with_body(crashed, second.seq, step=...))
    assert [s.event.name for s in point.steps] == ["opened", "tool_calls", "ok"]
    assert [t.index for t in point.trace] == [0, 1, 2]


def test_a_decision_taken_in_another_state_is_named_with_both(tmp_path: Path) -> None:
    crashed = cut_after(journal_of(tmp_path), "checkpoint", 3)
    second_step = [e for e in crashed if e.kind == "step"][1]
    assert refusal(POLICY, with_body(crashed, second_step.seq, state="call_model")) == \
        "turn 't': decision 2 was taken in 'call_model', the policy is in 'read_stream'"


def test_an_infinite_wait_written_as_text_is_read_back_as_a_number(tmp_path: Path) -> None:
    """JSON has no infinity: the journal writes a Retry-After of forever as "inf", and the replayed
    decision gets the number back, as the interpreter had it."""
    from loopspec.replay.interactions import ErrorResponse

    body = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    reg = ToolRegistry()
    with SqliteJournal(tmp_path / "j.db") as journal:
        turn = Turn(POLICY, InProcessProvider([ErrorResponse(429, body), StreamResponse(sse=TEXT)]), model="openai/x",
                    tools=reg, clock=VirtualClock(), journal=journal, turn_id="t")
        asyncio.run(turn.run(USER))
        entries = journal.entries("t")
    crashed = cut_after(entries, "checkpoint", 2)
    first_step = next(e for e in crashed if e.kind == "step")
    assert first_step.body["event"] == "rate_limit"
    for written, number in (("inf", float("inf")), ("-inf", float("-inf"))):
        attrs = {**first_step.body["attrs"], "retry_after": written, "message": "inf"}
        point = resume_point(POLICY, "t", with_body(crashed, first_step.seq, attrs=attrs))
        assert point.steps[0].event.attrs["retry_after"] == number
        assert point.steps[0].event.attrs["message"] == "inf", "a text attribute keeps its text"


def test_only_a_paused_turn_can_be_abandoned(tmp_path: Path) -> None:
    """A turn cut inside its tool batch has calls waiting to run, but no person was asked: there is
    nothing to abandon."""
    from loopspec import abandon

    crashed = cut_after(journal_of(tmp_path), "tool_start")
    with SqliteJournal(tmp_path / "c.db") as journal:
        for e in crashed:
            journal.append("t", e.kind, e.body)
        assert resume_point(POLICY, "t", journal.entries("t")).pending is not None
        with pytest.raises(ResumeError) as err:
            abandon(POLICY, journal, "t")
    assert str(err.value) == "turn 't' is not awaiting approval: there is nothing to abandon"


def test_an_abandoned_round_keeps_the_replys_text_and_answers_each_call_by_its_tool(tmp_path: Path) -> None:
    from loopspec import abandon
    from loopspec.engine.resume import ABANDONED

    paused = journal_of(tmp_path, needs_approval=True, replies=(TOOL_CALL,))
    checkpoint = [e for e in paused if e.kind == "checkpoint"][-1]
    pending = {**checkpoint.body["pending"], "text": "Let me look that up."}
    with SqliteJournal(tmp_path / "p.db") as journal:
        for e in with_body(paused, checkpoint.seq, pending=pending):
            journal.append("t", e.kind, e.body)
        history = abandon(POLICY, journal, "t")
    assistant, answer = history[-2:]
    assert assistant["content"] == "Let me look that up." and [c["function"]["name"] for c in assistant["tool_calls"]] == ["get_capital"]
    assert answer["content"] == ABANDONED.format(tool="get_capital") and "'get_capital' was not run" in answer["content"]


def test_a_decision_on_an_event_its_state_does_not_know_is_refused_as_another_version(tmp_path: Path) -> None:
    crashed = cut_after(journal_of(tmp_path), "checkpoint", 3)
    second_step = [e for e in crashed if e.kind == "step"][1]
    assert refusal(POLICY, with_body(crashed, second_step.seq, event="bogus")) == (
        "turn 't' was written under another version of policy 'default': decision 2 (read_stream --bogus-->) went to "
        "'run_tools', this policy goes to '__policy_error__'")
