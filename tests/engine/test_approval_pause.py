"""A turn with a journal pauses when its batch waits for a person, and goes on when one answers:
approved calls run once, refused ones are answered "Denied", and the counters go on from the halt,
so pausing never resets a budget. Without a journal the approval halt is the end it always was."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, abandon, load_policy, load_policy_text
from loopspec.engine.history import history_problems
from loopspec.engine.resume import ResumeError
from loopspec.journal import SqliteJournal
from loopspec.replay.interactions import StreamResponse

from _paths import DEFAULT_POLICY, FIXTURES

POLICY = load_policy(str(DEFAULT_POLICY))
TOOL_CALL = (FIXTURES / "streams" / "openai_stream_tool_call_single.sse").read_text()
TEXT = (FIXTURES / "streams" / "openai_stream_text.sse").read_text()
USER = [{"role": "user", "content": "What is the capital of the UK?"}]


def registry(ran: list[str]) -> ToolRegistry:
    reg = ToolRegistry()

    def get_capital(country: str) -> str:
        ran.append(country)
        return "London"

    reg.register(get_capital, parameters={"type": "object", "properties": {"country": {"type": "string"}}}, needs_approval=True)
    return reg


def turn(journal: Any, ran: list[str], replies: list[str], policy: Any = POLICY, **kw: Any) -> Turn:
    return Turn(policy, InProcessProvider([StreamResponse(sse=r) for r in replies]), model="openai/x", tools=registry(ran),
                clock=VirtualClock(), journal=journal, turn_id="t", **kw)


def paused(journal: Any, ran: list[str]) -> Any:
    result = asyncio.run(turn(journal, ran, [TOOL_CALL]).run(USER))
    assert result.pause is not None and ran == []
    return result


def test_a_turn_with_a_journal_pauses_and_its_history_stays_valid(tmp_path: Path) -> None:
    ran: list[str] = []
    with SqliteJournal(tmp_path / "j.db") as journal:
        result = paused(journal, ran)
        assert result.outcome == "approval_required" and result.pause.state == "run_tools"
        assert [c["name"] for c in result.pause.calls] == ["get_capital"]
        assert history_problems(result.messages) == []
        assert journal.entries("t")[-1].kind == "pause"
        assert result.to_json()["pause"]["calls"][0]["id"] == result.pause.calls[0]["id"]


def test_without_a_journal_the_approval_halt_is_the_end() -> None:
    ran: list[str] = []
    result = asyncio.run(turn(None, ran, [TOOL_CALL]).run(USER))
    assert result.outcome == "approval_required" and result.pause is None and ran == []


def test_an_approved_call_runs_once_and_the_turn_goes_on_with_the_same_counters(tmp_path: Path) -> None:
    ran: list[str] = []
    with SqliteJournal(tmp_path / "j.db") as journal:
        first = paused(journal, ran)
        call_id = first.pause.calls[0]["id"]
        result = asyncio.run(turn(journal, ran, [TEXT]).resume("t", approve=[call_id]))
        kinds = [e.kind for e in journal.entries("t")]
    assert ran == ["UK"] and result.outcome == "completed" and result.pause is None
    events = [s.event for s in result.trace]
    assert events == ["opened", "tool_calls", "ok", "opened", "text"], "the batch ran again from its checkpoint"
    assert result.trace[1].counters == first.trace[1].counters, "the same configuration as when the batch first ran"
    assert [m["content"] for m in result.messages if m["role"] == "tool"] == ["London"]
    assert history_problems(result.messages) == []
    assert kinds.count("pause") == 1 and kinds[-1] == "halt"
    assert kinds.count("begin") == 1 and kinds.count("resume") == 1, "the answer goes on as a resume (mutmut resume_134/135)"


def test_a_denied_call_is_answered_so_and_never_runs(tmp_path: Path) -> None:
    ran: list[str] = []
    with SqliteJournal(tmp_path / "j.db") as journal:
        first = paused(journal, ran)
        result = asyncio.run(turn(journal, ran, [TEXT]).resume("t", deny=[first.pause.calls[0]["id"]]))
    assert ran == [] and result.outcome == "completed"
    answers = [m["content"] for m in result.messages if m["role"] == "tool"]
    assert answers == ["Denied: the user did not approve this call, so 'get_capital' was not run."]
    assert [s.event for s in result.trace][2] == "failed"
    assert history_problems(result.messages) == []


def test_answers_must_name_the_calls_that_wait(tmp_path: Path) -> None:
    ran: list[str] = []
    with SqliteJournal(tmp_path / "j.db") as journal:
        first = paused(journal, ran)
        call_id = first.pause.calls[0]["id"]
        with pytest.raises(ResumeError, match=r"is awaiting approval of .*: answer with --approve CALL_ID or --deny CALL_ID"):
            asyncio.run(turn(journal, ran, [TEXT]).resume("t"))
        with pytest.raises(ResumeError, match=r"nope is not awaiting approval \(awaiting: "):
            asyncio.run(turn(journal, ran, [TEXT]).resume("t", approve=["nope"]))
        with pytest.raises(ResumeError, match="cannot be both approved and denied"):
            asyncio.run(turn(journal, ran, [TEXT]).resume("t", approve=[call_id], deny=[call_id]))
        assert journal.entries("t")[-1].kind == "pause", "a refused answer leaves the pause as it was"
        asyncio.run(turn(journal, ran, [TEXT]).resume("t", approve=[call_id]))
        with pytest.raises(ResumeError, match="already ended"):
            asyncio.run(turn(journal, ran, [TEXT]).resume("t", approve=[call_id]))
    assert ran == ["UK"]


def test_a_resumed_turn_that_is_not_paused_refuses_answers(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "j.db") as journal:
        journal.append("t", "begin", {"policy": "default", "messages": USER})
        t = turn(journal, [], [TEXT])
        with pytest.raises(ResumeError, match="stopped before its first model call"):
            asyncio.run(t.resume("t", approve=["x"]))


def test_pausing_never_resets_a_budget(tmp_path: Path) -> None:
    """A model that asks for the same guarded tool forever, and a person who approves every time:
    the turn still ends at the tool-batch backstop, because a lift goes on from the checkpoint
    before the paused batch (the configuration the checker explored there) and every new batch
    is an entry the backstop counts; nothing a pause does is undone but the halt it went through."""
    text = DEFAULT_POLICY.read_text()
    old = "  tool_batches:\n    max: 60\n    warn_at: 45\n"
    assert old in text
    loop = "  doom_loop: {threshold: 3, verdict: halt, max_period: 5}\n"
    assert loop in text  # the detector would end this loop first; the test is about the backstop
    text = text.replace(loop, "  doom_loop: {threshold: 3, verdict: allow, max_period: 5}\n", 1)
    policy = load_policy_text(text.replace(old, "  tool_batches:\n    max: 4\n    warn_at: 3\n", 1), "default.yaml")
    ran: list[str] = []
    lifts = 0
    with SqliteJournal(tmp_path / "j.db") as journal:
        result = asyncio.run(turn(journal, ran, [TOOL_CALL], policy=policy).run(USER))
        while result.pause is not None:
            lifts += 1
            assert lifts < 10, "pausing reset the tool-batch budget"
            replies = [TOOL_CALL] * 3 + [TEXT] * 3
            result = asyncio.run(turn(journal, ran, replies, policy=policy).resume("t", approve=[c["id"] for c in result.pause.calls]))
    seen = [s.counters["tool_batches"] for s in result.trace]  # the whole turn, across its pauses
    assert seen == sorted(seen), "the counter only grows across pauses"
    assert max(seen) == 4 and len(ran) == lifts == 4, "one pause per batch, each batch ran once"
    assert result.outcome == "tool_budget"
    assert history_problems(result.messages) == []


def test_the_cli_pauses_a_live_turn_and_resumes_it_with_an_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`loopspec run --journal` exits 3 on a pause and names the calls; `resume --approve` goes on
    through litellm (an OpenAI-compatible loopback server); `--abandon` ends a second pause."""
    import json

    from loopspec.cli import main as cli_main
    from loopspec.replay.server import LoopbackServer

    policy = tmp_path / "p.yaml"
    policy.write_text(DEFAULT_POLICY.read_text().replace(
        "\nstates:\n", "\napprovals:\n  rules:\n    - {tool: current_time, approval: person}\n\nstates:\n", 1))
    asks_time = TOOL_CALL.replace("get_capital", "current_time")
    journal = str(tmp_path / "j.db")
    live = ["--machine", str(policy), "--model", "openai/x", "--json"]
    with LoopbackServer([StreamResponse(sse=asks_time)]) as server:
        code = cli_main(["run", *live, "--api-base", server.api_base, "--journal", journal, "What time is it?"])
    paused_turn = json.loads(capsys.readouterr().out)
    assert code == 3 and paused_turn["outcome"] == "approval_required"
    call = paused_turn["pause"]["calls"][0]
    assert call["name"] == "current_time"
    turn_id = paused_turn["journal"]["turn_id"]
    with LoopbackServer([StreamResponse(sse=TEXT)]) as server:
        code = cli_main(["resume", turn_id, "--journal", journal, *live, "--api-base", server.api_base, "--approve", call["id"]])
    done = json.loads(capsys.readouterr().out)
    assert code == 0 and done["outcome"] == "completed"
    assert [s["event"] for s in done["trace"]][2] == "failed", "current_time(country=...) raised: the tool ran"

    with LoopbackServer([StreamResponse(sse=asks_time)]) as server:
        assert cli_main(["run", *live, "--api-base", server.api_base, "--journal", journal, "And now?"]) == 3
    second = json.loads(capsys.readouterr().out)["journal"]["turn_id"]
    assert cli_main(["resume", second, "--journal", journal, *live, "--abandon"]) == 0
    history = json.loads(capsys.readouterr().out)["messages"]
    assert history[-1]["content"].startswith("Abandoned: the user moved on")
    assert cli_main(["resume", second, "--journal", journal, *live, "--api-base", "http://127.0.0.1:1", "--approve", "x"]) == 2
    assert "already ended: abandoned" in capsys.readouterr().err


def test_a_journal_whose_pause_does_not_fit_its_checkpoint_is_refused(tmp_path: Path) -> None:
    """A pause that names a state other than the tool_exec state of the checkpoint before it (an
    edited journal, another policy) is refused, never entered."""
    ran: list[str] = []
    with SqliteJournal(tmp_path / "j.db") as journal:
        paused(journal, ran)
        entries = journal.entries("t")
    for value in ("call_model", "nowhere"):
        with SqliteJournal(tmp_path / f"{value}.db") as forged:
            for e in entries:
                forged.append("t", e.kind, {**e.body, "state": value} if e.kind == "pause" else e.body)
            with pytest.raises(ResumeError, match="not in the tool_exec state its last checkpoint holds"):
                asyncio.run(turn(forged, ran, [TEXT]).resume("t", approve=["x"]))
    assert ran == []


def test_only_an_approval_halt_is_a_pause(tmp_path: Path) -> None:
    """A policy that ends the turn some other way when a call needs approval ends it: a pause is the
    policy's approval halt, taken on approval_required, and nothing else."""
    text = DEFAULT_POLICY.read_text().replace("      approval_required: halt_approval\n", "      approval_required: halt_guardrail\n", 1)
    other = load_policy_text(text, "default.yaml")
    with SqliteJournal(tmp_path / "j.db") as journal:
        result = asyncio.run(turn(journal, [], [TOOL_CALL], policy=other).run(USER))
        assert result.outcome == "guardrail" and result.pause is None
        assert journal.entries("t")[-1].kind == "halt"


def test_a_crash_between_the_waiting_batch_and_its_pause_asks_again(tmp_path: Path) -> None:
    """The batch answered its calls "awaiting approval" and the process died before the pause was
    written: those placeholders are not answers, so the resumed batch asks again and pauses again,
    having run nothing."""
    ran: list[str] = []
    with SqliteJournal(tmp_path / "j.db") as journal:
        first = paused(journal, ran)
        entries = journal.entries("t")
    assert entries[-1].kind == "pause"
    with SqliteJournal(tmp_path / "cut.db") as cut:
        for e in entries[:-1]:
            cut.append("t", e.kind, e.body)
        again = asyncio.run(turn(cut, ran, [TEXT]).resume("t"))
    assert ran == [] and again.pause is not None and again.pause.calls == first.pause.calls
    assert [s.event for s in again.trace] == [s.event for s in first.trace]
    assert again.trace[-1].counters == first.trace[-1].counters


@pytest.mark.parametrize("hook_is_async", [False, True])
def test_an_approve_hook_that_raises_approves_nothing_and_the_turn_keeps_its_history(hook_is_async: bool) -> None:
    ran: list[str] = []

    def bad(call: Any) -> bool:
        raise RuntimeError("hook exploded")

    async def bad_async(call: Any) -> bool:
        raise RuntimeError("hook exploded")

    result = asyncio.run(turn(None, ran, [TOOL_CALL, TEXT], approve=bad_async if hook_is_async else bad).run(USER))
    assert result.outcome == "approval_required" and ran == []
    assert result.callback_errors == ["approve: RuntimeError: hook exploded"]
    assert history_problems(result.messages) == [] and result.messages[0] == USER[0]


def test_what_the_way_into_the_approval_halt_changed_does_not_reach_the_lifted_turn(tmp_path: Path) -> None:
    """The lift goes on from the checkpoint before the batch, not from the halt: a flag the policy
    set on its way into the approval halt (here: tools disabled) is not in force after it, so the
    lifted turn runs only configurations the checker explored from that checkpoint."""
    text = DEFAULT_POLICY.read_text().replace(
        "      approval_required: halt_approval\n",
        "      approval_required:\n        - do: [disable_tools]\n          to: halt_approval\n", 1)
    policy = load_policy_text(text, "default.yaml")
    ran: list[str] = []
    with SqliteJournal(tmp_path / "j.db") as journal:
        first = asyncio.run(turn(journal, ran, [TOOL_CALL], policy=policy).run(USER))
        assert "tools_disabled" in first.trace[-1].flags
        lifted = asyncio.run(turn(journal, ran, [TEXT], policy=policy).resume("t", approve=[first.pause.calls[0]["id"]]))
    assert ran == ["UK"] and all("tools_disabled" not in s.flags for s in lifted.trace)
    assert lifted.requests[-1].tools == ["get_capital"], "the next request offers tools, as from the checkpoint"


def test_refused_answers_say_which_calls_and_list_every_call_that_waits(tmp_path: Path) -> None:
    """mutmut resume_106/108/113/114/116/118/123/129: with two calls waiting, each refusal names
    exactly the calls at fault (joined, with the verb agreeing) and lists every call that waits."""
    from loopspec.replay.synth import reply

    two = reply(tool_calls=[("get_capital", {"country": "UK"}), ("get_capital", {"country": "FR"})])
    ran: list[str] = []
    with SqliteJournal(tmp_path / "j.db") as journal:
        first = asyncio.run(Turn(POLICY, InProcessProvider([two]), model="openai/x", tools=registry(ran), clock=VirtualClock(),
                                 journal=journal, turn_id="t").run(USER))
        a, b = (c["id"] for c in first.pause.calls)

        def refusal(**answers: list[str]) -> str:
            with pytest.raises(ResumeError) as err:
                asyncio.run(turn(journal, ran, [TEXT]).resume("t", **answers))
            return str(err.value)

        assert refusal() == (f"turn 't' is awaiting approval of {a}, {b}: answer with --approve CALL_ID or --deny CALL_ID "
                             "(approve= or deny= in Python)")
        assert refusal(approve=["x", "y"]) == f"turn 't': x, y are not awaiting approval (awaiting: {a}, {b})"
        assert refusal(approve=[a, b], deny=[a]) == f"turn 't': {a} cannot be both approved and denied (awaiting: {a}, {b})"
        assert refusal(approve=[a, b], deny=[b, a]) == f"turn 't': {a}, {b} cannot be both approved and denied (awaiting: {a}, {b})"
    assert ran == []
