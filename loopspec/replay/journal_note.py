"""Which cassette a journaled replay read: the turn id a cassette is journaled under, and the
``replay`` entry that names the cassette, so a cut turn can be finished from it (:mod:`.journaled`)."""

from __future__ import annotations

import hashlib
import os
from typing import Any, Sequence

from loopspec.engine.observers import TurnInfo, TurnObserver
from loopspec.journal import JournalStore

from .cassette import Cassette

_SUFFIXES = (".cassette.yaml", ".cassette.yml", ".yaml", ".yml")


def turn_id_of(path: str) -> str:
    """A replayed cassette's turn id: its path as given, normalised, ``/``-separated, without the
    ``.cassette.yaml`` ending (``fixtures/incidents/ogx-6231-unknown-tool-silent-exit``). The same
    on every run from the same folder, and readable in ``loopspec resume``."""
    name = os.path.normpath(path).replace(os.sep, "/")
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def digest(path: str) -> str:
    """The cassette file's SHA-256: resume refuses a cassette edited since the turn was journaled."""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


class ReplayNote(TurnObserver):
    """Writes the ``replay`` entry (which cassette this turn replays) right after ``begin``."""

    required = True  # a replayed turn the journal cannot name the cassette of could not be resumed

    def __init__(self, cassette: Cassette, transport: str, files_root: str | None, journal: JournalStore, turn_id: str) -> None:
        self.body = {
            "cassette": os.path.abspath(cassette.file),
            "sha256": digest(cassette.file),
            "transport": transport,
            "files_root": os.path.abspath(files_root) if files_root else None,
        }
        self.journal, self.turn_id = journal, turn_id

    def turn_started(self, info: TurnInfo, messages: Sequence[dict[str, Any]]) -> None:
        if not info.resumed:
            self.journal.append(self.turn_id, "replay", self.body)
