"""The HTTP replay transport: litellm, pointed at a loopback server that serves the recording.

This is the real product path end to end (litellm's SSE parsing, its exception mapping, real
sockets, real pauses and a real dropped connection); only the model is a recording. Time is
compressed by one factor applied to both the served pauses and the policy's timeouts, so a stall
stays a stall at a fraction of its cost.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from loopspec.engine.clock import Clock, ScaledClock
from loopspec.engine.results import TurnResult
from loopspec.engine.turn import Turn
from loopspec.providers.litellm_provider import LiteLLMProvider
from loopspec.language.model import Policy

from .interactions import Interaction, Pause, Served, StreamResponse, WhenNoTools
from .server import LoopbackServer

DEFAULT_TIME_SCALE = 0.01


def scaled(interactions: Sequence[Interaction], factor: float) -> list[Interaction]:
    """The recording with every pause multiplied by ``factor``."""
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
    async with LoopbackServer(scaled(interactions, time_scale)) as server:
        turn = Turn(
            policy,
            LiteLLMProvider(),
            model=model,
            api_base=server.api_base,
            api_key="sk-loopspec-replay",
            clock=clock or ScaledClock(time_scale),
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
