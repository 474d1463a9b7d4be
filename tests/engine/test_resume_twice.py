"""A turn that crashes, is resumed, and crashes again resumes a second time from what the *second*
process did: the decisions a crash cut (taken after the last checkpoint of their process) are not
read back as if they had happened, even when the model answered the retried call differently."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy
from loopspec.engine.history import history_problems
from loopspec.journal import SqliteJournal
from loopspec.replay.interactions import StreamResponse

from _doubles import CutAfter, Stop
from _paths import DEFAULT_POLICY, FIXTURES

POLICY = load_policy(str(DEFAULT_POLICY))
USER = [{"role": "user", "content": "What is the capital of the UK?"}]


def answers(*names: str) -> list[StreamResponse]:
    return [StreamResponse(sse=(FIXTURES / "streams" / f"{n}.sse").read_text()) for n in names]




def turn(journal: SqliteJournal, replies: list[StreamResponse], cut: int | None = None) -> Turn:
    tools = ToolRegistry()
    tools.register(lambda country: "London", name="get_capital",
                   parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    return Turn(POLICY, InProcessProvider(replies), model="openai/x", tools=tools, clock=VirtualClock(), journal=journal,
                turn_id="t", observers=[CutAfter(cut)] if cut else [])  # type: ignore[list-item]


def test_a_turn_cut_twice_resumes_from_the_decisions_of_its_last_process(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "j.db") as journal:
        # 1st process: the model asks for a tool; killed after that decision, before the batch
        with pytest.raises(Stop):
            asyncio.run(turn(journal, answers("openai_stream_tool_call_single"), cut=2).run(USER))
        # 2nd process: the retried call is cut off by the length limit this time; the turn asks
        # to continue and is killed as the next call opens, after a new checkpoint
        with pytest.raises(Stop):
            asyncio.run(turn(journal, answers("openai_stream_finish_length_text"), cut=4).resume("t"))
        result = asyncio.run(turn(journal, answers("openai_stream_text")).resume("t"))
    assert result.outcome == "completed" and history_problems(result.messages) == []
    assert [s.event for s in result.trace] == ["opened", "length", "done", "opened", "text"]
