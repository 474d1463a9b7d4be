"""``replay --journal``, ``resume`` of a replayed turn and ``--crash-after-step`` on the command
line: turn ids read off the cassette's path, one-line refusals (a journal that already holds the
turns, a cassette changed or gone since, a live turn without a model), and the crash hook on a live
``run``. The crash matrix over a corpus is ``tests/replay/test_replay_crash.py``."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loopspec import load_policy
from loopspec.cli import main
from loopspec.journal import SqliteJournal
from loopspec.replay.cassette import read_cassette
from loopspec.replay.harness import replay
from loopspec.replay.journal_note import turn_id_of

from _doubles import CutAfter, Stop
from _paths import DEFAULT_POLICY, FIXTURES, ROOT

POLICY = str(DEFAULT_POLICY)
SELF_CONTAINED = "ml-intern-length-with-tool-calls.cassette.yaml"  # a tool batch, no sse_file references


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def cassette(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of a self-contained cassette, in a folder of its own, with the test there."""
    (tmp_path / "corpus").mkdir()
    shutil.copy(FIXTURES / "incidents" / SELF_CONTAINED, tmp_path / "corpus" / SELF_CONTAINED)
    monkeypatch.chdir(tmp_path)
    return Path("corpus") / SELF_CONTAINED



class CutAtStart:
    """Raises :class:`Stop` as the turn starts: after its begin and replay entries, before any effect."""

    def turn_started(self, info: Any, messages: Any) -> None:
        raise Stop

    def __getattr__(self, name: str) -> Any:
        return lambda *a: None



def cut_replay(path: Path, journal: Path, n: int) -> None:
    """Replay ``path`` into ``journal`` and stop after decision ``n`` (0: as the turn starts)."""
    c, _ = read_cassette(str(path))
    assert c is not None
    cut = CutAfter(n) if n else CutAtStart()
    with SqliteJournal(journal) as j, pytest.raises(Stop):
        asyncio.run(replay(c, load_policy(POLICY), journal=j, observers=[cut]))  # type: ignore[list-item]


@pytest.mark.parametrize("path, turn_id", [
    ("fixtures/incidents/a-b.cassette.yaml", "fixtures/incidents/a-b"),
    ("./corpus//x.cassette.yml", "corpus/x"),
    ("plain.yaml", "plain"),
    ("no-suffix", "no-suffix"),
])
def test_a_replayed_turn_is_named_by_its_cassette_path(path: str, turn_id: str) -> None:
    assert turn_id_of(path) == turn_id


def test_replay_journals_every_turn_and_refuses_a_file_that_holds_them(cassette: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "replay", "corpus", "--machine", POLICY, "--journal", "j.db", "--json")
    record = json.loads(out)["cassettes"][0]
    assert code == 0 and record["turn_id"] == "corpus/ml-intern-length-with-tool-calls"
    with SqliteJournal("j.db") as j:
        entries = j.entries(record["turn_id"])
    assert [e.kind for e in entries[:2]] == ["begin", "replay"] and entries[-1].kind == "halt"
    assert entries[1].body["cassette"] == str(Path(cassette).resolve())
    code, out, err = run(capsys, "replay", str(cassette), "--machine", POLICY, "--journal", "j.db")
    assert code == 2 and out == ""
    assert err.strip() == ("loopspec replay: j.db already holds turn 'corpus/ml-intern-length-with-tool-calls': finish a cut "
                           "one with loopspec resume, or journal this replay to another file")


def test_replay_into_a_file_that_is_not_a_journal_is_a_usage_error(cassette: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("notes.db").write_text("not a journal\n")
    code, _out, err = run(capsys, "replay", str(cassette), "--machine", POLICY, "--journal", "notes.db")
    assert code == 2 and "not a loopspec journal" in err and len(err.strip().splitlines()) == 1


def test_resume_finishes_a_cut_replay_in_process(cassette: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "replay", str(cassette), "--machine", POLICY, "--json", "--trace")
    whole = json.loads(out)["cassettes"][0]
    cut_replay(cassette, Path("j.db"), 4)
    code, out, err = run(capsys, "resume", "--journal", "j.db", "--machine", POLICY)  # no --model: none needed
    assert code == 0, err
    assert out.splitlines()[0].split() == ["PASS", "ml-intern-length-with-tool-calls:", "completed,", "3", "calls,", "1",
                                           "tool", "batches"]
    assert "resumed corpus/ml-intern-length-with-tool-calls: replayed in process, pass" in err
    with SqliteJournal("j.db") as j:
        kinds = [e.kind for e in j.entries(turn_id_of(str(cassette)))]
    assert kinds.count("resume") == 1 and kinds[-1] == "halt"
    assert kinds.count("replay") == 1  # the resumed turn names its cassette once, after its one begin
    assert whole["outcome"] == "completed"


def test_a_replayed_turn_cut_before_any_effect_starts_again(cassette: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Killed before its first checkpoint, the turn had no effect: resume replays it from the start,
    and replaying the cassette into the same journal is allowed too."""
    cut_replay(cassette, Path("a.db"), 0)
    code, out, err = run(capsys, "resume", "--journal", "a.db", "--machine", POLICY)
    assert code == 0 and out.startswith("PASS"), err
    cut_replay(cassette, Path("b.db"), 0)
    code, out, err = run(capsys, "replay", str(cassette), "--machine", POLICY, "--journal", "b.db")
    assert code == 0 and "1 passed" in out, err
    for db in ("a.db", "b.db"):
        with SqliteJournal(db) as j:
            kinds = [e.kind for e in j.entries(turn_id_of(str(cassette)))]
        assert kinds[:2] == ["begin", "replay"] and kinds.count("begin") == 2 and kinds[-1] == "halt"


def test_a_live_turn_cut_before_any_effect_is_run_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SqliteJournal(tmp_path / "j.db") as j:
        j.append("early", "begin", {"policy": "default", "messages": []})
    code, _out, err = run(capsys, "resume", "--journal", str(tmp_path / "j.db"), "--machine", POLICY)
    assert code == 2
    assert "turn 'early' stopped before its first model call, before any effect: run it again" in err


@pytest.mark.parametrize("change, expected", [
    ("edit", "which has changed since: replay it again"),
    ("remove", "which is not there any more"),
])
def test_resume_refuses_a_replayed_turn_whose_cassette_changed(cassette: Path, capsys: pytest.CaptureFixture[str],
                                                               change: str, expected: str) -> None:
    cut_replay(cassette, Path("j.db"), 4)
    if change == "edit":
        cassette.write_text(cassette.read_text() + "\n# edited\n")
    else:
        cassette.unlink()
    code, out, err = run(capsys, "resume", "--journal", "j.db", "--machine", POLICY)
    assert code == 2 and out == ""
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def damaged_copy(source: Path, target: Path, kind: str, field: str, value: Any) -> int:
    """``source``'s turn copied into ``target`` with ``field`` of its last ``kind`` entry removed
    (``value`` is ``...``) or replaced; returns that entry's position."""
    with SqliteJournal(source) as j:
        (turn_id,) = j.turn_ids()
        entries = j.entries(turn_id)
    last = max(e.seq for e in entries if e.kind == kind)
    with SqliteJournal(target) as j:
        for e in entries:
            body = dict(e.body)
            if e.seq == last:
                if value is ...:
                    del body[field]
                else:
                    body[field] = value
            j.append(turn_id, e.kind, body)
    return last


@pytest.mark.parametrize("cut, kind, field, value, says", [
    (4, "replay", "cassette", ..., "its field 'cassette' is missing"),
    (4, "request", "index", "first", "a field is of the wrong shape (invalid literal for int() with base 10: 'first')"),
    (4, "checkpoint", "counters", None, "a field is of the wrong shape ('NoneType' object is not iterable)"),
    (0, "begin", "policy", ..., "ran under policy None, not 'default'"),
    (0, "replay", "files_root", 1, "a field is of the wrong shape"),
])
def test_resume_refuses_a_damaged_replay_journal_naming_the_entry(cassette: Path, capsys: pytest.CaptureFixture[str], cut: int,
                                                                   kind: str, field: str, value: Any, says: str) -> None:
    """A replayed turn's journal, damaged where resuming it reads (its replay note, a request's
    index, the checkpoint; cut before any effect: the begin and the note), is refused in one line
    that names the file, the entry and the field: never a traceback."""
    cut_replay(cassette, Path("j.db"), cut)
    seq = damaged_copy(Path("j.db"), Path("d.db"), kind, field, value)
    code, out, err = run(capsys, "resume", "--journal", "d.db", "--machine", POLICY)
    assert code == 2 and out == "" and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert says in err and err.startswith("loopspec resume: d.db: turn 'corpus/ml-intern-length-with-tool-calls'")
    if "damaged" in says or "wrong shape" in says or "missing" in says:
        assert f"the journal is damaged at entry {seq} ({kind})" in err


@pytest.mark.parametrize("turn_given", [True, False])
def test_resume_refuses_an_entry_that_no_longer_reads_as_json(cassette: Path, capsys: pytest.CaptureFixture[str],
                                                              turn_given: bool) -> None:
    """A row cut by a disk error or a hand edit: one line naming the file and the entry, exit 2,
    whether the turn is named or looked for (the newest that has not ended reads every turn)."""
    import sqlite3

    cut_replay(cassette, Path("j.db"), 4)
    with sqlite3.connect("j.db") as db:
        db.execute("UPDATE entries SET body = substr(body, 1, 10) WHERE seq = 3")
        (kind,) = db.execute("SELECT kind FROM entries WHERE seq = 3").fetchone()
    turn = [turn_id_of(str(cassette))] if turn_given else []
    code, out, err = run(capsys, "resume", *turn, "--journal", "j.db", "--machine", POLICY)
    assert code == 2 and out == "" and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"loopspec resume: j.db: entry 3 ({kind}) of turn {turn_id_of(str(cassette))} does not read: ")


def test_resume_of_a_live_turn_needs_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SqliteJournal(tmp_path / "j.db") as j:
        j.append("live", "begin", {"policy": "default", "messages": []})
        j.append("live", "checkpoint", {"step": 0})
    code, _out, err = run(capsys, "resume", "--journal", str(tmp_path / "j.db"), "--machine", POLICY)
    assert code == 2
    assert err.strip() == "loopspec resume: turn 'live' is a live turn: give --model (and its credentials) to go on with it"


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_the_crash_hook_takes_a_decision_number(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "replay", "x.cassette.yaml", "--machine", POLICY, "--crash-after-step", value)
    assert code == 2 and f"argument --crash-after-step: takes a decision number, 1 or more, not {value!r}" in err


def test_run_ends_abruptly_after_the_decision_the_hook_names_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A live turn (through litellm, against a loopback server) dies after its 3rd decision, the
    tool call's: exit 137, nothing printed, three steps in the journal; resume finishes it."""
    from loopspec.replay.interactions import StreamResponse
    from loopspec.replay.server import LoopbackServer

    streams = FIXTURES / "streams"
    answers = [StreamResponse(sse=(streams / n).read_text()) for n in ("openai_stream_tool_call_single.sse", "openai_stream_text.sse")]
    journal = tmp_path / "j.db"
    with LoopbackServer(answers) as server:
        proc = subprocess.run([sys.executable, "-m", "loopspec", "run", "What time is it?", "--machine", POLICY, "--model", "openai/x",
                               "--api-base", server.api_base, "--journal", str(journal), "--crash-after-step", "3"],
                              capture_output=True, text=True, timeout=120, cwd=ROOT, env=dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True"))
    assert proc.returncode == 137 and proc.stdout == "", proc.stderr[-2000:]
    with SqliteJournal(journal) as j:
        (turn,) = j.turn_ids()
        kinds = [e.kind for e in j.entries(turn)]
    assert kinds.count("step") == 3 and "halt" not in kinds
    with LoopbackServer(answers[1:]) as server:
        code, out, err = run(capsys, "resume", "--journal", str(journal), "--machine", POLICY, "--model", "openai/x",
                             "--api-base", server.api_base, "--json")
    assert code == 0 and json.loads(out)["outcome"] == "completed", err
