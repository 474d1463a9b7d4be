"""Test doubles shared by the engine and replay tests: a clock whose sleeps never end, a provider
whose responses never open, a stream that swallows a cancel, a turn that counts its cancels."""

from __future__ import annotations

import asyncio
from typing import Any

from loopspec import ModelRequest, VirtualClock


class BlockingClock(VirtualClock):
    """Virtual time whose sleeps never end: a backoff that only a cancel gets out of. ``sleeping``
    is set once the turn is asleep, so a test knows when to cancel."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.sleeping.set()
        await asyncio.Event().wait()


class NeverOpens:
    """A provider whose responses never open: only a timeout, a deadline or a cancel ends the wait."""

    def __init__(self) -> None:
        self.requests: list[ModelRequest] = []

    async def open(self, request: ModelRequest) -> Any:
        self.requests.append(request)
        await asyncio.Event().wait()


class SwallowsOnce:
    """A stream that answers its first read even when cancelled while waiting for it (as a careless
    wrapper might: "answered anyway"); later reads answer "next" at once."""

    def __init__(self) -> None:
        self.reads = 0

    async def __anext__(self) -> str:
        self.reads += 1
        if self.reads == 1:
            try:
                await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                return "answered anyway"
        return "next"


class CancellableTurn:
    """The parts of a turn a cancel plan touches: its provider, its clock, and ``cancel()``,
    which only counts."""

    def __init__(self) -> None:
        self.provider: Any = "provider"
        self.clock: Any = "clock"
        self.cancels = 0

    def cancel(self) -> None:
        self.cancels += 1


class Stop(BaseException):
    """Ends a turn in the middle, as a crash would, without killing the test's process (a
    BaseException, so no ``except Exception`` in the turn can swallow it)."""


class CutAfter:
    """A turn observer (a named test double) that raises :class:`Stop` right after the n-th
    decision is journaled."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def step_taken(self, step: Any, record: Any) -> None:
        self.seen += 1
        if self.seen == self.n:
            raise Stop

    def __getattr__(self, name: str) -> Any:
        return lambda *a: None


class CutAtCall:
    """A turn observer (a named test double) that raises :class:`Stop` once the n-th model call
    has opened: that call's checkpoint and request are in the journal, its response is not."""

    def __init__(self, n: int) -> None:
        self.n, self.opened = n, 0

    def step_taken(self, step: Any, record: Any) -> None:
        self.opened += record.event == "opened"
        if self.opened == self.n:
            raise Stop

    def __getattr__(self, name: str) -> Any:
        return lambda *a: None


def answered_before_resume(journal: Any, turn_id: str) -> int:
    """How many of a cut turn's recorded replies were consumed before its last checkpoint: a resumed
    turn's provider serves the recording from there on (the cut call is sent again)."""
    entries = journal.entries(turn_id)
    last = max(i for i, e in enumerate(entries) if e.kind == "checkpoint")
    return sum(1 for e in entries[:last] if e.kind == "request")
