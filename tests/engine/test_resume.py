"""A turn killed (SIGKILL, a real process) at any point resumes from its journal: the history is
valid, no tool runs twice, counters go on where they were, and the turn ends as the uninterrupted
one did. A journal that does not fit (a turn that ended, another policy) is refused with why."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy, load_policy_text
from loopspec.engine.history import history_problems
from loopspec.engine.resume import INTERRUPTED, ResumeError
from loopspec.journal import SqliteJournal
from loopspec.replay.interactions import StreamResponse

from _doubles import CutAtCall, Stop, answered_before_resume
from _paths import DEFAULT_POLICY, FIXTURES, ROOT

POLICY = load_policy(str(DEFAULT_POLICY))
STREAMS = FIXTURES / "streams"
USER = [{"role": "user", "content": "What is the capital of the UK?"}]
INTERACTIONS = ["openai_stream_tool_call_single.sse", "openai_stream_tool_call_single.sse", "openai_stream_text.sse"]


def interactions(skip: int = 0) -> list[StreamResponse]:
    return [StreamResponse(sse=(STREAMS / n).read_text()) for n in INTERACTIONS[skip:]]


def registry(effects: Path, idempotent: bool = False, die_in_tool: int | None = None) -> ToolRegistry:
    """get_capital writes its effect outside the process, one line per run; ``die_in_tool=N``
    kills the process inside the N-th run, after its effect and before its answer."""
    reg = ToolRegistry()
    runs = {"n": 0}

    def get_capital(country: str) -> str:
        runs["n"] += 1
        with open(effects, "a") as fh:
            fh.write(f"{country}\n")
            fh.flush()
            os.fsync(fh.fileno())
        if die_in_tool == runs["n"]:
            os.kill(os.getpid(), signal.SIGKILL)
        return "London"

    reg.register(get_capital, parameters={"type": "object", "properties": {"country": {"type": "string"}}}, idempotent=idempotent)
    return reg


def turn(journal: Any, effects: Path, skip: int = 0, **kw: Any) -> Turn:
    return Turn(POLICY, InProcessProvider(interactions(skip)), model="openai/x", tools=registry(effects, **kw),
                clock=VirtualClock(), journal=journal, turn_id="t")


CHILD = """
import asyncio, os, signal, sys
sys.path.insert(0, {here!r})
from test_resume import turn, USER
from loopspec.journal import SqliteJournal
from pathlib import Path

journal, effects, kill_after, die_in_tool = SqliteJournal(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t = turn(journal, effects, die_in_tool=die_in_tool or None)

class Kill:
    seen = 0
    def step_taken(self, step, record):
        Kill.seen += 1
        if Kill.seen == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    def __getattr__(self, name):
        return lambda *a: None

t.observers.observers.append(Kill())
asyncio.run(t.run(USER))
"""


def killed_run(tmp_path: Path, kill_after: int = 0, die_in_tool: int = 0) -> tuple[Path, Path]:
    path, effects = tmp_path / "j.db", tmp_path / "effects.txt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", CHILD.format(here=str(ROOT / "tests" / "engine")), str(path), str(effects),
                           str(kill_after), str(die_in_tool)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    return path, effects


def resumed(path: Path, effects: Path, **kw: Any) -> Any:
    with SqliteJournal(path) as journal:
        return asyncio.run(turn(journal, effects, skip=answered_before_resume(journal, "t"), **kw).resume("t"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("whole")
    with SqliteJournal(tmp / "j.db") as journal:
        return asyncio.run(turn(journal, tmp / "effects.txt").run(USER))


def test_the_uninterrupted_turn_runs_the_tool_twice_and_completes(uninterrupted: Any) -> None:
    assert uninterrupted.outcome == "completed" and uninterrupted.usage.tool_batches == 2
    assert [s.event for s in uninterrupted.trace] == ["opened", "tool_calls", "ok", "opened", "tool_calls", "ok", "opened", "text"]


@pytest.mark.parametrize("kill_after", range(1, 8))
def test_a_turn_killed_after_any_step_resumes_to_the_same_end_with_no_tool_run_twice(tmp_path: Path, uninterrupted: Any, kill_after: int) -> None:
    path, effects = killed_run(tmp_path, kill_after=kill_after)
    result = resumed(path, effects)
    assert result.outcome == uninterrupted.outcome and result.message == uninterrupted.message
    assert history_problems(result.messages) == []
    assert effects.read_text().splitlines() == ["UK", "UK"], "each of the two calls ran exactly once"
    assert [s.event for s in result.trace] == [s.event for s in uninterrupted.trace]
    assert result.trace[-1].counters == uninterrupted.trace[-1].counters, "counters go on from where they were"
    assert [m.get("content") for m in result.messages] == [m.get("content") for m in uninterrupted.messages]
    assert result.usage.tool_batches == 2
    with SqliteJournal(path) as journal:
        sent = [e.body["index"] for e in journal.entries("t") if e.kind == "request"]
    # every request sent counts, the one the crash cut too, and the indexes go on across processes
    assert sent == list(range(1, len(sent) + 1)) and result.usage.model_calls == len(sent) >= 3


def test_guardrail_memory_goes_on_across_the_crash(tmp_path: Path) -> None:
    """no_progress at 2 identical batches: the uninterrupted turn halts on the second batch, and so
    must a turn killed between the two."""
    text = DEFAULT_POLICY.read_text()
    line = next(x for x in text.splitlines() if x.strip().startswith("no_progress:") and "threshold" in x)
    strict = load_policy_text(text.replace(line, "  no_progress: {threshold: 2, verdict: halt}"), "default.yaml")

    def run_with(policy: Any, journal: Any, effects: Path, skip: int = 0) -> Turn:
        return Turn(policy, InProcessProvider(interactions(skip)), model="openai/x", tools=registry(effects),
                    clock=VirtualClock(), journal=journal, turn_id="t")

    with SqliteJournal(tmp_path / "whole.db") as journal:
        whole = asyncio.run(run_with(strict, journal, tmp_path / "w.txt").run(USER))
    assert whole.outcome == "guardrail" and [s.event for s in whole.trace][-1] == "no_progress"
    with SqliteJournal(tmp_path / "cut.db") as journal:
        t = run_with(strict, journal, tmp_path / "c.txt")

        # the second model call is open: its checkpoint, after the first batch, is written
        t.observers.observers.append(CutAtCall(2))
        with pytest.raises(Stop):
            asyncio.run(t.run(USER))
        again = asyncio.run(run_with(strict, journal, tmp_path / "c.txt", skip=answered_before_resume(journal, "t")).resume("t"))
    assert again.outcome == "guardrail" and [s.event for s in again.trace] == [s.event for s in whole.trace]


def test_a_call_interrupted_inside_its_tool_is_not_run_again_and_the_model_is_told(tmp_path: Path, uninterrupted: Any) -> None:
    path, effects = killed_run(tmp_path, die_in_tool=1)
    result = resumed(path, effects)
    assert effects.read_text().splitlines() == ["UK", "UK"], "the interrupted call is not run again; the second one runs"
    answers = [m["content"] for m in result.messages if m["role"] == "tool"]
    assert answers[0].startswith("Interrupted: the process running this call stopped") and answers[1] == "London"
    assert history_problems(result.messages) == [] and result.outcome == "completed"
    with SqliteJournal(path) as journal:
        entries = journal.entries("t")
    kinds = [e.kind for e in entries]
    assert "resume" in kinds and kinds[-1] == "halt"
    assert [s.event for s in result.trace].count("interrupted_tool") == 1, "the policy hears of the interruption"
    # (mutmut resume_56/57/61/62/63/64) the answer names the tool, and is journaled as failed and not run
    cut = next(e.body for e in entries[kinds.index("resume"):] if e.kind == "tool_finish")
    assert cut["content"] == INTERRUPTED.format(tool="get_capital") == answers[0]
    assert (cut["ok"], cut["ran"], cut["timed_out"]) == (False, False, False)


def test_a_policy_that_does_not_handle_interrupted_tool_sees_failed(tmp_path: Path) -> None:
    """interrupted_tool is optional: a tool_exec state without it gets its fallback, `failed`, so a
    policy written before the event keeps its meaning."""
    text = DEFAULT_POLICY.read_text()
    line = next(ln for ln in text.splitlines(keepends=True) if ln.lstrip().startswith("interrupted_tool:"))
    older = load_policy_text(text.replace(line, "", 1), "default.yaml")
    assert "interrupted_tool" not in older.events_of("run_tools") and "interrupted_tool" in POLICY.events_of("run_tools")
    path, effects = killed_run(tmp_path, die_in_tool=1)
    with SqliteJournal(path) as journal:
        t = Turn(older, InProcessProvider(interactions(1)), model="openai/x", tools=registry(effects), clock=VirtualClock(),
                 journal=journal, turn_id="t")
        result = asyncio.run(t.resume("t"))
    events = [s.event for s in result.trace]
    assert "interrupted_tool" not in events and events[2] == "failed" and result.outcome == "completed"


def test_an_idempotent_tool_interrupted_is_run_again(tmp_path: Path) -> None:
    path, effects = killed_run(tmp_path, die_in_tool=1)
    result = resumed(path, effects, idempotent=True)
    assert effects.read_text().splitlines() == ["UK", "UK", "UK"]
    assert [m["content"] for m in result.messages if m["role"] == "tool"] == ["London", "London"]


def test_a_turn_that_ended_is_not_resumed(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "j.db") as journal:
        asyncio.run(turn(journal, tmp_path / "e.txt").run(USER))
        with pytest.raises(ResumeError, match="turn 't' already ended: completed"):
            asyncio.run(turn(journal, tmp_path / "e.txt").resume("t"))
        with pytest.raises(ResumeError, match="no turn 'other' in the journal"):
            asyncio.run(turn(journal, tmp_path / "e.txt").resume("other"))


def test_a_journal_written_under_another_policy_is_refused(tmp_path: Path) -> None:
    path, effects = killed_run(tmp_path, kill_after=4)
    text = DEFAULT_POLICY.read_text()
    old = "    on:\n      ok: call_model\n      failed: call_model\n"
    assert old in text
    # the same policy, edited: after a tool batch it ends the turn instead of calling the model
    other = load_policy_text(text.replace(old, "    on:\n      ok: halt_completed\n      failed: call_model\n", 1), "default.yaml")
    with SqliteJournal(path) as journal:
        t = Turn(other, InProcessProvider(interactions()), model="openai/x", tools=registry(effects), clock=VirtualClock(),
                 journal=journal, turn_id="t")
        with pytest.raises(ResumeError, match=r"written under another version of policy 'default': decision 3 \(run_tools --ok-->\) went to 'call_model', this policy goes to 'halt_completed'"):
            asyncio.run(t.resume("t"))


def test_without_a_journal_there_is_nothing_to_resume(tmp_path: Path) -> None:
    t = Turn(POLICY, InProcessProvider(interactions()), model="openai/x", clock=VirtualClock())
    with pytest.raises(ResumeError, match="a turn resumes from a journal"):
        asyncio.run(t.resume("t"))


def test_the_cli_resumes_a_killed_turn_against_a_live_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`loopspec resume --journal FILE`: the newest turn that has not ended goes on through litellm
    (here an OpenAI-compatible loopback server), and the journal ends with its halt."""
    from loopspec.cli import main as cli_main
    from loopspec.replay.server import LoopbackServer

    path, _effects = killed_run(tmp_path, kill_after=1)  # the first model call is open
    with LoopbackServer(interactions(2)) as server:  # the model answers this time
        code = cli_main(["resume", "--journal", str(path), "--machine", str(DEFAULT_POLICY), "--model", "openai/x",
                         "--api-base", server.api_base, "--json"])
        sent = len(server.requests)
    out = capsys.readouterr().out
    import json

    data = json.loads(out)
    assert code == 0 and data["outcome"] == "completed" and data["journal"]["turn_id"] == "t" and sent == 1
    with SqliteJournal(path) as journal:
        kinds = [e.kind for e in journal.entries("t")]
    assert kinds.count("resume") == 1 and kinds[-1] == "halt"
    assert cli_main(["resume", "--journal", str(path), "--machine", str(DEFAULT_POLICY), "--model", "openai/x",
                     "--api-base", server.api_base]) == 2
    assert "every turn in" in capsys.readouterr().err


@pytest.mark.parametrize("setup,expected", [
    ("missing", "no journal at"),
    ("text", "not a loopspec journal"),
    ("ended", "turn 'x' already ended"),
])
def test_the_cli_says_why_a_turn_cannot_be_resumed(tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, expected: str) -> None:
    from loopspec.cli import main as cli_main

    path = tmp_path / "j.db"
    if setup == "text":
        path.write_text("not a journal\n")
    elif setup == "ended":
        with SqliteJournal(path) as journal:
            journal.append("x", "begin", {"policy": "default", "messages": []})
            journal.append("x", "halt", {"outcome": "completed", "halt_state": "halt_completed"})
    argv = ["resume", "--journal", str(path), "--machine", str(DEFAULT_POLICY), "--model", "openai/x", "--api-base", "http://127.0.0.1:1"]
    if setup == "ended":
        argv.insert(1, "x")
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
