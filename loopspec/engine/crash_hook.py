"""A test hook: end the process abruptly right after its K-th decision is journaled.

Resuming is only trustworthy if it is tested against real deaths at every point a turn can die.
A test can SIGKILL a process at a random moment, but to reach *every* step boundary
deterministically it needs the process to die at an exact one: ``--crash-after-step K`` (on
``loopspec run`` and ``loopspec replay``) installs :class:`CrashAfterStep`, which calls
``os._exit`` (no ``finally``, no ``atexit``, no flush: what SIGKILL leaves) as soon as the K-th
decision step of the process has been written.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .observers import TurnObserver

if TYPE_CHECKING:
    from loopspec.language.model import Step

    from .results import TraceStep

CRASH_EXIT = 137
"""The exit status of the abrupt end: 128 + SIGKILL, what a shell reports for ``kill -9``."""


class CrashAfterStep(TurnObserver):
    """Ends the process after the ``k``-th decision it takes, counted over every turn it runs.

    Put it after the turn's journal writer (``Turn`` puts its journal first), so the step is
    durable when the process dies; one instance shared by the turns of a process counts across them."""

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"the crash hook counts decisions from 1, not {k}")
        self.k = k
        self.seen = 0

    def step_taken(self, step: "Step", record: "TraceStep") -> None:
        self.seen += 1
        if self.seen == self.k:
            os._exit(CRASH_EXIT)
