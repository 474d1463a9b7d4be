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
