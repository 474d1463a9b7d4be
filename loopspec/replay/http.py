"""The HTTP replay transport: litellm, pointed at a loopback server that serves the recording.

This is the real product path end to end (litellm's SSE parsing, its exception mapping, real
sockets, real pauses and a real dropped connection); only the model is a recording. Time is
compressed by one factor applied to the recorded pauses and to the policy's backoffs, so a 300 s
stall costs 0.6 s at 0.01.

Only the recording says where a stream stalls. A stall timer on the client would also count the
time litellm spends on its side (parsing a 4 MB reply, building a 40,000-event stream) and, at
0.6 s, call that a stall; on a loaded machine it could also miss a recorded stall the client was
too busy to time. So the server, told the policy's stall timeout, ends a stream at its recorded
stall (see :mod:`.server`), and :class:`LoopbackClock` reads a served stream without a stall timer:
the truncated stream of a request the server noted is the ``stalled`` event, at the same data
event as in-process, every time.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Callable, Sequence

from loopspec.engine.clock import Clock, ScaledClock, StallTimeout, await_within
from loopspec.engine.results import TurnResult
from loopspec.engine.turn import Turn
from loopspec.providers.base import ModelRequest, Provider, StreamBroken
from loopspec.providers.litellm_provider import LiteLLMProvider
from loopspec.language.model import Policy
from loopspec.wire.deltas import Delta

from .interactions import Interaction, Pause, Served, StreamResponse, WhenNoTools
from .server import LoopbackServer

DEFAULT_TIME_SCALE = 0.01


def scaled(interactions: Sequence[Interaction], factor: float) -> list[Interaction]:
    """The recording with every pause multiplied by ``factor`` (to serve it, compressed, from a
    server that is not told the scale)."""
    return [_scaled(it, factor) for it in interactions]


def _scaled(it: Interaction, factor: float) -> Interaction:
    if isinstance(it, WhenNoTools):
        return WhenNoTools(_scaled_one(it.default, factor), _scaled_one(it.no_tools, factor))
    return _scaled_one(it, factor)


def _scaled_one(it: Served, factor: float) -> Served:
    if isinstance(it, StreamResponse) and (it.stall_after is not None or it.pauses):
        keepalive = it.keepalive * factor if it.keepalive else it.keepalive
        pauses = tuple(
            Pause(p.after, p.seconds * factor, p.keepalive * factor if p.keepalive else p.keepalive) for p in it.pauses
        )
        it = dataclasses.replace(it, stall_seconds=it.stall_seconds * factor, keepalive=keepalive, pauses=pauses)
    return it


class ServedStream:
    """A litellm stream of one request to the loopback server; the server's drop at a recorded
    stall is the stall (:class:`StallTimeout`), any other end is what litellm made of it."""

    stalls_served = True
    """Tells :class:`LoopbackClock` the server, not a timer, says where this stream stalls."""

    def __init__(self, inner: Any, server: LoopbackServer, index: int) -> None:
        self._inner, self._server, self._index = inner, server, index
        self._counted = 0.0

    def take_wait(self) -> float:
        """Recorded seconds the server paused this stream since the last call: what the turn
        waited, in turn time, with none of the client's own time in it."""
        waited = self._server.waited.get(self._index, 0.0)
        taken, self._counted = waited - self._counted, waited
        return taken

    def __aiter__(self) -> "ServedStream":
        return self

    async def __anext__(self) -> Delta:
        try:
            delta: Delta = await self._inner.__anext__()
        except (StreamBroken, StopAsyncIteration):
            if self._index in self._server.stalled:
                raise StallTimeout() from None
            raise
        return delta

    async def aclose(self) -> None:
        await self._inner.aclose()


class ServedProvider:
    """``provider`` (litellm) whose streams are :class:`ServedStream` of ``server``'s requests."""

    def __init__(self, provider: Provider, server: LoopbackServer) -> None:
        self.provider, self.server = provider, server

    async def open(self, request: ModelRequest) -> Any:
        stream = await self.provider.open(request)
        # The server records a request before it answers, and calls are one at a time.
        return ServedStream(stream, self.server, len(self.server.requests) - 1)


class LoopbackClock(ScaledClock):
    """The clock of a replay over the loopback server: backoffs and the request timeout compressed
    as :class:`ScaledClock` does, and no stall timer on a :class:`ServedStream`, whose stalls the
    server ends in-band. A stream that says nothing for as long as a request may take to open
    (``min_open``, or the scaled stall timeout if longer) is still a stall, so a broken client
    stack cannot hang a replay."""

    async def next_chunk(self, stream: Any, timeout: float) -> Any:
        if not getattr(stream, "stalls_served", False):
            return await super().next_chunk(stream, timeout)
        return await await_within(stream.__anext__(), max(self._real(timeout), self.min_open))


async def run_over_http(
    policy: Policy,
    interactions: Sequence[Interaction],
    messages: Sequence[dict[str, Any]],
    *,
    time_scale: float = DEFAULT_TIME_SCALE,
    model: str = "openai/replay",
    **turn_options: Any,
) -> tuple[TurnResult, LoopbackServer]:
    """Replay one turn over loopback HTTP; returns the result and the (closed) server's record."""
    result, server, _crash = await _run(policy, interactions, messages, time_scale=time_scale, model=model, **turn_options)
    return result, server


async def _run(
    policy: Policy,
    interactions: Sequence[Interaction],
    messages: Sequence[dict[str, Any]],
    *,
    time_scale: float,
    model: str,
    clock: Clock | None = None,
    prepare: Callable[[Turn], None] | None = None,
    guarded: bool = False,
    **turn_options: Any,
) -> tuple[TurnResult, LoopbackServer, str | None]:
    crash: str | None = None
    served = LoopbackServer(interactions, time_scale=time_scale, stall_timeout=policy.settings.stall_timeout)
    async with served as server:
        turn = Turn(
            policy,
            ServedProvider(LiteLLMProvider(), server),
            model=model,
            api_base=server.api_base,
            api_key="sk-loopspec-replay",
            clock=clock or LoopbackClock(time_scale),
            **turn_options,
        )
        if prepare is not None:
            prepare(turn)
        if guarded:
            from .cancel import run_guarded

            result, crash = await run_guarded(turn, messages)
        else:
            result = await turn.run(messages)
    return result, server, crash


async def run_guarded_over_http(
    policy: Policy,
    interactions: Sequence[Interaction],
    messages: Sequence[dict[str, Any]],
    *,
    time_scale: float = DEFAULT_TIME_SCALE,
    model: str = "openai/replay",
    clock: Clock | None = None,
    prepare: Callable[[Turn], None] | None = None,
    **turn_options: Any,
) -> tuple[TurnResult, LoopbackServer, str | None]:
    """:func:`run_over_http` for the replay harness: ``prepare`` sees the Turn before it runs (to
    attach a cancellation point), and a turn that raises instead of halting is reported as a crash
    (the third value) rather than raised."""
    return await _run(
        policy, interactions, messages, time_scale=time_scale, model=model, clock=clock, prepare=prepare, guarded=True,
        **turn_options,
    )
