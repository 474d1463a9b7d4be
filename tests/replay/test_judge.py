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
from loopspec.replay.cassette_model import RecordedStep
from loopspec.replay.judge import check_expectations, compare_trace, divergence_message, first_difference, halted, property_problem
from loopspec.replay.synth import reply

from _paths import DEFAULT_POLICY
from _policy_text import handles
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


# --- the survivors of planting mutmut's mutants of judge.py --------------------------------------


def test_max_fires_counts_only_the_named_transitions_firings() -> None:
    """On the weather turn the call state's opened transition fires twice among five steps."""
    label = "call_model --opened[0]--> call_model".replace("--> call_model", "--> read_stream")
    assert [s.transition for s in WEATHER.trace].count(label) == 2 and len(WEATHER.trace) == 5
    assert check_expectations(expecting(max_fires=((label, 2),)), WEATHER, DEFAULT, unconsumed=0) == []
    assert check_expectations(expecting(max_fires=((label, 1),)), WEATHER, DEFAULT, unconsumed=0) == [
        f"transition {label} fired 2 times, at most 1 expected"
    ]


def test_a_long_reply_or_message_is_quoted_to_its_first_80_characters() -> None:
    long = dataclasses.replace(WEATHER, response="r" * 100, message="m" * 100)
    assert check_expectations(expecting(final_response_contains=("x",), message_contains=("x",), message_not_contains=("m",)),
                              long, DEFAULT, unconsumed=0) == [
        f"the model's last reply does not contain 'x' (it is {'r' * 80!r})",
        f"halt message does not contain 'x' (it is {'m' * 80!r})",
        f"halt message contains 'm', expected it not to (it is {'m' * 80!r})",
    ]


def test_a_request_never_made_does_not_hide_the_requests_after_it() -> None:
    c = expecting(requests=(RequestExpectation(5), RequestExpectation(1, tools="absent")))
    assert check_expectations(c, WEATHER, DEFAULT, unconsumed=0) == [
        "request 5 was never made (2 calls)", "request 1 carried tools ['get_weather'], expected none"
    ]


def test_counter_expectations_each_say_their_own_problem() -> None:
    """A name nothing resembles gets no suggestion; an unknown counter does not hide a counter
    after it that is over its bound."""
    c = expecting(counters=(("zzz", Bound(max=1)), ("model_calls", Bound(max=1))))
    assert check_expectations(c, WEATHER, DEFAULT, unconsumed=0) == [
        f"expect.counters names 'zzz', which policy default ({DEFAULT.file}) does not declare "
        f"(cassette {ANY.file}); its counters: {', '.join(DEFAULT.counter_names)}",
        "counter model_calls reached 2, expected at most 1",
    ]


HALT_ONLY = load_policy_text(
    "loopspec: 1\ninitial: closed\n"
    "backstops:\n  model_calls: {max: 1, exhausted: closed}\n  tool_batches: {max: 1, exhausted: closed}\nstates:\n"
    "  closed: {kind: halt, outcome: completed, message: \"nothing to do\"}\n"
)


def test_a_counter_of_a_turn_that_took_no_step_reached_zero() -> None:
    result = turn(HALT_ONLY, [])
    assert result.trace == []
    assert check_expectations(expecting(counters=(("model_calls", Bound(max=0)),)), result, HALT_ONLY, unconsumed=0) == []
    assert check_expectations(expecting(counters=(("model_calls", Bound(min=1)),)), result, HALT_ONLY, unconsumed=0) == [
        "counter model_calls reached 0, expected at least 1"
    ]


def test_a_turn_cut_by_the_step_limit_does_not_halt_and_names_the_state_it_was_in() -> None:
    tools = ToolRegistry()
    tools.register(lambda city: f"sunny in {city}", name="get_weather",
                   parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    script = [reply("Let me look.", tool_calls=[("get_weather", {"city": "Oslo"})]), reply("ok")]
    result = asyncio.run(Turn(DEFAULT, InProcessProvider(script), model="replay", clock=VirtualClock(), tools=tools,
                              max_steps=3).run(USER))
    assert [s.after.state for s in result.steps] == ["read_stream", "run_tools", "call_model"]
    assert not halted(result, DEFAULT)
    assert property_problem("halts", result, DEFAULT) == f"{result.message} (it was still in 'call_model')"
    assert check_expectations(expecting(properties=("halts",)), result, DEFAULT, unconsumed=0) == [
        f"property halts fails: {result.message} (it was still in 'call_model')"
    ]


BROKEN_HISTORY = [
    {"role": "user", "content": "x"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "b", "content": "r"},
]


def test_history_valid_is_judged_on_the_turns_messages_and_only_for_that_property() -> None:
    broken = dataclasses.replace(WEATHER, messages=BROKEN_HISTORY)
    assert property_problem("history_valid", WEATHER, DEFAULT) == ""
    assert property_problem("history_valid", broken, DEFAULT) == (
        "message 2: tool result for unknown call 'b'; tool call 'a' answered 0 times"
    )
    for other in ("halt_message", "no_partial_tool_exec", "events_handled", "no_backstop_only_loops"):
        assert property_problem(other, broken, DEFAULT) == "", other


LONG_PROMPT = "Weather in Oslo, and then in Bergen, Trondheim, Tromsø and Stavanger, please, today?"


def _cut_short() -> tuple[Cassette, TurnResult, int]:
    """A cassette holding only the first reply of the weather turn: the policy asks for a second."""
    tools = ToolRegistry()
    tools.register(lambda city: f"sunny in {city}", name="get_weather",
                   parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    provider = InProcessProvider([reply("Let me look.", tool_calls=[("get_weather", {"city": "Oslo"})])])
    result = asyncio.run(Turn(DEFAULT, provider, model="replay", clock=VirtualClock(), tools=tools)
                         .run([{"role": "user", "content": LONG_PROMPT}]))
    assert provider.diverged_at == 1
    return dataclasses.replace(ANY, interactions=ANY.interactions[:1]), result, provider.diverged_at


ADVICE = ("Replay never invents a response: record the turn again under this policy (loopspec record), "
          "or add the response it needs to the cassette's interactions.")


def test_a_divergence_names_the_call_the_step_before_it_and_what_the_request_carried() -> None:
    c, result, at = _cut_short()
    assert divergence_message(c, result, at) == (
        "diverged at model call 2: the cassette recorded 1 model responses and the policy asked for another, "
        "after run_tools --ok--> call_model. It asked with tools ['get_weather'] and last prompt "
        f"{LONG_PROMPT[:57] + '...'!r}. " + ADVICE
    )
    assert divergence_message(c, result, 0) == (  # the first call has no step before it
        "diverged at model call 1: the cassette recorded 1 model responses and the policy asked for another. "
        f"It asked with tools ['get_weather'] and last prompt {LONG_PROMPT[:57] + '...'!r}. " + ADVICE
    )
    assert divergence_message(c, result, 2) == (  # past the requests made: nothing to quote
        "diverged at model call 3: the cassette recorded 1 model responses and the policy asked for another. " + ADVICE
    )


@pytest.mark.parametrize("length, quoted", [(60, 60), (61, 57)])
def test_a_prompt_is_quoted_whole_up_to_60_characters(length: int, quoted: int) -> None:
    c, result, _at = _cut_short()
    prompt = "p" * length
    first = dataclasses.replace(result.requests[0], last_user=prompt, tools=[])
    shown = prompt[:quoted] + ("..." if quoted < length else "")
    assert divergence_message(c, dataclasses.replace(result, requests=[first]), 0).endswith(
        f"It asked with tools none and last prompt {shown!r}. " + ADVICE
    )


def _step(step: Any, **change: Any) -> Any:
    """A copy of a trace step with some fields changed."""
    fields = {k: getattr(step, k) for k in ("index", "state", "kind", "event", "attrs", "transition", "target",
                                             "counters", "flags", "actions", "redirected_from")}
    return type(step)(**{**fields, **change})


def test_a_trace_divergence_names_the_transition_its_guard_and_a_backstop_redirect() -> None:
    last = WEATHER.trace[-1]  # read_stream --text[2]--> halt_completed
    recorded = [RecordedStep(s.state, s.event, s.target, s.transition) for s in WEATHER.trace]
    recorded[-1] = RecordedStep(last.state, last.event, "call_model")
    d = compare_trace(recorded, WEATHER, DEFAULT)
    assert d is not None and d.step == 4
    head = f"in read_stream on text: now -> halt_completed, recorded -> call_model, by transition {last.transition} (guard: "
    assert d.reason.startswith(head) and d.reason.endswith(")")
    redirected = dataclasses.replace(WEATHER, trace=[*WEATHER.trace[:-1], _step(last, redirected_from="call_model")])
    d2 = compare_trace(recorded, redirected, DEFAULT)
    assert d2 is not None and d2.reason == d.reason + ", redirected from call_model by a backstop"
    assert d2.to_json() == {
        "step": 4,
        "recorded": {"state": "read_stream", "event": "text", "target": "call_model", "transition": None},
        "actual": {"state": "read_stream", "event": "text", "target": "halt_completed", "transition": last.transition},
        "reason": d2.reason,
    }


def test_a_trace_divergence_where_no_transition_matched_says_policy_error() -> None:
    """The event has no transition in the state at all (the turn fell into policy_error)."""
    last = WEATHER.trace[-1]
    unmatched = _step(last, event="unheard_of", transition=None, target="policy_error")
    assert "unheard_of" not in DEFAULT.states["read_stream"].transitions
    result = dataclasses.replace(WEATHER, trace=[*WEATHER.trace[:-1], unmatched])
    recorded = [RecordedStep(s.state, s.event, s.target) for s in WEATHER.trace[:-1]] + [
        RecordedStep("read_stream", "unheard_of", "call_model")]
    d = compare_trace(recorded, result, DEFAULT)
    assert d is not None and d.reason == (
        "in read_stream on unheard_of: now -> policy_error, recorded -> call_model: no transition matched (policy_error)"
    )


UNHANDLED_EMPTY = load_policy_text(
    "loopspec: 1\ninitial: ask\n"
    "backstops:\n  model_calls: {max: 3, exhausted: out}\n  tool_batches: {max: 1, exhausted: out}\nstates:\n"
    "  ask:\n    kind: call\n    on: " + handles("call", "out", opened="read") + "\n"
    "  read:\n    kind: stream\n    on: " + handles("stream", "out", text="done").replace(" empty: out,", "") + "\n"
    '  done: {kind: halt, outcome: completed, message: "{response}"}\n'
    '  out: {kind: halt, outcome: backstop, message: "stopped"}\n'
)
"""A policy with no transition for an empty reply."""


def test_a_failing_property_is_reported_by_name_with_its_own_problem() -> None:
    result = turn(UNHANDLED_EMPTY, [reply("")])
    assert result.outcome == "policy_error"
    assert property_problem("events_handled", result, UNHANDLED_EMPTY) == "'empty' in 'read' has no enabled transition"
    assert check_expectations(expecting(properties=("halt_message", "events_handled")), result, UNHANDLED_EMPTY, unconsumed=0) == [
        "property events_handled fails: 'empty' in 'read' has no enabled transition"
    ]


def test_an_empty_halt_message_fails_halt_message() -> None:
    silent = dataclasses.replace(WEATHER, message="  \n")
    assert property_problem("halt_message", silent, DEFAULT) == "halt halt_completed delivered an empty message"
    assert property_problem("halt_message", WEATHER, DEFAULT) == ""


def test_a_request_expected_to_carry_tools_that_carried_none_is_named() -> None:
    """Only the first request is changed: the expectation reads the request it names, not its
    neighbour."""
    bare = dataclasses.replace(WEATHER, requests=[dataclasses.replace(WEATHER.requests[0], tools=[]), WEATHER.requests[1]])
    assert check_expectations(expecting(requests=(RequestExpectation(1, tools="present"),)), bare, DEFAULT, unconsumed=0) == [
        "request 1 carried no tools, expected some"
    ]
    assert check_expectations(expecting(requests=(RequestExpectation(2, tools="present"),)), bare, DEFAULT, unconsumed=0) == []
