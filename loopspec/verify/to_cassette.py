"""Turn a checker counterexample (an event path) into a cassette that replays to the same failure.

The checker's adversary answers with events of the closed alphabet and picks their attributes
from the guards' constants. A cassette can only hold what the outside world says: HTTP errors,
model replies (chunks, stalls, dropped connections), tool results. This module goes from one to
the other, faithfully:

- :class:`Realiser` knows, for every event, the recordings that make loopspec's classifier emit
  it (an HTTP status, a body carrying a message and a code, a Retry-After header; text of a given
  length; tool calls with given names; a stall inside a tool call's arguments; an in-band provider
  error; a guardrail's detector fed the batches that make it fire) and what each recording makes
  the classifier say, observed through the same code the in-process transport runs. For each step
  it picks a recording whose attributes give the same truth value to every guard atom the policy
  reads on that state and event (:func:`~loopspec.verify.atoms.guard_atoms`), with natural
  values for the attributes no guard reads. It is also a
  :class:`~loopspec.verify.explore.WorldModel`: the checker's searches use it to prefer runs the
  outside world can produce.
- :func:`cassette_from_counterexample` builds the cassette, closes a path that stops short of a
  halt with the shortest clean way to one, replays it in-process and compares the decision path
  with the counterexample's steps. A counterexample that cannot be reproduced (the adversary chose
  attributes the classifier never emits, e.g. a rate_limit with status 200) raises
  :class:`NotReplayable`; :func:`counterexample_cassettes` then tries the checker's other
  candidates, and otherwise marks the counterexample ``concrete=False`` with the reason instead of
  writing a cassette that lies.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from loopspec.replay.cassette import Cassette, Expectations, RecordedStep, ToolSpec
from loopspec.replay.synth import reply
from loopspec.language.model import Compact, Policy, Step
from loopspec.language.properties import RUN_PROPERTIES

from .budget_usage import charge_budgets
from .counterexample import Counterexample
from .properties import empty_when
from .event_options import EMPTY_PARAMETERS, REPRODUCE_MESSAGE, Facts, NotReplayable
from .realiser import Realiser
from .cassette_plan import (
    PlannedStep,
    check_plan,
    choose_options,
    closing_path,
    plan_run,
    record_plan,
    run_sync,
    separate_approvals,
    simulate,
)


def _reproduces(report: Any, planned: Sequence[PlannedStep], prop: str, cex: Counterexample, policy: Policy) -> str:
    """'' when the replay shows the counterexample: its decisions, and the failure it states."""
    from loopspec.replay.harness import halted

    if report.verdict == "diverged":
        return report.failures[0]
    want = [(p.state, p.event.name, p.to) for p in planned]
    got = [(s.state, s.event, s.target) for s in report.result.trace]
    if cex.loop_start is not None:
        if got[: len(want)] != want:
            return f"the replay's decisions {got[: len(want)]} differ from the counterexample's {want}"
        if halted(report.result, policy):
            return "the replayed turn halted"
    elif got != want:
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        return f"the replay parts from the counterexample at step {first + 1}: {got[first:first + 1]} instead of {want[first:first + 1]}"
    if prop in RUN_PROPERTIES:
        if not any(f.startswith(f"property {prop} fails") for f in report.failures):
            return f"the replay does not fail {prop}"
    elif cex.fires is not None:
        if not any(cex.fires[0] in f and "fired" in f for f in report.failures):
            return f"the replay does not fire {cex.fires[0]} more than {cex.fires[1]} times"
    return ""


def cassette_from_counterexample(
    policy: Policy,
    cex: Counterexample,
    prop: str,
    *,
    name: str | None = None,
    max_fires: tuple[tuple[str, int], ...] = (),
    doc: str | None = None,
    source: dict[str, Any] | None = None,
) -> Cassette:
    """A cassette reproducing ``cex`` under ``policy``; its expectations state ``prop``.

    Raises :class:`NotReplayable` when no recording reproduces the counterexample's decisions and
    failure in-process. A path that stops short of a halt is closed by the shortest way to one
    that breaks nothing; a ``halts`` lasso is left open (the replay's step limit ends it).
    """
    steps = simulate(policy, cex.steps)
    if not steps and policy.states[policy.initial].kind != "halt":
        raise NotReplayable("the counterexample has no steps")
    want = None
    if prop == "halt_message" and steps:
        last = steps[-1]
        want = empty_when(policy.states[last.after.state].message, policy.states[last.before.state].kind, last.event.name)
        if want is None:
            raise NotReplayable(f"'{last.after.state}' cannot render an empty message when entered on {last.event.name}")
    realiser = Realiser(policy)
    chosen = choose_options(realiser, steps, Facts(), want)
    if chosen is None:
        raise NotReplayable(_why_not(realiser, steps))
    options, facts = chosen
    ends_in_halt = not steps or policy.states[steps[-1].after.state].kind == "halt"
    if not ends_in_halt and cex.loop_start is None:
        closing = closing_path(policy, realiser, steps[-1].after, facts)
        steps = steps + closing
        chosen = choose_options(realiser, steps, Facts(), want)
        if chosen is None:
            raise NotReplayable("no recording reproduces the counterexample and the way from its end to a halt")
        options, facts = chosen
    notes: list[str] = []
    planned = plan_run(policy, realiser, steps, options, notes)
    separate_approvals(planned)
    check_plan(policy, planned)
    charge_budgets(policy, planned)
    b = record_plan(planned)
    if prop == "stub_not_silent":
        b.interactions.append(reply("The answer."))  # what a policy that recovers would go on to use
    if cex.fires is not None:
        max_fires = max_fires or (cex.fires,)
    expect = Expectations(
        properties=tuple(dict.fromkeys(p for p in ("history_valid", prop) if p in RUN_PROPERTIES)),
        all_played=prop == "stub_not_silent",
        max_fires=max_fires,
    )
    doc = doc or f"Counterexample for property '{prop}' of policy '{policy.name}': {cex.note}".strip()
    if notes:
        doc += " Notes: " + "; ".join(notes)
    cassette = Cassette(
        name=name or f"{policy.name}-{prop}",
        file=f"{policy.name}-{prop}.cassette.yaml",
        doc=doc,
        source=source or {"checker": "loopspec check", "policy": policy.file, "property": prop},
        messages=(REPRODUCE_MESSAGE,),
        interactions=tuple(b.interactions),
        tools=tuple(ToolSpec(n, dict(EMPTY_PARAMETERS), needs_approval=a) for n, a in b.tools.items()),
        tool_results=tuple(b.results),
        expect=expect,
    )
    from loopspec.replay.harness import replay

    compacts = any(isinstance(d.action, Compact) for st in steps for d in st.directives)
    problem = ""
    for padding in (0, 6, 12, 24) if compacts else (0,):
        attempt = dataclasses.replace(cassette, messages=(REPRODUCE_MESSAGE, *_padding(padding)))
        report = run_sync(replay(attempt, policy))
        problem = _reproduces(report, planned, prop, cex, policy)
        if not problem:
            trace = tuple(RecordedStep(s.state, s.event, s.target, s.transition) for s in report.result.trace)
            return dataclasses.replace(attempt, trace=trace)
    raise NotReplayable(problem)


def _padding(n: int) -> list[dict[str, Any]]:
    """Earlier conversation, so that compaction has something to compact."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append({"role": "assistant" if i % 2 == 0 else "user", "content": f"Earlier message {i + 1}."})
    if out and out[-1]["role"] == "assistant":
        out.append({"role": "user", "content": "Go on."})
    return out


def _why_not(realiser: Realiser, steps: Sequence[Step]) -> str:
    """Which step no recording reproduces (the first one the classifier cannot say)."""
    worlds: Any = realiser.start()
    for i, st in enumerate(steps):
        nxt = realiser.advance(worlds, st)
        if nxt is None:
            attrs = ", ".join(f"{k}={v!r}" for k, v in st.event.attrs.items())
            kind = realiser.policy.states[st.before.state].kind
            why = "which no recording makes the classifier (or the interpreter) report there"
            if kind == "tool_exec" and not any(f.calls for f in worlds[0]):
                why = "but no tool call is pending there (the reply's calls were not sent to run), so the batch is empty and 'ok'"
            elif kind == "stub":
                why = "which the stream before it did not leave behind"
            elif kind == "escalate":
                why = "which the escalation does not report after the way it was entered"
            return f"step {i + 1} asks for {st.event.name}({attrs}) in '{st.before.state}', {why}"
        worlds = nxt
    return "no recording leaves the halt's message empty"


def counterexample_cassettes(policy: Policy, result: Any) -> dict[str, Cassette]:
    """One cassette per failed property of a :class:`CheckResult`, in the report's order.

    Each property's counterexample is tried first, then the checker's other candidates. When none
    can be recorded so that it replays to the same failure, no cassette is made for it and the
    counterexample is marked ``concrete=False`` with the reason in its note."""
    out: dict[str, Cassette] = {}
    for prop, cex in result.counterexamples().items():
        reasons: list[str] = []
        for cand in [cex, *cex.alternatives]:
            max_fires: tuple[tuple[str, int], ...] = ()
            if prop == "no_backstop_only_loops" and cand.fires is None:
                max_fires = tuple(
                    (loop.edge, policy.counters[policy.counter_index(loop.counter)].max)
                    for loop in result.backstop_only_loops
                    if loop.counter and loop.edge in {s.transition for s in cand.steps}
                )
            try:
                out[prop] = cassette_from_counterexample(policy, cand, prop, max_fires=max_fires)
            except NotReplayable as exc:
                reasons.append(str(exc))
                continue
            if cand is not cex:
                result.properties[prop].counterexample = cand
            break
        else:
            cex.concrete = False
            cex.note = (cex.note + " " if cex.note else "") + f"(no cassette reproduces it: {reasons[0]})"
    return out


def write_counterexamples(policy: Policy, result: Any, out: str) -> list[str]:
    """Write the counterexample cassettes: into ``out`` when it is a folder, else the first to
    ``out`` and each further one beside it with its property in the name. Returns the paths."""
    import os

    from loopspec.replay.cassette import write_cassette

    cassettes = counterexample_cassettes(policy, result)
    paths: list[str] = []
    for i, (prop, c) in enumerate(cassettes.items()):
        if os.path.isdir(out) or out.endswith(os.sep):
            os.makedirs(out, exist_ok=True)
            path = os.path.join(out, f"{policy.name}-{prop}.cassette.yaml")
        elif i == 0:
            path = out
        else:
            stem = out.removesuffix(".yaml").removesuffix(".cassette")
            path = f"{stem}-{prop}.cassette.yaml"
        write_cassette(dataclasses.replace(c, file=path), path)
        paths.append(path)
    return paths
