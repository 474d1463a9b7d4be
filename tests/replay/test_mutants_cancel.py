"""A cassette's cancellation point carried out piece by piece: which parts of a turn a plan wraps,
the call, chunk and backoff it counts to, that it fires once, and what ``run_guarded`` reports
when a cancellation escapes the turn. The replay tests show the turn's outcome; these show where
the cancel lands."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loopspec.engine.results import TurnUsage
from loopspec.replay.cancel import CancelPlan, _Clock, _Provider, _Stream, run_guarded
from loopspec.replay.cassette_model import CancelPoint

from _doubles import CancellableTurn


def attached(point: CancelPoint | None) -> tuple[CancelPlan, CancellableTurn]:
    plan, turn = CancelPlan(point), CancellableTurn()
    plan.attach(turn)  # type: ignore[arg-type]
    return plan, turn


@pytest.mark.parametrize(
    ("point", "provider", "clock"),
    [
        (None, False, False),
        (CancelPoint(before_call=1), True, False),
        (CancelPoint(during_call=2), True, False),
        (CancelPoint(during_call=1, after_chunks=3), True, False),
        (CancelPoint(during_backoff=1), False, True),
        (CancelPoint(during_tool="t"), False, False),
    ],
)
def test_a_plan_wraps_only_what_its_point_needs(point, provider, clock):
    plan, turn = attached(point)
    assert plan.turn is turn and (plan.fired, plan.calls, plan.backoffs) == (False, 0, 0)
    assert isinstance(turn.provider, _Provider) is provider
    assert isinstance(turn.clock, _Clock) is clock
    if provider:
        assert turn.provider.inner == "provider" and turn.provider.plan is plan
    else:
        assert turn.provider == "provider"
    if not clock:
        assert turn.clock == "clock"


def test_a_plan_fires_once_and_never_after_it_lets_the_turn_go():
    plan, turn = attached(CancelPoint(before_call=1))
    plan.fire()
    plan.fire()
    assert turn.cancels == 1 and plan.fired
    plan2, turn2 = attached(CancelPoint(before_call=1))
    plan2.detach()
    assert plan2.turn is None
    plan2.fire()
    assert turn2.cancels == 0 and not plan2.fired


def test_a_tool_start_fires_only_for_the_named_tool_and_only_once():
    plan, turn = attached(CancelPoint(during_tool="rm"))
    asyncio.run(plan.tool_started("ls"))
    assert turn.cancels == 0
    asyncio.run(plan.tool_started("rm"))
    asyncio.run(plan.tool_started("rm"))
    assert turn.cancels == 1
    nothing, idle = attached(None)
    asyncio.run(nothing.tool_started("rm"))
    assert idle.cancels == 0


class Inner:
    """A provider whose streams hand out the given deltas, with the pause protocol a virtual clock reads."""

    def __init__(self, deltas: list[Any]) -> None:
        self.deltas, self.opened, self.closed = deltas, 0, 0

    async def open(self, request: Any) -> "Inner":
        self.opened += 1
        self.requests = getattr(self, "requests", []) + [request]
        self.items = iter(self.deltas)
        return self

    def next_pause(self) -> float:
        return 1.5

    async def __anext__(self) -> Any:
        try:
            return next(self.items)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.closed += 1


def read_all(stream: Any) -> list[Any]:
    async def go() -> list[Any]:
        return [d async for d in stream]

    return asyncio.run(go())


def test_before_call_n_fires_as_call_n_opens_and_not_before():
    plan, turn = attached(CancelPoint(before_call=2))
    inner = Inner([])
    turn.provider.inner = inner
    asyncio.run(turn.provider.open("r1"))
    assert (plan.calls, turn.cancels) == (1, 0)
    asyncio.run(turn.provider.open("r2"))
    assert (plan.calls, turn.cancels) == (2, 1)
    asyncio.run(turn.provider.open("r3"))
    assert (plan.calls, turn.cancels, inner.opened) == (3, 1, 3)
    assert inner.requests == ["r1", "r2", "r3"], "each request reaches the provider as it was made"


def test_during_call_n_cancels_after_k_chunks_of_that_call_counting_only_real_deltas():
    plan, turn = attached(CancelPoint(during_call=2, after_chunks=2))
    inner = Inner(["a", None, "b", "c"])
    turn.provider.inner = inner
    first = asyncio.run(turn.provider.open("r1"))
    assert first is inner, "another call's stream is handed back as it is"
    second = asyncio.run(turn.provider.open("r2"))
    assert isinstance(second, _Stream)
    seen: list[Any] = []

    async def go() -> None:
        async for d in second:
            seen.append((d, turn.cancels))

    asyncio.run(go())
    assert seen == [("a", 0), (None, 0), ("b", 1), ("c", 1)]
    assert second.next_pause() == 1.5, "the pause protocol passes through"
    asyncio.run(second.aclose())
    assert inner.closed == 1


def test_during_call_with_no_chunks_fires_as_the_call_opens():
    plan, turn = attached(CancelPoint(during_call=1))
    turn.provider.inner = Inner(["a"])
    stream = asyncio.run(turn.provider.open("r1"))
    assert turn.cancels == 1
    assert read_all(stream) == ["a"] and turn.cancels == 1


class InnerClock:
    def __init__(self) -> None:
        self.slept: list[float] = []
        self.zone = "virtual"

    def now(self) -> int:
        return 7

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    async def next_chunk(self, stream: Any, timeout: float) -> Any:
        return ("chunk", stream, timeout)

    async def within(self, awaitable: Any, timeout: float) -> Any:
        return ("within", await awaitable, timeout)


def test_during_backoff_n_fires_as_the_nth_backoff_starts_and_still_waits_it():
    plan, turn = attached(CancelPoint(during_backoff=2))
    assert turn.clock._inner == "clock", "the plan wraps the turn's own clock"
    inner = InnerClock()
    turn.clock._inner = inner
    clock = turn.clock
    asyncio.run(clock.sleep(1.0))
    assert (plan.backoffs, turn.cancels) == (1, 0)
    asyncio.run(clock.sleep(2.0))
    assert (plan.backoffs, turn.cancels) == (2, 1)
    asyncio.run(clock.sleep(4.0))
    assert (plan.backoffs, turn.cancels, inner.slept) == (3, 1, [1.0, 2.0, 4.0])


def test_the_wrapped_clock_passes_everything_else_through():
    plan = CancelPlan(CancelPoint(during_backoff=1))
    inner = InnerClock()
    clock = _Clock(inner, plan)
    assert clock.now() == 7.0 and type(clock.now()) is float
    assert clock.zone == "virtual"
    assert asyncio.run(clock.next_chunk("s", 3.0)) == ("chunk", "s", 3.0)

    async def answer() -> str:
        return "x"

    assert asyncio.run(clock.within(answer(), 2.0)) == ("within", "x", 2.0)
    asyncio.run(_Clock(inner, CancelPlan(None)).sleep(0.5))
    assert inner.slept == [0.5], "a plan with no point counts nothing it can fire on"


class Trajectory:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages


class RunningTurn:
    """A turn whose ``run`` ends as told: a result, a cancellation it did not absorb, or a bug."""

    def __init__(self, ends: Any, trajectory: bool = True) -> None:
        self.ends = ends
        if trajectory:
            self.trajectory = Trajectory([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "partial"}])
        self.trace = ["t1"]
        self.usage = TurnUsage(model_calls=2)
        self.requests = ["r1"]
        self.steps = ["s1"]

    async def run(self, messages: Any) -> Any:
        self.given = messages
        await asyncio.sleep(0)
        if isinstance(self.ends, BaseException):
            raise self.ends
        return self.ends


def test_a_turn_that_halts_is_reported_as_it_ended():
    turn = RunningTurn("the result")
    messages = [{"role": "user", "content": "hi"}]
    result, crash = asyncio.run(run_guarded(turn, messages))  # type: ignore[arg-type]
    assert (result, crash) == ("the result", None)
    assert turn.given is messages


def test_a_cancellation_the_turn_did_not_absorb_is_a_crash_that_keeps_what_the_turn_had():
    stand_in, crash = asyncio.run(run_guarded(RunningTurn(asyncio.CancelledError()), [{"role": "user", "content": "x"}]))  # type: ignore[arg-type]
    assert crash == "the turn raised CancelledError instead of halting"
    assert (stand_in.outcome, stand_in.halt_state, stand_in.message, stand_in.response, stand_in.error) == (
        "crashed", "", "", "", crash,
    )
    assert stand_in.messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "partial"}]
    assert (stand_in.trace, stand_in.requests, stand_in.steps) == (["t1"], ["r1"], ["s1"])
    assert stand_in.usage == TurnUsage(model_calls=2)


def test_a_crash_before_the_turn_kept_a_trajectory_keeps_the_messages_it_was_given():
    given = [{"role": "user", "content": "x"}]
    stand_in, _ = asyncio.run(run_guarded(RunningTurn(asyncio.CancelledError(), trajectory=False), given))  # type: ignore[arg-type]
    assert stand_in.messages == given and stand_in.messages is not given


def test_any_other_exception_propagates_as_the_interpreter_bug_it_is():
    with pytest.raises(KeyError, match="boom"):
        asyncio.run(run_guarded(RunningTurn(KeyError("boom")), []))  # type: ignore[arg-type]


class BareTurn:
    """A turn that never got as far as keeping a trace, usage, requests or steps."""

    async def run(self, messages: Any) -> Any:
        raise asyncio.CancelledError()


def test_a_crash_of_a_turn_that_kept_nothing_reports_empty_records():
    stand_in, crash = asyncio.run(run_guarded(BareTurn(), [{"role": "user", "content": "x"}]))  # type: ignore[arg-type]
    assert crash is not None
    assert (stand_in.trace, stand_in.requests, stand_in.steps, stand_in.usage) == ([], [], [], TurnUsage())
    assert stand_in.messages == [{"role": "user", "content": "x"}]


def test_a_plan_never_attached_fires_nothing():
    plan = CancelPlan(CancelPoint(before_call=1))
    plan.fire()
    assert plan.turn is None and not plan.fired


def test_where_a_plan_fires_it_yields_once_to_let_the_cancel_land_and_waits_no_time(monkeypatch):
    """Firing cancels the turn's task; one pass of the loop lets the cancel land right there (the
    request unsent, the tool still running, the backoff not begun), and no time passes."""
    import loopspec.replay.cancel as cancel_module

    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(cancel_module.asyncio, "sleep", sleep)
    plan, turn = attached(CancelPoint(during_tool="rm"))
    asyncio.run(plan.tool_started("rm"))
    plan, turn = attached(CancelPoint(before_call=1))
    turn.provider.inner = Inner([])
    asyncio.run(turn.provider.open("r1"))
    plan, turn = attached(CancelPoint(during_backoff=1))
    turn.clock._inner = InnerClock()
    asyncio.run(turn.clock.sleep(2.0))
    assert waits == [0, 0, 0]
