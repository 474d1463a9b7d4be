"""The journal's entries hold what docs/journal.md says each one holds, field by field.

Planting every mutmut mutant of ``engine/journaling.py`` showed that the suite read an entry's kind
and a few of its fields, so a renamed or emptied field (the halt's state, a response's usage, the
pause's step, a resume's message count) went unnoticed: a journal is read by people and by tools
after a crash, so its field names are its format. These tests read whole entries."""

from __future__ import annotations

import asyncio
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, abandon, load_policy
from loopspec.engine.journaling import JournalWriter, _plain
from loopspec.engine.results import TraceStep
from loopspec.engine.resume import resume_point
from loopspec.journal import SqliteJournal
from loopspec.language.alphabet import Event
from loopspec.replay.interactions import StreamResponse

from _paths import DEFAULT_POLICY, FIXTURES

POLICY = load_policy(str(DEFAULT_POLICY))
TOOL_CALL = (FIXTURES / "streams" / "openai_stream_tool_call_single.sse").read_text()
TEXT = (FIXTURES / "streams" / "openai_stream_text.sse").read_text()
USER = [{"role": "user", "content": "What is the capital of the UK?"}]


def tool_turn(journal: Any, replies: list[str], needs_approval: bool = False, turn_id: str = "t") -> Turn:
    reg = ToolRegistry()
    reg.register(lambda country: "London", name="get_capital", needs_approval=needs_approval,
                 parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    return Turn(POLICY, InProcessProvider([StreamResponse(sse=r) for r in replies]), model="openai/x", tools=reg,
                clock=VirtualClock(), journal=journal, turn_id=turn_id)


def bodies(journal: Any, turn_id: str, kind: str) -> list[dict[str, Any]]:
    return [e.body for e in journal.entries(turn_id) if e.kind == kind]


def test_begin_holds_the_policy_the_model_and_the_opening_messages(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "j.db") as journal:
        asyncio.run(tool_turn(journal, [TOOL_CALL, TEXT]).run(USER))
        (begin,) = bodies(journal, "t", "begin")
    assert begin == {"policy": POLICY.name, "model": "openai/x", "replayed": True, "messages": USER}


def test_a_response_holds_its_event_finish_reason_length_and_token_usage(tmp_path: Path) -> None:
    """Each reply's usage is recorded under its own names, and the turn's usage is their sum."""
    with SqliteJournal(tmp_path / "j.db") as journal:
        result = asyncio.run(tool_turn(journal, [TOOL_CALL, TEXT]).run(USER))
        responses = bodies(journal, "t", "response")
    assert [(r["index"], r["event"], r["finish_reason"]) for r in responses] == [(1, "tool_calls", "tool_calls"), (2, "text", "stop")]
    assert responses[0]["chars"] == 0 and responses[1]["chars"] == len(result.response) > 0
    usages = [r["usage"] for r in responses]
    assert all(set(u) == {"prompt_tokens", "completion_tokens", "reasoning_tokens"} for u in usages)
    assert all(u["prompt_tokens"] > 0 and u["completion_tokens"] > 0 for u in usages)
    for name in ("prompt_tokens", "completion_tokens", "reasoning_tokens"):
        assert sum(u[name] for u in usages) == getattr(result.usage, name), name


def test_the_halt_holds_the_outcome_halt_state_message_and_usage(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "j.db") as journal:
        result = asyncio.run(tool_turn(journal, [TOOL_CALL, TEXT]).run(USER))
        (halt,) = bodies(journal, "t", "halt")
    assert halt == {"outcome": "completed", "halt_state": result.halt_state, "message": result.message,
                    "usage": _plain(asdict(result.usage))}
    assert halt["halt_state"] and halt["usage"]["model_calls"] == 2


def test_a_pause_holds_the_halt_fields_the_waiting_calls_and_its_step(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "j.db") as journal:
        result = asyncio.run(tool_turn(journal, [TOOL_CALL], needs_approval=True).run(USER))
        (pause,) = bodies(journal, "t", "pause")
    assert result.pause is not None
    assert pause == {"outcome": "approval_required", "halt_state": result.halt_state, "message": result.message,
                     "usage": _plain(asdict(result.usage)), **_plain(result.pause.to_json()), "step": len(result.steps)}
    assert pause["step"] > 0


def test_a_resume_holds_the_model_and_how_many_messages_it_went_on_from(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "j.db") as journal:
        first = asyncio.run(tool_turn(journal, [TOOL_CALL], needs_approval=True).run(USER))
        assert first.pause is not None
        point = resume_point(POLICY, "t", journal.entries("t"))
        asyncio.run(tool_turn(journal, [TEXT], needs_approval=True).resume("t", approve=[first.pause.calls[0]["id"]]))
        (resume,) = bodies(journal, "t", "resume")
    assert resume == {"model": "openai/x", "message_count": len(point.messages)} and point.messages == USER


def test_an_abandoned_turn_ends_with_its_halt_state_and_the_answers_it_was_given(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "j.db") as journal:
        first = asyncio.run(tool_turn(journal, [TOOL_CALL], needs_approval=True).run(USER))
        history = abandon(POLICY, journal, "t")
        end = bodies(journal, "t", "halt")[-1]
    assert first.pause is not None
    added = history[len(USER):]  # what the turn's last checkpoint did not hold: the waiting round, answered
    assert end == {"outcome": "abandoned", "halt_state": first.halt_state, "messages": added}
    assert [m["role"] for m in added] == ["assistant", "tool"] and added[1]["tool_call_id"] == first.pause.calls[0]["id"]


def test_a_step_redacts_the_turns_own_api_key_from_event_attributes(tmp_path: Path) -> None:
    """The request's key has no provider shape (no pattern finds it): only the writer's own list of
    the turn's secrets keeps it out of a step's attributes."""
    key = "plain-words-key-0123456789"
    step = POLICY.step(POLICY.initial_config(), Event("auth", {"status": 401, "message": f"bad key {key}", "retry_after": 0.0,
                                                                "code": "", "wait_too_long": False}))
    with SqliteJournal(tmp_path / "j.db") as journal:
        JournalWriter(journal, "t", api_key=key).step_taken(step, TraceStep.of(POLICY, step, 0))
        (entry,) = journal.entries("t")
    assert key not in entry.body["attrs"]["message"] and entry.body["attrs"]["message"].startswith("bad key ")


class Opaque:
    def __str__(self) -> str:
        return "opaque value"


def test_plain_keeps_infinities_as_their_names_and_other_values_as_their_text() -> None:
    """JSON has no infinity and no NaN: infinities are written as ``"inf"``/``"-inf"``, NaN as null,
    and anything else that is not JSON as its text, at any depth."""
    value = {"a": math.inf, "b": -math.inf, "c": math.nan, "d": [Opaque(), (1, 2.5)], 3: {"e": None, "f": True}}
    assert _plain(value) == {"a": "inf", "b": "-inf", "c": None, "d": ["opaque value", [1, 2.5]], "3": {"e": None, "f": True}}
    assert _plain(Opaque()) == "opaque value" and _plain(math.inf) == "inf" and _plain(-math.inf) == "-inf"
