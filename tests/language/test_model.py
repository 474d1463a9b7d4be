"""The compiled model's semantics: first match wins, caps hold by construction, backstops redirect."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from loopspec import Event, load_policy, load_policy_text
from loopspec.language.alphabet import KINDS
from loopspec.language.model import Append, Backoff

from _paths import DEFAULT_POLICY

DEFAULT = load_policy(str(DEFAULT_POLICY))

SMALL = """\
loopspec: 1
initial: ask
counters:
  retries: {max: 2}
backoff:
  rl: [30, 60]
templates:
  hurry: "hurry"
  last: "last call"
flags:
  noted: {}
backstops:
  model_calls: {max: 4, warn_at: 3, warning: hurry, wrap_up: wrap, exhausted: out}
  tool_batches: {max: 2, exhausted: no_tools}
states:
  ask:
    kind: call
    on:
      opened: read
      rate_limit:
        - when: {attr: status, eq: 503}
          to: out
        - do: [{backoff: rl, attempt: retries}, {increment: retries}, {set: noted}]
          to: ask
        - out
  read:
    kind: stream
    on:
      text: done
      tool_calls: {to: tools, bounded_by: tool_batches}
  tools:
    kind: tool_exec
    on:
      ok: ask
  no_tools:
    kind: escalate
    apply: [disable_tools]
    on: {done: ask}
  wrap:
    kind: escalate
    apply: [disable_tools, {append: last}]
    on: {done: ask}
  done: {kind: halt, outcome: completed, message: "{response}"}
  out: {kind: halt, outcome: backstop, message: "out of budget"}
"""


def test_first_enabled_transition_wins_and_caps_fall_through() -> None:
    p = load_policy_text(SMALL)
    cfg = p.initial_config()
    rl = Event("rate_limit", {"status": 429})
    s1 = p.step(cfg, rl)
    assert s1.transition is not None and s1.transition.order == 1
    assert p.value(s1.after, "retries") == 1 and "noted" in s1.after.flags
    (backoff,) = [d for d in s1.directives if isinstance(d.action, Backoff)]
    assert backoff.delay == 30.0  # attempt 0 of [30, 60]
    s2 = p.step(s1.after, rl)
    assert [d.delay for d in s2.directives if isinstance(d.action, Backoff)] == [60.0]
    s3 = p.step(s2.after, rl)
    assert p.value(s2.after, "retries") == 2
    assert s3.transition is not None and s3.transition.order == 2 and s3.target == "out"


def test_attribute_guard_selects_by_event_attribute() -> None:
    p = load_policy_text(SMALL)
    step = p.step(p.initial_config(), Event("rate_limit", {"status": 503}))
    assert step.target == "out" and step.transition is not None and step.transition.order == 0


def test_model_call_backstop_warns_then_wraps_up_then_exhausts() -> None:
    p = load_policy_text(SMALL)
    cfg = p.initial_config()
    assert p.value(cfg, "model_calls") == 1
    seen = []
    fates = []
    events = ["opened", "tool_calls", "ok", "opened", "tool_calls", "ok", "opened", "tool_calls", "done"]
    for ev in events:
        step = p.step(cfg, Event(ev, {}))
        seen.append((step.target, [d.action for d in step.directives if isinstance(d.action, Append)]))
        fates.append(step.fate)
        cfg = step.after
    targets = [t for t, _ in seen]
    # call 3 reaches warn_at (warning appended); the third batch finds tool_batches spent and goes
    # to `no_tools`; its call would be the last one, so it is redirected to wrap_up.
    assert targets == ["read", "tools", "ask", "read", "tools", "ask", "read", "no_tools", "wrap"]
    assert seen[5][1] == [Append("hurry")]
    assert seen[8][1] == [Append("last")]  # entering wrap_up carries out its apply list
    assert all(not appended for i, (_, appended) in enumerate(seen) if i not in (5, 8))
    # the first two batches run; the third is stopped by the spent tool-batch backstop and dropped
    assert fates == [None, "run", None, None, "run", None, None, "drop", None]
    assert "tools_disabled" in cfg.flags
    last = p.step(cfg, Event("done", {}))  # wrap_up may spend the last call
    assert last.target == "ask" and p.value(last.after, "model_calls") == 4
    again = p.step(p.step(last.after, Event("opened", {})).after, Event("tool_calls", {}))
    assert again.target == "no_tools"
    assert p.step(again.after, Event("done", {})).target == "out"  # the budget is spent


def test_unhandled_event_goes_to_policy_error_halt() -> None:
    p = load_policy_text(SMALL)
    step = p.step(p.initial_config(), Event("auth", {"status": 401}))
    assert step.transition is None
    assert p.states[step.target].outcome == "policy_error"


def _events_for(kind: str) -> st.SearchStrategy[Event]:
    specs = KINDS[kind].events
    values = {
        "bool": st.booleans(),
        "int": st.integers(0, 600),
        "float": st.floats(0, 100),
        "str": st.sampled_from(["", "overflow", "disconnect", "provider_error", "halt", "warn", "correct", "x"]),
        "list": st.lists(st.sampled_from(["read_file", "write_file"]), max_size=2),
    }
    return st.sampled_from(specs).flatmap(
        lambda e: st.fixed_dictionaries({a.name: values[a.type] for a in e.attrs}).map(lambda d, e=e: Event(e.name, d))
    )


@given(st.data())
def test_counters_never_exceed_caps_on_any_event_sequence(data: st.DataObject) -> None:
    """Property: under default.yaml, any sequence of alphabet events keeps every counter within its
    cap and ends in a halt within the model-call backstop (the turn always ends)."""
    p = DEFAULT
    cfg = p.initial_config()
    caps = [c.max for c in p.counters]
    for _ in range(2000):
        state = p.states[cfg.state]
        if state.kind == "halt":
            break
        ev = data.draw(_events_for(state.kind))
        step = p.step(cfg, ev)
        assert step.transition is not None, f"{cfg.state} has no transition for {ev}"
        cfg = step.after
        assert all(v <= cap for v, cap in zip(cfg.counters, caps)), (cfg, caps)
    assert p.states[cfg.state].kind == "halt"


def test_default_escalation_keeps_tools_disabled() -> None:
    p = DEFAULT
    cfg = p.initial_config()
    for ev in ["opened", "empty", "opened", "empty", "opened", "empty"]:
        cfg = p.step(cfg, Event(ev, {"finish_reason": "stop"})).after
    assert cfg.state == "escalate_no_tools" and "tools_disabled" in cfg.flags
    cfg = p.step(cfg, Event("done", {})).after
    cfg = p.step(cfg, Event("opened", {})).after
    final = p.step(cfg, Event("thinking_only", {"finish_reason": "stop"}))
    assert final.target == "halt_empty"
