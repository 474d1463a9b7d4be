"""Clocks: real time for live turns, virtual time for tests and replay.

A [30, 60] s backoff must cost nothing in replay, and a recorded stall must still be a stall. The
interpreter never calls ``asyncio.sleep`` or ``wait_for`` itself; it asks the clock.
"""

from __future__ import annotations

from loopspec.language.errors import LoopspecError

import asyncio
import time
from typing import Any, Awaitable, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


class StallTimeout(LoopspecError):
    """No chunk arrived within the stall timeout."""


class DeadlinePassed(LoopspecError):
    """The turn's ``turn_deadline`` passed while the turn was waiting: a cancellation by the clock."""


def bounded(clock: "Clock", timeout: float | None, deadline: float | None) -> tuple[float | None, bool]:
    """How long a wait of at most ``timeout`` seconds may last before the turn's ``deadline`` (turn
    time, None for none), and whether the deadline is what bounds it: every wait the turn makes is
    cut at its deadline, so a 3600 s Retry-After never outlives a 2 s turn."""
    if deadline is None:
        return timeout, False
    left = max(0.0, deadline - clock.now())
    if timeout is None or left < timeout:
        return left, True
    return timeout, False


@runtime_checkable
class PausingStream(Protocol):
    """A replayed stream that knows how long the recorded provider paused before its next chunk."""

    def next_pause(self) -> float: ...


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    async def next_chunk(self, stream: Any, timeout: float) -> Any: ...

    async def within(self, awaitable: Awaitable[T], timeout: float) -> T: ...


class _StallTimer:
    """The stall timer of one reading task, re-armed lazily.

    A chunk comes every few milliseconds and a stall timeout is tens of seconds, so a timer per
    chunk (``asyncio.timeout``: schedule, cancel, and a heap entry each time; about 4 us) is almost
    always thrown away. This timer is scheduled once; each chunk only moves its deadline. When it
    fires before the deadline it schedules itself again for the deadline; when it fires past it, it
    cancels the task as ``asyncio.timeout`` does, and the read turns that into a stall. Between
    chunks it is disarmed: a slow consumer of the text is not a stalled stream.
    """

    __slots__ = ("loop", "task", "deadline", "handle", "expired", "cancelling")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: "asyncio.Task[Any]") -> None:
        self.loop = loop
        self.task = task
        self.deadline: float | None = None
        self.handle: asyncio.TimerHandle | None = None
        self.expired = False
        self.cancelling = 0

    def arm(self, deadline: float) -> None:
        self.deadline = deadline
        self.cancelling = self.task.cancelling()  # cancels already asked for are not the timer's
        handle = self.handle
        if handle is None or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self.handle = self.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self.handle = None
        deadline = self.deadline
        if deadline is None:  # idle since the last wait: armed again by the next one
            return
        if self.loop.time() < deadline:  # chunks came since it was set: check again then
            self.handle = self.loop.call_at(deadline, self._fire)
        else:
            self.expired = True
            self.task.cancel()

    def stop(self) -> None:
        """Disarm and unschedule: a wait ended in an exception (a stream's end among them), or the
        task ended."""
        self.deadline = None
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


_TIMERS: dict["asyncio.Task[Any]", _StallTimer] = {}
"""The stall timer of each task that has waited through one, kept (disarmed between waits) until
the task ends."""


def _forget(task: "asyncio.Task[Any]") -> None:
    """The task ended: drop its timer, unscheduled."""
    timer = _TIMERS.pop(task, None)
    if timer is not None:
        timer.stop()


async def await_within(awaitable: Awaitable[T], seconds: float) -> T:
    """``awaitable``'s result, or :class:`StallTimeout` when it does not come within ``seconds``
    (real time), on the task's lazily re-armed timer (:class:`_StallTimer`): the waits of a turn
    (each chunk, each request, each tool call) move one timer instead of scheduling their own.
    Cancellation from elsewhere propagates untouched, as through ``asyncio.timeout``."""
    task = asyncio.current_task()
    assert task is not None, "a wait runs inside a task"
    timer = _TIMERS.get(task)
    if timer is None:
        timer = _TIMERS[task] = _StallTimer(asyncio.get_running_loop(), task)
        task.add_done_callback(_forget)
    elif timer.deadline is not None:  # a wait inside a wait (a tool call in a bounded batch): its own timer
        try:
            async with asyncio.timeout(seconds):
                return await awaitable
        except TimeoutError:
            raise StallTimeout() from None
    timer.arm(timer.loop.time() + seconds)
    try:
        item = await awaitable
    except BaseException as exc:
        timer.stop()
        if timer.expired:
            timer.expired = False
            # only the timer's cancel, and the wait ended by it: a stall (asyncio.timeout's rule)
            if task.uncancel() <= timer.cancelling and isinstance(exc, asyncio.CancelledError):
                raise StallTimeout() from None
        raise
    timer.deadline = None
    if timer.expired:  # the awaitable swallowed the timer's cancel and answered anyway
        timer.expired = False
        task.uncancel()
    return item


async def next_within(stream: Any, seconds: float) -> Any:
    """The stream's next item, or :class:`StallTimeout` when none comes within ``seconds``."""
    return await await_within(stream.__anext__(), seconds)


class RealClock:
    """Wall-clock time: real sleeps, real inter-chunk timeouts.

    A recorded stream (a :class:`PausingStream`, as in :func:`loopspec.replay.harness.fork`) keeps
    its recorded pauses: one at least as long as the stall timeout is a stall at once, a shorter
    one is slept for real.
    """

    def _real(self, seconds: float) -> float:
        """Seconds of wall time for ``seconds`` of turn time."""
        return seconds

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(self._real(seconds))

    async def next_chunk(self, stream: Any, timeout: float) -> Any:
        next_pause = getattr(stream, "next_pause", None)
        if next_pause is not None:
            pause = next_pause()
            if pause >= timeout:
                raise StallTimeout()
            await self.sleep(pause)
        return await await_within(stream.__anext__(), self._real(timeout))

    async def within(self, awaitable: Awaitable[T], timeout: float) -> T:
        return await await_within(awaitable, self._real(timeout))  # in this task: wait_for would start another


class VirtualClock:
    """Virtual time: sleeps advance a counter instantly.

    A stream that implements :class:`PausingStream` reports its recorded pause; a pause at least as
    long as the stall timeout is a stall, at no real cost. Other streams (live HTTP, including the
    loopback replay server) fall back to real waiting, since their pauses are real.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds
            self.slept.append(seconds)
        await asyncio.sleep(0)

    async def next_chunk(self, stream: Any, timeout: float) -> Any:
        next_pause = getattr(stream, "next_pause", None)  # a runtime-checkable isinstance costs ~5 us
        if next_pause is not None:
            pause = next_pause()
            if pause >= timeout:
                self._now += timeout
                raise StallTimeout()
            self._now += pause
            return await stream.__anext__()
        return await RealClock().next_chunk(stream, timeout)

    async def within(self, awaitable: Awaitable[T], timeout: float) -> T:
        return await RealClock().within(awaitable, timeout)


class ScaledClock(RealClock):
    """Real time, compressed: every wait and timeout is multiplied by ``factor``.

    Replay over loopback HTTP serves recorded pauses for real; scaling both the served pauses and
    the policy's timeouts by the same factor keeps every stall a stall (and every non-stall not),
    while a 300 s recorded stall costs 3 s at 0.01. ``now()`` reports unscaled seconds.
    """

    def __init__(self, factor: float, min_open: float = 30.0) -> None:
        if factor <= 0:
            raise ValueError("factor must be positive")
        self.factor = factor
        self.min_open = min_open
        """Opening a request is never compressed below this: a cold litellm takes ~2 s."""
        self._start = time.monotonic()

    def _real(self, seconds: float) -> float:
        return seconds * self.factor

    def now(self) -> float:
        return (time.monotonic() - self._start) / self.factor

    async def within(self, awaitable: Awaitable[T], timeout: float) -> T:
        return await RealClock.within(self, awaitable, max(timeout, self.min_open / self.factor))
