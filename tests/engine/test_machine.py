"""The ``transitions`` machine behind every turn: it agrees with ``Policy.step`` on every step,
runs per-turn callbacks, draws replayed paths, and never keeps a policy alive."""

from __future__ import annotations

import asyncio
import gc
import io
import subprocess
import sys
import warnings
import weakref
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transitions import EventData, MachineError

from loopspec import (
    Event,
    InProcessProvider,
    Policy,
    ToolRegistry,
    Turn,
    TurnCallbacks,
    VirtualClock,
    load_policy,
    load_policy_text,
)
from loopspec.cli import main as cli_main
from loopspec.engine import machine as machine_module
from loopspec.engine.machine import POOL_SIZE, MachineTransition, TurnModel, idle_models, machine_for, trigger_name
from loopspec.providers.base import ModelRequest, ResponseStream
from loopspec.replay.cassette import load_cassette
from loopspec.replay.harness import replay
from loopspec.replay.synth import reply
from loopspec.strategies import events

from _paths import DEFAULT_POLICY, FIXTURES, MACHINES

POLICY = load_policy(str(DEFAULT_POLICY))
USER = [{"role": "user", "content": "What is the capital of the UK?"}]
CASSETTES = sorted((FIXTURES / "incidents").glob("*.cassette.yaml"))
MACHINE_FILES = sorted(MACHINES.glob("*.yaml"))
POLICIES = {p.name: load_policy(str(p)) for p in MACHINE_FILES}
# Small backstops (redirects within a few steps) and two events left unhandled (policy_error moves),
# so random walks reach the moves the corpus policies make rarely or never.
TIGHT = load_policy_text(
    """
loopspec: 1
name: tight
initial: call_model
backstops:
  model_calls: {max: 4, exhausted: halt_backstop, wrap_up: wrap_up}
  tool_batches: {max: 2, exhausted: tools_spent}
counters:
  retries: {max: 2}
backoff:
  transient: [1, 5]
states:
  call_model:
    kind: call
    on:
      opened: read_stream
      transient: [{do: [{backoff: transient, attempt: retries}, {increment: retries}], to: call_model}, halt_error]
      rate_limit: call_model
      timeout: call_model
      context_overflow: halt_error
      auth: halt_error
      bad_request: halt_error
      effort_unsupported: halt_error
      thinking_signature_invalid: halt_error
      cancelled: halt_error
  read_stream:
    kind: stream
    on:
      text: halt_completed
      tool_calls: {to: run_tools, bounded_by: tool_batches}
      length: call_model
      thinking_only: call_model
      malformed_args: {do: [drop_tool_calls], to: call_model}
      unknown_tool: {do: [drop_tool_calls], to: call_model}
      broken: call_model
      cancelled: halt_error
  run_tools:
    kind: tool_exec
    on:
      ok: call_model
      failed: call_model
      repeated_exact_failure: call_model
      same_tool_failure: call_model
      no_progress: call_model
      doom_loop: call_model
      approval_required: halt_error
      cancelled: halt_error
  tools_spent: {kind: escalate, apply: [disable_tools], on: {done: call_model, failed: halt_error}}
  wrap_up: {kind: escalate, apply: [disable_tools], on: {done: call_model, failed: halt_error}}
  halt_completed: {kind: halt, outcome: completed, message: "{response}"}
  halt_backstop: {kind: halt, outcome: backstop, message: Stopped.}
  halt_error: {kind: halt, outcome: provider_error, message: Failed.}
""",
    "tight.yaml",
)
CAPITAL = {"type": "object", "properties": {"country": {"type": "string"}}}


def capital_tools() -> ToolRegistry:
    reg = ToolRegistry()
    reg.register(lambda country: "London", name="get_capital", parameters=CAPITAL)
    return reg


class Yielding:
    """A provider that lets other turns run before each response (so turns really interleave)."""

    def __init__(self, inner: InProcessProvider, gate: asyncio.Event | None = None) -> None:
        self.inner, self.gate = inner, gate

    async def open(self, request: ModelRequest) -> ResponseStream:
        await asyncio.sleep(0)
        if self.gate is not None:
            await self.gate.wait()
        return await self.inner.open(request)


# --------------------------------------------------------------------------- differential


class Moves:
    """After each move: the trigger, where the machine is, and the step the policy decided."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Any]] = []

    def callbacks(self) -> TurnCallbacks:
        return TurnCallbacks().after_state_change(self.record)

    def record(self, event: EventData) -> None:
        self.seen.append((event.event.name, event.model.state, event.kwargs["step"]))


@pytest.mark.parametrize("machine_file", MACHINE_FILES, ids=lambda p: p.stem)
def test_machine_agrees_with_policy_step_on_the_corpus(machine_file: Path) -> None:
    """Differential: every cassette of the corpus replayed under every policy; after each step the
    transitions machine is where ``Policy.step`` says, by the trigger named for that step.
    (``TurnModel.perform`` also raises on a disagreement, which fails the replay.)"""
    policy = POLICIES[machine_file.name]
    for path in CASSETTES:
        moves = Moves()
        report = asyncio.run(replay(load_cassette(str(path)), policy, callbacks=moves.callbacks()))
        trace = report.result.trace
        assert len(moves.seen) == len(trace), path.name
        for (trigger, state, step), recorded in zip(moves.seen, trace):
            assert trigger == trigger_name(step)
            assert state == step.after.state == recorded.target, f"{path.name} step {recorded.index}"
        assert report.result.callback_errors == []


@given(st.sampled_from(["tight", *POLICIES]), st.data())
def test_machine_agrees_with_policy_step_on_random_walks(name: str, data: st.DataObject) -> None:
    """Differential over any events a state's kind can observe: the machine accepts each step's
    trigger and lands where the step says (``perform`` raises otherwise)."""
    policy = TIGHT if name == "tight" else POLICIES[name]
    model = TurnModel.acquire(policy)
    try:
        cfg = policy.initial_config()
        for _ in range(40):
            state = policy.states[cfg.state]
            if state.kind == "halt":
                break
            step = policy.step(cfg, data.draw(events(state.kind)))
            model.perform(step)
            assert model.state == step.after.state
            cfg = step.after
    finally:
        model.release()


def test_random_walks_reach_redirects_and_unhandled_events() -> None:
    """The moves the walks above exist for are reachable in ``tight``."""
    to = lambda cfg, name, **attrs: TIGHT.step(cfg, Event(name, attrs))  # noqa: E731
    cfg = TIGHT.initial_config()
    assert to(cfg, "opened").transition is not None
    unhandled = to(to(cfg, "opened").after, "empty")
    assert unhandled.transition is None and unhandled.target == "__policy_error__"
    for _ in range(2):
        cfg = to(to(to(cfg, "opened").after, "tool_calls").after, "ok").after
    redirect = to(to(cfg, "opened").after, "tool_calls")
    assert redirect.redirected_from == "run_tools" and redirect.target in ("tools_spent", "wrap_up")


def test_a_wrong_machine_fails_the_differential(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine that sends a backstop redirect somewhere else is caught: ``perform`` raises."""
    real = machine_module.machine_transitions

    def planted(policy: Policy):  # type: ignore[no-untyped-def]
        for m in real(policy):
            yield m._replace(dest=m.source) if m.redirect else m

    monkeypatch.setattr(machine_module, "machine_transitions", planted)
    policy = load_policy(str(DEFAULT_POLICY))  # a fresh policy: no machine cached for it yet
    cassette = load_cassette(str(FIXTURES / "incidents" / "netclaw-1358-tools-reenabled.cassette.yaml"))
    with pytest.raises(RuntimeError, match="machine moved to read_stream, policy says tools_spent"):
        asyncio.run(replay(cassette, policy))


def test_the_machine_refuses_a_move_the_policy_does_not_declare() -> None:
    model = TurnModel.acquire(POLICY)
    try:
        with pytest.raises(AttributeError, match="call_model:nonsense:0"):
            model.trigger("call_model:nonsense:0")  # type: ignore[attr-defined]
    finally:
        model.release()


def test_a_turn_without_callbacks_refuses_a_move_from_the_wrong_state() -> None:
    """The plain path moves by the machine's declared moves, not by trusting the step: a step
    computed from another state is refused, exactly as transitions' own trigger refuses it."""
    opened = POLICY.step(POLICY.initial_config(), Event("opened", {}))
    model = TurnModel.acquire(POLICY)
    try:
        model.perform(opened)
        with pytest.raises(MachineError, match=f"from state {opened.after.state}"):
            model.perform(opened)  # the same move again, now from where it landed
        with pytest.raises(MachineError, match=f"from state {opened.after.state}"):
            model.trigger(trigger_name(opened))  # transitions' own answer is the same refusal
        assert model.state == opened.after.state
    finally:
        model.release()


# --------------------------------------------------------------------------- callbacks


def test_callbacks_see_every_move_in_transitions_order() -> None:
    """before_state_change, on_exit (state left), on_enter (state entered), after_state_change;
    on_enter order is the trace's targets. The initial state is not entered by a move."""
    cassette = load_cassette(str(FIXTURES / "incidents" / "hermes-31998-stall-mid-tool-call.cassette.yaml"))
    log: list[tuple[str, str]] = []
    callbacks = TurnCallbacks()
    callbacks.before_state_change(lambda e: log.append(("before", e.state.name)))
    callbacks.after_state_change(lambda e: log.append(("after", e.state.name)))
    for state in POLICY.states:
        callbacks.on_enter(state, lambda e: log.append(("enter", e.state.name)))
        callbacks.on_exit(state, lambda e: log.append(("exit", e.state.name)))
    trace = asyncio.run(replay(cassette, POLICY, callbacks=callbacks)).result.trace
    assert [s for kind, s in log if kind == "enter"] == [t.target for t in trace]
    expected = []
    for t in trace:
        expected += [("before", t.state), ("exit", t.state), ("enter", t.target), ("after", t.target)]
    assert log == expected
    assert [t.target for t in trace][:4] == ["read_stream", "make_stub", "continue_after_stall_tool", "call_model"]


def test_callbacks_are_per_turn_between_concurrent_turns() -> None:
    """Two turns of one policy, interleaved in one event loop, each with its own callback: each
    callback hears only its own turn's moves, through its own model."""
    log: list[tuple[str, str, int]] = []

    def listener(name: str):  # type: ignore[no-untyped-def]
        return lambda e: log.append((name, e.state.name, id(e.model)))

    answer = Turn(POLICY, Yielding(InProcessProvider([reply("London.")])), model="replay", clock=VirtualClock())
    answer.on_enter("read_stream", listener("answer"))
    tool = Turn(
        POLICY,
        Yielding(InProcessProvider([reply(tool_calls=[("get_capital", {"country": "UK"})]), reply("London.")])),
        model="replay",
        clock=VirtualClock(),
        tools=capital_tools(),
    )
    tool.after_state_change(listener("tool"))
    overlap: list[bool] = []
    answer.on_enter("read_stream", lambda e: overlap.append(hasattr(tool, "trace") and tool.result is None))
    plain = Turn(POLICY, Yielding(InProcessProvider([reply("Paris.")])), model="replay", clock=VirtualClock())

    async def both():  # type: ignore[no-untyped-def]
        return await asyncio.gather(answer.run(USER), tool.run(USER), plain.run(USER))

    a, t, p = asyncio.run(both())
    assert a.outcome == t.outcome == p.outcome == "completed"
    assert overlap == [True], "the tool turn was running when the answer turn moved"
    assert [s for n, s, _m in log if n == "answer"] == ["read_stream"]
    assert [s for n, s, _m in log if n == "tool"] == [s.target for s in t.trace]
    assert len({m for n, _s, m in log if n == "answer"} & {m for n, _s, m in log if n == "tool"}) == 0


def test_a_released_model_forgets_its_callbacks() -> None:
    """The pool hands a released model to the next turn; the previous turn's callbacks are gone."""
    first: list[str] = []
    second: list[str] = []
    old = TurnCallbacks().after_state_change(lambda e: first.append(e.state.name))
    model = TurnModel.acquire(POLICY, old)
    model.release()
    again = TurnModel.acquire(POLICY, TurnCallbacks().after_state_change(lambda e: second.append(e.state.name)))
    try:
        assert again is model, "the pooled model is reused"
        again.perform(POLICY.step(POLICY.initial_config(), Event("opened", {})))
    finally:
        again.release()
    assert first == [] and second == ["read_stream"]

    turn = Turn(POLICY, InProcessProvider([reply("London.")]), model="replay", clock=VirtualClock())
    turn.after_state_change(lambda e: second.append("turn"))
    asyncio.run(turn.run(USER))
    assert first == [] and second.count("turn") == 2


def test_a_callback_that_raises_is_recorded_and_the_turn_goes_on() -> None:
    async def not_sync(event: EventData) -> None:  # pragma: no cover - never awaited
        pass

    def broken(event: EventData) -> None:
        raise ValueError("boom")

    seen: list[str] = []
    turn = Turn(POLICY, InProcessProvider([reply("London.")]), model="replay", clock=VirtualClock())
    turn.on_exit("call_model", broken)
    turn.on_enter("read_stream", not_sync)
    turn.after_state_change(lambda e: seen.append(e.state.name))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a coroutine left unawaited would warn
        result = asyncio.run(turn.run(USER))
    assert result.outcome == "completed" and result.message == "London."
    assert [s.target for s in result.trace] == ["read_stream", "halt_completed"] == seen
    assert result.callback_errors == [
        "on_exit call_model: ValueError: boom",
        "on_enter read_stream: TypeError: callbacks are synchronous; this one returned an awaitable",
    ]


def test_a_callback_on_an_unknown_state_is_refused_before_the_turn_starts() -> None:
    turn = Turn(POLICY, InProcessProvider([reply("London.")]), model="replay", clock=VirtualClock())
    turn.on_enter("read_streem", lambda e: None)
    with pytest.raises(ValueError, match="no state 'read_streem'; did you mean 'read_stream'"):
        asyncio.run(turn.run(USER))


def test_callbacks_can_be_passed_to_the_constructor() -> None:
    entered: list[str] = []
    callbacks = TurnCallbacks().on_enter("halt_completed", lambda e: entered.append(e.kwargs["step"].event.name))
    turn = Turn(POLICY, InProcessProvider([reply("London.")]), model="replay", clock=VirtualClock(), callbacks=callbacks)
    assert turn.callbacks is callbacks
    asyncio.run(turn.run(USER))
    assert entered == ["text"]


# --------------------------------------------------------------------------- caches


def test_a_dropped_policy_is_collected_with_its_machines() -> None:
    policy = load_policy(str(DEFAULT_POLICY))
    for callbacks in (None, TurnCallbacks().after_state_change(lambda e: None)):
        turn = Turn(policy, InProcessProvider([reply("London.")]), model="replay", clock=VirtualClock(), callbacks=callbacks)
        assert asyncio.run(turn.run(USER)).outcome == "completed"
    key = id(policy)
    assert key in machine_module._MACHINES and idle_models(policy) == 2
    machine = weakref.ref(machine_for(policy))
    ref = weakref.ref(policy)
    del policy, turn
    gc.collect()
    assert ref() is None
    assert machine() is None
    assert key not in machine_module._MACHINES


def test_the_idle_pool_is_bounded_after_many_concurrent_turns() -> None:
    policy = load_policy(str(DEFAULT_POLICY))
    n = 50

    async def many() -> list[Any]:
        gate = asyncio.Event()
        turns = [
            Turn(policy, Yielding(InProcessProvider([reply("London.")]), gate), model="replay", clock=VirtualClock())
            for _ in range(n)
        ]
        runs = [asyncio.ensure_future(t.run(USER)) for t in turns]
        await asyncio.sleep(0.01)
        assert machine_for(policy).models == [], "no turn's model is bound to the machine (add_model costs ~90 KB)"
        gate.set()
        return list(await asyncio.gather(*runs))

    results = asyncio.run(many())
    assert all(r.outcome == "completed" for r in results)
    assert idle_models(policy) == POOL_SIZE


# --------------------------------------------------------------------------- graph --trace


def _graph(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        rc = cli_main(["graph", *args])
    return rc, out.getvalue()


def test_graph_trace_draws_the_replayed_path() -> None:
    cassette = FIXTURES / "incidents" / "hermes-31998-stall-mid-tool-call.cassette.yaml"
    rc, text = _graph(str(DEFAULT_POLICY), "--trace", str(cassette))
    assert rc == 0
    lines = [line.strip() for line in text.splitlines()]
    assert lines[:4] == ["---", "title: default replaying hermes-31998-stall-mid-tool-call", "---", "stateDiagram-v2"]
    assert "[*] --> st_call_model" in lines
    for edge in (
        "st_call_model --> st_read_stream: opened (steps 1, 5, 8)",
        "st_read_stream --> st_make_stub: stalled (step 2)",
        "st_make_stub --> st_continue_after_stall_tool: mid_tool_call +stalls (step 3)",
        "st_continue_after_stall_tool --> st_call_model: done (step 4)",
        "st_read_stream --> st_run_tools: tool_calls -empty_streak -bad_call_streak (step 6)",
        "st_read_stream --> st_halt_completed: text (step 9)",
    ):
        assert edge in lines
    assert any(line.startswith("st_run_tools --> st_call_model: ok (step 7) |") for line in lines)
    styled = {line.split()[1]: line.split()[2] for line in lines if line.startswith("Class ")}
    visited = {"call_model", "read_stream", "make_stub", "continue_after_stall_tool", "run_tools"}
    assert {s for s, style in styled.items() if style == "s_previous"} == {f"st_{s}" for s in visited}
    assert [s for s, style in styled.items() if style == "s_active"] == ["st_halt_completed"]
    assert "st___policy_error__" not in styled
    assert sum("(step" in line for line in lines) == 7  # one label per distinct move taken


def test_graph_trace_draws_a_backstop_redirect_when_taken() -> None:
    cassette = FIXTURES / "incidents" / "netclaw-1358-tools-reenabled.cassette.yaml"
    rc, text = _graph(str(DEFAULT_POLICY), "--trace", str(cassette))
    assert rc == 0
    redirects = [line.strip() for line in text.splitlines() if "redirected" in line]
    assert redirects == [
        "st_read_stream --> st_tools_spent: tool_calls -empty_streak -bad_call_streak, "
        "redirected by a backstop (to run_tools) (step 184)"
    ]


def test_graph_trace_usage_errors(tmp_path: Path) -> None:
    cassette = str(CASSETTES[0])
    assert _graph(str(DEFAULT_POLICY), "--trace", cassette, "--format", "dot")[0] == 2
    bad = tmp_path / "bad.cassette.yaml"
    bad.write_text("loopspec_cassette: 1\nname: x\n")
    assert _graph(str(DEFAULT_POLICY), "--trace", str(bad))[0] == 2


def test_graph_with_and_without_trace_never_imports_litellm() -> None:
    cassette = str(FIXTURES / "incidents" / "hermes-31998-stall-mid-tool-call.cassette.yaml")
    for args, extension in (([str(DEFAULT_POLICY)], False), ([str(DEFAULT_POLICY), "--trace", cassette], True)):
        code = (
            "import sys; from loopspec.cli import main; rc = main(['graph', *%r]);"
            "sys.exit(3 if 'litellm' in sys.modules else 4 if %r != ('transitions.extensions.diagrams' in sys.modules)"
            " else rc)" % (args, extension)
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.returncode == 0, (args, result.returncode, result.stderr)


def test_machine_transitions_name_every_move_once() -> None:
    moves = list(machine_module.machine_transitions(POLICY))
    assert len({m.trigger for m in moves}) == len(moves)
    assert all(isinstance(m, MachineTransition) for m in moves)


def test_the_readme_library_examples_run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import re

    from _paths import ROOT

    readme = (ROOT / "README.md").read_text()
    library = readme[readme.index("## Library"):readme.index("## Documentation")]
    monkeypatch.chdir(ROOT)
    exec(compile("\n".join(re.findall(r"```python\n(.*?)```", library, re.S)), "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "read_stream",
        "completed London. 1",
        "streaming after opened",
        "call_model -> read_stream",
        "read_stream -> halt_completed",
        "[]",
    ]
