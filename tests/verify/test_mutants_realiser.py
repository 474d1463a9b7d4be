"""``Realiser.leaves_empty``: whether a recording leaves a halt's message empty, the last test of
a ``halt_message`` counterexample (loopspec/verify/realiser.py), pinned directly, against the
survivors of its mutation run.

The message renders empty only when every attribute the template reads is empty and, when it
reads the response, the last reply has no visible text: the recording's own text when the step
is a model call, a stream or a stub (the reply it records), else the text the run left before."""

from __future__ import annotations

import pytest

from loopspec import load_policy
from loopspec.language.alphabet import Event
from loopspec.language.step import Step
from loopspec.verify.event_options import Facts, Option
from loopspec.verify.properties import EmptyWhen
from loopspec.verify.realiser import Realiser

from _paths import DEFAULT_POLICY

POLICY = load_policy(str(DEFAULT_POLICY))
REALISER = Realiser(POLICY)
STATE_OF_KIND = {"call": "call_model", "stream": "read_stream", "stub": "make_stub",
                 "tool_exec": "run_tools", "escalate": "wrap_up", "continue": "continue_generic"}


def step_from(kind: str) -> Step:
    """A step leaving the default policy's state of ``kind`` (only where it starts matters)."""
    cfg = POLICY.initial_config()
    before = type(cfg)(STATE_OF_KIND[kind], cfg.counters, cfg.flags)
    return Step(before=before, event=Event("error", {}), transition=None, after=before, directives=())


ATTRS = EmptyWhen(kind="call", event="error", attrs=("message",))


@pytest.mark.parametrize("value", ["", [], None])
def test_an_empty_or_missing_attribute_leaves_the_message_empty(value: object) -> None:
    """``""``, ``[]`` and an attribute the recording does not set all render empty."""
    attrs = {} if value is None else {"message": value}
    assert REALISER.leaves_empty(ATTRS, Facts(), step_from("call"), Option(attrs=attrs)) is True


def test_an_attribute_with_content_fills_the_message() -> None:
    """One listed attribute with content is enough: the message is not empty (whatever others hold)."""
    two = EmptyWhen(kind="call", event="error", attrs=("status", "message"))
    assert REALISER.leaves_empty(ATTRS, Facts(), step_from("call"), Option(attrs={"message": "boom"})) is False
    assert REALISER.leaves_empty(two, Facts(), step_from("call"), Option(attrs={"status": "", "message": "x"})) is False
    assert REALISER.leaves_empty(two, Facts(), step_from("call"), Option(attrs={"status": 0, "message": ""})) is False


RESPONSE = EmptyWhen(kind="stream", event="length", response=True)


@pytest.mark.parametrize("kind", ["call", "stream", "stub"])
def test_a_reply_step_is_judged_by_its_own_recording_text(kind: str) -> None:
    """From a call, stream or stub state the recording is the reply: its text decides, not what
    the run held before (visible before, none now: empty; none before, visible now: not)."""
    step = step_from(kind)
    assert REALISER.leaves_empty(RESPONSE, Facts(text=True), step, Option(attrs={}, text=False)) is True
    assert REALISER.leaves_empty(RESPONSE, Facts(text=False), step, Option(attrs={}, text=True)) is False


@pytest.mark.parametrize("kind", ["call", "stream", "stub"])
def test_a_reply_step_that_leaves_the_text_unchanged_is_judged_by_the_run(kind: str) -> None:
    """A recording that says nothing of the text (``text=None``) leaves the run's text standing."""
    step = step_from(kind)
    assert REALISER.leaves_empty(RESPONSE, Facts(text=True), step, Option(attrs={})) is False
    assert REALISER.leaves_empty(RESPONSE, Facts(text=False), step, Option(attrs={})) is True


@pytest.mark.parametrize("kind", ["tool_exec", "escalate", "continue"])
def test_other_steps_are_judged_by_the_text_the_run_left(kind: str) -> None:
    """A step that records no reply (tools, an escalation, a continue prompt) does not change the
    last reply: the text the run left decides, whatever the option says."""
    step = step_from(kind)
    assert REALISER.leaves_empty(RESPONSE, Facts(text=False), step, Option(attrs={}, text=True)) is True
    assert REALISER.leaves_empty(RESPONSE, Facts(text=True), step, Option(attrs={}, text=False)) is False


def test_attributes_and_response_must_both_be_empty() -> None:
    """A template reading both: empty attributes and no text, empty; either filled, not empty."""
    both = EmptyWhen(kind="stream", event="error", attrs=("message",), response=True)
    step = step_from("stream")
    assert REALISER.leaves_empty(both, Facts(), step, Option(attrs={"message": ""}, text=False)) is True
    assert REALISER.leaves_empty(both, Facts(), step, Option(attrs={"message": ""}, text=True)) is False
    assert REALISER.leaves_empty(both, Facts(), step, Option(attrs={"message": "x"}, text=False)) is False


@pytest.mark.parametrize("ok", [True, False])
def test_a_scripted_tool_result_is_what_the_interpreter_makes_of_the_same_answer(ok: bool) -> None:
    """The realiser predicts the tool guardrails from results built as the interpreter builds them:
    a recorded answer replays as a tool that returns it, or raises it as a RuntimeError; the
    interpreter's own run of such a tool gives the same content, status and call."""
    import asyncio

    from loopspec.engine.tools import Tool, ToolCall, run_one
    from loopspec.verify.event_options import Result
    from loopspec.verify.tool_scripts import tool_result

    def answer(**args: object) -> str:
        if not ok:
            raise RuntimeError("the disk is full")
        return "the disk is full"

    call = ToolCall("call_7", "save", '{"path": "a.txt"}')
    real = asyncio.run(run_one(Tool("save", answer, {"type": "object"}), call))
    scripted = tool_result(Result("save", ok, "the disk is full", '{"path": "a.txt"}'))
    assert (scripted.content, scripted.ok) == (real.content, real.ok)
    assert (scripted.call.name, scripted.call.arguments, scripted.call.parsed) == ("save", call.arguments, {"path": "a.txt"})
