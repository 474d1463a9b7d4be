"""``halt_message``: when a halt's message template renders empty, decided per way into the halt
(the state kind and event that enter it). A template with text of its own, a global that always
renders digits, an attribute that is never empty on that event, or a text reply never render
empty; an absent name, an attribute that may be empty, a reply without text and an empty template
do. Each row pins the exact explanation ``loopspec check`` prints."""

from __future__ import annotations

import pytest

from loopspec.verify.properties import EmptyWhen, empty_when, message_problem

WHY = "message {t!r} has no text of its own and renders empty when the halt is reached by "

ROWS: list[tuple[str, list[tuple[str, str]], str | None]] = [
    ("stopped: {message}", [("call", "auth")], None),  # text of its own
    ("{model_calls}", [("stream", "text")], None),  # a global: always digits
    ("{status}", [("call", "auth")], None),  # an int attribute renders digits
    ("{cause}", [("stream", "broken")], None),  # never empty on the events that carry it
    ("{guardrail}", [("tool_exec", "doom_loop")], None),  # a guardrail event has a verdict
    ("{guardrail}", [("continue", "done")], WHY.format(t="{guardrail}") + "done"),
    ("{tools}", [("stream", "tool_calls")], None),  # a tool_calls reply names its calls
    ("{tools}", [("stream", "length")], WHY.format(t="{tools}") + "length"),  # length has no 'tools'
    ("{code}", [("call", "rate_limit")], WHY.format(t="{code}") + "rate_limit (code='')"),
    # two names and no text between them: still no text of its own
    ("{code}{nothing}", [("call", "rate_limit")], WHY.format(t="{code}{nothing}") + "rate_limit (code='')"),
    # a guardrail absent from the event renders '', and the names after it are still read
    ("{guardrail}{message}", [("call", "transient")], None),
    ("{response}{code}", [("call", "rate_limit")],
     WHY.format(t="{response}{code}") + "rate_limit (a reply without visible text, code='')"),
    ("{nothing}{code}", [("call", "rate_limit")], WHY.format(t="{nothing}{code}") + "rate_limit (code='')"),
    ("{code}", [], WHY.format(t="{code}") + "the start of the turn (the initial state is this halt)"),
    ("{retry_after}", [("call", "rate_limit")], None),  # a float renders digits
    ("{wait_too_long}", [("call", "rate_limit")], None),  # a bool renders True or False
    ("{mid_tool_call}", [("stream", "stalled")], None),
    ("{dropped_tools}", [("stream", "length")], WHY.format(t="{dropped_tools}") + "length (dropped_tools=[])"),
    # one event from two kinds: listed by kind, then event
    ("{tools}", [("tool_exec", "timeout"), ("call", "timeout")], WHY.format(t="{tools}") + "timeout, timeout (tools=[])"),
    ("{guardrail}{code}", [("call", "rate_limit")], WHY.format(t="{guardrail}{code}") + "rate_limit (code='')"),
    ("{response}", [("stream", "text")], None),  # a text reply has visible text
    (
        "{response}",
        [("stream", "length"), ("call", "auth")],
        WHY.format(t="{response}") + "auth (a reply without visible text), length (chars=0)",
    ),
    ("{response}", [], WHY.format(t="{response}") + "the start of the turn (the initial state is this halt)"),
    ("{nothing}", [("call", "auth")], WHY.format(t="{nothing}") + "auth"),  # an unknown name renders ''
    ("", [("call", "auth")], "message is empty: consumers receive nothing between the role and the finish chunk"),
    ("{message", [("call", "auth")], "message template '{message' does not parse"),
]


@pytest.mark.parametrize("template, incoming, want", ROWS, ids=[f"{t or 'empty'}<-{i[0][1] if i else 'start'}" for t, i, _ in ROWS])
def test_message_problem(template: str, incoming: list[tuple[str, str]], want: str | None) -> None:
    assert message_problem(template, incoming) == want


def test_empty_when_says_exactly_what_must_be_empty() -> None:
    """The record ``empty_when`` returns is a value: which attributes must be empty, and whether the
    reply must have no visible text, a bool either way (``response`` None compared unequal)."""
    assert empty_when("{code}", "call", "rate_limit") == EmptyWhen("call", "rate_limit", ("code",), False)
    assert empty_when("{response}", "call", "auth") == EmptyWhen("call", "auth", (), True)
