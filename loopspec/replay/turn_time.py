"""The turn's own time in a replay over HTTP, for ``expect.elapsed``.

In-process, the virtual clock's reading is the turn's time. Over HTTP the clock is real time
compressed by a factor, and dividing the wall time by the factor would also count what the client
stack spent (a cold litellm import is seconds of wall time, minutes of turn time at 0.01). This
clock counts only what the turn waited for, as the virtual clock does: backoffs, the pauses
between chunks (each at most the stall timeout, a stall exactly that), and no time for opening a
request.

On a stream the loopback server serves, the pauses are the recorded seconds the server says it
served (:meth:`~loopspec.replay.http.ServedStream.take_wait`): exact, however busy the client. On
any other stream a pause is measured in wall time from the end of the previous chunk (or of the
opening), not from when the turn asked for the next one, since on a loaded machine the server's
pause overlaps the client's work on the last chunk.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, TypeVar

from loopspec.engine.clock import ScaledClock, StallTimeout

T = TypeVar("T")

__all__ = ["TurnTime"]


class TurnTime:
    """A :class:`ScaledClock` that also adds up the turn's waits in turn seconds (``elapsed``)."""

    def __init__(self, inner: ScaledClock) -> None:
        self.inner = inner
        self.elapsed = 0.0
        self._mark: float | None = None
        """When the last chunk (or the opening) of the stream being read arrived."""

    def _count(self, started: float, limit: float) -> None:
        self.elapsed += min((time.monotonic() - started) / self.inner.factor, limit)

    def now(self) -> float:
        return self.inner.now()

    async def sleep(self, seconds: float) -> None:
        self._mark = None
        started = time.monotonic()
        try:
            await self.inner.sleep(seconds)
        finally:
            self._count(started, max(seconds, 0.0))

    async def next_chunk(self, stream: Any, timeout: float) -> Any:
        take_wait = getattr(stream, "take_wait", None)
        if take_wait is not None:  # the loopback server counts the pauses it served, exactly
            try:
                return await self.inner.next_chunk(stream, timeout)
            finally:
                self.elapsed += take_wait()
                self._mark = time.monotonic()
        started = self._mark if self._mark is not None else time.monotonic()
        try:
            return await self.inner.next_chunk(stream, timeout)
        except StallTimeout:
            # A stall costs the turn its stall timeout, as on the virtual clock; the wall time
            # seen here is less when the client was still busy with the last chunk as the server
            # began the stall.
            started = time.monotonic() - timeout * self.inner.factor
            raise
        finally:
            self._count(started, timeout)
            self._mark = time.monotonic()

    async def within(self, awaitable: Awaitable[T], timeout: float) -> T:
        try:
            return await self.inner.within(awaitable, timeout)
        finally:
            self._mark = time.monotonic()
