"""A damaged journal is refused with why and where, never with a traceback.

A journal is a file: a disk error, a hand edit or another program can leave an entry with a field
missing or of the wrong shape. Resuming from it must end in :class:`ResumeError` naming the entry
(its position and kind) and the field, and ``loopspec resume`` must print that with the file's
name and exit 2. Before this, a checkpoint without its ``step`` ended ``loopspec resume`` in a
KeyError traceback."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from pathlib import Path
from typing import Any, Iterator

import pytest

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy
from loopspec.cli.main import main as cli_main
from loopspec.engine.resume import ResumeError, resume_point
from loopspec.journal import Entry, SqliteJournal
from loopspec.replay.interactions import StreamResponse

from _paths import DEFAULT_POLICY, FIXTURES

POLICY = load_policy(str(DEFAULT_POLICY))
TOOL_CALL = (FIXTURES / "streams" / "openai_stream_tool_call_single.sse").read_text()
TEXT = (FIXTURES / "streams" / "openai_stream_text.sse").read_text()
USER = [{"role": "user", "content": "What is the capital of the UK?"}]
WRONG = [None, 1, "x", [], {}, [1], {"a": 1}, -1, 1.5, True]
"""Values of every JSON shape, put where a field was."""


def tool_turn(journal: Any, replies: list[str]) -> Turn:
    reg = ToolRegistry()
    reg.register(lambda country: "London", name="get_capital",
                 parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    return Turn(POLICY, InProcessProvider([StreamResponse(sse=r) for r in replies]), model="openai/x", tools=reg,
                clock=VirtualClock(), journal=journal, turn_id="t")


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> list[Entry]:
    """A tool turn's journal cut where a crash would leave it: after its tool answered, before the
    second model call (so it resumes from the tool batch's checkpoint, with an answered call)."""
    with SqliteJournal(tmp_path_factory.mktemp("j") / "j.db") as journal:
        asyncio.run(tool_turn(journal, [TOOL_CALL, TEXT]).run(USER))
        entries = journal.entries("t")
    cut = [e.kind for e in entries].index("tool_finish") + 1
    resume_point(POLICY, "t", entries[:cut])  # resumable as it is
    return entries[:cut]


@pytest.fixture(scope="module")
def before_the_answer(tmp_path_factory: pytest.TempPathFactory) -> list[Entry]:
    """The same journal cut after the checkpoint that holds the tool round's messages."""
    with SqliteJournal(tmp_path_factory.mktemp("j") / "j.db") as journal:
        asyncio.run(tool_turn(journal, [TOOL_CALL, TEXT]).run(USER))
        entries = journal.entries("t")
    cut = max(n for n, e in enumerate(entries) if e.kind == "checkpoint") + 1
    assert entries[cut - 1].body["messages"], "the last checkpoint holds the tool round"
    return entries[:cut]


def paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON value, outermost first."""
    if at:
        yield at
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, at + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, at + (i,))


def damaged(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """``body`` with the field at ``path`` removed (``value`` is ``...``) or replaced."""
    body = copy.deepcopy(body)
    holder = body
    for step in path[:-1]:
        holder = holder[step]
    if value is ...:
        del holder[path[-1]]
    else:
        holder[path[-1]] = value
    return body


@pytest.mark.parametrize("cut", ["crashed", "before_the_answer"])
def test_every_field_removed_or_of_any_shape_gives_a_resume_point_or_a_resume_error(cut: str, request: pytest.FixtureRequest) -> None:
    """Property, over every field at every depth of every entry, removed or replaced by a value of
    each JSON shape: reading the resume point either succeeds or raises ResumeError; and a refusal
    for damage names the entry that was damaged."""
    crashed: list[Entry] = request.getfixturevalue(cut)
    tried = refused_as_damage = 0
    for i, entry in enumerate(crashed):
        for path in list(paths(entry.body)):
            for value in [..., *WRONG]:
                entries = list(crashed)
                entries[i] = dataclasses.replace(entry, body=damaged(entry.body, path, value))
                tried += 1
                try:
                    resume_point(POLICY, "t", entries)
                except ResumeError as exc:
                    if "the journal is damaged" in str(exc):
                        refused_as_damage += 1
                        assert f"at entry {entry.seq} ({entry.kind})" in str(exc), (path, value, str(exc))
    assert tried > 1000 and refused_as_damage > 100, (tried, refused_as_damage)  # not vacuous


@pytest.mark.parametrize("kind, path, value, says", [
    ("checkpoint", ("step",), ..., "its field 'step' is missing"),
    ("checkpoint", ("offer",), None, "a field is of the wrong shape"),
    ("checkpoint", ("guardrails",), {"failures": [1]}, "a field is of the wrong shape"),
    ("checkpoint", ("usage",), {"model_calls": "x"}, "a field is of the wrong shape"),
    ("step", ("event",), ..., "its field 'event' is missing"),
    ("tool_finish", ("content",), ..., "its field 'content' is missing"),
    ("begin", ("messages",), 1, "a field is of the wrong shape"),
])
def test_a_damaged_entry_is_named_with_its_field(crashed: list[Entry], kind: str, path: tuple[Any, ...], value: Any,
                                                   says: str) -> None:
    i = max(n for n, e in enumerate(crashed) if e.kind == kind)  # the last: the one resuming reads
    entries = list(crashed)
    entries[i] = dataclasses.replace(crashed[i], body=damaged(crashed[i].body, path, value))
    with pytest.raises(ResumeError) as err:
        resume_point(POLICY, "t", entries)
    assert str(err.value) == (f"turn 't': the journal is damaged at entry {crashed[i].seq} ({kind}): {says}"
                              + str(err.value).split(says, 1)[1])
    assert str(err.value).endswith("it cannot be resumed: run the turn again from its messages")


def test_a_message_of_the_wrong_shape_is_damage_named_by_its_checkpoint(before_the_answer: list[Entry], tmp_path: Path) -> None:
    """A history reads a message's tool calls as a list: a checkpoint whose message holds something
    else is refused when the turn resumes, not met as a TypeError inside the resumed turn."""
    crashed = before_the_answer
    i = len(crashed) - 1
    entries = list(crashed)
    entries[i] = dataclasses.replace(crashed[i], body=damaged(crashed[i].body, ("messages", 0, "tool_calls"), 1))
    with SqliteJournal(tmp_path / "d.db") as journal:
        for e in entries:
            journal.append("t", e.kind, e.body)
        with pytest.raises(ResumeError, match=rf"damaged at entry {crashed[i].seq} \(checkpoint\): a field is of the wrong shape"):
            asyncio.run(tool_turn(journal, [TEXT]).resume("t"))


def test_loopspec_resume_names_the_file_the_entry_and_the_field_and_exits_2(crashed: list[Entry], tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.db"
    with SqliteJournal(path) as journal:
        for e in crashed:
            journal.append("t", e.kind, damaged(e.body, ("step",), ...) if e.kind == "checkpoint" else e.body)
    assert cli_main(["resume", "t", "--journal", str(path), "--machine", str(DEFAULT_POLICY), "--abandon"]) == 2
    err = capsys.readouterr().err
    last = [e for e in crashed if e.kind == "checkpoint"][-1]  # the one resuming reads whole
    assert f"loopspec resume: {path}: turn 't': the journal is damaged at entry {last.seq} (checkpoint): its field 'step' is missing" in err
    assert "Traceback" not in err
