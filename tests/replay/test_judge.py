"""Judging a replayed turn (``loopspec/replay/judge.py``) at the edges of each expectation: a
bound met exactly passes and one past it fails, with the sentence that names it. Found by planting
bugs by hand: a transition allowed N firings failed at N, a turn that never took a step (it starts
in its halt) was reported as not halting, and one reply left unplayed passed ``all_played``."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from loopspec import InProcessProvider, Turn, VirtualClock, load_policy, load_policy_text
from loopspec.engine.results import TurnResult
from loopspec.language.model import Policy
from loopspec.replay.cassette import Cassette
from loopspec.replay.judge import check_expectations, halted, property_problem
from loopspec.replay.synth import reply

from _paths import DEFAULT_POLICY
from test_replay import CASSETTES

DEFAULT = load_policy(str(DEFAULT_POLICY))
USER = [{"role": "user", "content": "Say hello."}]
ANY = next(iter(CASSETTES.values()))
"""A cassette to carry the expectations under test (its own are replaced)."""


def turn(policy: Policy, script: list[Any]) -> TurnResult:
    return asyncio.run(Turn(policy, InProcessProvider(script), model="replay", clock=VirtualClock()).run(USER))


def expecting(**expect: Any) -> Cassette:
    empty = type(ANY.expect)()
    return dataclasses.replace(ANY, expect=dataclasses.replace(empty, **expect))


def test_a_transition_fired_exactly_as_often_as_allowed_passes_and_once_more_fails() -> None:
    result = turn(DEFAULT, [reply("Hello.")])
    fired: dict[str, int] = {}
    for s in result.trace:
        if s.transition:
            fired[s.transition] = fired.get(s.transition, 0) + 1
    label, count = next(iter(fired.items()))
    assert check_expectations(expecting(max_fires=((label, count),)), result, DEFAULT, unconsumed=0) == []
    assert check_expectations(expecting(max_fires=((label, count - 1),)), result, DEFAULT, unconsumed=0) == [
        f"transition {label} fired {count} times, at most {count - 1} expected"
    ]


def test_a_turn_that_never_took_a_step_halted() -> None:
    """A turn that starts in its halt takes no step: it halted (and says so), it did not run into
    the interpreter's step limit."""
    policy = load_policy_text(
        "loopspec: 1\ninitial: closed\n"
        "backstops:\n  model_calls: {max: 1, exhausted: closed}\n  tool_batches: {max: 1, exhausted: closed}\nstates:\n"
        "  closed: {kind: halt, outcome: completed, message: \"nothing to do\"}\n"
    )
    result = turn(policy, [])
    assert result.steps == [] and result.message == "nothing to do"
    assert halted(result, policy)
    assert property_problem("halts", result, policy) == ""
    assert check_expectations(expecting(properties=("halts", "halt_message")), result, policy, unconsumed=0) == []


def test_all_played_fails_on_a_single_response_left_unplayed() -> None:
    """The cassette recorded one more reply than the policy asked for: the policy stopped early."""
    result = turn(DEFAULT, [reply("Hello.")])
    c = expecting(all_played=True)
    assert check_expectations(c, result, DEFAULT, unconsumed=0) == []
    assert check_expectations(c, result, DEFAULT, unconsumed=1) == [
        "1 recorded model responses were never played (the policy stopped early)"
    ]
    assert check_expectations(expecting(), result, DEFAULT, unconsumed=1) == []  # not asked for
