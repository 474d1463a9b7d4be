"""Replayed turns in a journal: written by ``loopspec replay --journal``, finished by ``loopspec resume``.

A replayed turn is journaled like a live one (see :mod:`loopspec.engine.journaling`), under a turn
id read off the cassette's path (:func:`turn_id_of`), plus one ``replay`` entry right after
``begin`` naming the cassette (its absolute path and SHA-256). That entry is what lets
:func:`resume_replay` finish a turn a crash cut *in process*, with no model and no litellm: it reads
the same cassette again, serves the recorded responses the turn had not consumed yet, plays the tool
results it had not taken, and judges the whole turn as :func:`~.harness.replay` judges an
uninterrupted one, so a replay killed anywhere and resumed ends with the same verdict.

Judged as uninterrupted means one thing more: a model call the crash cut is made again on resume
(the engine counts both requests, as a live turn must, since the first one was sent), but the
cassette answered it once, so the report counts it once. The journal keeps both.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

from loopspec.engine.clock import VirtualClock
from loopspec.engine.observers import TurnObserver
from loopspec.engine.resume import JournalReading, ResumeError, reading, resume_point
from loopspec.engine.turn import Turn
from loopspec.journal import Entry, JournalStore
from loopspec.language.model import Policy

from .cassette import Cassette
from .harness import ReplayReport, judged, replay, step_limit
from .inproc import InProcessProvider
from .journal_note import digest
from .recorded_tools import RecordedTools

def replay_entry(entries: Sequence[Entry]) -> dict[str, Any] | None:
    """The ``replay`` entry of a turn's entries: None for a live turn."""
    return next((e.body for e in entries if e.kind == "replay"), None)


def started(entries: Sequence[Entry]) -> bool:
    """The turn reached its first checkpoint, so it may have had an effect; before that, nothing
    happened and it can simply start again."""
    return any(e.kind == "checkpoint" for e in entries)


def cut_requests(entries: Sequence[Entry], at: JournalReading) -> set[int]:
    """The indexes of the requests a crash cut: those after the last checkpoint of a process's run
    (a ``resume`` entry starts the next run; the last run is the one being resumed). Each is made
    again on resume, from the checkpoint before it. ``at`` follows the entries read (:func:`reading`)."""
    cut: set[int] = set()
    pending: list[int] = []
    for e in entries:
        at.entry = e
        if e.kind == "checkpoint":
            pending = []
        elif e.kind == "request":
            pending.append(int(e.body["index"]))
        elif e.kind == "resume":
            cut.update(pending)
            pending = []
    cut.update(pending)
    return cut


def played_tools(entries: Sequence[Entry]) -> dict[str, int]:
    """How many recorded results each tool took before the crash: the calls the journal says ran
    and answered (a call that started and never answered takes its result again on resume)."""
    played: dict[str, int] = {}
    for e in entries:
        if e.kind == "tool_finish" and e.body.get("ran"):
            name = str(e.body.get("name"))
            played[name] = played.get(name, 0) + 1
    return played


def _files_root(note: dict[str, Any]) -> str | None:
    """The ``--files-root`` a replay note holds (None: none was given)."""
    root = note.get("files_root")
    if root is not None and not isinstance(root, str):
        raise TypeError(f"files_root is {root!r}, not a folder")
    return root


def load_replayed(turn_id: str, entries: Sequence[Entry], files_root: str | None = None) -> Cassette:
    """The cassette a journaled replay read, as it was: :class:`ResumeError` when it is gone,
    no longer reads, was edited since, or cancels the turn (which resume does not replay yet)."""
    from .cassette import read_cassette

    entry = next((e for e in entries if e.kind == "replay"), None)
    if entry is None:
        raise ResumeError(f"turn {turn_id!r} is not a replayed turn (no replay entry in the journal)")
    with reading(turn_id, entry):
        path, sha256, root = str(entry.body["cassette"]), entry.body.get("sha256"), _files_root(entry.body)
    if not os.path.isfile(path):
        raise ResumeError(f"turn {turn_id!r} replayed {path}, which is not there any more")
    if digest(path) != sha256:
        raise ResumeError(f"turn {turn_id!r} replayed {path}, which has changed since: replay it again")
    c, diags = read_cassette(path, files_root=root or files_root)
    if c is None:
        first = next((d for d in diags if d.severity == "error"), None)
        raise ResumeError(f"turn {turn_id!r} replayed {path}, which no longer reads" + (f": {first.message}" if first else ""))
    if c.cancel is not None:
        raise ResumeError(f"turn {turn_id!r} replays {path}, which cancels the turn (cancel:): resume does not "
                          "replay a cancellation yet; replay the cassette again")
    return c


async def resume_replay(policy: Policy, journal: JournalStore, turn_id: str, *, files_root: str | None = None,
                        observers: Sequence[TurnObserver] = ()) -> ReplayReport:
    """Finish replayed turn ``turn_id`` from its last checkpoint, in process, and judge it whole.

    A turn cut before its first checkpoint had no effect yet (the checkpoint precedes the first
    one): it is replayed from the start, under the same id."""
    entries = journal.entries(turn_id)
    c = load_replayed(turn_id, entries, files_root)
    if not started(entries) and not any(e.kind == "halt" for e in entries):
        with reading(turn_id, entries[0]):
            ran_under = entries[0].body.get("policy")
        root = _files_root(replay_entry(entries) or {})  # read whole by load_replayed above
        if ran_under != policy.name:
            raise ResumeError(f"turn {turn_id!r} ran under policy {ran_under!r}, not {policy.name!r}")
        return await replay(c, policy, journal=journal, turn_id=turn_id, observers=observers, files_root=root or files_root)
    point = resume_point(policy, turn_id, entries)  # refuses what Turn.resume would, before any effect
    with reading(turn_id, entries[0]) as at:
        cut = cut_requests(entries, at)
    consumed = len(point.requests) - len(cut)  # the responses the turn has taken so far
    provider = InProcessProvider(c.interactions[consumed:])
    tools = RecordedTools(c)
    tools.skip_played(played_tools(entries))
    clock = VirtualClock(point.elapsed)  # the turn's clock goes on where it was
    turn = Turn(policy, provider, model=c.model, clock=clock, tools=tools.registry, max_steps=step_limit(c, policy),
                journal=journal, turn_id=turn_id, observers=observers, **c.request.turn_options())
    whole = await turn.resume(turn_id)
    answered = [r for i, r in enumerate(whole.requests, 1) if i not in cut]
    result = dataclasses.replace(whole, requests=answered, usage=dataclasses.replace(whole.usage, model_calls=len(answered)))
    diverged_at = len(c.interactions) if consumed > len(c.interactions) else (
        None if provider.diverged_at is None else provider.diverged_at + consumed)
    return judged(c, policy, result, transport="inproc", unconsumed=provider.unconsumed, diverged_at=diverged_at,
                  tools=tools, elapsed=clock.now())
