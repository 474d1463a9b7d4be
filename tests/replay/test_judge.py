"""Judging a replayed turn (``loopspec/replay/judge.py``) at the edges of each expectation: a
bound met exactly passes and one past it fails, with the sentence that names it. Found by planting
bugs by hand: a transition allowed N firings failed at N, a turn that never took a step (it starts
in its halt) was reported as not halting, and one reply left unplayed passed ``all_played``."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy, load_policy_text
from loopspec.engine.results import TurnResult
from loopspec.language.model import Policy
from loopspec.replay.cassette import Cassette
from loopspec.replay.cassette_model import Bound, RequestExpectation
from loopspec.replay.judge import check_expectations, first_difference, halted, property_problem
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


def _weather_turn() -> TurnResult:
    """Two calls and one tool batch: the model asks for the weather, then answers."""
    tools = ToolRegistry()

    def get_weather(city: str) -> str:
        return f"sunny in {city}"

    tools.register(get_weather, parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    script = [reply("Let me look.", tool_calls=[("get_weather", {"city": "Oslo"})]), reply("Sunny in Oslo.")]
    turn = Turn(DEFAULT, InProcessProvider(script), model="replay", clock=VirtualClock(), tools=tools)
    return asyncio.run(turn.run([{"role": "user", "content": "Weather in Oslo?"}]))


WEATHER = _weather_turn()
RAN = ["get_weather", "get_weather"]


def test_every_expectation_met_exactly_passes() -> None:
    c = expecting(
        outcome="completed", outcome_any_of=("backstop", "completed"), model_calls=2, tool_batches=Bound(min=1, max=1),
        final_response_contains=("Oslo",), message_contains=("Sunny",), message_not_contains=("rain",),
        tools_never_ran=("delete_file",), counters=(("model_calls", Bound(exact=2)), ("tool_batches", Bound(max=1))),
        elapsed=Bound(max=2.5), all_played=True, properties=("halts", "halt_message", "history_valid"),
        requests=(RequestExpectation(1, tools="present", prompt_contains="Oslo"),
                  RequestExpectation(-1, carries=(("model", "replay"), ("max_tokens", None)))),
    )
    assert check_expectations(c, WEATHER, DEFAULT, unconsumed=0, ran=RAN, elapsed=2.5) == []


@pytest.mark.parametrize("expect, problem", [
    ({"outcome": "backstop"}, "outcome is completed (halt_completed), expected backstop"),
    ({"outcome_any_of": ("backstop", "guardrail")}, "outcome is completed (halt_completed), expected one of backstop, guardrail"),
    ({"model_calls": 3}, "2 model calls, expected 3"),
    ({"model_calls": Bound(min=3)}, "2 model calls, expected at least 3"),
    ({"tool_batches": Bound(max=0)}, "1 tool batches, expected at most 0"),
    ({"final_response_contains": ("rain",)}, "the model's last reply does not contain 'rain' (it is 'Sunny in Oslo.')"),
    ({"message_contains": ("rain",)}, "halt message does not contain 'rain' (it is 'Sunny in Oslo.')"),
    ({"message_not_contains": ("Oslo",)}, "halt message contains 'Oslo', expected it not to (it is 'Sunny in Oslo.')"),
    ({"tools_never_ran": ("get_weather",)}, "tool get_weather ran 2 times, expected never"),
    ({"counters": (("model_calls", Bound(max=1)),)}, "counter model_calls reached 2, expected at most 1"),
    ({"elapsed": Bound(max=1)}, "the turn took 2.5 s on its clock, expected at most 1 s"),
    ({"requests": (RequestExpectation(3),)}, "request 3 was never made (2 calls)"),
    ({"requests": (RequestExpectation(-3),)}, "request -3 was never made (2 calls)"),
    ({"requests": (RequestExpectation(1, tools="absent"),)}, "request 1 carried tools ['get_weather'], expected none"),
    ({"requests": (RequestExpectation(-1, prompt_contains="Paris"),)}, "request -1 (call 2)'s last prompt does not contain 'Paris'"),
    ({"requests": (RequestExpectation(1, carries=(("max_tokens", 5),)),)}, "request 1 carried max_tokens None, expected 5"),
])
def test_each_expectation_missed_says_what_was_seen_and_what_was_expected(expect: dict[str, Any], problem: str) -> None:
    assert check_expectations(expecting(**expect), WEATHER, DEFAULT, unconsumed=0, ran=RAN, elapsed=2.5) == [problem]


def test_a_counter_the_policy_does_not_declare_is_named_with_the_files_and_a_suggestion() -> None:
    [problem] = check_expectations(expecting(counters=(("model_call", Bound(max=1)),)), WEATHER, DEFAULT, unconsumed=0)
    assert problem == (
        f"expect.counters names 'model_call', which policy default ({DEFAULT.file}) does not declare "
        f"(cassette {ANY.file}); its counters: {', '.join(DEFAULT.counter_names)}; did you mean 'model_calls'?"
    )


def test_the_first_difference_of_two_decision_paths_is_where_they_part_or_where_the_shorter_ends() -> None:
    """What ``loopspec diff`` reports per cassette: a run that repeats the other's every step and
    goes on (the other cut by the step limit) differs where the shorter one ends; the same path,
    nowhere."""
    a, b, c = ("call", "opened", "read"), ("read", "text", "done"), ("read", "empty", "call")
    assert first_difference([a, b], [a, b]) is None
    assert first_difference([], []) is None
    assert first_difference([a, b], [a, c]) == 1
    assert first_difference([a], [a, c, a]) == 1
    assert first_difference([a, c, a], [a]) == 1
    assert first_difference([], [a]) == 0
