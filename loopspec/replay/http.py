"""The HTTP replay transport: litellm, pointed at a loopback server that serves the recording.

This is the real product path end to end (litellm's SSE parsing, its exception mapping, real
sockets, real pauses and a real dropped connection); only the model is a recording. Time is
compressed by one factor applied to both the served pauses and the policy's timeouts, so a stall
stays a stall at a fraction of its cost.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from loopspec.engine.clock import ScaledClock
from loopspec.engine.results import TurnResult
from loopspec.engine.turn import Turn
from loopspec.providers.litellm_provider import LiteLLMProvider
from loopspec.language.model import Policy

from .interactions import Interaction, StreamResponse
from .server import LoopbackServer

DEFAULT_TIME_SCALE = 0.01


def scaled(interactions: Sequence[Interaction], factor: float) -> list[Interaction]:
    """The recording with every pause multiplied by ``factor``."""
    out: list[Interaction] = []
    for it in interactions:
        if isinstance(it, StreamResponse) and it.stall_after is not None:
            it = dataclasses.replace(it, stall_seconds=it.stall_seconds * factor)
        out.append(it)
    return out


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
    async with LoopbackServer(scaled(interactions, time_scale)) as server:
        turn = Turn(
            policy,
            LiteLLMProvider(),
            model=model,
            api_base=server.api_base,
            api_key="sk-loopspec-replay",
            clock=ScaledClock(time_scale),
            **turn_options,
        )
        result = await turn.run(messages)
    return result, server
