"""The turn's ``transitions`` machine held to what it declares, for the mutants of
``loopspec/engine/machine.py`` the turn-level tests let live: the moves of each policy (the move
into the policy-error halt among them), the two machines built from them, the callback registry's
truthiness and its errors, and awaitable callbacks."""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any, Generator

import pytest
from transitions import EventData, MachineError

from loopspec import Event, InProcessProvider, Policy, Turn, TurnCallbacks, VirtualClock, load_policy, load_policy_text
from loopspec.engine.machine import (
    MachineTransition,
    TurnModel,
    build_machine,
    idle_models,
    machine_for,
    machine_transitions,
    trigger_name,
)
from loopspec.replay.synth import reply

from _paths import MACHINES
from _policy_text import handles

# One state leaves `empty` unhandled (its step goes to the policy-error halt), and the tool
# backstop redirects its transition: the three kinds of move a machine declares.
SMALL = f"""
loopspec: 1
name: small
initial: call_model
backstops:
  model_calls: {{max: 3, exhausted: halt_backstop}}
  tool_batches: {{max: 1, exhausted: tools_spent}}
states:
  call_model:
    kind: call
    on: {handles("call", "halt_error", opened="read_stream")}
  read_stream:
    kind: stream
    on: {{text: halt_completed, tool_calls: {{to: run_tools, bounded_by: tool_batches}}, cancelled: halt_error}}
  run_tools:
    kind: tool_exec
    on: {{ok: call_model, cancelled: halt_error}}
  tools_spent: {{kind: escalate, apply: [disable_tools], on: {{done: call_model, failed: halt_error}}}}
  halt_completed: {{kind: halt, outcome: completed, message: "{{response}}"}}
  halt_backstop: {{kind: halt, outcome: backstop, message: Stopped.}}
  halt_error: {{kind: halt, outcome: provider_error, message: Failed.}}
"""
USER = [{"role": "user", "content": "hi"}]


def small() -> Policy:
    """A fresh policy object each time: no machine is cached for it yet."""
    return load_policy_text(SMALL, "small.yaml")


POLICIES = {"small": small, **{p.stem: (lambda p=p: load_policy(str(p))) for p in sorted(MACHINES.glob("*.yaml"))}}


# --------------------------------------------------------------------------- the moves


@pytest.mark.parametrize("name", POLICIES)
def test_the_moves_are_one_unhandled_move_per_live_state_and_each_transition_with_its_redirects(name: str) -> None:
    """No move leaves a halt. Each other state has exactly one ``:unhandled`` move, into the
    policy-error halt, with no transition and no redirect. Every other move comes from its
    transition's source; it is a redirect exactly when its trigger names a second target, and then
    goes where the backstops may send that transition's target."""
    policy = POLICIES[name]()
    moves = list(machine_transitions(policy))
    live = [s for s, state in policy.states.items() if state.kind != "halt"]
    assert {m.source for m in moves} == set(live)
    unhandled = [m for m in moves if m.transition is None]
    assert sorted(m.source for m in unhandled) == sorted(live)
    for m in unhandled:
        assert m == MachineTransition(f"{m.source}:unhandled", m.source, policy.policy_error_state(), None, False)
        assert m.redirect is False
    redirects = 0
    for m in moves:
        if m.transition is None:
            continue
        t = m.transition
        assert m.source == t.source
        assert m.trigger.startswith(f"{t.source}:{t.event}:{t.order}")
        assert m.redirect is (">" in m.trigger)
        if m.redirect:
            redirects += 1
            assert m.trigger.endswith(f">{m.dest}") and m.dest in policy.redirect_targets(t.target)
        else:
            assert m.dest == t.target
    if name == "small":  # into call_model past its backstop, and into run_tools past the tool batches
        assert sorted(m.trigger for m in moves if m.redirect) == [
            "read_stream:tool_calls:0>tools_spent", "run_tools:ok:0>halt_backstop", "tools_spent:done:0>halt_backstop"]


def _unhandled_step(policy: Policy) -> Any:
    at_stream = policy.step(policy.initial_config(), Event("opened", {})).after
    step = policy.step(at_stream, Event("empty", {"finish_reason": "stop"}))
    assert step.transition is None and step.after.state == policy.policy_error_state()
    return step


@pytest.mark.parametrize("with_callbacks", [False, True], ids=["plain", "dispatching"])
def test_an_unhandled_event_moves_either_machine_into_the_policy_error_halt(with_callbacks: bool) -> None:
    policy = small()
    step = _unhandled_step(policy)
    entered: list[str] = []
    callbacks = TurnCallbacks().on_enter(step.after.state, lambda e: entered.append(e.state.name)) if with_callbacks else None
    model = TurnModel.acquire(policy, callbacks)
    try:
        model.state = step.before.state
        model.perform(step)
        assert model.state == step.after.state
        assert entered == ([step.after.state] if with_callbacks else [])
        assert model.callback_errors == []
    finally:
        model.release()


def test_a_turn_whose_reply_the_state_does_not_handle_ends_in_the_policy_error_halt() -> None:
    """The same move made by a turn: an empty reply in ``read_stream`` of ``small``."""
    policy = small()
    provider = InProcessProvider([reply("")])
    result = asyncio.run(Turn(policy, provider, model="m", clock=VirtualClock()).run(USER))
    assert result.halt_state == policy.policy_error_state()
    assert [s.target for s in result.trace] == ["read_stream", policy.policy_error_state()]


# --------------------------------------------------------------------------- the two machines


@pytest.mark.parametrize("dispatch", [False, True], ids=["plain", "dispatching"])
@pytest.mark.parametrize("name", POLICIES)
def test_each_machine_declares_the_policy_states_and_moves_and_nothing_else(name: str, dispatch: bool) -> None:
    """The states in the policy's order, its initial state, exactly its moves (no ``to_<state>``
    moves of transitions' own), each from its source to its dest, and no model of its own."""
    policy = POLICIES[name]()
    machine = machine_for(policy, dispatch=dispatch)
    assert list(machine.states) == list(policy.states)
    assert machine.initial == policy.initial
    assert machine.models == []
    moves = list(machine_transitions(policy))
    assert set(machine.events) == {m.trigger for m in moves}
    for m in moves:
        (declared,) = machine.events[m.trigger].transitions[m.source]
        assert declared.dest == m.dest
    assert machine.send_event is dispatch


def test_the_dispatching_machine_names_the_model_dispatchers_and_the_plain_one_none() -> None:
    policy = small()
    plain, dispatching = build_machine(policy), build_machine(policy, dispatch=True)
    assert plain.before_state_change == [] and plain.after_state_change == []
    assert all(s.on_enter == [] and s.on_exit == [] for s in plain.states.values())
    assert dispatching.before_state_change == ["_dispatch_before"]
    assert dispatching.after_state_change == ["_dispatch_after"]
    assert all(s.on_enter == ["_dispatch_enter"] and s.on_exit == ["_dispatch_exit"] for s in dispatching.states.values())


def test_machine_for_keeps_one_machine_of_each_kind_per_policy() -> None:
    policy = small()
    plain = machine_for(policy)
    assert plain is machine_for(policy, dispatch=False)
    assert plain.send_event is False
    dispatching = machine_for(policy, dispatch=True)
    assert dispatching is not plain and dispatching.send_event is True
    assert dispatching is machine_for(policy, dispatch=True)


@pytest.mark.parametrize("dispatch", [False, True], ids=["plain", "dispatching"])
def test_either_machine_refuses_a_declared_move_from_the_wrong_state(dispatch: bool) -> None:
    policy = small()
    opened = policy.step(policy.initial_config(), Event("opened", {}))
    model = TurnModel.acquire(policy, TurnCallbacks().after_state_change(lambda e: None) if dispatch else None)
    try:
        model.perform(opened)
        with pytest.raises(MachineError, match="from state read_stream"):
            model.trigger(trigger_name(opened))
        with pytest.raises(MachineError, match="from state read_stream"):
            model.perform(opened)
    finally:
        model.release()


def test_a_step_of_another_policy_is_refused_by_name() -> None:
    """A trigger the machine does not declare: refused with its name, on the plain path too."""
    policy = small()
    renamed = load_policy_text(SMALL.replace("call_model", "ask_model"), "renamed.yaml")
    foreign = renamed.step(renamed.initial_config(), Event("opened", {}))
    model = TurnModel.acquire(policy)
    try:
        with pytest.raises(AttributeError, match="Do not know event named 'ask_model:opened:0'"):
            model.perform(foreign)
        assert model.state == policy.initial
    finally:
        model.release()


# --------------------------------------------------------------------------- models


def test_a_fresh_model_starts_in_the_initial_state_and_counts_no_idle_models_before() -> None:
    policy = small()
    assert idle_models(policy) == 0  # never used: no machines at all
    model = TurnModel.acquire(policy)
    assert model.state == policy.initial and model.callback_errors == []
    model.release()
    assert idle_models(policy) == 1
    assert idle_models(small()) == 0


def test_a_model_with_an_empty_callback_registry_moves_by_the_plain_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty registry is no callbacks: the plain machine's table, never transitions' trigger."""
    policy = small()

    def no_trigger(self: TurnModel, name: str, **kwargs: Any) -> bool:
        raise AssertionError(f"transitions' trigger used for {name}")

    monkeypatch.setattr(TurnModel, "trigger", no_trigger)
    model = TurnModel.acquire(policy, TurnCallbacks())
    try:
        model.perform(policy.step(policy.initial_config(), Event("opened", {})))
        assert model.state == "read_stream"
    finally:
        model.release()


# --------------------------------------------------------------------------- callbacks


@pytest.mark.parametrize("hook", ["on_exit", "before_state_change", "after_state_change", "on_enter"])
def test_a_registry_holding_only_one_kind_of_callback_runs_it(hook: str) -> None:
    seen: list[str] = []
    callbacks = TurnCallbacks()
    if hook in ("on_exit", "on_enter"):
        getattr(callbacks, hook)("call_model" if hook == "on_exit" else "read_stream", lambda e: seen.append(hook))
    else:
        getattr(callbacks, hook)(lambda e: seen.append(hook))
    assert callbacks
    policy = small()
    model = TurnModel.acquire(policy, callbacks)
    try:
        model.perform(policy.step(policy.initial_config(), Event("opened", {})))
    finally:
        model.release()
    assert seen == [hook]
    assert not TurnCallbacks()


@pytest.mark.parametrize("hook", ["on_enter", "on_exit"])
def test_a_callback_on_a_missing_state_names_its_hook_and_the_states(hook: str) -> None:
    policy = small()
    close = getattr(TurnCallbacks(), hook)("read_streem", lambda e: None)
    with pytest.raises(ValueError) as err:
        TurnModel.acquire(policy, close)
    assert str(err.value) == f"{hook}: policy small has no state 'read_streem'; did you mean 'read_stream'?"
    far = getattr(TurnCallbacks(), hook)("zzzz", lambda e: None)
    with pytest.raises(ValueError) as err:
        TurnModel.acquire(policy, far)
    assert str(err.value) == (f"{hook}: policy small has no state 'zzzz'; expected one of: __policy_error__, call_model, "
                              "halt_backstop, halt_completed, halt_error, read_stream, run_tools, tools_spent")


@pytest.mark.parametrize("hook", ["before_state_change", "after_state_change"])
def test_a_raising_state_change_callback_is_recorded_under_its_hook(hook: str) -> None:
    def boom(event: EventData) -> None:
        raise ValueError("no")

    policy = small()
    model = TurnModel.acquire(policy, getattr(TurnCallbacks(), hook)(boom))
    try:
        model.perform(policy.step(policy.initial_config(), Event("opened", {})))
        assert model.state == "read_stream"
        assert model.callback_errors == [f"{hook}: ValueError: no"]
    finally:
        model.release()


class _Awaitable:
    """An awaitable with no ``close`` (as a Future has none)."""

    def __await__(self) -> Generator[Any, None, None]:
        yield None


def test_an_async_callback_is_refused_and_its_coroutine_closed() -> None:
    """The coroutine a callback returns is closed, not left to warn that it was never awaited."""
    made: list[Any] = []

    async def later() -> None:
        pass

    def starts(event: EventData) -> Any:
        made.append(later())
        return made[-1]

    policy = small()
    model = TurnModel.acquire(policy, TurnCallbacks().after_state_change(starts).before_state_change(lambda e: _Awaitable()))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.perform(policy.step(policy.initial_config(), Event("opened", {})))
            gc.collect()
        assert made[0].cr_frame is None  # closed
        refused = "TypeError: callbacks are synchronous; this one returned an awaitable"
        assert model.callback_errors == [f"before_state_change: {refused}", f"after_state_change: {refused}"]
    finally:
        model.release()
