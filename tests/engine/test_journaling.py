"""A turn writes its journal before each effect: the request before it is sent, the tool's start
before it runs (with its idempotency key), a checkpoint before each model call and tool batch from
which the turn could go on, and its halt; secrets never reach the file; a journal that cannot be
written stops the turn before its next effect, with its history kept."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy
from loopspec.engine.history import history_problems
from loopspec.engine.journaling import idempotency_key
from loopspec.journal import SqliteJournal
from loopspec.replay.interactions import StreamResponse

from _paths import DEFAULT_POLICY, FIXTURES, ROOT

POLICY = load_policy(str(DEFAULT_POLICY))
STREAMS = FIXTURES / "streams"
USER = [{"role": "user", "content": "What is the capital of the UK?"}]


def recorded(name: str) -> StreamResponse:
    return StreamResponse(sse=(STREAMS / name).read_text())


def tool_turn(journal: Any, tool: Any = None, **kw: Any) -> Turn:
    reg = ToolRegistry()
    reg.register(tool or (lambda country: "London"), name="get_capital",
                 parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    provider = InProcessProvider([recorded("openai_stream_tool_call_single.sse"), recorded("openai_stream_text.sse")])
    return Turn(POLICY, provider, model="openai/x", tools=reg, clock=VirtualClock(), journal=journal, **kw)


def test_the_entries_come_in_the_order_of_the_effects(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "j.db") as journal:
        turn = tool_turn(journal, turn_id="t1")
        result = asyncio.run(turn.run(USER))
        assert result.outcome == "completed" and result.observer_errors == []
        kinds = [e.kind for e in journal.entries("t1")]
    assert kinds == [
        "begin",
        "checkpoint", "request", "step", "response", "step",  # call_model --opened-->; the stream: tool_calls
        "checkpoint", "tool_start", "tool_finish", "step",    # run_tools --ok-->
        "checkpoint", "request", "step", "response", "step",  # the answer
        "halt",
    ]


def test_a_tool_starts_in_the_journal_before_it_runs_with_its_idempotency_key(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    seen: list[Any] = []

    def get_capital(country: str) -> str:
        # the tool looks at the journal from outside the turn: its start is already there
        with SqliteJournal(path) as outside:
            seen.extend((e.kind, e.body) for e in outside.entries("t2"))
        return "London"

    with SqliteJournal(path) as journal:
        result = asyncio.run(tool_turn(journal, get_capital, turn_id="t2").run(USER))
    assert result.outcome == "completed"
    kind, body = seen[-1]
    call_id = next(m for m in result.messages if m["role"] == "tool")["tool_call_id"]
    assert kind == "tool_start" and body["id"] == call_id and body["key"] == idempotency_key("t2", call_id) == f"t2:{call_id}"
    assert ("tool_finish" not in [k for k, _ in seen])


def test_checkpoints_rebuild_the_history_the_counters_and_the_calls_waiting_to_run(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "j.db") as journal:
        result = asyncio.run(tool_turn(journal, turn_id="t3").run(USER))
        entries = journal.entries("t3")
    points = [e.body for e in entries if e.kind == "checkpoint"]
    messages: list[dict[str, Any]] = list(entries[0].body["messages"])  # begin holds the opening messages
    assert messages == USER
    for point in points:
        messages += point["messages"]
        assert len(messages) == point["message_count"]
        assert history_problems(messages) == [] or point["pending"] is not None
    assert messages == result.messages[: len(messages)]
    tools = points[1]
    assert tools["state"] == "run_tools" and [c["name"] for c in tools["pending"]["calls"]] == ["get_capital"]
    assert tools["counters"] == [result.trace[1].counters[n] for n in POLICY.counter_names]
    assert [p["step"] for p in points] == [0, 2, 3]


def test_secrets_never_reach_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_API_KEY", "acme-secret-0123456789")
    user = [{"role": "user", "content": "use sk-proj-abcdefghijklmnopqrstuvwxyz0123456789 and acme-secret-0123456789"}]
    with SqliteJournal(tmp_path / "j.db") as journal:
        turn = tool_turn(journal, lambda country: "token=abcdef0123456789", turn_id="t4", api_key="my-own-key-0123456789")
        asyncio.run(turn.run(user))
        text = json.dumps([e.body for e in journal.entries("t4")])
    assert "get_capital" in text
    for secret in ("sk-proj-abcdefghijklmnopqrstuvwxyz0123456789", "acme-secret-0123456789", "abcdef0123456789"):
        assert secret not in text, secret


def test_a_step_records_event_attributes_redacted(tmp_path: Path) -> None:
    """A step entry is redacted in its event attributes (where outside text lands: a provider's error
    message), the only part of a step record that is not the policy's own names and numbers."""
    from loopspec.engine.journaling import JournalWriter
    from loopspec.engine.results import TraceStep
    from loopspec.language.alphabet import Event

    policy = load_policy(str(DEFAULT_POLICY))
    cfg = policy.initial_config()
    echoed = "Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
    step = policy.step(cfg, Event("auth", {"status": 401, "message": echoed, "retry_after": 0.0, "code": "", "wait_too_long": False}))
    with SqliteJournal(tmp_path / "j.db") as journal:
        JournalWriter(journal, "t", api_key="my-own-key-0123456789").step_taken(step, TraceStep.of(policy, step, 0))
        (entry,) = journal.entries("t")
    assert entry.kind == "step" and entry.body["event"] == "auth" and entry.body["state"] == "call_model"
    assert "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789" not in json.dumps(entry.body)
    assert entry.body["attrs"]["status"] == 401


class Broken(SqliteJournal):
    """A journal whose disk fills up after ``good`` entries (a named test double)."""

    def __init__(self, path: Path, good: int) -> None:
        super().__init__(path)
        self.good = good

    def append(self, turn_id: str, kind: str, body: dict[str, Any]) -> int:
        if self.good <= 0:
            from loopspec.journal import JournalError

            raise JournalError("disk full")
        self.good -= 1
        return super().append(turn_id, kind, body)


def test_a_journal_that_cannot_be_written_stops_the_turn_before_its_next_effect(tmp_path: Path) -> None:
    ran: list[str] = []
    journal = Broken(tmp_path / "j.db", good=6)  # begin .. the first call's steps; the tools' checkpoint fails
    turn = tool_turn(journal, lambda country: ran.append(country) or "London", turn_id="t5")
    result = asyncio.run(turn.run(USER))
    journal.close()
    assert ran == [], "no tool runs without its start written down"
    assert result.outcome == "policy_error" and "the turn stopped: JournalWriter.checkpoint: JournalError: disk full" in result.message
    assert history_problems(result.messages) == [] and result.messages[0] == USER[0]


KILLED = """
import asyncio, os, signal, sys
sys.path.insert(0, {tests!r})
from test_journaling import tool_turn
from loopspec.journal import SqliteJournal

journal = SqliteJournal(sys.argv[1])
steps = int(sys.argv[2])
turn = tool_turn(journal, turn_id="killed")

class Kill:
    seen = 0
    def step_taken(self, step, record):
        Kill.seen += 1
        if Kill.seen == steps:
            os.kill(os.getpid(), signal.SIGKILL)
    def __getattr__(self, name):
        return lambda *a: None

turn.observers.observers.append(Kill())
asyncio.run(turn.run([{{"role": "user", "content": "What is the capital of the UK?"}}]))
"""


@pytest.mark.parametrize("after_steps", [1, 2, 3, 4])
def test_a_turn_killed_after_each_step_leaves_a_journal_up_to_that_step(tmp_path: Path, after_steps: int) -> None:
    path = tmp_path / "j.db"
    script = KILLED.format(tests=str(ROOT / "tests" / "engine"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", script, str(path), str(after_steps)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    with SqliteJournal(path) as journal:
        entries = journal.entries("killed")
    assert [e.kind for e in entries].count("step") == after_steps
    assert entries[0].kind == "begin" and "halt" not in [e.kind for e in entries]
    assert [e.seq for e in entries] == list(range(len(entries)))


def test_a_call_cancelled_before_its_stream_is_read_still_gets_its_response_entry(tmp_path: Path) -> None:
    """A cancel asked once the request is open but before the stream is read (here: a callback on
    entering the stream state) ends the turn cancelled at the stream state. The request's journal
    entry must still be answered by a ``response`` (event ``cancelled``): a request with no
    response reads as one cut by a crash."""
    with SqliteJournal(tmp_path / "j.db") as journal:
        turn = tool_turn(journal, turn_id="t1")
        turn.on_enter("read_stream", lambda event: turn.cancel())
        result = asyncio.run(turn.run(USER))
        entries = journal.entries("t1")
    assert result.outcome == "cancelled" and len(result.requests) == 1
    kinds = [e.kind for e in entries]
    assert kinds.count("request") == 1 and kinds.count("response") == 1, kinds
    response = next(e for e in entries if e.kind == "response")
    assert response.body["event"] == "cancelled" and response.body["index"] == 1 and response.body["attrs"] == {}
    assert kinds.index("request") < kinds.index("response") < kinds.index("halt")


def test_a_call_cancelled_while_its_stream_is_read_gets_a_cancelled_response_entry(tmp_path: Path) -> None:
    """A cancel asked while the stream is read (here: by the consumer of the streamed text) ends
    the call in the journal with event ``cancelled`` and no attributes, and writes no error."""
    from loopspec import Consumers

    with SqliteJournal(tmp_path / "j.db") as journal:
        turn = Turn(POLICY, InProcessProvider([recorded("openai_stream_text.sse")]), model="openai/x", clock=VirtualClock(),
                    journal=journal, turn_id="t1", consumers=Consumers(on_delta=lambda text: turn.cancel()))
        result = asyncio.run(turn.run(USER))
        entries = journal.entries("t1")
    assert result.outcome == "cancelled" and result.observer_errors == []
    responses = [e.body for e in entries if e.kind == "response"]
    assert len(responses) == 1 and responses[0]["event"] == "cancelled" and responses[0]["attrs"] == {}


def test_the_journal_says_whether_the_turn_was_replayed(tmp_path: Path) -> None:
    """mutmut ``_announce_11``: a provider that does not say it replays (a live one, such as
    LiteLLMProvider, has no ``replayed``) is not taken for one."""

    class Live:
        """A provider as a live one looks to the turn: the recorded answers, no ``replayed`` mark."""

        def __init__(self) -> None:
            self.inner = InProcessProvider([recorded("openai_stream_text.sse")])

        async def open(self, request: Any) -> Any:
            return await self.inner.open(request)

    with SqliteJournal(tmp_path / "j.db") as journal:
        for turn_id, provider in (("live", Live()), ("replayed", InProcessProvider([recorded("openai_stream_text.sse")]))):
            turn = Turn(POLICY, provider, model="openai/x", clock=VirtualClock(), journal=journal, turn_id=turn_id)
            assert asyncio.run(turn.run(USER)).outcome == "completed"
        begins = {t: next(e.body for e in journal.entries(t) if e.kind == "begin") for t in ("live", "replayed")}
    assert begins["live"]["replayed"] is False and begins["replayed"]["replayed"] is True


def test_a_turn_cancelled_before_it_starts_journals_no_response(tmp_path: Path) -> None:
    """mutmut ``_prepare_46``: with no call made yet, no model call is in flight; a turn cancelled
    before its first request ends without a ``response`` entry (nor a request)."""
    with SqliteJournal(tmp_path / "j.db") as journal:
        turn = tool_turn(journal, turn_id="t1")
        turn.cancel()
        result = asyncio.run(turn.run(USER))
        kinds = [e.kind for e in journal.entries("t1")]
    assert result.outcome == "cancelled" and result.requests == []
    assert "request" not in kinds and "response" not in kinds and kinds[-1] == "halt"
