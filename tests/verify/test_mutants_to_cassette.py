"""Why a counterexample cannot become a cassette (loopspec/verify/to_cassette.py), written against
the survivors of its mutation run: the reason ``NotReplayable`` gives names the first step no
recording reproduces, by number, event, attributes and state, with the reason that fits the
state's kind; or, when every step can happen, says the halt's message cannot be left empty."""

from __future__ import annotations

from typing import Any

import pytest

from loopspec.verify import CexStep, Counterexample
from loopspec.verify.event_options import NotReplayable
from loopspec.verify.to_cassette import cassette_from_counterexample

from test_check import CALL, HALTS, TOOLS, policy, stream

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
