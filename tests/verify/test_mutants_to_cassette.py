"""Why a counterexample cannot become a cassette (loopspec/verify/to_cassette.py), written against
the survivors of its mutation run: the reason ``NotReplayable`` gives names the first step no
recording reproduces, by number, event, attributes and state, with the reason that fits the
state's kind; or, when every step can happen, says the halt's message cannot be left empty."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from loopspec.verify import CexStep, Counterexample
from loopspec.verify.event_options import NotReplayable
from loopspec.verify.to_cassette import _reproduces, cassette_from_counterexample

from test_check import CALL, HALTS, TOOLS, machine, policy, stream

OPENED = CexStep("ask", "opened", {}, "read", "ask --opened[0]--> read")


def step(state: str, event: str, to: str, **attrs: Any) -> CexStep:
    return CexStep(state, event, dict(attrs), to, f"{state} --{event}[0]--> {to}")


def why_not(parts: tuple[str, ...], steps: list[CexStep], prop: str = "history_valid") -> str:
    with pytest.raises(NotReplayable) as info:
        cassette_from_counterexample(policy(*parts), Counterexample(steps), prop)
    return str(info.value)


def test_an_attribute_no_recording_has() -> None:
    call = CALL.replace("      rate_limit: fail\n", "      rate_limit: [{when: {attr: status, eq: 200}, to: fail}, fail]\n")
    got = why_not((call, stream(), TOOLS, HALTS), [step("ask", "rate_limit", "fail", status=200, code="x")])
    assert got == (
        "step 1 asks for rate_limit(status=200, code='x') in 'ask', which no recording makes the classifier"
        " (or the interpreter) report there"
    )


def test_a_tool_batch_with_no_call_pending() -> None:
    steps = [OPENED, step("read", "text", "tools"), step("tools", "failed", "ask")]
    got = why_not((CALL, stream(text="tools"), TOOLS, HALTS), steps)
    assert got == (
        "step 3 asks for failed() in 'tools', but no tool call is pending there (the reply's calls were not"
        " sent to run), so the batch is empty and 'ok'"
    )


def test_a_stub_the_stream_did_not_leave() -> None:
    cut = "  cut:\n    kind: stub\n    on: {mid_text: fail, mid_tool_call: fail}\n"
    steps = [OPENED, step("read", "length", "cut", has_tool_calls=False), step("cut", "mid_tool_call", "fail")]
    got = why_not((CALL, stream(length="cut"), TOOLS, cut, HALTS), steps)
    assert got == "step 3 asks for mid_tool_call() in 'cut', which the stream before it did not leave behind"


def test_an_escalation_that_cannot_fail_the_way_it_was_entered() -> None:
    esc = "  nudge:\n    kind: escalate\n    apply: [disable_tools]\n    on: {done: ask, failed: fail}\n"
    steps = [OPENED, step("read", "empty", "nudge"), step("nudge", "failed", "fail")]
    got = why_not((CALL, stream(empty="nudge"), TOOLS, esc, HALTS), steps)
    assert got == "step 3 asks for failed() in 'nudge', which the escalation does not report after the way it was entered"


def test_every_step_can_happen_but_the_response_before_them_is_not_empty() -> None:
    # 'done' renders the response, which after a text reply has visible text
    steps = [OPENED, step("read", "text", "tools"), step("tools", "ok", "done")]
    tools = TOOLS.replace("      ok: ask\n", "      ok: done\n")
    got = why_not((CALL, stream(text="tools"), tools, HALTS), steps, prop="halt_message")
    assert got == "no recording leaves the halt's message empty"


# -- whether a replay shows the counterexample (_reproduces) --------------------------------------


@pytest.fixture(scope="module")
def shown() -> dict[str, Any]:
    """The arguments a real reproduction hands ``_reproduces`` (hermes' pre-fix silent halt), and
    what it answered: each test below changes one of them."""
    from loopspec.verify import check_policy

    import loopspec.verify.to_cassette as to_cassette

    p = machine("hermes_pre_30813")
    cex = check_policy(p).counterexamples()["halt_message"]
    seen: dict[str, Any] = {}
    real = to_cassette._reproduces

    def spy(report: Any, planned: Any, prop: str, c: Any, policy: Any) -> str:
        answer = real(report, planned, prop, c, policy)
        seen.update(report=report, planned=planned, prop=prop, cex=c, policy=policy, answer=answer)
        return answer

    to_cassette._reproduces = spy
    try:
        cassette_from_counterexample(p, cex, "halt_message")
    finally:
        to_cassette._reproduces = real
    assert seen["answer"] == "" and seen["prop"] == "halt_message" and seen["cex"].loop_start is None
    return seen


def reproduces(shown: dict[str, Any], *, trace: list[Any] | None = None, steps: list[Any] | None = None,
               prop: str | None = None, **change: Any) -> str:
    """``_reproduces`` of the captured run, with the report's trace or steps, the property, or the
    counterexample's fields (``loop_start``, ``fires``) or the report's (``verdict``, ``failures``) changed."""
    report, cex = shown["report"], shown["cex"]
    result = report.result
    if trace is not None:
        result = dataclasses.replace(result, trace=trace)
    if steps is not None:
        result = dataclasses.replace(result, steps=steps)
    report = dataclasses.replace(report, result=result, **{k: v for k, v in change.items() if k in ("verdict", "failures")})
    cex = dataclasses.replace(cex, **{k: v for k, v in change.items() if k in ("loop_start", "fires")})
    return _reproduces(report, shown["planned"], prop or shown["prop"], cex, shown["policy"])


def decisions(trace: list[Any]) -> list[tuple[str, str, str]]:
    return [(s.state, s.event, s.target) for s in trace]


def test_a_diverged_replay_is_refused_with_its_first_failure(shown: dict[str, Any]) -> None:
    assert reproduces(shown, verdict="diverged", failures=["diverged: first", "second"]) == "diverged: first"
    failing = ["diverged: x", *shown["report"].failures]  # the property's own failure among them
    assert reproduces(shown, verdict="diverged", failures=failing) == "diverged: x"
    assert reproduces(shown, verdict="fail", failures=failing) == ""


def test_a_replay_that_parts_from_the_counterexample_names_the_step(shown: dict[str, Any]) -> None:
    trace = shown["report"].result.trace
    assert len(trace) >= 3
    want = decisions(trace)
    other = dataclasses.replace(trace[1], target="somewhere_else")
    assert reproduces(shown, trace=[trace[0], other, *trace[2:]]) == (
        f"the replay parts from the counterexample at step 2: [{decisions([other])[0]!r}] instead of [{want[1]!r}]")
    assert reproduces(shown, trace=trace[:2]) == (
        f"the replay parts from the counterexample at step 3: [] instead of [{want[2]!r}]")


def test_a_lasso_needs_the_same_prefix_and_a_turn_that_does_not_halt(shown: dict[str, Any]) -> None:
    trace, steps = shown["report"].result.trace, shown["report"].result.steps
    want = decisions(trace)
    other = dataclasses.replace(trace[0], event="text")
    assert reproduces(shown, loop_start=0, trace=[other, *trace[1:]]) == (
        f"the replay's decisions {decisions([other, *trace[1:]])} differ from the counterexample's {want}")
    assert reproduces(shown, loop_start=0) == "the replayed turn halted"
    assert reproduces(shown, loop_start=0, steps=steps[:1], prop="history_valid") == "the replay does not fail history_valid"


def test_a_run_property_must_fail_in_the_replay(shown: dict[str, Any]) -> None:
    assert reproduces(shown, failures=["property halt_message fails: the halt's message is empty"]) == ""
    assert reproduces(shown, failures=["halt_message fails"]) == "the replay does not fail halt_message"


def test_a_loop_demonstration_must_fire_its_transition_past_the_bound(shown: dict[str, Any]) -> None:
    fires = ("read --text[0]--> ask", 3)
    got = reproduces(shown, prop="no_backstop_only_loops", fires=fires, failures=["read --text[0]--> ask fired 4 times"])
    assert got == ""
    for failures in (["read --text[0]--> ask ran 4 times"], ["other fired 4 times"], []):
        assert reproduces(shown, prop="no_backstop_only_loops", fires=fires, failures=failures) == (
            "the replay does not fire read --text[0]--> ask more than 3 times")
    assert reproduces(shown, prop="no_backstop_only_loops", failures=[]) == ""
