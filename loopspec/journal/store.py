"""Where a turn's journal lives: an append-only log of JSON entries per turn, behind a small
interface, with an embedded SQLite store as the default.

Why a log and not snapshots: each step of a turn is written *before* its effect (the request is
sent, the tool runs), so that a crash at any point leaves a record of what was about to happen.
Resume reads the log back; nothing is ever updated in place, so a crash mid-write loses at most the
entry being written, never one already there.

Why SQLite in WAL mode with ``synchronous=NORMAL``: a commit survives the process being killed
(SIGKILL, an OOM kill, a crash) as soon as ``append`` returns, which is the failure a resumable
turn is for; only a power loss can lose the last commits. ``synchronous=FULL`` also survives that
and costs an fsync per entry (``bench/journal_cost.py`` measures both). A server database can take
this store's place by implementing :class:`JournalStore`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..language.errors import LoopspecError

SCHEMA_VERSION = 1
"""Stored in SQLite's ``user_version``; a journal written by a newer loopspec is refused."""

SYNCHRONOUS = ("NORMAL", "FULL")

# The statements, named once: the store's whole SQL, read in one place.
_READ_VERSION = "PRAGMA user_version"
_WAL = "PRAGMA journal_mode=WAL"
_TABLES = "SELECT name FROM sqlite_master WHERE type='table'"
_CREATE = """
BEGIN;
CREATE TABLE entries (
    turn_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (turn_id, seq)
) WITHOUT ROWID;
CREATE TABLE turns (turn_id TEXT PRIMARY KEY, started REAL NOT NULL, next_seq INTEGER NOT NULL);
PRAGMA user_version = 1;
COMMIT;
"""
_BEGIN = "BEGIN IMMEDIATE"  # the write lock at once: two processes never read the same next_seq
_NEXT_SEQ = "SELECT next_seq FROM turns WHERE turn_id = ?"
_NEW_TURN = "INSERT INTO turns VALUES (?, ?, 1)"
_ADVANCE = "UPDATE turns SET next_seq = ? WHERE turn_id = ?"
_ADD_ENTRY = "INSERT INTO entries VALUES (?, ?, ?, ?, ?)"
_COMMIT = "COMMIT"
_ROLLBACK = "ROLLBACK"
_ENTRIES = "SELECT seq, kind, body, at FROM entries WHERE turn_id = ? ORDER BY seq"
_TURNS = "SELECT turn_id FROM turns ORDER BY rowid"
"""In the order the turns began: the rowid counts inserts, where two wall-clock times may tie or run
backwards (the clock set back), and ``resume`` takes the last open turn."""


class JournalError(LoopspecError):
    """A journal file that cannot be used: not a journal, from a newer version, or unwritable."""


@dataclass(frozen=True)
class Entry:
    """One journal entry: what kind of record it is, its JSON body, and when it was written."""

    turn_id: str
    seq: int
    """Position in the turn's log, from 0; entries are read back in this order."""
    kind: str
    body: dict[str, Any]
    at: float
    """Wall-clock time of the write (``time.time()``), for people reading the journal."""


class JournalStore(Protocol):
    """What the engine needs from a journal: append entries to a turn's log and read them back."""

    def append(self, turn_id: str, kind: str, body: dict[str, Any]) -> int:
        """Write one entry durably (it survives the process dying once this returns); its seq."""

    def entries(self, turn_id: str) -> list[Entry]:
        """Every entry of a turn, in the order written."""

    def turn_ids(self) -> list[str]:
        """Every turn in the journal, in the order they began (the first append of each)."""

    def close(self) -> None: ...


class SqliteJournal:
    """The default :class:`JournalStore`: one SQLite file (WAL), any number of turns."""

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL") -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, not {synchronous!r}")
        self.path = Path(path)
        self._lock = threading.Lock()  # tools may run in threads; the connection is shared
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._open(synchronous)
        except sqlite3.OperationalError as exc:  # a directory, no permission, a missing folder
            raise JournalError(f"{self.path}: cannot open the journal ({exc})") from None
        except sqlite3.DatabaseError as exc:  # the file is something else
            raise JournalError(
                f"{self.path}: not a loopspec journal ({exc}); give --journal a new file or one a run wrote"
            ) from None

    def _open(self, synchronous: str) -> None:
        db = self._db
        version = db.execute(_READ_VERSION).fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"{self.path}: journal format {version} is newer than this loopspec reads ({SCHEMA_VERSION}); upgrade loopspec"
            )
        db.execute(_WAL)
        db.execute(f"PRAGMA synchronous={synchronous}")
        if version == 0:
            tables = db.execute(_TABLES).fetchall()
            if tables:
                raise JournalError(f"{self.path}: an SQLite database that is not a loopspec journal; give --journal a new file")
            db.executescript(_CREATE)

    def append(self, turn_id: str, kind: str, body: dict[str, Any]) -> int:
        try:
            text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise JournalError(f"a {kind} entry of turn {turn_id} cannot be written as JSON: {exc}") from None
        now = time.time()
        with self._lock:
            db = self._db
            try:
                db.execute(_BEGIN)
                row = db.execute(_NEXT_SEQ, (turn_id,)).fetchone()
                seq = 0 if row is None else int(row[0])
                if row is None:
                    db.execute(_NEW_TURN, (turn_id, now))
                else:
                    db.execute(_ADVANCE, (seq + 1, turn_id))
                db.execute(_ADD_ENTRY, (turn_id, seq, kind, text, now))
                db.execute(_COMMIT)
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute(_ROLLBACK)
                raise JournalError(f"{self.path}: cannot write to the journal ({exc})") from None
        return seq

    def entries(self, turn_id: str) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(_ENTRIES, (turn_id,)).fetchall()
        out = []
        for seq, kind, body, at in rows:
            try:
                out.append(Entry(turn_id, int(seq), str(kind), json.loads(body), float(at)))
            except (TypeError, ValueError) as exc:  # a row edited or damaged outside loopspec
                raise JournalError(f"{self.path}: entry {seq} ({kind}) of turn {turn_id} does not read: {exc}") from None
        return out

    def turn_ids(self) -> list[str]:
        with self._lock:
            rows = self._db.execute(_TURNS).fetchall()
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "SqliteJournal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
