"""The turn's own time over HTTP, counted wait by wait against a scripted wall clock.

``TurnTime`` reads ``time.monotonic`` for what the turn waited; here that clock is a test double
that moves only when the wrapped clock "waits", so each count is exact: a backoff's wall time
divided by the factor and at most its length, a stall costing exactly its timeout, a pause
measured from the previous chunk, and the server's own count where it gives one."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

import loopspec.replay.turn_time as turn_time_module
from loopspec.engine.clock import StallTimeout
from loopspec.replay.turn_time import TurnTime


class WallClock:
    """Wall time in seconds, moved by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t


class ScaledDouble:
    """The wrapped ScaledClock: each wait moves the wall clock by what it is told to take."""

    def __init__(self, wall: WallClock, factor: float) -> None:
        self.wall, self.factor = wall, factor
        self.takes: list[float] = []
        self.stall = False

    def now(self) -> float:
        return 42.0

    async def sleep(self, seconds: float) -> None:
        self.wall.t += self.takes.pop(0)
        if seconds < 0:
            raise ValueError("negative")

    async def next_chunk(self, stream: Any, timeout: float) -> Any:
        self.wall.t += self.takes.pop(0)
        if self.stall:
            raise StallTimeout()
        return ("chunk", stream, timeout)

    async def within(self, awaitable: Any, timeout: float) -> Any:
        self.wall.t += self.takes.pop(0)
        return (await awaitable, timeout)


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> tuple[WallClock, ScaledDouble, TurnTime]:
    wall = WallClock()
    monkeypatch.setattr(turn_time_module, "time", SimpleNamespace(monotonic=wall.monotonic))
    inner = ScaledDouble(wall, factor=0.01)
    return wall, inner, TurnTime(inner)  # type: ignore[arg-type]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_fresh_turn_has_waited_nothing_and_reads_the_inner_clock(clocks):
    _wall, _inner, tt = clocks
    assert tt.elapsed == 0.0 and tt._mark is None
    assert tt.now() == 42.0


def test_a_backoff_counts_its_wall_time_in_turn_seconds_up_to_its_length(clocks):
    wall, inner, tt = clocks
    inner.takes = [0.02, 0.5]
    run(tt.sleep(5.0))
    assert tt.elapsed == pytest.approx(2.0), "0.02 s of wall time at factor 0.01 is 2 turn seconds"
    run(tt.sleep(3.0))
    assert tt.elapsed == pytest.approx(5.0), "a slow client's 50 turn seconds count as the backoff's 3"


def test_a_negative_backoff_that_fails_counts_nothing(clocks):
    wall, inner, tt = clocks
    inner.takes = [0.01]
    with pytest.raises(ValueError):
        run(tt.sleep(-1.0))
    assert tt.elapsed == 0.0


def test_a_backoff_forgets_the_last_chunk(clocks):
    wall, inner, tt = clocks
    inner.takes = [0.0, 0.01, 0.0]
    run(tt.next_chunk("s", 60.0))
    assert tt._mark == wall.t
    run(tt.sleep(1.0))
    assert tt._mark is None
    wall.t += 5.0  # the client busy between the backoff and the next read: not the turn's wait
    run(tt.next_chunk("s", 60.0))
    assert tt.elapsed == pytest.approx(1.0)


def test_a_pause_is_measured_from_the_previous_chunk_not_from_the_read(clocks):
    wall, inner, tt = clocks
    inner.takes = [0.01, 0.03]
    assert run(tt.next_chunk("s", 60.0)) == ("chunk", "s", 60.0)
    assert tt.elapsed == pytest.approx(1.0) and tt._mark == wall.t
    wall.t += 0.02  # the client works on the chunk while the server already pauses
    run(tt.next_chunk("s", 60.0))
    assert tt.elapsed == pytest.approx(1.0 + 5.0)


def test_a_pause_counts_at_most_the_stall_timeout(clocks):
    wall, inner, tt = clocks
    inner.takes = [0.5]
    run(tt.next_chunk("s", 7.0))
    assert tt.elapsed == pytest.approx(7.0)


def test_a_stall_costs_exactly_its_timeout_however_little_wall_time_was_seen(clocks):
    wall, inner, tt = clocks
    inner.stall = True
    inner.takes = [0.001]
    with pytest.raises(StallTimeout):
        run(tt.next_chunk("s", 30.0))
    assert tt.elapsed == pytest.approx(30.0)
    assert tt._mark == wall.t


class ServedStream:
    """A stream the loopback server serves: it says how long it paused, in turn seconds."""

    def __init__(self, waits: list[float]) -> None:
        self.waits = waits

    def take_wait(self) -> float:
        return self.waits.pop(0)


def test_the_servers_own_count_is_taken_as_it_is_whatever_the_wall_clock_says(clocks):
    wall, inner, tt = clocks
    stream = ServedStream([2.5, 4.0])
    inner.takes = [0.9, 0.0]
    assert run(tt.next_chunk(stream, 60.0)) == ("chunk", stream, 60.0)
    assert tt.elapsed == 2.5 and tt._mark == wall.t
    inner.stall = True
    with pytest.raises(StallTimeout):
        run(tt.next_chunk(stream, 60.0))
    assert tt.elapsed == 6.5, "counted even when the read ends in a stall"


def test_opening_a_request_costs_no_turn_time_but_marks_where_the_first_pause_starts(clocks):
    wall, inner, tt = clocks
    inner.takes = [0.4, 0.01]

    async def opened() -> str:
        return "stream"

    assert run(tt.within(opened(), 10.0)) == ("stream", 10.0)
    assert tt.elapsed == 0.0 and tt._mark == wall.t
    run(tt.next_chunk("s", 60.0))
    assert tt.elapsed == pytest.approx(1.0)


def test_a_stall_costs_its_timeout_on_a_clock_slower_than_real_time_too(monkeypatch):
    """At factor 4 a turn second is four wall seconds: the stall's start is put that far back."""
    wall = WallClock()
    monkeypatch.setattr(turn_time_module, "time", SimpleNamespace(monotonic=wall.monotonic))
    inner = ScaledDouble(wall, factor=4.0)
    tt = TurnTime(inner)  # type: ignore[arg-type]
    inner.stall, inner.takes = True, [1.0]
    with pytest.raises(StallTimeout):
        run(tt.next_chunk("s", 30.0))
    assert tt.elapsed == pytest.approx(30.0)
