"""Tests against the mutants of ``engine/turn.py`` that the suite let live (a mutation analysis by
hand: each bug planted in the interpreter's loop, seen to survive the engine and replay tests, and
killed by a test here). Each test names the plant it kills in its docstring; all run whole turns
through the public API, in virtual time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loopspec import Consumers, InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy, load_policy_text
from loopspec.replay.interactions import ErrorResponse, StreamResponse
from loopspec.replay.synth import reply

from _paths import DEFAULT_POLICY

DEFAULT_TEXT = DEFAULT_POLICY.read_text()
POLICY = load_policy(str(DEFAULT_POLICY))
USER = [{"role": "user", "content": "What is the capital of the UK?"}]


def variant(old: str, new: str) -> Any:
    """default.yaml with one line changed (the change must apply)."""
    assert DEFAULT_TEXT.count(old) == 1, old
    return load_policy_text(DEFAULT_TEXT.replace(old, new))


def capital_tools(runs: list[str] | None = None) -> ToolRegistry:
    reg = ToolRegistry()

    def get_capital(country: str) -> str:
        if runs is not None:
            runs.append(country)
        return "London"

    reg.register(get_capital, parameters={"type": "object", "properties": {"country": {"type": "string"}}})
    return reg


def play(interactions: list[Any], policy: Any = POLICY, **kw: Any) -> tuple[Any, Turn]:
    kw.setdefault("tools", capital_tools())
    kw.setdefault("clock", VirtualClock())
    turn = Turn(policy, InProcessProvider(interactions), model="replay", **kw)
    return asyncio.run(turn.run(USER)), turn


def test_the_policys_reasoning_effort_is_sent_when_the_caller_gives_none() -> None:
    """Plant T01: ``reasoning_effort or policy.settings.reasoning_effort`` lost its fallback."""
    policy = variant("  stall_timeout: 60 ", "  reasoning_effort: high\n  stall_timeout: 60 ")
    result, _ = play([reply("Hi.")], policy)
    assert [r.reasoning_effort for r in result.requests] == ["high"]
    result, _ = play([reply("Hi.")], policy, reasoning_effort="low")
    assert [r.reasoning_effort for r in result.requests] == ["low"], "the caller's effort wins"
