"""The replay harness's report and bounds (loopspec/replay/harness.py), tested against the
survivors of planting mutmut's mutants of it: ``loopspec replay --json`` prints ``to_json`` for each
cassette, and CI jobs read those fields by name."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopspec import load_policy, load_policy_text
from loopspec.engine.clock import VirtualClock
from loopspec.engine.observers import TurnObserver
from loopspec.journal import SqliteJournal
from loopspec.replay.cassette import Cassette, load_cassette
from loopspec.replay.harness import RecordedTools, fork, judged, replay, replay_sync, rerun, step_limit
from loopspec.replay.inproc import InProcessProvider
from loopspec.replay.journal_note import digest, turn_id_of

from _paths import DEFAULT_POLICY
from test_replay import CASSETTES, policy

STALL = CASSETTES["hermes-31998-stall-mid-tool-call"]
PRE_FIX = policy("hermes_pre_32012")
DEFAULT = load_policy(str(DEFAULT_POLICY))


def test_a_failed_replay_in_json_has_every_field_by_its_name() -> None:
    """The pre-fix hermes policy halts at the stall: every field of the report, named as the
    CLI's JSON names it, carries that run (and the trace only when asked for)."""
    r = asyncio.run(replay(STALL, PRE_FIX))
    assert r.divergence is not None
    data = r.to_json()
    assert data == {
        "cassette": STALL.file,
        "name": "hermes-31998-stall-mid-tool-call",
        "transport": "inproc",
        "verdict": "fail",
        "outcome": "completed",
        "halt_state": "halt_stalled_tool_call",
        "model_calls": 1,
        "tool_batches": 0,
        "final_response": r.result.message,
        "failures": r.failures,
        "diverged_at": None,
        "unconsumed": 2,
        "trace_divergence": r.divergence.to_json(),
        "elapsed": 180.0,
        "crash": None,
    }
    assert r.result.message.startswith("\u26a0 Stream stalled mid tool-call (get_capital)")
    assert r.failures[:2] == ["1 model calls, expected 3", "0 tool batches, expected 1"]
    # final_response is what the turn delivered (the halt's message); the expectation reads the
    # model's own last reply, which was empty: the failure says which it read
    assert r.failures[2] == "the model's last reply does not contain 'Mexico City' (it is '')"
    assert data["trace_divergence"]["step"] == 2
    traced = r.to_json(with_trace=True)
    trace = traced.pop("trace")
    assert trace == [s.to_json() for s in r.result.trace] and traced == data
    assert [s["event"] for s in trace] == ["opened", "stalled", "mid_tool_call"]


def test_the_step_limit_allows_every_state_and_every_cap_per_recorded_answer() -> None:
    """3 recorded responses and 1 tool result, plus 2: six answers' worth of 23 states and counter
    caps summing to 196 (the hermes pre-fix policy)."""
    assert (len(STALL.interactions), len(STALL.tool_results), len(PRE_FIX.states)) == (3, 1, 23)
    assert sum(c.max for c in PRE_FIX.counters) == 196
    assert step_limit(STALL, PRE_FIX) == 6 * (23 + 196)


# -- what replay hands the turn: its options, its journal, its transport -------------------------

HELLO = {"reply": {"text": "hello"}}
READ_A = {"reply": {"tool_calls": [{"name": "read_file", "arguments": {"path": "a"}}]}}


def cassette(tmp_path: Path, **doc: Any) -> Cassette:
    """A one-user-message cassette written to ``tmp_path`` (a read_file tool on offer)."""
    body: dict[str, Any] = {"loopspec_cassette": 1, "messages": [{"role": "user", "content": "say hello"}],
                            "tools": [{"name": "read_file"}], "interactions": [HELLO], **doc}
    path = tmp_path / "one.cassette.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return load_cassette(str(path))


class Seen(TurnObserver):
    """Writes down the hooks a turn called, in order."""

    def __init__(self) -> None:
        self.hooks: list[str] = []

    def turn_started(self, info: Any, messages: Any) -> None:
        self.hooks.append("started")

    def turn_halted(self, result: Any) -> None:
        self.hooks.append("halted")


def test_a_replay_stops_a_policy_that_loops_without_the_model_at_the_step_limit() -> None:
    """An escalation that re-enters itself never calls the model again: the replay ends it after
    exactly ``step_limit`` decisions (the interpreter's own default is 10,000)."""
    c = CASSETTES["openhands-sdk-755-reasoning-effort-unsupported"]
    text = DEFAULT_POLICY.read_text()
    looping = text.replace("apply: [omit_effort]\n    on: {done: call_model", "apply: [omit_effort]\n    on: {done: heal_effort")
    assert looping != text
    p = load_policy_text(looping)
    r = asyncio.run(replay(c, p))
    limit = step_limit(c, p)
    assert limit < 10_000
    assert r.outcome == "policy_error" and len(r.result.steps) == limit
    assert r.result.message == f"the turn took more than {limit} decisions without halting; run loopspec check"


def test_a_journaled_replay_is_written_under_its_cassette_and_names_it(tmp_path: Path) -> None:
    """Journaled, a replay is the turn ``turn_id_of`` its cassette (or the id given), its second
    entry names the cassette, its digest, the transport and the files root, and the caller's own
    observers still hear the turn."""
    c = cassette(tmp_path)
    seen = Seen()
    with SqliteJournal(tmp_path / "j.db") as j:
        r = asyncio.run(replay(c, DEFAULT, journal=j, observers=[seen], files_root=str(tmp_path / "files")))
        assert r.verdict == "pass", r.failures
        asyncio.run(replay(c, DEFAULT, journal=j, turn_id="mine"))
        assert sorted(j.turn_ids()) == sorted([turn_id_of(c.file), "mine"])
        first, second = j.entries(turn_id_of(c.file)), j.entries("mine")
    assert seen.hooks == ["started", "halted"]
    assert [e.kind for e in first[:2]] == ["begin", "replay"] and first[-1].kind == "halt"
    assert first[1].body == {"cassette": os.path.abspath(c.file), "sha256": digest(c.file), "transport": "inproc",
                             "files_root": str(tmp_path / "files")}
    assert second[1].kind == "replay" and second[1].body["files_root"] is None


def test_the_replay_note_names_the_cassette_at_a_turns_beginning_and_not_again_when_it_is_resumed(tmp_path: Path) -> None:
    """``ReplayNote`` writes its entry right after ``begin``; a resumed turn starts with a ``resume``
    entry instead, and its cassette is named already (a note handed to a resumed turn wrote it twice)."""
    from loopspec.engine.observers import TurnInfo
    from loopspec.replay.journal_note import ReplayNote

    c = cassette(tmp_path)
    with SqliteJournal(tmp_path / "j.db") as j:
        note = ReplayNote(c, "inproc", None, j, "t")
        note.turn_started(TurnInfo("p", "m", None, replayed=True, resumed=True), [])
        assert j.entries("t") == []
        note.turn_started(TurnInfo("p", "m", None, replayed=True, resumed=False), [])
        assert [(e.kind, e.body["transport"]) for e in j.entries("t")] == [("replay", "inproc")]


def test_observers_hear_a_replay_that_is_not_journaled(tmp_path: Path) -> None:
    seen = Seen()
    assert replay_sync(cassette(tmp_path), DEFAULT, observers=[seen]).verdict == "pass"
    assert seen.hooks == ["started", "halted"]


def test_the_transport_asked_for_is_the_one_that_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process, no loopback server is started and the requests carry the cassette's model; over
    HTTP the server is, at the time scale asked for, and the turn's elapsed time is measured."""
    from loopspec.replay import http

    calls: list[float] = []
    real = http.run_guarded_over_http

    async def spy(*args: Any, **kw: Any) -> Any:
        calls.append(kw["time_scale"])
        return await real(*args, **kw)

    monkeypatch.setattr(http, "run_guarded_over_http", spy)
    c = cassette(tmp_path, model="openai/recorded-model")
    inproc = asyncio.run(replay(c, DEFAULT))
    assert calls == [] and inproc.verdict == "pass"
    assert [req.model for req in inproc.result.requests] == ["openai/recorded-model"]
    over_http = asyncio.run(replay(c, DEFAULT, transport="http", time_scale=0.002))
    assert calls == [0.002] and over_http.verdict == "pass", over_http.failures
    assert over_http.transport == "http" and over_http.elapsed is not None and over_http.elapsed >= 0


class CancelsItsTask(TurnObserver):
    """Cancels the turn's own task as the first model call starts: a cancellation that is not
    ``Turn.cancel()``, which the turn halts on and re-raises."""

    def model_call_started(self, index: int, request: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()


def test_a_replay_whose_turn_raises_a_cancellation_reports_a_crash_first(tmp_path: Path) -> None:
    r = replay_sync(cassette(tmp_path, expect={"model_calls": 9}), DEFAULT, observers=[CancelsItsTask()])
    assert r.crash == "the turn raised CancelledError instead of halting"
    assert (r.verdict, r.outcome) == ("fail", "crashed")
    assert r.failures[0] == "crashed: the turn raised CancelledError instead of halting"
    assert len(r.failures) > 1, "the expectations the stand-in result misses follow the crash"
    assert r.to_json()["crash"] == r.crash


def test_a_crash_under_a_cancel_plan_says_where_the_cassette_cancelled(tmp_path: Path) -> None:
    c = cassette(tmp_path, interactions=[READ_A, HELLO], tool_results=[{"tool": "read_file", "result": "A"}],
                 cancel={"during_tool": "read_file"})
    r = replay_sync(c, DEFAULT)
    crashed = judged(c, DEFAULT, r.result, transport="inproc", unconsumed=0, diverged_at=None,
                     tools=RecordedTools(c), elapsed=1.0, crash="it raised")
    assert crashed.verdict == "fail" and crashed.crash == "it raised"
    assert crashed.failures[0] == "crashed: it raised (cancelled while tool read_file runs)"
    plain = judged(cassette(tmp_path), DEFAULT, r.result, transport="inproc", unconsumed=0, diverged_at=None,
                   tools=RecordedTools(c), elapsed=1.0, crash="it raised")
    assert plain.failures[0] == "crashed: it raised"


def test_running_a_tool_more_often_than_recorded_is_named_before_missed_expectations(tmp_path: Path) -> None:
    c = cassette(tmp_path, interactions=[READ_A, READ_A, HELLO], tool_results=[{"tool": "read_file", "result": "A"}],
                 expect={"model_calls": 9})
    r = replay_sync(c, DEFAULT)
    assert r.verdict == "diverged" and len(r.failures) >= 2
    assert r.failures[0] == "diverged: the policy ran read_file more often than the cassette recorded"


def test_a_cassette_without_a_stored_trace_has_no_trace_divergence(tmp_path: Path) -> None:
    r = replay_sync(cassette(tmp_path), DEFAULT)
    assert r.result.trace and r.divergence is None and r.to_json()["trace_divergence"] is None


@pytest.mark.parametrize("how", ["rerun", "fork"])
def test_rerun_and_fork_answer_tool_calls_from_the_recorded_results(tmp_path: Path, how: str) -> None:
    """The live model (here the recorded replies again) calls read_file: its recorded result is
    what the turn sends back, not an unknown-tool refusal."""
    c = cassette(tmp_path, interactions=[READ_A, HELLO], tool_results=[{"tool": "read_file", "result": "contents of a"}])
    live = InProcessProvider(c.interactions if how == "rerun" else c.interactions[1:])
    if how == "rerun":
        result = asyncio.run(rerun(c, DEFAULT, model="openai/live", live=live, clock=VirtualClock()))
    else:
        result = asyncio.run(fork(c, DEFAULT, 1, model="openai/live", live=live, clock=VirtualClock()))
    assert (result.outcome, result.usage.tool_batches, result.usage.model_calls) == ("completed", 1, 2)
    answers = [m for m in result.messages if m["role"] == "tool"]
    assert [a["content"] for a in answers] == ["contents of a"]
