"""The built-in properties, checked by Hypothesis on the live interpreter over in-process replay.

Generated cassettes stand in for an adversarial world: any reply shape, stall, disconnect, provider
error and tool outcome, in any order. Every test name states its property.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from loopspec import Consumers, load_policy
from loopspec.engine.history import history_problems
from loopspec.replay.harness import RecordedTools, property_problem
from loopspec.replay.inproc import InProcessProvider
from loopspec.engine.interpreter import Turn
from loopspec.engine.clock import VirtualClock
from loopspec.language.alphabet import OUTCOMES
from loopspec.replay.interactions import StreamResponse
from loopspec.replay.synth import reply_chunks
from loopspec.strategies import cassettes, events
from loopspec.verify.abstraction import build_analysis
from loopspec.verify.explore import successors

from _paths import DEFAULT_POLICY

POLICY = load_policy(str(DEFAULT_POLICY))
CAPS = {c.name: c.max for c in POLICY.counters}
ANALYSIS = build_analysis(POLICY)


def run(cassette: Any, deltas: list[str] | None = None, ends: list[int] | None = None) -> Any:
    tools = RecordedTools(cassette)
    consumers = Consumers(
        on_delta=(deltas.append if deltas is not None else None),
        on_end=(lambda: ends.append(1)) if ends is not None else None,
    )
    turn = Turn(POLICY, InProcessProvider(cassette.interactions), model="replay", tools=tools.registry,
                consumers=consumers, clock=VirtualClock())
    return asyncio.run(turn.run(cassette.messages))


@given(cassettes())
def test_every_turn_halts_within_its_caps_with_a_valid_history(cassette: Any) -> None:
    """Property: whatever the world says, the turn ends in a halt with a known outcome, no counter
    passes its cap, and the history is valid (every tool call answered exactly once)."""
    result = run(cassette)
    assert result.outcome in OUTCOMES and POLICY.states[result.halt_state].kind == "halt"
    for step in result.trace:
        assert all(v <= CAPS[k] for k, v in step.counters.items()), step
    assert result.usage.model_calls <= POLICY.backstops["model_calls"].max
    assert history_problems(result.messages) == []


@given(cassettes())
def test_every_halt_delivers_a_nonempty_message_to_every_consumer(cassette: Any) -> None:
    """Property: the streaming consumer receives the halt message (streamed by the model or fanned
    out) and exactly one end-of-stream, and the message is non-empty."""
    deltas: list[str] = []
    ends: list[int] = []
    result = run(cassette, deltas, ends)
    assert result.message.strip()
    assert ends == [1]
    assert "".join(deltas).endswith(result.message[-20:]) or result.message in "".join(deltas)


@given(cassettes())
def test_no_tool_runs_from_a_truncated_or_partial_call(cassette: Any) -> None:
    """Property: every tool batch follows a complete tool_calls event, and every call that ran had
    complete JSON arguments (length cut-offs and stalls never reach a tool)."""
    result = run(cassette)
    assert property_problem("no_partial_tool_exec", result, POLICY) == ""
    import json

    for m in result.messages:
        for tc in m.get("tool_calls") or []:
            assert isinstance(json.loads(tc["function"]["arguments"] or "{}"), dict)


@given(cassettes(), st.integers(0, 3))
def test_tools_once_disabled_stay_disabled(cassette: Any, lead: int) -> None:
    """Property: after tools are disabled in a turn, no later request carries tools.

    Each generated world starts with a few thinking-only replies (the escalation that disables
    tools needs three), so the property is exercised on most examples, not only on lucky ones."""
    thinking = StreamResponse(chunks=tuple(reply_chunks(reasoning="hmm")))
    cassette = dataclasses.replace(cassette, interactions=(thinking,) * lead + cassette.interactions)
    result = run(cassette)
    assert property_problem("tools_stay_disabled", result, POLICY) == ""
    # the i-th call step made the i-th request; the step before it says which flags were in force
    flags_at_call = [result.trace[s.index - 1].flags if s.index else [] for s in result.trace if s.kind == "call"]
    for flags, request in zip(flags_at_call, result.requests):
        if "tools_disabled" in flags:
            assert not request.tools, request


@given(cassettes())
def test_the_full_trajectory_is_never_truncated(cassette: Any) -> None:
    """Property: the trajectory starts with the initial messages and only grows; compaction
    changes what is sent, never what is kept."""
    result = run(cassette)
    n = len(cassette.messages)
    assert result.messages[:n] == list(cassette.messages)
    assert all(r.message_count <= len(result.messages) + 1 for r in result.requests)


@given(cassettes())
def test_interpreter_trace_is_a_path_the_explorer_reaches_with_the_same_counters(cassette: Any) -> None:
    """Differential property (one semantics): each step the interpreter took is a successor the
    checker's explorer generates from the same configuration, with the same target, counters and
    flags; the abstraction's event cases cover what the classifier really emitted."""
    result = run(cassette)
    node = (POLICY.initial_config(), False)
    for s in result.trace:
        options = [(st_, child) for st_, child, _ in successors(ANALYSIS, node) if st_.event.name == s.event]
        match = [
            child for st_, child in options
            if st_.after.state == s.target
            and dict(zip(POLICY.counter_names, st_.after.counters)) == s.counters
            and sorted(st_.after.flags) == s.flags
        ]
        assert match, f"step {s.index}: {s.state} --{s.event}{s.attrs}--> {s.target} not among the explorer's successors"
        node = match[0]


class PolicyWalk(RuleBasedStateMachine):
    """The compiled model driven by arbitrary events of each state's kind.

    Terminal halts get a no-op rule (a state where no rule applies would raise InvalidDefinition),
    and the step count exceeds the sum of the caps so backstops are reachable."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = POLICY.initial_config()
        self.tools_were_disabled = False

    def kind(self) -> str:
        return POLICY.states[self.cfg.state].kind

    @precondition(lambda self: self.kind() != "halt")
    @rule(data=st.data())
    def observe(self, data: st.DataObject) -> None:
        event = data.draw(events(self.kind()))
        step = POLICY.step(self.cfg, event)
        assert step.transition is not None, f"{self.cfg.state} does not handle {event}"
        self.cfg = step.after

    @precondition(lambda self: self.kind() == "halt")
    @rule()
    def halted(self) -> None:
        """Nothing happens after a halt."""

    @invariant()
    def counters_within_caps(self) -> None:
        assert all(v <= c.max for v, c in zip(self.cfg.counters, POLICY.counters))

    @invariant()
    def tools_stay_disabled(self) -> None:
        if "tools_disabled" in self.cfg.flags:
            self.tools_were_disabled = True
        assert "tools_disabled" in self.cfg.flags or not self.tools_were_disabled


PolicyWalk.TestCase.settings = settings(PolicyWalk.TestCase.settings, stateful_step_count=sum(CAPS.values()) + 20)
test_compiled_model_walk_keeps_caps_and_disabled_tools = PolicyWalk.TestCase
