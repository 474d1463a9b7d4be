"""The journal store: entries come back in the order written, per turn; a write that returns has
survived the process being killed; a file that is not a journal is refused with its name."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from loopspec.journal import JournalError, SqliteJournal


def test_entries_come_back_in_order_per_turn(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "j.db") as j:
        assert [j.append("a", "step", {"n": i}) for i in range(3)] == [0, 1, 2]
        assert j.append("b", "begin", {"messages": [{"role": "user", "content": "hé"}]}) == 0
        assert j.append("a", "halt", {"outcome": "completed"}) == 3
        assert [(e.seq, e.kind, e.body) for e in j.entries("a")] == [
            (0, "step", {"n": 0}), (1, "step", {"n": 1}), (2, "step", {"n": 2}), (3, "halt", {"outcome": "completed"})
        ]
        assert j.entries("b")[0].body["messages"][0]["content"] == "hé"
        assert j.turn_ids() == ["a", "b"]
        assert j.entries("nobody") == []


@pytest.mark.parametrize("clock", [[5.0, 5.0], [10.0, 5.0]], ids=["the same time", "the clock set back"])
def test_turns_are_listed_in_the_order_they_began_whatever_the_wall_clock_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: list[float]
) -> None:
    """``loopspec resume`` without a turn id takes the last open turn: two turns begun at one clock
    time were listed by name, and after the clock was set back by their times, so it took the
    older one."""
    times = iter(clock)
    monkeypatch.setattr("loopspec.journal.store.time.time", lambda: next(times))
    with SqliteJournal(tmp_path / "j.db") as j:
        j.append("zeta", "begin", {})
        j.append("alpha", "begin", {})
        assert j.turn_ids() == ["zeta", "alpha"]
    with SqliteJournal(tmp_path / "j.db") as j:  # and as read back by another process
        assert j.turn_ids() == ["zeta", "alpha"]


def test_a_reopened_journal_continues_each_turns_sequence(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with SqliteJournal(path) as j:
        j.append("a", "step", {})
    with SqliteJournal(path) as j:
        assert j.append("a", "step", {}) == 1
        assert [e.seq for e in j.entries("a")] == [0, 1]


WRITER = """
import os, signal, sys
from loopspec.journal import SqliteJournal
j = SqliteJournal(sys.argv[1])
for i in range(int(sys.argv[2])):
    j.append("t", "step", {"i": i})
    print(i, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_every_append_that_returned_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    proc = subprocess.run([sys.executable, "-c", WRITER, str(path), "25"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    acknowledged = [int(x) for x in proc.stdout.split()]
    assert acknowledged == list(range(25))
    with SqliteJournal(path) as j:
        assert [e.body["i"] for e in j.entries("t")] == acknowledged


def test_an_entry_that_is_not_json_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "j.db") as j:
        with pytest.raises(JournalError, match="a step entry of turn t cannot be written as JSON"):
            j.append("t", "step", {"x": math.nan})
        with pytest.raises(JournalError, match="cannot be written as JSON"):
            j.append("t", "step", {"x": object()})
        assert j.entries("t") == [] and j.append("t", "step", {}) == 0


def test_an_entry_damaged_outside_loopspec_is_refused_naming_the_file_and_the_entry(tmp_path: Path) -> None:
    """A row edited by hand or cut by a disk error (its body no longer JSON, its time not a number)
    is a JournalError naming the file, the entry and the turn, not a JSONDecodeError."""
    path = tmp_path / "j.db"
    with SqliteJournal(path) as journal:
        journal.append("t", "begin", {"messages": []})
        journal.append("t", "checkpoint", {"step": 0})
    with sqlite3.connect(path) as db:
        db.execute("UPDATE entries SET body = ? WHERE seq = 1", ('{"step": 0',))
    with SqliteJournal(path) as journal, pytest.raises(JournalError) as err:
        journal.entries("t")
    assert str(err.value).startswith(f"{path}: entry 1 (checkpoint) of turn t does not read: ")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE entries SET body = ?, at = ? WHERE seq = 1", ('{"step": 0}', "noon"))
    with SqliteJournal(path) as journal, pytest.raises(JournalError, match=r"entry 1 \(checkpoint\) of turn t does not read"):
        journal.entries("t")


def test_a_file_that_is_not_a_journal_is_refused_with_its_name(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all\n" * 100)
    with pytest.raises(JournalError, match=r"notes\.txt: not a loopspec journal"):
        SqliteJournal(text)
    other = tmp_path / "app.db"
    sqlite3.connect(other).execute("CREATE TABLE users (id INTEGER)").connection.commit()
    with pytest.raises(JournalError, match=r"app\.db: an SQLite database that is not a loopspec journal"):
        SqliteJournal(other)
    assert sqlite3.connect(other).execute("SELECT name FROM sqlite_master").fetchall() == [("users",)]


def test_a_journal_from_a_newer_loopspec_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    SqliteJournal(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 7")
    db.close()
    with pytest.raises(JournalError, match="journal format 7 is newer than this loopspec reads"):
        SqliteJournal(path)


def test_a_directory_is_not_a_journal(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="cannot open the journal"):
        SqliteJournal(tmp_path)


def test_appends_from_many_threads_get_distinct_contiguous_sequence_numbers(tmp_path: Path) -> None:
    with SqliteJournal(tmp_path / "j.db") as j:
        seqs: list[int] = []
        lock = threading.Lock()

        def write() -> None:
            for _ in range(20):
                s = j.append("t", "tool_finish", {})
                with lock:
                    seqs.append(s)

        threads = [threading.Thread(target=write) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(seqs) == list(range(80))
        assert [e.seq for e in j.entries("t")] == list(range(80))


def test_synchronous_must_be_normal_or_full(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous must be one of NORMAL, FULL"):
        SqliteJournal(tmp_path / "j.db", synchronous="OFF")
    with SqliteJournal(tmp_path / "j.db", synchronous="FULL") as j:
        assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with SqliteJournal(tmp_path / "k.db") as j:
        assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_entry_is_stored_as_compact_json_that_keeps_its_text_as_written(tmp_path: Path) -> None:
    """The journal is read by people too (``sqlite3 j.db``): a body is compact JSON with its text
    as written (no ``\\u00e9`` escapes), and comes back with its turn, kind, position and time."""
    path = tmp_path / "j.db"
    with SqliteJournal(path) as j:
        j.append("t", "begin", {"content": "hé", "n": [1, 2]})
        [entry] = j.entries("t")
    assert (entry.turn_id, entry.seq, entry.kind, entry.body) == ("t", 0, "begin", {"content": "hé", "n": [1, 2]})
    with sqlite3.connect(path) as db:
        [(body, at)] = db.execute("SELECT body, at FROM entries").fetchall()
    assert body == '{"content":"hé","n":[1,2]}' and at == entry.at


def test_a_write_that_fails_inside_its_transaction_is_rolled_back_and_named(tmp_path: Path) -> None:
    """An entry row already at the next position (written by hand): the insert fails after the
    turn's next position was advanced. The write is a JournalError naming the file, the advance is
    rolled back, and once the row is gone the same position is written."""
    path = tmp_path / "j.db"
    with SqliteJournal(path) as j:
        j.append("t", "begin", {})
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO entries VALUES ('t', 1, 'stray', '{}', 0)")
    with SqliteJournal(path) as j:
        with pytest.raises(JournalError) as err:
            j.append("t", "step", {})
        assert str(err.value).startswith(f"{path}: cannot write to the journal (") and "UNIQUE" in str(err.value)
        assert not j._db.in_transaction
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM entries WHERE kind = 'stray'")
    with SqliteJournal(path) as j:
        assert j.append("t", "step", {}) == 1
        assert [e.kind for e in j.entries("t")] == ["begin", "step"]
