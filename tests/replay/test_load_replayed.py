"""What ``loopspec resume`` refuses to finish a journaled replay from (``load_replayed``), each with
the sentence that says why: a turn that is not a replay, a cassette that no longer reads under the
files root it was replayed with, and one that cancels the turn. Written against the survivors of
planting mutmut's mutants of ``loopspec/replay/journaled.py``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from loopspec import load_policy
from loopspec.engine.resume import ResumeError
from loopspec.journal import SqliteJournal
from loopspec.replay.harness import replay
from loopspec.replay.journaled import load_replayed
from loopspec.replay.journal_note import turn_id_of

from _paths import DEFAULT_POLICY
from test_mutants_harness import cassette

DEFAULT = load_policy(str(DEFAULT_POLICY))


def journaled(tmp_path: Path, c, **kw):  # type: ignore[no-untyped-def]
    with SqliteJournal(tmp_path / "j.db") as j:
        asyncio.run(replay(c, DEFAULT, journal=j, **kw))
        return j.entries(turn_id_of(c.file))


def test_a_turn_without_a_replay_entry_is_not_a_replayed_turn(tmp_path: Path) -> None:
    entries = [e for e in journaled(tmp_path, cassette(tmp_path)) if e.kind != "replay"]
    with pytest.raises(ResumeError) as err:
        load_replayed("t1", entries)
    assert str(err.value) == "turn 't1' is not a replayed turn (no replay entry in the journal)"


def test_the_cassette_is_read_under_the_files_root_it_was_replayed_with(tmp_path: Path) -> None:
    """Its stream lies in a folder beside the cassette's: readable only under the files root the
    replay was given (kept in the note), else refused with the reader's own first error."""
    streams = tmp_path / "streams"
    streams.mkdir()
    (streams / "hello.sse").write_text('data: {"choices": [{"index": 0, "delta": {"content": "hi"}, '
                                       '"finish_reason": "stop"}]}\n\ndata: [DONE]\n\n')
    cases = tmp_path / "cases"
    cases.mkdir()
    body = {"loopspec_cassette": 1, "messages": [{"role": "user", "content": "say hello"}],
            "interactions": [{"sse_file": "../streams/hello.sse"}]}
    (cases / "one.cassette.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    from loopspec.replay.cassette import read_cassette

    c, _ = read_cassette(str(cases / "one.cassette.yaml"), files_root=str(tmp_path))
    assert c is not None
    entries = journaled(tmp_path, c, files_root=str(tmp_path))
    assert load_replayed("t", entries).interactions == c.interactions  # the note's root
    without = [e for e in entries if e.kind != "replay"] + [
        type(e)(e.turn_id, e.seq, e.kind, {**e.body, "files_root": None}, e.at) for e in entries if e.kind == "replay"]
    assert load_replayed("t", without, files_root=str(tmp_path)).interactions == c.interactions  # the caller's
    with pytest.raises(ResumeError) as err:
        load_replayed("t", without)
    assert str(err.value).startswith(f"turn 't' replayed {c.file}, which no longer reads: cannot read '../streams/hello.sse'")


def test_a_cassette_that_cancels_the_turn_is_not_resumed(tmp_path: Path) -> None:
    c = cassette(tmp_path, cancel={"before_call": 1})
    entries = journaled(tmp_path, c)
    with pytest.raises(ResumeError) as err:
        load_replayed("t", entries)
    assert str(err.value) == (f"turn 't' replays {c.file}, which cancels the turn (cancel:): resume does not "
                              "replay a cancellation yet; replay the cassette again")
