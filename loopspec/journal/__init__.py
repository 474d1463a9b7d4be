"""The journal: a turn's steps written down before their effects, so a crashed or paused turn can
resume from its last durable step (see :mod:`.store`)."""

from __future__ import annotations

from .store import Entry, JournalError, JournalStore, SqliteJournal

__all__ = ["Entry", "JournalError", "JournalStore", "SqliteJournal"]
