"""Replay a cassette under a policy, judge its expectations, and compare decision traces.

Three operations, kept distinct by name: :func:`replay` (cassette-fed, offline, either transport),
:func:`rerun` (the cassette's opening messages, live through litellm) and :func:`fork` (the
recorded responses up to call k, then live under another policy).
"""

from __future__ import annotations

from loopspec.language.errors import LoopspecError

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from loopspec.engine.clock import VirtualClock
from loopspec.engine.history import history_problems
from loopspec.engine.results import TraceStep, TurnResult
from loopspec.engine.turn import Turn
from loopspec.engine.machine import TurnCallbacks
from loopspec.engine.tools import ToolRegistry
from loopspec.providers.base import ModelRequest, Provider, ResponseStream
from loopspec.language.properties import first_violation, trace_violations
from loopspec.language.graph import describe_guard
from loopspec.language.model import Policy

from .cancel import CancelPlan, run_guarded
from .cassette import Cassette, RecordedStep
from .cassette_model import as_bound
from .inproc import InProcessProvider
from loopspec.language.diagnostics import did_you_mean

Transport = Literal["inproc", "http"]
Verdict = Literal["pass", "fail", "diverged"]


class ToolResultsExhausted(LoopspecError):
    """The policy ran a tool more often than the cassette recorded."""


@dataclass
class RecordedTools:
    """A tool registry that answers each call with the cassette's next recorded result. A result
    that ``blocks`` never returns: the tool waits until the turn is cancelled."""

    cassette: Cassette
    registry: ToolRegistry = field(default_factory=ToolRegistry)
    exhausted: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    """The tools that started running, in order."""
    cancel: CancelPlan = field(default_factory=lambda: CancelPlan(None))

    def __post_init__(self) -> None:
        queues: dict[str, list[Any]] = {t.name: [] for t in self.cassette.tools}
        for r in self.cassette.tool_results:
            queues.setdefault(r.tool, []).append(r)
        self.queues = queues
        for spec in self.cassette.tools:
            self.registry.register(
                self._player(spec.name), name=spec.name, parameters=spec.parameters,
                description=spec.description, needs_approval=spec.needs_approval,
            )

    def _player(self, name: str):  # type: ignore[no-untyped-def]
        """A plain function, as recorded tools were before cancel points existed; a coroutine
        only for a cassette that cancels during a tool or has a tool that blocks, where the tool
        must be running (awaiting) when the cancel lands."""

        def answer() -> Any:
            queue = self.queues.get(name) or []
            if not queue:
                self.exhausted.append(name)
                raise ToolResultsExhausted(f"the cassette recorded no further result for tool '{name}'")
            outcome = queue.pop(0)
            self.ran.append(name)
            return outcome

        def result(outcome: Any) -> str:
            if outcome.error is not None:
                raise RuntimeError(outcome.error)
            return outcome.result or ""

        def play(**_arguments: Any) -> str:
            return result(answer())

        async def play_until_cancelled(**_arguments: Any) -> str:
            outcome = answer()
            await self.cancel.tool_started(name)
            if outcome.blocks:
                await asyncio.Event().wait()  # until the turn is cancelled
            return result(outcome)

        point = self.cassette.cancel
        waits = (point is not None and point.during_tool == name) or any(r.blocks for r in self.queues.get(name) or [])
        return play_until_cancelled if waits else play


@dataclass
class TraceDivergence:
    """The first step at which a replay's decisions part from the recorded ones."""

    step: int
    recorded: RecordedStep | None
    actual: TraceStep | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "recorded": vars(self.recorded) if self.recorded else None,
            "actual": {"state": self.actual.state, "event": self.actual.event, "target": self.actual.target,
                       "transition": self.actual.transition} if self.actual else None,
            "reason": self.reason,
        }


@dataclass
class ReplayReport:
    cassette: str
    name: str
    transport: str
    verdict: Verdict
    result: TurnResult
    failures: list[str] = field(default_factory=list)
    diverged_at: int | None = None
    unconsumed: int = 0
    divergence: TraceDivergence | None = None
    elapsed: float | None = None
    """Seconds of the turn's own clock from start to halt (virtual in-process)."""
    crash: str | None = None
    """What the turn raised when it did not halt (e.g. a cancellation it did not absorb)."""

    @property
    def outcome(self) -> str:
        return self.result.outcome

    def to_json(self, *, with_trace: bool = False) -> dict[str, Any]:
        r = self.result
        data: dict[str, Any] = {
            "cassette": self.cassette,
            "name": self.name,
            "transport": self.transport,
            "verdict": self.verdict,
            "outcome": r.outcome,
            "halt_state": r.halt_state,
            "model_calls": r.usage.model_calls,
            "tool_batches": r.usage.tool_batches,
            "final_response": r.message,
            "failures": self.failures,
            "diverged_at": self.diverged_at,
            "unconsumed": self.unconsumed,
            "trace_divergence": self.divergence.to_json() if self.divergence else None,
            "elapsed": self.elapsed,
            "crash": self.crash,
        }
        if with_trace:
            data["trace"] = [s.to_json() for s in r.trace]
        return data

    def explain(self) -> str:
        lines = [f"{self.name}: {self.verdict} (outcome {self.outcome}, {self.result.usage.model_calls} calls)"]
        lines += [f"  - {f}" for f in self.failures]
        return "\n".join(lines)


def decision_path(result: TurnResult) -> list[tuple[str, str, str]]:
    """(state, event, target) per step: what a snapshot or a diff compares."""
    return [(s.state, s.event, s.target) for s in result.trace]


def compare_trace(recorded: Sequence[RecordedStep], result: TurnResult, policy: Policy) -> TraceDivergence | None:
    """Where the decisions first differ from the recorded trace, naming the guard that decided."""
    actual = result.trace
    for i in range(max(len(recorded), len(actual))):
        rec = recorded[i] if i < len(recorded) else None
        act = actual[i] if i < len(actual) else None
        if rec is not None and act is not None and (rec.state, rec.event, rec.target) == (act.state, act.event, act.target):
            continue
        if rec is None or act is None:
            reason = "the replay took more steps than recorded" if rec is None else "the replay ended before the recorded trace did"
            return TraceDivergence(i, rec, act, reason)
        if (rec.state, rec.event) != (act.state, act.event):
            return TraceDivergence(i, rec, act, f"observed {act.event} in {act.state}, recorded {rec.event} in {rec.state}")
        reason = f"in {act.state} on {act.event}: now -> {act.target}, recorded -> {rec.target}"
        transition = _transition_of(policy, act)
        if transition is not None:
            guard = describe_guard(transition.guard) or "no guard"
            reason += f", by transition {transition.label} (guard: {guard})"
            if act.redirected_from:
                reason += f", redirected from {act.redirected_from} by a backstop"
        elif act.transition is None:
            reason += ": no transition matched (policy_error)"
        return TraceDivergence(i, rec, act, reason)
    return None


def _transition_of(policy: Policy, step: TraceStep):  # type: ignore[no-untyped-def]
    state = policy.states.get(step.state)
    if state is None:
        return None
    for t in state.transitions.get(step.event, ()):
        if t.label == step.transition:
            return t
    return None


def divergence_message(c: Cassette, result: TurnResult, index: int) -> str:
    """Which call, what the cassette had, what the policy asked for, and how to fix it."""
    steps = [s for s in result.trace if s.kind == "call"]
    before = result.trace[steps[index].index - 1] if index < len(steps) and steps[index].index else None
    why = f", after {before.state} --{before.event}--> {before.target}" if before else ""
    asked = ""
    if index < len(result.requests):
        req = result.requests[index]
        prompt = req.last_user if len(req.last_user) <= 60 else req.last_user[:57] + "..."
        asked = f" It asked with tools {req.tools or 'none'} and last prompt {prompt!r}."
    return (
        f"diverged at model call {index + 1}: the cassette recorded {len(c.interactions)} model responses and the "
        f"policy asked for another{why}.{asked} Replay never invents a response: record the turn again "
        "under this policy (loopspec record), or add the response it needs to the cassette's interactions."
    )


def check_expectations(
    c: Cassette,
    result: TurnResult,
    policy: Policy,
    *,
    unconsumed: int,
    ran: Sequence[str] = (),
    elapsed: float | None = None,
) -> list[str]:
    """Every expectation that does not hold, as a sentence that says what to look at. ``ran`` is
    the tools that started running, ``elapsed`` the turn's seconds on its own clock."""
    e = c.expect
    out: list[str] = []
    if e.outcome is not None and result.outcome != e.outcome:
        out.append(f"outcome is {result.outcome} ({result.halt_state}), expected {e.outcome}")
    if e.outcome_any_of and result.outcome not in e.outcome_any_of:
        out.append(f"outcome is {result.outcome} ({result.halt_state}), expected one of {', '.join(e.outcome_any_of)}")
    if e.model_calls is not None:
        problem = as_bound(e.model_calls).violation(result.usage.model_calls)
        if problem:
            out.append(f"{result.usage.model_calls} model calls, {problem}")
    if e.tool_batches is not None:
        problem = as_bound(e.tool_batches).violation(result.usage.tool_batches)
        if problem:
            out.append(f"{result.usage.tool_batches} tool batches, {problem}")
    for s in e.final_response_contains:
        if s not in result.response:
            out.append(f"final response does not contain {s!r} (it is {result.response[:80]!r})")
    for s in e.message_contains:
        if s not in result.message:
            out.append(f"halt message does not contain {s!r} (it is {result.message[:80]!r})")
    for s in e.message_not_contains:
        if s in result.message:
            out.append(f"halt message contains {s!r}, expected it not to (it is {result.message[:80]!r})")
    for name in e.tools_never_ran:
        if name in ran:
            out.append(f"tool {name} ran {ran.count(name)} times, expected never")
    out += _counter_problems(c, result, policy)
    if e.elapsed is not None and elapsed is not None:
        problem = e.elapsed.violation(elapsed)
        if problem:
            out.append(f"the turn took {elapsed:g} s on its clock, {problem} s")
    if e.all_played and unconsumed:
        out.append(f"{unconsumed} recorded model responses were never played (the policy stopped early)")
    made = len(result.requests)
    for r in e.requests:
        position = r.index if r.index > 0 else made + r.index + 1
        if not 1 <= position <= made:
            out.append(f"request {r.index} was never made ({made} calls)")
            continue
        req = result.requests[position - 1]
        name = f"request {r.index}" if r.index > 0 else f"request {r.index} (call {position})"
        if r.tools == "absent" and req.tools:
            out.append(f"{name} carried tools {req.tools}, expected none")
        if r.tools == "present" and not req.tools:
            out.append(f"{name} carried no tools, expected some")
        if r.prompt_contains and r.prompt_contains not in req.last_user:
            out.append(f"{name}'s last prompt does not contain {r.prompt_contains!r}")
        for key, want in r.carries:
            got = getattr(req, key)
            if got != want:
                out.append(f"{name} carried {key} {got!r}, expected {want!r}")
    for label, limit in e.max_fires:
        fired = sum(1 for s in result.trace if s.transition == label)
        if fired > limit:
            out.append(f"transition {label} fired {fired} times, at most {limit} expected")
    for p in e.properties:
        problem = property_problem(p, result, policy)
        if problem:
            out.append(f"property {p} fails: {problem}")
    return out


def _counter_problems(c: Cassette, result: TurnResult, policy: Policy) -> list[str]:
    """``expect.counters``, judged on each counter's highest value over the turn."""
    out: list[str] = []
    names = policy.counter_names
    for name, bound in c.expect.counters:
        if name not in names:
            hint = did_you_mean(name, names)
            out.append(
                f"expect.counters names {name!r}, which policy {policy.name} ({policy.file}) does not declare "
                f"(cassette {c.file}); its counters: {', '.join(names)}" + (f"; {hint}" if hint else "")
            )
            continue
        highest = max((s.counters.get(name, 0) for s in result.trace), default=0)
        problem = bound.violation(highest)
        if problem:
            out.append(f"counter {name} reached {highest}, {problem}")
    return out


def property_problem(name: str, result: TurnResult, policy: Policy) -> str:
    """Why ``result`` breaks the built-in property ``name`` ('' when it holds). The step properties
    are the definitions ``loopspec check`` proves, run over the turn's own steps."""
    if name == "halts":
        if halted(result, policy):
            return ""
        return f"{result.message} (it was still in '{result.steps[-1].after.state}')"
    if name == "halt_message":
        return "" if result.message.strip() else f"halt {result.halt_state} delivered an empty message"
    problem = first_violation(name, trace_violations(policy, result.steps))
    if name == "history_valid" and not problem:
        problem = "; ".join(history_problems(result.messages))
    return problem


def halted(result: TurnResult, policy: Policy) -> bool:
    """The turn reached a halt of its own, rather than being ended by the interpreter's step limit."""
    if not result.steps:
        return True
    return policy.states[result.steps[-1].after.state].kind == "halt"


def step_limit(c: Cassette, policy: Policy) -> int:
    """How many decisions a replay of ``c`` may take before the interpreter ends it.

    Between two recorded answers (a model response, a tool result) a turn only moves between
    states without I/O. The budget allows, per answer, every state once and every counter (the
    backstops included) through its whole cap: far more than a policy ``loopspec check`` proves
    ever takes, and small enough that a policy looping without calling the model (a ``halts``
    counterexample) is stopped within a second instead of hanging the replay. A heuristic, not a
    proof: nested loops whose counters reset each other could need more."""
    per_answer = len(policy.states) + sum(ctr.max for ctr in policy.counters)
    return (len(c.interactions) + len(c.tool_results) + 2) * per_answer


async def replay(
    c: Cassette,
    policy: Policy,
    *,
    transport: Transport = "inproc",
    time_scale: float | None = None,
    callbacks: TurnCallbacks | None = None,
) -> ReplayReport:
    """Replay a cassette under a policy and judge it; ``callbacks`` run as the replayed turn moves."""
    cancel = CancelPlan(c.cancel)
    tools = RecordedTools(c, cancel=cancel)
    limit = step_limit(c, policy)
    options: dict[str, Any] = dict(c.request.turn_options(), tools=tools.registry, callbacks=callbacks, max_steps=limit)
    crash: str | None
    if transport == "http":
        from loopspec.engine.clock import ScaledClock

        from .http import DEFAULT_TIME_SCALE, run_guarded_over_http

        from .turn_time import TurnTime

        scale = time_scale or DEFAULT_TIME_SCALE
        clock = TurnTime(ScaledClock(scale))
        result, server, crash = await run_guarded_over_http(
            policy, c.interactions, c.messages, time_scale=scale, clock=clock, prepare=cancel.attach, **options  # type: ignore[arg-type]
        )
        elapsed = clock.elapsed
        diverged_at, unconsumed = server.diverged_at, server.unconsumed
    else:
        provider = InProcessProvider(c.interactions)
        vclock = VirtualClock()
        turn = Turn(policy, provider, model=c.model, clock=vclock, **options)
        cancel.attach(turn)
        result, crash = await run_guarded(turn, c.messages)
        elapsed = vclock.now()
        diverged_at, unconsumed = provider.diverged_at, provider.unconsumed
    failures = check_expectations(c, result, policy, unconsumed=unconsumed, ran=tools.ran, elapsed=elapsed)
    verdict: Verdict = "fail" if failures else "pass"
    if crash is not None:
        verdict = "fail"
        where = f" (cancelled {c.cancel.describe()})" if c.cancel is not None else ""
        failures.insert(0, f"crashed: {crash}{where}")
    if diverged_at is not None:
        verdict = "diverged"
        failures.insert(0, divergence_message(c, result, diverged_at))
    if tools.exhausted:
        verdict = "diverged"
        failures.insert(0, f"diverged: the policy ran {tools.exhausted[0]} more often than the cassette recorded")
    divergence = compare_trace(c.trace, result, policy) if c.trace else None
    return ReplayReport(
        c.file, c.name, transport, verdict, result, failures, diverged_at, unconsumed, divergence, elapsed=elapsed, crash=crash
    )


class _ChainProvider:
    """Recorded responses first, then a live provider: what :func:`fork` replays through."""

    def __init__(self, recorded: InProcessProvider, live: Provider, k: int) -> None:
        self.recorded, self.live, self.k = recorded, live, k
        self.calls = 0

    async def open(self, request: ModelRequest) -> ResponseStream:
        self.calls += 1
        if self.calls <= self.k:
            return await self.recorded.open(request)
        return await self.live.open(request)


async def rerun(c: Cassette, policy: Policy, *, model: str, live: Provider | None = None, **options: Any) -> TurnResult:
    """Run the cassette's opening messages live (through litellm unless ``live`` is given)."""
    from loopspec.providers.litellm_provider import LiteLLMProvider

    tools = RecordedTools(c)
    return await Turn(policy, live or LiteLLMProvider(), model=model, tools=tools.registry, **options).run(c.messages)


async def fork(c: Cassette, policy: Policy, k: int, *, model: str, live: Provider | None = None, **options: Any) -> TurnResult:
    """The recorded responses for the first ``k`` calls, then live calls under ``policy``."""
    from loopspec.providers.litellm_provider import LiteLLMProvider

    tools = RecordedTools(c)
    chain = _ChainProvider(InProcessProvider(c.interactions[:k]), live or LiteLLMProvider(), k)
    return await Turn(policy, chain, model=model, tools=tools.registry, **options).run(c.messages)


def replay_sync(c: Cassette, policy: Policy, **kw: Any) -> ReplayReport:
    return asyncio.run(replay(c, policy, **kw))
