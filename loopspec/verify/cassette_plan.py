"""Planning a cassette from a counterexample's steps: simulating them through the model, choosing
a recording for each, closing a path that stops short of a halt, and recording the plan."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from loopspec.engine.tools import ToolResult
from loopspec.replay.cassette import ToolOutcome
from loopspec.replay.interactions import Interaction
from loopspec.replay.synth import reply
from loopspec.language.alphabet import Event
from loopspec.language.model import Config, Policy, Step
from loopspec.language.properties import Watch, continuation_counters
from loopspec.language.properties import advance as advance_properties

from .counterexample import CexStep
from .properties import EmptyWhen
from .event_options import Facts, NotReplayable, Option, filler_text
from .realiser import Realiser
from .tool_scripts import tool_result


# --------------------------------------------------------------------------- building cassettes


@dataclass
class PlannedStep:
    """One step of the planned run: the event, the recording chosen for it, where it must lead."""

    state: str
    event: Event
    option: Option
    to: str
    transition: str | None
    inserted: bool = False
    measured: frozenset[str] = frozenset()
    """Budget flags the step measured (see :mod:`.budget_usage`)."""


@dataclass
class PlanRecording:
    """What the planned run records: the interactions in order, the tool outcomes, and the tools to
    register (name -> needs approval)."""

    interactions: list[Interaction] = field(default_factory=list)
    results: list[ToolOutcome] = field(default_factory=list)
    tools: dict[str, bool] = field(default_factory=dict)


def run_sync(coro: Any) -> Any:
    """Run a coroutine to completion from synchronous code, also when an event loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def simulate(policy: Policy, steps: Sequence[CexStep]) -> list[Step]:
    """The counterexample's steps as the policy takes them (the adversary's attributes)."""
    cfg = policy.initial_config()
    out: list[Step] = []
    for i, s in enumerate(steps):
        if cfg.state != s.state:
            raise NotReplayable(f"step {i + 1} starts in '{s.state}' but the run is in '{cfg.state}' (an abstract path)")
        st = policy.step(cfg, Event(s.event, dict(s.attrs)), frozenset(s.measured))
        label = st.transition.label if st.transition else None
        if st.after.state != s.to or label != s.transition:
            raise NotReplayable(f"step {i + 1} ({s.state}: {s.event}) leads to '{st.after.state}', not '{s.to}' (an abstract path)")
        out.append(st)
        cfg = st.after
    return out


def choose_options(
    realiser: Realiser, steps: Sequence[Step], start: Facts, want: EmptyWhen | None
) -> tuple[list[Option], Facts] | None:
    """A recording for every step, consistent from one to the next (depth-first, natural first);
    with ``want``, the last one leaves the halt's message empty."""
    failed: set[tuple[int, Facts]] = set()
    # each level: the facts before step i, its options, the next one to try
    stack: list[tuple[Facts, list[Option], int]] = []

    def options(i: int, facts: Facts) -> list[Option]:
        if (i, facts) in failed:
            return []
        got = realiser.options(facts, steps[i])
        if want is not None and i == len(steps) - 1:
            got = [o for o in got if realiser.leaves_empty(want, facts, steps[i], o)]
        return got

    if not steps:
        return [], start
    stack.append((start, options(0, start), 0))
    while stack:
        facts, opts, k = stack[-1]
        i = len(stack) - 1
        if k >= len(opts):
            failed.add((i, facts))
            stack.pop()
            continue
        stack[-1] = (facts, opts, k + 1)
        nxt = realiser.after(facts, steps[i], opts[k])
        if i + 1 == len(steps):
            return [o for _f, os, j in stack for o in [os[j - 1]]], nxt
        stack.append((nxt, options(i + 1, nxt), 0))
    return None


class _Closing:
    """The world model of a closing search: realisable steps that break no property."""

    def __init__(self, realiser: Realiser) -> None:
        self.realiser = realiser
        self.cont = continuation_counters(realiser.policy)

    def start(self) -> Any:  # pragma: no cover - the closing search always passes its start
        return self.realiser.start()

    def advance(self, world: Any, step: Step) -> Any:
        _w, violations = advance_properties(self.realiser.policy, Watch(), step, self.cont)
        if violations or step.transition is None or step.event.name in self.realiser.policy.guardrails:
            return None  # a guardrail would need more tool batches played before it
        return self.realiser.advance(world, step)


def closing_path(policy: Policy, realiser: Realiser, cfg: Config, facts: Facts) -> list[Step]:
    """The shortest realisable, clean way from ``cfg`` to a halt (to end a path that stops short)."""
    from .abstraction import build_analysis
    from .reach import shortest_counterexample

    an = build_analysis(policy)
    path, _n = shortest_counterexample(
        an,
        lambda step, child, viol: policy.states[step.after.state].kind == "halt",
        limit=5_000,
        start=(cfg, False),
        world=_Closing(realiser),
        world_start=(frozenset({facts}), False),
    )
    if path is None:
        raise NotReplayable(f"no recordable way from '{cfg.state}' to a halt")
    out: list[Step] = []
    for s in path:
        st = policy.step(cfg, Event(s.event, dict(s.attrs)))
        out.append(st)
        cfg = st.after
    return out


def plan_run(policy: Policy, realiser: Realiser, steps: Sequence[Step], options: Sequence[Option], notes: list[str]) -> list[PlannedStep]:
    """The run to record: the steps with their recordings, and before each guardrail the tool
    batches that make its detector fire (each one more model call and tool batch)."""
    planned: list[PlannedStep] = []
    batches: list[list[ToolResult]] = []
    serial = 0
    for i, (st, o) in enumerate(zip(steps, options)):
        kind = policy.states[st.before.state].kind
        if kind == "tool_exec" and o.guard is not None:
            o = _with_script(policy, realiser, steps, options, i, o, batches, planned, notes)
        elif kind == "tool_exec" and o.results:
            rs = []
            for r in o.results:  # every answer differs, so no detector fires where the path says it does not
                serial += 1
                rs.append(dataclasses.replace(r, content=f"result {serial}" if r.ok else f"failure {serial}"))
            o = dataclasses.replace(o, results=tuple(rs))
        if kind == "tool_exec" and o.results:
            batches.append([tool_result(r) for r in o.results])
        label = st.transition.label if st.transition else None
        planned.append(PlannedStep(st.before.state, Event(st.event.name, dict(o.attrs)), o, st.after.state, label, measured=st.measured))
    return planned


def separate_approvals(planned: list[PlannedStep]) -> None:
    """A tool needs approval in every batch once the cassette says so; when the tool that waits
    for approval also runs elsewhere in the run, the waiting batch calls it under its own name."""
    ran = {r.tool for p in planned for r in p.option.results}
    for i, p in enumerate(planned):
        tool = p.option.approval
        if tool is None or tool not in ran or i == 0 or tool not in planned[i - 1].option.calls:
            continue
        fresh = f"{tool}_awaiting_approval"
        before = planned[i - 1]
        names = [fresh if n == tool else n for n in before.option.calls]
        attrs = dict(before.option.attrs, tools=names, count=len(names))
        resp = reply(filler_text(int(attrs.get("chars", 0) or 0), ""), tool_calls=[(n, {}) for n in names])
        before.option = dataclasses.replace(before.option, attrs=attrs, interaction=resp, calls=tuple(names), tools=tuple(names))
        before.event = Event(before.event.name, attrs)
        p.option = dataclasses.replace(p.option, attrs=dict(p.option.attrs, tool=fresh), approval=fresh)
        p.event = Event(p.event.name, dict(p.option.attrs))


def _with_script(
    policy: Policy,
    realiser: Realiser,
    steps: Sequence[Step],
    options: Sequence[Option],
    i: int,
    o: Option,
    batches: list[list[ToolResult]],
    planned: list[PlannedStep],
    notes: list[str],
) -> Option:
    """Insert, before the round that ends in guardrail step ``i``, the batches its detector needs."""
    code, tool = o.guard or "", str(o.attrs.get("tool"))
    period = int(o.attrs.get("period", 0) or 0)
    calls = options[i - 1].calls if i >= 1 else ()
    if i < 2 or policy.states[steps[i - 1].before.state].kind != "stream" or steps[i - 2].event.name != "opened" or not calls:
        raise NotReplayable(f"'{code}' fires on a tool batch, and step {i + 1} does not follow one")
    script = realiser.guard_script(code, tool, period, calls, batches)
    if script is None:
        raise NotReplayable(f"no sequence of tool batches makes '{code}' fire on '{tool}' first")
    inserted, final = script
    call_state, stream_state, exec_state = steps[i - 2].before.state, steps[i - 1].before.state, steps[i].before.state
    rounds: list[PlannedStep] = []
    for r in inserted:
        resp = reply(tool_calls=[(tool, json.loads(r.args))])
        tc = Option({"tools": [tool], "count": 1, "chars": 0}, interaction=resp, text=False, calls=(tool,), tools=(tool,))
        rounds += [
            PlannedStep(call_state, Event("opened", {}), Option({}, text=False), stream_state, None, True),
            PlannedStep(stream_state, Event("tool_calls", dict(tc.attrs)), tc, exec_state, None, True),
            PlannedStep(exec_state, Event("ok" if r.ok else "failed", {"tools": [tool]}), Option({"tools": [tool]}, results=(r,)), call_state, None, True),
        ]
        batches.append([tool_result(r)])
    at = len(planned) - 2  # before the round's own (call: opened) step, whose reply makes the final calls
    planned[at:at] = rounds
    if inserted:
        notes.append(f"{code}: {len(inserted)} tool batch(es) of '{tool}' are played before step {i + 1} so that the detector fires there")
    return dataclasses.replace(o, results=tuple(final))


def check_plan(policy: Policy, planned: Sequence[PlannedStep]) -> None:
    """The planned run, with the recordings' own attributes, takes the counterexample's decisions."""
    cfg = policy.initial_config()
    for i, p in enumerate(planned):
        if cfg.state != p.state:
            raise NotReplayable(f"the recorded run is in '{cfg.state}' at step {i + 1}, not in '{p.state}'")
        st = policy.step(cfg, p.event, p.measured)
        label = st.transition.label if st.transition else None
        if st.after.state != p.to or (not p.inserted and label != p.transition):
            raise NotReplayable(
                f"with the attributes the classifier reports, step {i + 1} ({p.state}: {p.event.name}) leads to "
                f"'{st.after.state}', not '{p.to}'"
            )
        cfg = st.after


def record_plan(planned: Sequence[PlannedStep]) -> PlanRecording:
    """The cassette's contents for the planned run: its interactions, tool outcomes and tools."""
    b = PlanRecording()
    for p in planned:
        o = p.option
        if o.interaction is not None:
            b.interactions.append(o.interaction)
        for t in o.tools:
            b.tools.setdefault(t, False)
        if o.approval is not None:
            b.tools[o.approval] = True
        for r in o.results:
            b.tools.setdefault(r.tool, False)
            if r.ok:
                b.results.append(ToolOutcome(r.tool, result=r.content or "result"))
            else:
                b.results.append(ToolOutcome(r.tool, error=r.content or "failure"))
    return b
