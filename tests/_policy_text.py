"""Small policies written inline by tests: the event map that sends every event of a kind somewhere.

A state must handle every event its kind can receive, so a test policy lists them all; this writes
that list from the alphabet, and a test names only the events it is about."""

from __future__ import annotations

from loopspec.language.alphabet import KINDS


def handles(kind: str, otherwise: str, **targets: str) -> str:
    """``{event: target, ...}`` in YAML flow style for every event of ``kind``: the ones named in
    ``targets`` go there, the rest to ``otherwise``."""
    unknown = set(targets) - set(KINDS[kind].event_names)
    assert not unknown, f"not events of a {kind} state: {sorted(unknown)}"
    return "{" + ", ".join(f"{e}: {targets.get(e, otherwise)}" for e in KINDS[kind].event_names) + "}"


def tool_loop(otherwise: str, call: dict[str, str], stream: dict[str, str], tools: dict[str, str]) -> str:
    """The ``states:`` entries of the usual loop, a call state ``ask``, its stream ``read`` and a
    tool state ``tools``, each event going where ``call``, ``stream`` or ``tools`` says, the rest to
    ``otherwise`` (halts and other states are the caller's to add)."""
    return (f"  ask:\n    kind: call\n    on: {handles('call', otherwise, **call)}\n"
            f"  read:\n    kind: stream\n    on: {handles('stream', otherwise, **stream)}\n"
            f"  tools:\n    kind: tool_exec\n    on: {handles('tool_exec', otherwise, **tools)}\n")
