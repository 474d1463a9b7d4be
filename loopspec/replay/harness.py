"""Replay a cassette under a policy: in process or over loopback HTTP, live (rerun) or forked.

Judging lives in :mod:`.judge` and the recorded tools in :mod:`.recorded_tools`; their names are
re-exported here, where replay's callers look for them.

Three operations, kept distinct by name: :func:`replay` (cassette-fed, offline, either transport),
:func:`rerun` (the cassette's opening messages, live through litellm) and :func:`fork` (the
recorded responses up to call k, then live under another policy).
"""

from __future__ import annotations


import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from loopspec.engine.clock import VirtualClock
from loopspec.engine.observers import TurnObserver
from loopspec.journal import JournalStore
from loopspec.engine.results import TurnResult
from loopspec.engine.turn import Turn
from loopspec.engine.machine import TurnCallbacks
from loopspec.providers.base import ModelRequest, Provider, ResponseStream
from loopspec.language.model import Policy

from .cancel import CancelPlan, run_guarded
from .cassette import Cassette
from .inproc import InProcessProvider
from .judge import (
    TraceDivergence,
    check_expectations,
    compare_trace,
    decision_path,
    divergence_message,
    halted,
    property_problem,
)
from .recorded_tools import RecordedTools, ToolResultsExhausted

Transport = Literal["inproc", "http"]
Verdict = Literal["pass", "fail", "diverged"]


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
    journal: JournalStore | None = None,
    turn_id: str | None = None,
    observers: Sequence[TurnObserver] = (),
    files_root: str | None = None,
) -> ReplayReport:
    """Replay a cassette under a policy and judge it; ``callbacks`` run as the replayed turn moves.

    With a ``journal`` the turn is written to it as ``turn_id`` (default: :func:`.journal_note.turn_id_of`
    the cassette), with a ``replay`` entry naming the cassette so that ``loopspec resume`` can
    finish it in process (``files_root`` is what its ``sse_file`` entries were read under)."""
    cancel = CancelPlan(c.cancel)
    tools = RecordedTools(c, cancel=cancel)
    limit = step_limit(c, policy)
    options: dict[str, Any] = dict(c.request.turn_options(), tools=tools.registry, callbacks=callbacks, max_steps=limit)
    if journal is not None:
        from .journal_note import ReplayNote, turn_id_of

        turn_id = turn_id or turn_id_of(c.file)
        options.update(journal=journal, turn_id=turn_id, observers=[ReplayNote(c, transport, files_root, journal, turn_id), *observers])
    elif observers:
        options.update(observers=list(observers))
    crash: str | None
    if transport == "http":
        from .http import DEFAULT_TIME_SCALE, LoopbackClock, run_guarded_over_http
        from .turn_time import TurnTime

        scale = time_scale or DEFAULT_TIME_SCALE
        clock = TurnTime(LoopbackClock(scale))
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
    cancel.detach()
    return judged(c, policy, result, transport=transport, unconsumed=unconsumed, diverged_at=diverged_at, tools=tools,
                  elapsed=elapsed, crash=crash)


def judged(c: Cassette, policy: Policy, result: TurnResult, *, transport: str, unconsumed: int, diverged_at: int | None,
           tools: RecordedTools, elapsed: float | None, crash: str | None = None) -> ReplayReport:
    """The report of a replayed turn: its expectations, then a crash, a divergence from the
    recorded responses or tool results, and the first step that parts from a stored trace."""
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


__all__ = [
    "RecordedTools", "ReplayReport", "ToolResultsExhausted", "TraceDivergence", "Transport", "Verdict",
    "check_expectations", "compare_trace", "decision_path", "divergence_message", "fork", "halted", "judged",
    "property_problem", "replay", "replay_sync", "rerun", "step_limit",
]
