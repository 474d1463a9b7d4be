"""The step properties, each fed known-bad and known-good steps (docs/quality.md, `properties.py`).

A checker that never reports anything passes every test that only asserts "no violations". Here
each property of `advance` gets hand-made steps that must violate it, with the exact reason, and
near misses that must not.
"""

from __future__ import annotations

from loopspec import load_policy_text
from loopspec.language.alphabet import Event
from loopspec.language.guards import Always
from loopspec.language.model import Config, DropToolCalls, Increment, Transition
from loopspec.language.properties import (
    Watch,
    advance,
    budget_lasts,
    continuation_counters,
    first_violation,
    trace_violations,
)
from loopspec.language.step import CALLS_COMPLETE, CALLS_NONE, CALLS_PARTIAL, FATE_IGNORE, FATE_RUN, Step

POLICY = load_policy_text("""\
loopspec: 1
initial: ask
counters:
  conts: {max: 2}
  other: {max: 3}
templates:
  go: "go on"
backstops:
  model_calls: {max: 20, exhausted: out}
  tool_batches: {max: 5, exhausted: out}
states:
  ask:
    kind: call
    on: {opened: read}
  read:
    kind: stream
    on:
      text: done
      tool_calls: tools
      stalled:
        - {do: [{increment: conts}], to: cont}
        - out
      length: {do: [{increment: other}], to: ask}
  tools:
    kind: tool_exec
    on: {ok: ask}
  cont:
    kind: continue
    prompt: go
    on: {done: ask}
  done: {kind: halt, outcome: completed, message: "{response}"}
  out: {kind: halt, outcome: backstop, message: "out"}
""")
CONT = continuation_counters(POLICY)
OFF = frozenset({"tools_disabled"})


def _cfg(state: str, conts: int = 0, flags: frozenset[str] = frozenset()) -> Config:
    values = list(POLICY.initial_config().counters)
    values[POLICY.counter_index("conts")] = conts
    return Config(state, tuple(values), flags)


def _step(src: str, event: str, dst: str, *, actions: tuple = (), calls: str = CALLS_NONE, fate: str | None = None,
          before: Config | None = None, after: Config | None = None, attrs: dict | None = None,
          no_transition: bool = False) -> Step:
    t = None if no_transition else Transition(src, event, 0, Always(), actions, dst)
    return Step(before or _cfg(src), Event(event, attrs or {}), t, after or _cfg(dst), (), calls=calls, fate=fate)


def _violations(*steps: Step) -> list[tuple[str, str]]:
    return trace_violations(POLICY, steps)


def test_continuation_counters_are_those_incremented_into_continue_states() -> None:
    assert CONT == (POLICY.counter_index("conts"),)


def test_budget_lasts_while_some_continuation_counter_is_below_its_cap() -> None:
    assert budget_lasts(POLICY, _cfg("read", conts=1), CONT) is True
    assert budget_lasts(POLICY, _cfg("read", conts=2), CONT) is False
    assert budget_lasts(POLICY, _cfg("read", conts=2), ()) is True  # no budget declared: it lasts


def test_an_unhandled_event_violates_events_handled() -> None:
    step = _step("read", "auth", "__policy_error__", no_transition=True)
    assert _violations(step) == [("events_handled", "'auth' in 'read' has no enabled transition")]


def test_partial_calls_routed_to_tool_exec_violate_no_partial_tool_exec() -> None:
    bad = _step("read", "length", "tools", calls=CALLS_PARTIAL)
    assert _violations(bad) == [
        ("no_partial_tool_exec", "truncated tool call(s) from 'length' are routed to tool execution in 'tools'")]
    assert _violations(_step("read", "length", "tools", calls=CALLS_PARTIAL, actions=(DropToolCalls(),))) == []
    assert _violations(_step("read", "tool_calls", "tools", calls=CALLS_COMPLETE, fate=FATE_RUN)) == []
    assert _violations(_step("read", "length", "ask", calls=CALLS_PARTIAL)) == []


def test_ignored_calls_violate_history_valid() -> None:
    step = _step("read", "tool_calls", "ask", calls=CALLS_COMPLETE, fate=FATE_IGNORE)
    assert _violations(step) == [("history_valid", "tool call(s) from 'tool_calls' are neither run, refused nor "
                                                   "dropped: 'read --tool_calls[0]--> ask' leads to 'ask', a call state")]


def test_enabling_tools_again_or_running_them_violates_tools_stay_disabled() -> None:
    enable = _step("read", "text", "ask", before=_cfg("read", flags=OFF), after=_cfg("ask"))
    assert _violations(enable) == [("tools_stay_disabled", "tools were disabled and 'read --text[0]--> ask' enables them again")]
    run = _step("read", "tool_calls", "tools", calls=CALLS_COMPLETE, fate=FATE_RUN,
                before=_cfg("read", flags=OFF), after=_cfg("tools", flags=OFF))
    assert _violations(run) == [("tools_stay_disabled", "tools were disabled, the model asked for tools anyway, and "
                                                        "'read --tool_calls[0]--> tools' runs them")]
    kept = _step("read", "text", "ask", before=_cfg("read", flags=OFF), after=_cfg("ask", flags=OFF))
    assert _violations(kept) == []


STUB_REASON = "a mid-tool-call stub ends the turn as 'completed' in 'done' while the continuation budget lasts"


def _stall(conts: int = 0) -> Step:
    return _step("read", "stalled", "cont", calls=CALLS_PARTIAL, attrs={"mid_tool_call": True},
                 before=_cfg("read", conts=conts), after=_cfg("cont", conts=conts + 1))


def test_a_stall_mid_tool_call_then_a_completed_halt_violates_stub_not_silent() -> None:
    finish = _step("cont", "done", "done")
    assert _violations(_stall(), finish) == [("stub_not_silent", STUB_REASON)]


def test_a_model_call_between_the_stall_and_the_halt_clears_it() -> None:
    assert _violations(_stall(), _step("cont", "done", "ask"), _step("ask", "opened", "done")) == []


def test_entering_a_stream_or_tool_exec_state_clears_it_too() -> None:
    assert _violations(_stall(), _step("cont", "done", "read"), _step("read", "text", "done")) == []
    assert _violations(_stall(), _step("cont", "done", "tools"), _step("tools", "ok", "done")) == []


def test_no_violation_once_the_budget_is_spent_or_the_halt_is_not_completed() -> None:
    assert _violations(_stall(conts=2), _step("cont", "done", "done")) == []
    assert _violations(_stall(), _step("cont", "done", "out")) == []


def test_a_partial_cut_that_is_not_a_stub_or_stall_is_not_silent() -> None:
    length = _step("read", "length", "cont", calls=CALLS_PARTIAL, attrs={"has_tool_calls": True})
    assert _violations(length, _step("cont", "done", "done")) == []


def test_advance_keeps_the_watch_between_steps() -> None:
    watch, v = advance(POLICY, Watch(), _stall(), CONT)
    assert watch == Watch(silent=True) and v == []
    watch, v = advance(POLICY, watch, _step("cont", "done", "done"), CONT)
    assert watch == Watch(silent=False) and v == [("stub_not_silent", STUB_REASON)]
    same = Watch()
    assert advance(POLICY, same, _step("read", "text", "done"), CONT) == (same, [])


def test_trace_violations_collects_every_step_in_order() -> None:
    steps = [_step("read", "auth", "__policy_error__", no_transition=True), _step("read", "length", "tools", calls=CALLS_PARTIAL)]
    assert [p for p, _ in _violations(*steps)] == ["events_handled", "no_partial_tool_exec"]


def test_first_violation_picks_the_first_reason_of_a_property() -> None:
    vs = [("a", "one"), ("b", "two"), ("a", "three")]
    assert first_violation("a", vs) == "one"
    assert first_violation("b", vs) == "two"
    assert first_violation("c", vs) == ""
