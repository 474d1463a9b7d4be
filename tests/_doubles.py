"""Test doubles shared by the engine tests: a clock whose sleeps never end, a provider whose
responses never open."""

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
