"""A forced tool_choice (openai-agents PR #263: "required" on every request made the model call
tools forever): the caller's choice goes only with requests that offer tools, and default.yaml
resets it to "auto" once a tool batch has run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy
from loopspec.engine.requests import build_request
from loopspec.language.model import Offer, Settings
from loopspec.providers.base import ModelRequest
from loopspec.providers.litellm_provider import build_kwargs
from loopspec.replay.interactions import StreamResponse
from loopspec.replay.synth import reply_chunks

from _paths import DEFAULT_POLICY

DEFAULT = load_policy(str(DEFAULT_POLICY))
TOOL = StreamResponse(chunks=tuple(reply_chunks(tool_calls=[("lookup", {"q": "x"})])))
ANSWER = StreamResponse(chunks=tuple(reply_chunks("done")))
THINKING = StreamResponse(chunks=tuple(reply_chunks(reasoning="hmm")))


def registry() -> ToolRegistry:
    reg = ToolRegistry()
    polls = iter(range(1000))
    reg.register(lambda q="": f"poll {next(polls)}", name="lookup",
                 parameters={"type": "object", "properties": {"q": {"type": "string"}}})
    return reg


def choices(interactions: list[Any], **options: Any) -> list[Any]:
    turn = Turn(DEFAULT, InProcessProvider(interactions), model="replay", tools=registry(), clock=VirtualClock(), **options)
    result = asyncio.run(turn.run([{"role": "user", "content": "go"}]))
    return [(bool(r.tools), r.tool_choice) for r in result.requests]


@pytest.mark.parametrize("how", ["option", "extra"])
def test_a_forced_tool_choice_is_reset_to_auto_after_the_first_tool_batch(how: str) -> None:
    options = {"tool_choice": "required"} if how == "option" else {"extra": {"tool_choice": "required"}}
    assert choices([TOOL, TOOL, ANSWER], **options) == [(True, "required"), (True, "auto"), (True, "auto")]


def test_no_tool_choice_is_sent_when_the_caller_forced_none() -> None:
    assert choices([TOOL, ANSWER]) == [(True, None), (True, None)]


def test_a_request_without_tools_never_carries_a_forced_tool_choice() -> None:
    """Three thinking-only replies make default.yaml retry once with tools disabled."""
    sent = choices([THINKING, THINKING, THINKING, ANSWER], extra={"tool_choice": "required"})
    assert sent[0] == (True, "required")
    assert sent[-1] == (False, None)


def test_build_kwargs_takes_tools_and_tool_choice_from_the_request_alone() -> None:
    toolless = ModelRequest(model="m", messages=[], extra={"tool_choice": "required", "tools": [{"x": 1}], "seed": 7})
    kwargs = build_kwargs(toolless, 10.0)
    assert "tool_choice" not in kwargs and "tools" not in kwargs and kwargs["seed"] == 7


def test_build_request_moves_a_tool_choice_out_of_extra() -> None:
    offer = Offer.from_flags(frozenset())
    req = build_request(offer, [], settings=Settings(), tools=registry(), model="m", max_tokens=None,
                        reasoning_effort=None, extra={"tool_choice": "required", "seed": 7}, api_base=None, api_key=None)
    assert req.tool_choice == "required" and req.extra == {"seed": 7}
