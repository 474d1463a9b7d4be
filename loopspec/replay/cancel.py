"""The caller's cancellation, carried out at the point a cassette names (``cancel:``).

An incident often says "the user pressed stop while the tool ran" or "during the backoff". A
:class:`CancelPlan` attaches to a :class:`~loopspec.engine.turn.Turn` before it runs and calls
``Turn.cancel()`` at exactly that point, on either transport: it wraps the turn's provider (before
call N, after K chunks of call N), its clock (the N-th backoff wait) and the replayed tools (a tool
that starts running). The turn is run in a task of its own, so a cancellation the engine fails to
absorb is reported as a crash of the replay instead of cancelling the caller.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Sequence, TypeVar

from loopspec.engine.results import TurnResult, TurnUsage
from loopspec.engine.turn import Turn
from loopspec.providers.base import ModelRequest, Provider

from .cassette_model import CancelPoint

T = TypeVar("T")

__all__ = ["CancelPlan", "run_guarded"]


class CancelPlan:
    """Fires ``Turn.cancel()`` once, at the cassette's cancellation point."""

    def __init__(self, point: CancelPoint | None) -> None:
        self.point = point
        self.turn: Turn | None = None
        self.fired = False
        self.calls = 0
        self.backoffs = 0

    def attach(self, turn: Turn) -> None:
        """Wrap the turn's provider and clock; call before ``turn.run``, and :meth:`detach` after."""
        self.turn = turn
        if self.point is None:
            return
        if self.point.before_call is not None or self.point.during_call is not None:
            turn.provider = _Provider(turn.provider, self)
        if self.point.during_backoff is not None:
            turn.clock = _Clock(turn.clock, self)  # type: ignore[assignment]

    def detach(self) -> None:
        """The turn has ended: let it go. A turn that blocks a tool until cancelled holds this plan
        through its recorded tools, and the reference cycle would leave the turn (its trace,
        requests and history) to the cyclic garbage collector."""
        self.turn = None

    def fire(self) -> None:
        if not self.fired and self.turn is not None:
            self.fired = True
            self.turn.cancel()

    async def tool_started(self, name: str) -> None:
        """A replayed tool started: cancel here if the cassette says so, and let the cancel land
        while the tool is still running."""
        if self.point is not None and self.point.during_tool == name and not self.fired:
            self.fire()
            await asyncio.sleep(0)


class _Provider:
    """Counts calls; cancels before call N is sent, or after K chunks of call N."""

    def __init__(self, inner: Provider, plan: CancelPlan) -> None:
        self.inner, self.plan = inner, plan

    async def open(self, request: ModelRequest) -> Any:
        plan, point = self.plan, self.plan.point
        assert point is not None
        plan.calls += 1
        if point.before_call == plan.calls:
            plan.fire()
            await asyncio.sleep(0)  # the cancel lands here: the request never reaches the provider
        stream = await self.inner.open(request)
        if point.during_call != plan.calls:
            return stream
        if point.after_chunks == 0:
            plan.fire()
        return _Stream(stream, point.after_chunks, plan)


class _Stream:
    """A response stream that cancels the turn after its K-th chunk; keeps the inner stream's pause
    protocol (``next_pause``) for the virtual clock."""

    def __init__(self, inner: Any, after: int, plan: CancelPlan) -> None:
        self._inner, self._after, self._plan = inner, after, plan
        self._seen = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __aiter__(self) -> "_Stream":
        return self

    async def __anext__(self) -> Any:
        delta = await self._inner.__anext__()
        if delta is not None:
            self._seen += 1
            if self._seen == self._after:
                self._plan.fire()
        return delta

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Clock:
    """The turn's clock; cancels as the N-th backoff starts waiting (before any time passes)."""

    def __init__(self, inner: Any, plan: CancelPlan) -> None:
        self._inner, self._plan = inner, plan

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def now(self) -> float:
        return float(self._inner.now())

    async def sleep(self, seconds: float) -> None:
        plan = self._plan
        plan.backoffs += 1
        if plan.point is not None and plan.point.during_backoff == plan.backoffs:
            plan.fire()
            await asyncio.sleep(0)
        await self._inner.sleep(seconds)

    async def next_chunk(self, stream: Any, timeout: float) -> Any:
        return await self._inner.next_chunk(stream, timeout)

    async def within(self, awaitable: Awaitable[T], timeout: float) -> T:
        return await self._inner.within(awaitable, timeout)  # type: ignore[no-any-return]


async def run_guarded(turn: Turn, messages: Sequence[dict[str, Any]]) -> tuple[TurnResult, str | None]:
    """Run the turn in a task of its own. Returns its result and ``None``, or, when the turn
    raised ``CancelledError`` instead of halting (a cancellation it did not absorb), a stand-in result with
    outcome ``crashed`` and what was raised. Only a cancellation is reported this way: any other
    exception is an interpreter bug and propagates, loudly."""
    task = asyncio.ensure_future(turn.run(messages))
    await asyncio.wait([task])
    if not task.cancelled():
        return task.result(), None  # raises what the turn raised
    crash = "the turn raised CancelledError instead of halting"
    trajectory = getattr(turn, "trajectory", None)
    stand_in = TurnResult(
        outcome="crashed",
        halt_state="",
        message="",
        response="",
        messages=list(trajectory.messages if trajectory is not None else messages),
        trace=list(getattr(turn, "trace", [])),
        usage=getattr(turn, "usage", TurnUsage()),
        requests=list(getattr(turn, "requests", [])),
        steps=list(getattr(turn, "steps", [])),
        error=crash,
    )
    return stand_in, crash
