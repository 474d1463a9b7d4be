"""The stall timer of a live read (``next_within``): one lazily re-armed timer per reading task.

It replaces a timer per chunk, so these tests hold what the per-chunk timer gave: a stream that
keeps talking never stalls however long it runs, a pause longer than the timeout always does, a
slow consumer between chunks is not a stall, and a cancel from elsewhere is never mistaken for a
stall (nor a stall for a cancel). Real time, with margins of ten times or more.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loopspec.engine import clock as clock_module
from loopspec.engine.clock import RealClock, StallTimeout, next_within

from _doubles import SwallowsOnce


class PacedStream:
    """Yields ``len(pauses)`` items, waiting ``pauses[i]`` real seconds before item ``i``."""

    def __init__(self, pauses: list[float]) -> None:
        self.pauses = list(pauses)
        self.sent = 0

    def __aiter__(self) -> "PacedStream":
        return self

    async def __anext__(self) -> int:
        if self.sent == len(self.pauses):
            raise StopAsyncIteration
        await asyncio.sleep(self.pauses[self.sent])
        self.sent += 1
        return self.sent


async def read_all(stream: Any, timeout: float, between: float = 0.0) -> list[Any]:
    items = []
    while True:
        try:
            items.append(await next_within(stream, timeout))
        except StopAsyncIteration:
            return items
        if between:
            await asyncio.sleep(between)


def test_a_stream_that_keeps_talking_never_stalls_however_long_it_runs() -> None:
    """Sixty chunks 20 ms apart under a 0.3 s timeout: the whole read lasts four timeouts, so the
    timer fires mid-read and must re-arm for the moved deadline instead of ending the read."""

    async def main() -> list[Any]:
        return await read_all(PacedStream([0.02] * 60), 0.3)

    assert asyncio.run(main()) == list(range(1, 61))


def test_a_pause_longer_than_the_timeout_is_a_stall_and_leaves_no_cancel_behind() -> None:
    async def main() -> tuple[list[Any], int, bool]:
        stream = PacedStream([0.0, 0.0, 1.0])
        got = [await next_within(stream, 0.05), await next_within(stream, 0.05)]
        with pytest.raises(StallTimeout):
            await next_within(stream, 0.05)
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)  # a cancel left pending would land here
        timer = clock_module._TIMERS.get(task)
        return got, task.cancelling(), timer is not None and timer.handle is not None

    got, cancelling, scheduled = asyncio.run(main())
    assert got == [1, 2]
    assert cancelling == 0
    assert not scheduled, "the stall left its timer scheduled"


def test_a_slow_consumer_between_chunks_is_not_a_stall() -> None:
    """The reader sleeps 0.4 s after each chunk under a 0.1 s timeout: the timer is disarmed
    between reads, so only time spent waiting for the stream counts."""

    async def main() -> list[Any]:
        return await read_all(PacedStream([0.0] * 4), 0.1, between=0.4)

    assert asyncio.run(main()) == [1, 2, 3, 4]


def test_a_shorter_timeout_after_a_longer_one_is_kept() -> None:
    """The timer set for a 30 s read is still pending when a 0.05 s read starts (a turn deadline
    shortens the wait): the short read must stall at its own deadline, not the old one."""

    async def main() -> float:
        stream = PacedStream([0.0, 5.0])
        await next_within(stream, 30.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(StallTimeout):
            await next_within(stream, 0.05)
        return loop.time() - start

    assert asyncio.run(main()) < 2.0


def test_a_cancel_from_elsewhere_propagates_as_a_cancel_not_a_stall() -> None:
    async def main() -> tuple[bool, bool]:
        stream = PacedStream([5.0])
        reader = asyncio.ensure_future(next_within(stream, 10.0))
        await asyncio.sleep(0.05)
        reader.cancel()
        try:
            await reader
        except asyncio.CancelledError:
            return True, reader in clock_module._TIMERS
        except StallTimeout:
            return False, reader in clock_module._TIMERS
        return False, False

    cancelled, registered = asyncio.run(main())
    assert cancelled
    assert not registered


def test_a_cancel_from_elsewhere_that_coincides_with_the_stall_stays_a_cancel() -> None:
    """The stall timer and an outside cancel both hit the same read: the outside cancel wins, as
    with ``asyncio.timeout``, so a cancelled turn is never reported as a stall."""

    async def main() -> str:
        stream = PacedStream([5.0])
        reader = asyncio.ensure_future(next_within(stream, 0.05))
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.01)
        # the outside cancel lands right after the stall timer fired, before the reader resumes
        timer = clock_module._TIMERS[reader]
        original = timer._fire

        def fire_then_cancel() -> None:
            original()
            reader.cancel()

        assert timer.handle is not None
        timer.handle.cancel()
        timer.handle = loop.call_at(timer.handle.when(), fire_then_cancel)
        try:
            await reader
        except asyncio.CancelledError:
            return "cancelled"
        except StallTimeout:
            return "stall"
        return "item"

    assert asyncio.run(main()) == "cancelled"


def test_a_stream_that_swallows_the_timers_cancel_leaves_the_task_uncancelled() -> None:
    async def main() -> tuple[Any, int]:
        item = await next_within(SwallowsOnce(), 0.05)
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)
        return item, task.cancelling()

    assert asyncio.run(main()) == ("answered anyway", 0)


def test_a_stream_that_ended_leaves_no_timer_scheduled_and_an_ended_task_is_forgotten() -> None:
    """The end of a stream unschedules the task's timer (nothing fires for it later); the task's
    end drops the timer, so a finished turn is not kept alive by it."""
    tasks: list[Any] = []

    async def main() -> bool:
        await read_all(PacedStream([0.0, 0.0]), 5.0)
        tasks.append(asyncio.current_task())
        timer = clock_module._TIMERS.get(tasks[0])
        return timer is not None and timer.handle is not None

    assert asyncio.run(main()) is False
    assert tasks[0] not in clock_module._TIMERS


def test_the_real_clock_reads_through_the_timer() -> None:
    """``RealClock.next_chunk`` is the path a live turn takes: a stall there is the same stall."""

    async def main() -> None:
        stream = PacedStream([1.0])
        with pytest.raises(StallTimeout):
            await RealClock().next_chunk(stream, 0.05)

    asyncio.run(main())


def test_a_stall_in_a_task_that_already_caught_a_cancel_is_still_a_stall() -> None:
    """A task that caught a cancel and carries on (cancelling() is 1) reads a stalling stream: only
    cancels asked for during the read count against the timer's, so this is a stall."""

    async def main() -> tuple[str, int]:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            pass
        try:
            await next_within(PacedStream([1.0]), 0.05)
        except StallTimeout:
            return "stall", task.cancelling()
        except asyncio.CancelledError:
            return "cancelled", task.cancelling()
        return "item", task.cancelling()

    assert asyncio.run(main()) == ("stall", 1)


def test_a_stall_after_the_timer_was_re_armed_is_still_a_stall() -> None:
    """Chunks every 20 ms for half a second under a 0.2 s timeout (the timer fires mid-stream and
    must schedule itself again), then a 3 s pause: the pause is a stall, found about 0.2 s in."""

    async def main() -> tuple[int, float]:
        stream = PacedStream([0.02] * 25 + [3.0])
        loop = asyncio.get_running_loop()
        got = 0
        while True:
            start = loop.time()
            try:
                await next_within(stream, 0.2)
            except StallTimeout:
                return got, loop.time() - start
            got += 1

    got, waited = asyncio.run(main())
    assert got == 25
    assert waited < 2.0


def test_a_task_that_stops_reading_mid_stream_is_forgotten_when_it_ends() -> None:
    """The reader takes one chunk and stops (a turn cancelled between chunks): the idle timer
    fires at the old deadline and schedules nothing more, and the task's end drops it, so a
    finished turn is not kept alive."""
    tasks: list[Any] = []

    async def main() -> tuple[bool, bool]:
        task = asyncio.current_task()
        tasks.append(task)
        await next_within(PacedStream([0.0, 5.0]), 0.05)
        held_after_read = task in clock_module._TIMERS
        await asyncio.sleep(0.3)
        timer = clock_module._TIMERS.get(task)
        return held_after_read, timer is not None and timer.handle is not None

    held_after_read, scheduled_later = asyncio.run(main())
    assert held_after_read  # the timer is kept between reads: re-arming it is the cheap path
    assert not scheduled_later, "an idle timer scheduled itself again"
    assert tasks[0] not in clock_module._TIMERS


class Relay:
    """A stream whose items are read, with a stall timer of their own, from another stream."""

    def __init__(self, inner: PacedStream, then_pause: float) -> None:
        self.inner = inner
        self.then_pause = then_pause

    async def __anext__(self) -> int:
        item = await next_within(self.inner, 5.0)
        await asyncio.sleep(self.then_pause)
        return item


def test_a_read_inside_a_read_keeps_the_outer_stall_timer() -> None:
    """The inner read finishes in time; the outer one then pauses 3 s under a 0.2 s timeout: a
    stall, as it would be without the inner read (which must not disarm the outer's timer)."""

    async def main() -> str:
        try:
            await asyncio.wait_for(next_within(Relay(PacedStream([0.0]), 3.0), 0.2), 2.5)
        except StallTimeout:
            return "stall"
        except TimeoutError:
            return "no stall within 2.5 s"
        return "item"

    assert asyncio.run(main()) == "stall"


def test_a_bounded_wait_that_outlives_its_timeout_is_a_stall_and_its_task_carries_on() -> None:
    """``RealClock.within`` waits on the same lazy timer: an awaitable that does not finish in
    time is a stall, the task is not left cancelled, and the next bounded wait still succeeds."""

    async def main() -> tuple[str, Any, int]:
        clock = RealClock()
        try:
            await clock.within(asyncio.sleep(1.0), 0.05)
            first = "finished"
        except StallTimeout:
            first = "stall"
        second = await clock.within(asyncio.sleep(0.01, result="on time"), 0.5)
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)  # a cancel left pending would land here
        return first, second, task.cancelling()

    assert asyncio.run(main()) == ("stall", "on time", 0)


def test_a_task_that_waits_many_times_registers_one_timer_and_one_callback() -> None:
    """A long turn makes thousands of bounded waits and reads several streams: the task's timer is
    created once (one done callback), however often a stream ends."""

    async def main() -> tuple[int, int]:
        task = asyncio.current_task()
        assert task is not None
        for _ in range(20):
            await read_all(PacedStream([0.0, 0.0]), 5.0)  # each stream's end disarms the timer
            await RealClock().within(asyncio.sleep(0), 5.0)
        created = {id(clock_module._TIMERS[task])}
        await RealClock().within(asyncio.sleep(0), 5.0)
        created.add(id(clock_module._TIMERS[task]))
        return len(created), len(task._callbacks)  # type: ignore[attr-defined]

    timers, callbacks = asyncio.run(main())
    assert timers == 1
    assert callbacks <= 2  # asyncio.run's own and the timer's


def test_a_stream_that_ended_leaves_its_timer_disarmed_so_the_next_wait_is_lazy_again() -> None:
    """After a stream's end the task's timer is disarmed (no deadline): the next wait re-arms it
    instead of taking the nested-wait path with an ``asyncio.timeout`` of its own."""

    async def main() -> tuple[Any, Any]:
        task = asyncio.current_task()
        assert task is not None
        await read_all(PacedStream([0.0]), 5.0)
        after_end = clock_module._TIMERS[task].deadline
        seen: list[Any] = []

        async def look() -> None:
            seen.append(clock_module._TIMERS[task].deadline)

        await RealClock().within(look(), 5.0)
        return after_end, seen[0]

    after_end, during_next = asyncio.run(main())
    assert after_end is None
    assert isinstance(during_next, float), "the next wait armed the task's own timer"


def _errors_of(main: Any) -> list[Any]:
    """Run ``main`` and return what the loop's exception handler was given (a callback that raised)."""
    errors: list[Any] = []

    async def wrapped() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
        task = asyncio.ensure_future(main())
        await task
        await asyncio.sleep(0)  # the ended task's done callbacks run here

    asyncio.run(wrapped())
    return errors


def test_an_ended_task_unschedules_its_armed_timer_and_a_disarmed_one_quietly() -> None:
    """When a task ends, its timer is forgotten: a timer still scheduled (the lazy handle of a
    bounded wait) is cancelled, and one already unscheduled (a stream ended) is left alone without
    an error in the loop."""
    timers: list[Any] = []

    async def bounded_wait() -> None:
        await RealClock().within(asyncio.sleep(0), 30.0)
        timers.append(clock_module._TIMERS[asyncio.current_task()])  # type: ignore[index]

    async def ended_stream() -> None:
        await read_all(PacedStream([0.0]), 30.0)
        timers.append(clock_module._TIMERS[asyncio.current_task()])  # type: ignore[index]

    assert _errors_of(bounded_wait) == []
    assert _errors_of(ended_stream) == []
    armed, disarmed = timers
    assert armed.handle is None and disarmed.handle is None
    assert armed.task not in clock_module._TIMERS and disarmed.task not in clock_module._TIMERS


def test_a_cancel_from_elsewhere_after_a_stall_is_still_a_cancel() -> None:
    """The timer forgets a stall it has reported: a later wait of the same task that an outside
    cancel interrupts raises ``CancelledError``, not another stall."""

    async def main() -> str:
        clock = RealClock()
        with pytest.raises(StallTimeout):
            await clock.within(asyncio.sleep(1.0), 0.02)
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().call_later(0.02, task.cancel)
        try:
            await clock.within(asyncio.sleep(1.0), 30.0)
        except StallTimeout:
            return "stall"
        except asyncio.CancelledError:
            return "cancelled"
        return "finished"

    assert asyncio.run(main()) == "cancelled"
