"""The built-in properties, checked by Hypothesis on the live interpreter over in-process replay.

Generated cassettes stand in for an adversarial world: any reply shape, stall, disconnect, provider
error and tool outcome, in any order, in runs long enough to spend every budget. Each world is
played under the default policy and under two variants whose backstops run out sooner (see
``_policies.py``), so caps, backstops, ``wrap_up`` and escalations are reached, not only described:
``test_generated_worlds_reach_every_cap_backstop_and_escalation`` fails if the strategies stop
reaching them. Every test name states its property. ``pytest --hypothesis-show-statistics`` prints
how often each milestone was reached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from functools import lru_cache
from typing import Any

from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from loopspec import Consumers
from loopspec.engine.clock import VirtualClock
from loopspec.engine.history import history_problems
from loopspec.engine.interpreter import Turn
from loopspec.engine.results import TurnResult
from loopspec.language.alphabet import OUTCOMES, Event
from loopspec.language.model import Config, Policy, Reset
from loopspec.replay.cassette import Cassette
from loopspec.replay.harness import RecordedTools, property_problem
from loopspec.replay.inproc import InProcessProvider
from loopspec.replay.interactions import StreamResponse
from loopspec.replay.synth import reply_chunks
from loopspec.strategies import cassettes, events
from loopspec.verify.abstraction import build_analysis
from loopspec.verify.explore import successors

from _policies import property_policies

POLICIES = property_policies()
WORLDS = ("mixed", "streak", "loop", "alternate")


def world(policy_name: str, worlds: tuple[str, ...] = WORLDS) -> st.SearchStrategy[Cassette]:
    """Worlds long enough for any path of the policy: more responses than its model-call backstop
    allows calls (which bounds the checker's worst case), and runs as long as its largest cap."""
    p = POLICIES[policy_name]
    return cassettes(
        max_interactions=p.backstops["model_calls"].max + 5,
        max_run=max(c.max for c in p.counters if not c.backstop) + 2,
        worlds=worlds,
    )


def played(worlds: tuple[str, ...] = WORLDS) -> st.SearchStrategy[tuple[Policy, Cassette]]:
    """(policy, world): one of the property policies and a world sized for it."""
    return st.sampled_from(sorted(POLICIES)).flatmap(lambda n: st.tuples(st.just(POLICIES[n]), world(n, worlds)))


def run(policy: Policy, cassette: Cassette, deltas: list[str] | None = None, ends: list[int] | None = None) -> TurnResult:
    tools = RecordedTools(cassette)
    consumers = Consumers(
        on_delta=(deltas.append if deltas is not None else None),
        on_end=(lambda: ends.append(1)) if ends is not None else None,
    )
    turn = Turn(policy, InProcessProvider(cassette.interactions), model="replay", tools=tools.registry,
                consumers=consumers, clock=VirtualClock())
    result = asyncio.run(turn.run(cassette.messages))
    if currently_in_test_context():  # statistics for --hypothesis-show-statistics
        for m in sorted(milestones(policy, result)):
            event(m)
    return result


def milestones(policy: Policy, result: TurnResult) -> set[str]:
    """What a turn reached: its outcome, each counter at its cap, the backstops' wrap_up and
    exhausted states, every escalate state, and a tool batch of several calls."""
    out = {f"outcome {result.outcome}"}
    caps = {c.name: c.max for c in policy.counters}
    for s in result.trace:
        out.update(f"cap {name}" for name, v in s.counters.items() if v == caps[name])
        if policy.states[s.target].kind == "escalate":
            out.add(f"escalate {s.target}")
    answered = {m.get("tool_call_id") for m in result.messages if m.get("role") == "tool"}
    for m in result.messages:
        calls = m.get("tool_calls") or []
        if len(calls) > 1 and all(c["id"] in answered for c in calls):
            out.add("multi-call batch")
    return out


@given(played())
def test_every_turn_halts_within_its_caps_with_a_valid_history(played: tuple[Policy, Cassette]) -> None:
    """Property: whatever the world says, the turn ends in a halt with a known outcome, no counter
    is ever past its cap (counters are not clamped: a broken cap check shows here), the model-call
    backstop is never passed, and the history is valid (every tool call answered exactly once)."""
    policy, cassette = played
    result = run(policy, cassette)
    assert result.outcome in OUTCOMES and policy.states[result.halt_state].kind == "halt"
    caps = {c.name: c.max for c in policy.counters}
    for step in result.trace:
        assert all(v <= caps[k] for k, v in step.counters.items()), step
    assert result.usage.model_calls <= policy.backstops["model_calls"].max
    assert len(result.requests) == result.usage.model_calls
    assert result.usage.tool_batches <= policy.backstops["tool_batches"].max
    assert history_problems(result.messages) == []


@given(played())
def test_every_halt_delivers_a_nonempty_message_to_every_consumer(played: tuple[Policy, Cassette]) -> None:
    """Property: the streaming consumer receives the halt message (streamed by the model or fanned
    out) and exactly one end-of-stream, and the message is non-empty."""
    policy, cassette = played
    deltas: list[str] = []
    ends: list[int] = []
    result = run(policy, cassette, deltas, ends)
    assert result.message.strip()
    assert ends == [1]
    assert "".join(deltas).endswith(result.message[-20:]) or result.message in "".join(deltas)


@given(played())
def test_no_tool_runs_from_a_truncated_or_partial_call(played: tuple[Policy, Cassette]) -> None:
    """Property: every tool batch follows a complete tool_calls event, and every call that ran had
    complete JSON arguments (length cut-offs and stalls never reach a tool)."""
    policy, cassette = played
    result = run(policy, cassette)
    assert property_problem("no_partial_tool_exec", result, policy) == ""
    for m in result.messages:
        for tc in m.get("tool_calls") or []:
            assert isinstance(json.loads(tc["function"]["arguments"] or "{}"), dict)


@given(played(), st.integers(0, 3))
def test_tools_once_disabled_stay_disabled(played: tuple[Policy, Cassette], lead: int) -> None:
    """Property: after tools are disabled in a turn, no later request carries tools.

    Each generated world starts with a few thinking-only replies (the escalation that disables
    tools needs three), so the property is exercised on most examples, not only on lucky ones."""
    policy, cassette = played
    thinking = StreamResponse(chunks=tuple(reply_chunks(reasoning="hmm")))
    cassette = dataclasses.replace(cassette, interactions=(thinking,) * lead + cassette.interactions)
    result = run(policy, cassette)
    assert property_problem("tools_stay_disabled", result, policy) == ""
    # the i-th call step made the i-th request; the step before it says which flags were in force
    flags_at_call = [result.trace[s.index - 1].flags if s.index else [] for s in result.trace if s.kind == "call"]
    for flags, request in zip(flags_at_call, result.requests):
        if "tools_disabled" in flags:
            assert not request.tools, request


@given(played())
def test_the_full_trajectory_is_never_truncated(played: tuple[Policy, Cassette]) -> None:
    """Property: the trajectory starts with the initial messages and only grows; compaction
    changes what is sent, never what is kept."""
    policy, cassette = played
    result = run(policy, cassette)
    n = len(cassette.messages)
    assert result.messages[:n] == list(cassette.messages)
    assert all(r.message_count <= len(result.messages) + 1 for r in result.requests)


@lru_cache(maxsize=None)
def analysis(name: str) -> Any:
    return build_analysis(POLICIES[name])


@given(st.sampled_from(sorted(POLICIES)).flatmap(lambda n: st.tuples(st.just(n), world(n))))
def test_interpreter_trace_is_a_path_the_explorer_reaches_with_the_same_counters(named: tuple[str, Cassette]) -> None:
    """Differential property (one semantics): each step the interpreter took is a successor the
    checker's explorer generates from the same configuration, with the same target, counters and
    flags; the abstraction's event cases cover what the classifier really emitted."""
    name, cassette = named
    policy = POLICIES[name]
    result = run(policy, cassette)
    node = (policy.initial_config(), False)
    for s in result.trace:
        options = [(st_, child) for st_, child, _ in successors(analysis(name), node) if st_.event.name == s.event]
        match = [
            child for st_, child in options
            if st_.after.state == s.target
            and dict(zip(policy.counter_names, st_.after.counters)) == s.counters
            and sorted(st_.after.flags) == s.flags
        ]
        assert match, f"step {s.index}: {s.state} --{s.event}{s.attrs}--> {s.target} not among the explorer's successors"
        node = match[0]


def test_generated_worlds_reach_every_cap_backstop_and_escalation() -> None:
    """The strategies are strong enough for the properties above to mean something: over a fixed
    budget of generated worlds of each kind, every counter of the default policy reaches its cap
    (backstops included), every escalate state is entered, a multi-call tool batch runs, and the turn
    ends by the model-call backstop, by the tool budget and by an answer.

    Each kind of world gets its own budget, so a milestone that one kind reaches does not depend on
    how often that kind is drawn (Hypothesis's choices shift with what the process ran before)."""
    default = POLICIES["default"]
    # a tool timeout needs a tool that outlives settings.tool_timeout in real time, which a replayed
    # world never has (tests/engine/test_waits.py reaches that cap)
    wanted = {f"cap {c.name}" for c in default.counters if c.name != "tool_timeouts"}
    wanted |= {f"escalate {s.name}" for s in default.states.values() if s.kind == "escalate"}
    wanted |= {"multi-call batch", "outcome backstop", "outcome tool_budget", "outcome tools_disabled", "outcome completed"}
    seen: set[str] = set()

    def explore(worlds: tuple[str, ...], examples: int) -> None:
        @settings(max_examples=examples, derandomize=True, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(played(worlds))
        def one_kind(played: tuple[Policy, Cassette]) -> None:
            policy, cassette = played
            seen.update(milestones(policy, run(policy, cassette)))

        one_kind()

    for kind in WORLDS:
        explore((kind,), PER_WORLD)
    assert wanted - seen == set(), f"never reached in {PER_WORLD} generated worlds of each kind: {sorted(wanted - seen)}"


PER_WORLD = 120


# ----------------------------------------------------------------------------- the compiled model


def expected_choice(policy: Policy, cfg: Config, ev: Event) -> Any:
    """The transition the semantics promises, computed here from the declarations: the first on
    the event, in document order, whose guard holds and whose increments all stay within caps."""
    for t in policy.states[cfg.state].transitions.get(ev.name, ()):
        fits = all(cfg.counters[i.index] + i.amount <= policy.counters[i.index].max for i in t.increments())
        if t.guard.evaluate(policy, cfg, ev) and fits:
            return t
    return None


def check_step(policy: Policy, cfg: Config, ev: Event) -> Config:
    """One decision against the promise: the right transition, and every counter it increments
    moves by exactly its amount (never clamped, never past its cap)."""
    step = policy.step(cfg, ev)
    assert step.transition == expected_choice(policy, cfg, ev), (cfg, ev)
    if step.transition is None:
        return step.after
    resets = {a.index for a in step.transition.actions if isinstance(a, Reset)} | set(step.resets)
    for inc in step.transition.increments():
        if inc.index not in resets:
            assert step.after.counters[inc.index] == cfg.counters[inc.index] + inc.amount, (cfg, ev, inc)
    assert all(v <= c.max for v, c in zip(step.after.counters, policy.counters)), step.after
    return step.after


class PolicyWalk(RuleBasedStateMachine):
    """The compiled models driven by arbitrary events of each state's kind, turn after turn.

    When a turn halts the walk starts the next turn, so every rule always applies (no invalid
    runs) and a walk of many steps crosses several halts. The step count exceeds the sum of the
    caps, so caps and backstops are reached."""

    @initialize(name=st.sampled_from(sorted(POLICIES)))
    def start(self, name: str) -> None:
        self.policy = POLICIES[name]
        self.cfg = self.policy.initial_config()
        self.tools_were_disabled = False

    def kind(self) -> str:
        return self.policy.states[self.cfg.state].kind

    @rule(data=st.data())
    def observe(self, data: st.DataObject) -> None:
        if self.kind() == "halt":  # the next turn starts afresh
            self.cfg = self.policy.initial_config()
            self.tools_were_disabled = False
            return
        ev = data.draw(events(self.kind()))
        self.cfg = check_step(self.policy, self.cfg, ev)
        assert self.cfg.state != self.policy.policy_error_state(), f"an event of kind {self.kind()} went unhandled"

    @invariant()
    def tools_stay_disabled(self) -> None:
        if not hasattr(self, "cfg"):
            return
        if "tools_disabled" in self.cfg.flags:
            self.tools_were_disabled = True
        assert "tools_disabled" in self.cfg.flags or not self.tools_were_disabled


PolicyWalk.TestCase.settings = settings(
    PolicyWalk.TestCase.settings,
    stateful_step_count=sum(c.max for c in POLICIES["default"].counters if not c.backstop) + 40,
)
test_compiled_model_picks_the_first_transition_within_caps_and_keeps_tools_disabled = PolicyWalk.TestCase
