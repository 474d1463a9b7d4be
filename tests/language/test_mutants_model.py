"""The compiled model's step, held to exact results (docs/quality.md, `model.py`).

`test_model.py` walks a policy through its main paths; these are the parts of a step that no test
looked at exactly: template rendering, a backoff past its schedule, what an escalate
state's `apply` does on entry, the `capped`/`resets` sets the checker reads, the offer made
from the flags in force when a call is entered, and the fate of each kind of tool-call event.
"""

from __future__ import annotations

from loopspec import Event, load_policy_text
from loopspec.language.model import (
    POLICY_ERROR_STATE,
    Append,
    Backoff,
    Compact,
    Config,
    RefuseTools,
    render_template,
)

POLICY = """\
loopspec: 1
initial: ask
counters:
  retries: {max: 4}
backoff:
  rl: [30, 60]
  flat: [5, 9]
templates:
  hurry: "hurry"
  no: "refused: {tools}"
  cont: "go on"
flags:
  noted: {}
backstops:
  model_calls: {max: 9, exhausted: out}
  tool_batches: {max: 5, exhausted: out}
states:
  ask:
    kind: call
    on:
      opened: read
      rate_limit:
        - do: [{backoff: rl, attempt: retries}, {increment: retries}]
          to: ask
        - out
      transient:
        - do: [{backoff: flat}]
          to: ask
      timeout: esc
      context_overflow: cont
  read:
    kind: stream
    on:
      text: done
      tool_calls:
        - when: {attr: tools, contains: forbidden}
          do: [{refuse_tools: no}]
          to: ask
        - when: {attr: tools, contains: dropme}
          do: [drop_tool_calls]
          to: ask
        - when: {attr: tools, contains: ignored}
          to: ask
        - {to: tools, bounded_by: tool_batches}
      malformed_args: ask
      length: ask
  tools:
    kind: tool_exec
    on:
      ok: {do: [{reset: retries}], to: ask}
  esc:
    kind: escalate
    apply: [{reset: retries}, disable_reasoning_once, compact, {append: hurry}]
    on: {done: ask}
  cont:
    kind: continue
    prompt: cont
    on: {done: ask}
  done: {kind: halt, outcome: completed, message: "{response}"}
  out: {kind: halt, outcome: backstop, message: "out"}
"""


def _policy():  # type: ignore[no-untyped-def]
    return load_policy_text(POLICY)


def _at(p, state: str, **counters: int) -> Config:  # type: ignore[no-untyped-def]
    cfg = p.initial_config()
    values = list(cfg.counters)
    for name, v in counters.items():
        values[p.counter_index(name)] = v
    return Config(state, tuple(values), cfg.flags)


def test_render_template_joins_lists_and_blanks_absent_names() -> None:
    assert render_template("a {x} b {y} c {n}", {"x": ["p", "q"], "n": 3}) == "a p, q b  c 3"
    assert render_template("{t}!", {"t": ("only",)}) == "only!"
    assert render_template("no fields", {}) == "no fields"
    assert _policy().render("no", {"tools": ["rm", "dd"]}) == "refused: rm, dd"


def test_backoff_reads_the_attempt_and_keeps_the_last_entry_past_the_end() -> None:
    p = _policy()
    cfg = p.initial_config()
    delays = []
    for _ in range(4):
        step = p.step(cfg, Event("rate_limit", {"status": 429}))
        delays += [d.delay for d in step.directives if isinstance(d.action, Backoff)]
        cfg = step.after
    assert delays == [30.0, 60.0, 60.0, 60.0]
    assert p.value(cfg, "retries") == 4
    assert p.step(cfg, Event("rate_limit", {"status": 429})).target == "out"  # the cap holds


def test_backoff_without_an_attempt_counter_takes_the_first_entry() -> None:
    p = _policy()
    step = p.step(p.initial_config(), Event("transient", {"status": 503}))
    assert [(type(d.action), d.delay) for d in step.directives] == [(Backoff, 5.0)]


def test_an_escalation_applies_its_configuration_actions_on_entry() -> None:
    p = _policy()
    cfg = _at(p, "ask", retries=3)
    step = p.step(cfg, Event("timeout", {}))
    assert step.target == "esc"
    assert p.value(step.after, "retries") == 0
    assert "reasoning_disabled" in step.after.flags
    assert [d.action for d in step.directives] == [Compact(), Append("hurry")]
    assert step.resets == frozenset({p.counter_index("retries")})
    assert step.capped == frozenset()


def test_a_once_flag_is_offered_to_the_next_call_then_consumed() -> None:
    p = _policy()
    esc = p.step(p.initial_config(), Event("timeout", {})).after
    back = p.step(esc, Event("done", {}))
    assert back.target == "ask"
    assert back.offer is not None and back.offer.reasoning is False and back.offer.tools is True
    assert "reasoning_disabled" not in back.after.flags
    again = p.step(p.step(back.after, Event("opened", {})).after, Event("text", {}))
    assert again.offer is None  # a halt is not a call
    later = p.step(p.step(back.after, Event("opened", {})).after, Event("length", {}))
    assert later.offer is not None and later.offer.reasoning is True


def test_capped_lists_the_transition_increments_and_the_backstop_counted() -> None:
    p = _policy()
    step = p.step(p.initial_config(), Event("rate_limit", {"status": 429}))
    assert step.capped == frozenset({p.counter_index("retries"), p.counter_index("model_calls")})
    assert step.resets == frozenset()
    ran = p.step(_at(p, "tools", retries=2), Event("ok", {"tools": ["t"]}))
    assert ran.resets == frozenset({p.counter_index("retries")})
    assert p.value(ran.after, "retries") == 0


def test_a_continue_state_appends_its_prompt_on_entry() -> None:
    p = _policy()
    step = p.step(p.initial_config(), Event("context_overflow", {}))
    assert step.target == "cont"
    assert [d.action for d in step.directives] == [Append("cont")]
    assert p.entry_directives("cont") == tuple(step.directives)
    assert p.entry_directives("read") == ()


def _fate(p, tools: list[str], event: str = "tool_calls"):  # type: ignore[no-untyped-def]
    step = p.step(_at(p, "read"), Event(event, {"tools": tools, "has_tool_calls": True}))
    return step.calls, step.fate, step.refusal


def test_the_fate_of_each_kind_of_tool_call_event() -> None:
    p = _policy()
    assert _fate(p, ["fine"]) == ("complete", "run", None)
    assert _fate(p, ["forbidden"]) == ("complete", "refuse", "no")
    assert _fate(p, ["dropme"]) == ("complete", "drop", None)
    assert _fate(p, ["ignored"]) == ("complete", "ignore", None)
    assert _fate(p, [], "malformed_args") == ("invalid", "drop", None)
    assert _fate(p, [], "length") == ("partial", "drop", None)
    assert _fate(p, [], "text") == ("none", None, None)


def test_a_refusal_is_a_directive_of_its_step() -> None:
    p = _policy()
    step = p.step(_at(p, "read"), Event("tool_calls", {"tools": ["forbidden"]}))
    assert [d.action for d in step.directives] == [RefuseTools("no")]


def test_an_unmatched_event_drops_its_calls_and_keeps_the_configuration() -> None:
    p = _policy()
    cfg = _at(p, "read", retries=1)
    step = p.step(cfg, Event("stalled", {"mid_tool_call": True}))
    assert step.transition is None
    assert step.before is cfg and step.event == Event("stalled", {"mid_tool_call": True}), "where and on what it failed"
    assert step.after == Config(p.policy_error_state(), cfg.counters, cfg.flags)
    assert (step.calls, step.fate) == ("partial", "drop")
    assert step.directives == () and step.appended == ()
    assert p.step(cfg, Event("stalled", {})).fate is None
    assert p.states[POLICY_ERROR_STATE].outcome == "policy_error" == p.states[step.target].outcome


def test_an_unmatched_event_goes_to_the_policys_own_policy_error_halt() -> None:
    p = load_policy_text(POLICY.replace(
        '  out: {kind: halt, outcome: backstop, message: "out"}\n',
        '  out: {kind: halt, outcome: backstop, message: "out"}\n'
        '  oops: {kind: halt, outcome: policy_error, message: "no transition for {event}"}\n',
    ))
    assert p.policy_error_state() == "oops"
    assert p.step(p.initial_config(), Event("auth", {"status": 401})).target == "oops"


def test_render_template_keeps_escaped_braces_before_a_field() -> None:
    assert render_template("{{a}} {x} {{b}}", {"x": 1}) == "{a} 1 {b}"


def test_redirect_targets_are_the_backstop_states_of_a_call_or_tool_exec_entry() -> None:
    p = _policy()
    assert p.redirect_targets("ask") == ("out",)
    assert p.redirect_targets("tools") == ("out",)
    assert p.redirect_targets("read") == ()
    assert p.redirect_targets("done") == ()
