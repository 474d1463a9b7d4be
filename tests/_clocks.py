"""Test clocks shared by the engine tests."""

from __future__ import annotations

import asyncio

from loopspec import VirtualClock


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
