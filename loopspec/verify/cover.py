"""``loopspec cover``: a small set of cassettes that together fire every reachable transition of a
policy, take both outcomes of every guard, and reach every reachable halt.

Coverage items (:class:`Item`):

- ``transition``: a compiled transition fired;
- ``guard_false``: a guarded transition passed over: a step on its state and event took a later
  transition (its guard was false, or its increment would pass a cap) or none;
- ``halt``: a halt state reached.

What the checker's abstract graph never reaches is *unreachable* (the graph over-approximates every
concrete run, so that claim is sound) and is listed, not counted as missing. The method is
@xstate/test's ``minimal`` selection:

1. witnesses: one breadth-first search over concrete configurations, kept to runs the outside
   world can produce (the :class:`~.realiser.Realiser`), records the shortest run to each item; a
   guided search (:func:`~.abstract_runs.deep_counterexample`) finds items behind a backstop;
2. each witness is closed to a halt and recorded as a cassette by the same writer that records
   counterexamples, which replays it in-process and refuses it unless the decisions are the planned
   ones;
3. a greedy set cover picks among them (it subsumes @xstate/test's dropping of paths that are a
   prefix of another: see :func:`minimal_cover`).

:func:`~.corpus_coverage.corpus_coverage` says which items a folder of cassettes fires under a policy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from ..language.alphabet import GUARDRAIL_CODES
from ..language.guards import Always
from ..language.model import Policy, Step
from .abstract_graph import Graph, build_graph
from .abstract_runs import deep_counterexample
from .abstraction import Analysis, build_analysis
from .concrete import initial_node, successors
from .counterexample import CexStep, Counterexample, cex_step
from .event_options import NotReplayable
from .realiser import Realiser
from .search import path_to

SEARCH_LIMIT = 100_000
"""Concrete configurations the witness search explores before it turns to the guided search."""
GUIDED_LIMIT = 20_000


@dataclass(frozen=True, order=True)
class Item:
    """One thing a corpus can cover: a transition fired, a guard passed over, a halt reached."""

    kind: str
    name: str

    def describe(self) -> str:
        if self.kind == "transition":
            return f"fire {self.name}"
        if self.kind == "guard_false":
            return f"pass over {self.name} (its guard false)"
        return f"halt in {self.name}"

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name}


def coverage_items(policy: Policy) -> list[Item]:
    """Every item of the compiled policy, reachable or not."""
    items: list[Item] = []
    for state in policy.states.values():
        if state.kind == "halt":
            items.append(Item("halt", state.name))
        for t in state.all_transitions():
            items.append(Item("transition", t.label))
            if not isinstance(t.guard, Always):
                items.append(Item("guard_false", t.label))
    return sorted(items)


def step_items(policy: Policy, step: Step) -> set[Item]:
    """The items one step of the compiled model covers."""
    chosen = step.transition
    return move_items(policy, step.before.state, step.event.name, chosen.label if chosen is not None else None, step.after.state)


def move_items(policy: Policy, state_name: str, event: str, taken: str | None, after: str) -> set[Item]:
    """The transition taken (by label), every guarded one passed over before it, the halt entered."""
    out: set[Item] = set()
    if taken is not None:
        out.add(Item("transition", taken))
    for t in policy.states[state_name].transitions.get(event, ()):
        if t.label == taken:
            break
        if not isinstance(t.guard, Always):
            out.add(Item("guard_false", t.label))
    if after in policy.states and policy.states[after].kind == "halt":
        out.add(Item("halt", after))
    return out


def run_items(policy: Policy, steps: Iterable[Step]) -> set[Item]:
    out: set[Item] = set()
    for s in steps:
        out |= step_items(policy, s)
    if policy.states[policy.initial].kind == "halt":
        out.add(Item("halt", policy.initial))
    return out


def silent_events(policy: Policy) -> set[tuple[str, str]]:
    """(state kind, event) pairs the interpreter never emits under this policy's configuration:
    the detectors of guardrails it does not configure (or configures to ``allow``), and a tool
    batch's ``timeout`` when it sets no tool timeout."""
    out = {("tool_exec", code) for code in GUARDRAIL_CODES if (g := policy.guardrails.get(code)) is None or g.verdict == "allow"}
    if policy.settings.tool_timeout is None and policy.settings.tool_batch_timeout is None:
        out.add(("tool_exec", "timeout"))
    return out


def reachable_items(policy: Policy, an: Analysis | None = None, g: Graph | None = None) -> set[Item]:
    """The items some abstract run covers, leaving out steps on events the configuration never
    emits: a superset of what concrete runs cover, so an item outside it is unreachable."""
    an = an or build_analysis(policy)
    g = g or build_graph(an)
    silent = silent_events(policy)

    def heard(e: Any) -> bool:
        return (policy.states[e.src.state].kind, e.step.event.name) not in silent

    live: set[Any] = {g.initial}
    out: set[Item] = set()
    changed = True
    while changed:  # abstract reachability again, without the silent events' edges
        changed = False
        for e in g.edges:
            if e.src in live and heard(e) and e.dst not in live:
                live.add(e.dst)
                changed = True
    for e in g.edges:
        if e.src in live and heard(e):
            out |= step_items(policy, e.step)
    if policy.states[policy.initial].kind == "halt":
        out.add(Item("halt", policy.initial))
    return out


# ------------------------------------------------------------------------------ witnesses


def witness_runs(policy: Policy, an: Analysis, targets: set[Item], limit: int = SEARCH_LIMIT) -> dict[Item, list[CexStep]]:
    """The shortest realisable run to each target item that one breadth-first search finds."""
    world = Realiser(policy)
    root = (*initial_node(an), world.start())
    parents: dict[Any, tuple[Any, Step] | None] = {root: None}
    found: dict[Item, list[CexStep]] = {}
    queue = [root]
    head = 0
    while head < len(queue) and len(found) < len(targets) and len(parents) < limit:
        node = queue[head]
        head += 1
        for step, cnode, _viol in successors(an, (node[0], node[1])):
            w = world.advance(node[-1], step)
            if w is None:
                continue
            child = (*cnode, w)
            new = [i for i in step_items(policy, step) if i in targets and i not in found]
            if new:
                path = [cex_step(s) for s in path_to(parents, node)] + [cex_step(step)]
                for i in new:
                    found[i] = path
            if child not in parents:
                parents[child] = (node, step)
                queue.append(child)
    return found


def deep_witness(policy: Policy, an: Analysis, g: Graph, item: Item, limit: int = GUIDED_LIMIT) -> list[CexStep] | None:
    """A guided run to an item breadth-first search did not reach (behind a backstop)."""

    def goal(e: Any) -> bool:
        return item in step_items(policy, e.step)

    def predicate(step: Step, child: Any, viol: Any) -> bool:
        return item in step_items(policy, step)

    cex, _n = deep_counterexample(an, g, goal, predicate, item.describe(), world=Realiser(policy), limit=limit)
    return None if cex is None else cex.steps


# ------------------------------------------------------------------------------ the cover


@dataclass
class CoverCassette:
    """A generated cassette and what its replay covers."""

    cassette: Any
    items: frozenset[Item]
    decisions: tuple[tuple[str, str, str], ...]


@dataclass
class CoverResult:
    policy: str
    reachable: list[Item]
    unreachable: list[Item]
    cassettes: list[CoverCassette]
    missing: dict[Item, str] = field(default_factory=dict)
    """Reachable items no recordable run was found for, with the reason."""

    @property
    def covered(self) -> set[Item]:
        out: set[Item] = set()
        for c in self.cassettes:
            out |= c.items
        return out

    def to_json(self) -> dict[str, Any]:
        covered = self.covered
        return {
            "policy": self.policy,
            "reachable": len(self.reachable),
            "covered": len(covered & set(self.reachable)),
            "cassettes": [
                {"name": c.cassette.name, "file": c.cassette.file, "covers": [i.to_json() for i in sorted(c.items)]}
                for c in self.cassettes
            ],
            "missing": [{**i.to_json(), "reason": why} for i, why in sorted(self.missing.items())],
            "unreachable": [i.to_json() for i in self.unreachable],
        }


def cover(
    policy: Policy,
    *,
    search_limit: int = SEARCH_LIMIT,
    guided_limit: int = GUIDED_LIMIT,
    progress: Callable[[int, int], None] | None = None,
) -> CoverResult:
    """Generate the covering cassettes of ``policy`` (see the module docstring); ``progress(done,
    total)`` hears how many witness runs have been recorded."""
    from .to_cassette import cassette_from_counterexample

    an = build_analysis(policy)
    graph = build_graph(an)  # once: the reachable items and every guided search read it
    reachable = reachable_items(policy, an, graph)
    unreachable = [i for i in coverage_items(policy) if i not in reachable]
    runs = witness_runs(policy, an, reachable, limit=search_limit)
    missing: dict[Item, str] = {}
    for item in sorted(reachable - set(runs)):
        if "--cancelled[" in item.name or (item.kind == "halt" and _only_on(policy, item.name, "cancelled")):
            missing[item] = "a cancel is the caller's, not the model's: cover does not write cancel points yet"
            continue
        if "--interrupted_tool[" in item.name or (item.kind == "halt" and _only_on(policy, item.name, "interrupted_tool")):
            missing[item] = "only a turn resumed after a crash has an interrupted tool call: a cassette cannot record one"
            continue
        if _tool_timeout(policy, item):
            missing[item] = "a tool that outlives its timeout: cover does not write blocking tools yet"
            continue
        deep = deep_witness(policy, an, graph, item, limit=guided_limit)
        if deep is None:
            missing[item] = ("no run the outside world can produce was found within the search limits "
                             "(the abstraction allows it; the classifier or the configuration may never say it)")
        else:
            runs[item] = deep
    candidates: dict[tuple[tuple[str, str, str], ...], CoverCassette] = {}
    covered: set[Item] = set()
    order = sorted(runs, key=lambda i: (len(runs[i]), i))
    for done, item in enumerate(order, 1):
        if progress is not None:
            progress(done, len(order))
        if item in covered:
            continue  # a shorter witness's cassette already covers it
        steps = runs[item]
        try:
            cassette = cassette_from_counterexample(
                policy,
                Counterexample(steps, item.describe()),
                "cover",
                name=f"{policy.name}-cover-{len(candidates) + 1:03d}",
                doc=f"Generated by loopspec cover for policy '{policy.name}': a run that reaches '{item.describe()}'.",
                source={"generator": "loopspec cover", "policy": policy.file, "goal": item.describe()},
            )
        except NotReplayable as exc:
            missing[item] = f"no cassette reproduces its run: {exc}"
            continue
        made = covered_by(cassette, policy)
        if item not in made.items:
            missing[item] = "its cassette's replay did not reach it"
            continue
        candidates.setdefault(made.decisions, made)
        covered |= made.items
    chosen = minimal_cover(list(candidates.values()))
    for i, c in enumerate(chosen, 1):
        name = f"{policy.name}-cover-{i:03d}"
        c.cassette = dataclasses.replace(c.cassette, name=name, file=f"{name}.cassette.yaml")
    return CoverResult(policy.name, sorted(reachable), unreachable, chosen, missing)


def _only_on(policy: Policy, halt: str, event: str) -> bool:
    """Every transition into the halt is taken on ``event``."""
    into = [t for s in policy.states.values() for t in s.all_transitions() if t.target == halt]
    return bool(into) and all(t.event == event for t in into)


def _tool_timeout(policy: Policy, item: Item) -> bool:
    """The item is a tool batch's ``timeout`` transition (or a halt only that reaches)."""
    if item.kind == "halt":
        into = [t for s in policy.states.values() for t in s.all_transitions() if t.target == item.name]
        return bool(into) and all(t.event == "timeout" and policy.states[t.source].kind == "tool_exec" for t in into)
    source = item.name.split(" --", 1)[0]
    return "--timeout[" in item.name and source in policy.states and policy.states[source].kind == "tool_exec"


def covered_by(cassette: Any, policy: Policy) -> CoverCassette:
    """Replay a cassette in-process and read off what it covers."""
    from loopspec.replay.harness import replay_sync

    result = replay_sync(cassette, policy).result
    decisions = tuple((s.state, s.event, s.target) for s in result.trace)
    return CoverCassette(cassette, frozenset(run_items(policy, result.steps)), decisions)


def minimal_cover(candidates: Sequence[CoverCassette]) -> list[CoverCassette]:
    """Pick greedily the candidate that covers most of what is still uncovered (ties: the shorter
    run, then the name), until nothing is left.

    @xstate/test first drops the paths that are a prefix of another; here that step would change
    nothing: a run that is a prefix of another covers a subset of what the longer one covers, so
    greedy takes the longer one first when it covers more, and the tie-break keeps the shorter one
    when it covers as much."""
    left: set[Item] = set()
    for c in candidates:
        left |= c.items
    chosen: list[CoverCassette] = []
    pool = list(candidates)
    while left and pool:
        best = max(pool, key=lambda c: (len(c.items & left), -len(c.decisions), c.cassette.name))
        chosen.append(best)
        left -= best.items
        pool.remove(best)
    return chosen
