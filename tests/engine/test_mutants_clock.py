"""The clocks (loopspec/engine/clock.py), tested against the survivors of a mutation analysis: how a
wait is cut at the turn's deadline (``bounded``), and what each clock does with a pause, a stall
and a wait. Virtual time makes every figure exact; the real clocks are checked with margins of ten
times or more."""

from __future__ import annotations

import asyncio

import pytest

from loopspec.engine.clock import (
    DeadlinePassed,
    RealClock,
    ScaledClock,
    StallTimeout,
    VirtualClock,
    bounded,
)

from _doubles import SwallowsOnce


def clock_at(now: float) -> VirtualClock:
    return VirtualClock(start=now)


# ----------------------------------------------------------------------------------- bounded


def test_without_a_deadline_a_wait_is_its_own_timeout() -> None:
    assert bounded(clock_at(10.0), 30.0, None) == (30.0, False)
    assert bounded(clock_at(10.0), None, None) == (None, False)


def test_a_deadline_closer_than_the_timeout_cuts_the_wait_and_says_so() -> None:
    """At turn time 10 with the deadline at 10.5, a 30 s wait may last 0.5 s, and the deadline is
    what bounds it (a timeout there is the deadline passing, not a stall)."""
    assert bounded(clock_at(10.0), 30.0, 10.5) == (0.5, True)
    assert bounded(clock_at(10.0), None, 12.0) == (2.0, True)


def test_a_deadline_further_than_the_timeout_leaves_the_timeout() -> None:
    assert bounded(clock_at(10.0), 30.0, 100.0) == (30.0, False)


def test_a_deadline_exactly_at_the_timeout_is_the_timeouts_wait() -> None:
    """A tie is the timeout's: a stall that ends exactly at the deadline is reported as a stall."""
    assert bounded(clock_at(10.0), 5.0, 15.0) == (5.0, False)


def test_a_passed_deadline_leaves_no_wait_at_all() -> None:
    assert bounded(clock_at(10.0), 30.0, 9.0) == (0.0, True)
    assert bounded(clock_at(10.0), None, 10.0) == (0.0, True)


# ------------------------------------------------------------------------------ the real clock


class Paused:
    """A recorded stream (a ``PausingStream``): one item after a recorded pause."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.read = False

    def next_pause(self) -> float:
        return self.pause

    async def __anext__(self) -> str:
        if self.read:
            raise StopAsyncIteration
        self.read = True
        return "item"


def test_the_real_clock_sleeps_for_real_even_under_a_second() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await RealClock().sleep(0.2)
        return loop.time() - start

    assert asyncio.run(main()) >= 0.19


def test_the_real_clock_serves_a_recorded_pause_before_the_item() -> None:
    async def main() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        item = await RealClock().next_chunk(Paused(0.2), 30.0)
        return item, loop.time() - start

    item, waited = asyncio.run(main())
    assert item == "item" and waited >= 0.19


@pytest.mark.parametrize("pause", [30.0, 31.0])
def test_a_recorded_pause_as_long_as_the_timeout_is_a_stall_at_once(pause: float) -> None:
    """A recorded pause at least the stall timeout is a stall, known before waiting any of it."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(StallTimeout):
            await RealClock().next_chunk(Paused(pause), 30.0)
        return loop.time() - start

    assert asyncio.run(main()) < 5.0


def test_the_stall_timer_never_takes_back_a_cancel_it_did_not_make() -> None:
    """After a stream swallowed the timer's cancel, a cancel from elsewhere that the task caught is
    still counted once the next read returns (the timer took back only its own)."""
    from loopspec.engine.clock import next_within

    async def main() -> int:
        task = asyncio.current_task()
        assert task is not None
        stream = SwallowsOnce()
        await next_within(stream, 0.05)
        task.cancel()
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            pass
        await next_within(stream, 5.0)
        return task.cancelling()

    assert asyncio.run(main()) == 1


# --------------------------------------------------------------------------- the virtual clock


def test_a_virtual_sleep_advances_turn_time_and_records_only_real_waits() -> None:
    async def main() -> tuple[float, list[float], float]:
        loop = asyncio.get_running_loop()
        clock = VirtualClock(start=100.0)
        start = loop.time()
        for seconds in (0.0, 0.5, 3600.0) * 4:
            await clock.sleep(seconds)
        return clock.now(), clock.slept, loop.time() - start

    now, slept, real = asyncio.run(main())
    assert now == 100.0 + 4 * 3600.5
    assert slept == [0.5, 3600.0] * 4
    assert real < 2.0  # virtual: twelve sleeps, an hour each at most, cost no real time


@pytest.mark.parametrize(
    "pause, outcome, now",
    [(5.0, "item", 105.0), (30.0, "stall", 130.0), (50.0, "stall", 130.0)],
)
def test_a_virtual_read_spends_the_recorded_pause_or_the_whole_timeout(pause: float, outcome: str, now: float) -> None:
    """From turn time 100 with a 30 s stall timeout: a 5 s pause costs 5 s and gives the item; a
    pause of 30 s or more is a stall that costs exactly the timeout."""

    async def main() -> tuple[str, float]:
        clock = VirtualClock(start=100.0)
        try:
            item = await clock.next_chunk(Paused(pause), 30.0)
        except StallTimeout:
            return "stall", clock.now()
        assert item == "item"
        return "item", clock.now()

    assert asyncio.run(main()) == (outcome, now)


class Live:
    """A stream with no recorded pauses (live HTTP, or the loopback server)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def __anext__(self) -> str:
        await asyncio.sleep(self.delay)
        return "live"


def test_the_virtual_clock_reads_a_live_stream_in_real_time_with_its_stall_timer() -> None:
    async def main() -> tuple[str, bool]:
        clock = VirtualClock()
        item = await clock.next_chunk(Live(0.0), 5.0)
        try:
            await clock.next_chunk(Live(2.0), 0.05)
        except StallTimeout:
            return item, True
        return item, False

    assert asyncio.run(main()) == ("live", True)


# ---------------------------------------------------------------------------- the scaled clock


@pytest.mark.parametrize("factor", [0, -1])
def test_a_scale_must_be_positive(factor: float) -> None:
    with pytest.raises(ValueError, match="^factor must be positive$"):
        ScaledClock(factor)


def test_a_scaled_clock_compresses_sleeps_and_reports_unscaled_time() -> None:
    """At 0.01, a 10 s backoff takes 0.1 s of wall time, and turn time reads about 10 s after it
    (time.monotonic since the clock was made, divided by the factor)."""

    async def main() -> tuple[float, float]:
        clock = ScaledClock(0.01)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.wait_for(clock.sleep(10.0), 5.0)  # a scale applied the wrong way fails, not hangs
        return loop.time() - start, clock.now()

    real, turn_time = asyncio.run(main())
    assert 0.09 <= real < 2.0
    assert 9.0 <= turn_time < 200.0
    assert ScaledClock(0.5).factor == 0.5  # a factor under one is allowed
    assert ScaledClock(0.01).min_open == 30.0  # opening a request keeps 30 s of wall time by default


def test_a_scaled_clock_never_compresses_opening_a_request_below_min_open() -> None:
    """A 1 s request timeout at 0.01 would leave 10 ms to open a request; ``min_open`` (30 s of
    wall time here) keeps a cold start from looking like a timeout, so a 0.1 s open succeeds."""

    async def opens_slowly() -> str:
        await asyncio.sleep(0.1)
        return "opened"

    async def main() -> str:
        return await ScaledClock(0.01, min_open=30.0).within(opens_slowly(), 1.0)

    assert asyncio.run(main()) == "opened"


def test_a_scaled_wait_past_its_timeout_is_a_stall() -> None:
    async def never() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        with pytest.raises(StallTimeout):
            await ScaledClock(0.01, min_open=0.05).within(never(), 10.0)  # 0.1 s of wall time

    asyncio.run(main())
