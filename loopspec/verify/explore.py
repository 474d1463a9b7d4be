"""Explicit search over concrete configurations, always through :meth:`Policy.step`.

- :func:`enumerate_all` explores the full configuration space of a small policy (exact verdict on
  halting, exact worst-case figures); the differential test keeps it and counter elimination in
  agreement.
- :func:`shortest_counterexample` is a breadth-first search for the shortest event path to a step
  the property monitor rejects (or any predicate), optionally restricted to some transitions.
- :func:`find_lasso` finds a path into a cycle of concrete configurations (a run that never halts).
- :func:`guided_counterexample` reaches findings too deep for breadth-first search (behind a
  backstop that needs sixty tool batches) by a depth-first run ordered by abstract distance.
- :func:`witness_walks` are guided walks that never halt while they can; the longest they find are
  lower bounds that make the elimination's upper bounds exact when they meet.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Iterator, Protocol, TypeVar

from ..language.model import Config, Step
from .abstraction import Analysis
from .properties import monitor_step
from .search import path_to, shortest_path

CNode = tuple[Config, int, bool]
"""A concrete configuration with the property monitor's state (pending tool calls, silent stub)."""

SearchNode = tuple[Config, int, bool, *tuple[Any, ...]]
"""A :data:`CNode`, followed by the ``extra`` search state when :func:`shortest_counterexample` threads one."""

_N = TypeVar("_N", bound=SearchNode)


@dataclass
class CexStep:
    """One step of a counterexample: in ``state``, the model (or effect) answered ``event``."""

    state: str
    event: str
    attrs: dict[str, Any]
    to: str
    transition: str | None

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "event": self.event, "attrs": dict(self.attrs), "to": self.to, "transition": self.transition}

    def as_tuple(self) -> tuple[str, str, dict[str, Any]]:
        return (self.state, self.event, dict(self.attrs))


@dataclass
class Counterexample:
    """An event path from the start of a turn; replayable once the cassette writer turns it into one."""

    steps: list[CexStep]
    note: str = ""
    concrete: bool = True
    """False when only the abstract graph could produce the path (search limit reached)."""
    loop_start: int | None = None
    """For a non-halting run: the index of the first step of the repeated cycle."""
    fires: tuple[str, int] | None = None
    """For a loop demonstration: (transition label, the firings its own bound allows); the run
    fires that transition more often."""
    alternatives: list["Counterexample"] = field(default_factory=list, repr=False)
    """Other runs that show the same failure, for when this one cannot be made into a cassette."""

    @property
    def end(self) -> str | None:
        return self.steps[-1].to if self.steps else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"steps": [s.to_json() for s in self.steps], "end": self.end, "concrete": self.concrete}
        if self.loop_start is not None:
            out["loop_start"] = self.loop_start
        if self.fires is not None:
            out["fires"] = {"transition": self.fires[0], "at_most": self.fires[1]}
        if self.note:
            out["note"] = self.note
        return out


def cex_step(step: Step) -> CexStep:
    t = step.transition
    return CexStep(step.before.state, step.event.name, dict(step.event.attrs), step.after.state, t.label if t else None)


def successors(an: Analysis, node: CNode) -> Iterable[tuple[Step, CNode, list[tuple[str, str]]]]:
    cfg, pending, silent = node
    if an.kind(cfg.state) == "halt":
        return
    for ev_name in an.events_of(cfg.state):
        for step in an.steps_at(cfg, ev_name):
            an.steps_evaluated += 1
            p2, s2, viol = monitor_step(an, pending, silent, step)
            yield step, (step.after, p2, s2), viol


def initial_node(an: Analysis) -> CNode:
    return (an.policy.initial_config(), 0, False)


def _path(parents: dict[_N, tuple[_N, Step] | None], node: _N) -> list[CexStep]:
    return [cex_step(step) for step in path_to(parents, node)]


StepPredicate = Callable[[Step, SearchNode, list[tuple[str, str]]], bool]


class WorldModel(Protocol):
    """What the outside world must have said for a run to be real, as far as a search needs it.

    The adversary of the abstraction may answer anything the alphabet allows; a world model
    follows a run and says when a step asks for something no provider, tool or classifier can
    produce (a rate_limit with status 200, a guardrail verdict the policy does not configure, a
    stub event that contradicts the stream it was cut from). Searches that pass one only return
    runs it accepts; the world is appended to each search node (``node[-1]``)."""

    def start(self) -> Hashable: ...

    def advance(self, world: Any, step: Step) -> Hashable | None:
        """The world after ``step``, or None when no outside world makes ``step`` happen."""
        ...


def shortest_counterexample(
    an: Analysis,
    predicate: StepPredicate,
    limit: int = 200_000,
    allowed: set[int] | None = None,
    start: CNode | None = None,
    extra: Callable[[Any, Step | None], Any] | None = None,
    world: WorldModel | None = None,
    world_start: Any = None,
) -> tuple[list[CexStep] | None, int]:
    """BFS for the shortest event path whose last step satisfies ``predicate``.

    ``allowed`` restricts the search to transitions with these ``id()``s (``None``: all).
    ``extra`` threads an additional small search state (e.g. a firing count) through the path; the
    predicate then sees it as ``node[3]``. ``world`` keeps to runs the outside world can produce
    (see :class:`WorldModel`; ``world_start`` replaces its start). Returns (path or None,
    configurations explored).
    """
    root: SearchNode = start or initial_node(an)
    if extra is not None:
        root = (*root, extra(None, None))
    if world is not None:
        root = (*root, world.start() if world_start is None else world_start)

    def expand(node: SearchNode) -> Iterator[tuple[tuple[Step, list[tuple[str, str]]], SearchNode]]:
        for step, cnode, viol in successors(an, (node[0], node[1], node[2])):
            if allowed is not None and (step.transition is None or id(step.transition) not in allowed):
                continue
            child: SearchNode = cnode if extra is None else (*cnode, extra(node[3], step))
            if world is not None:
                w = world.advance(node[-1], step)
                if w is None:
                    continue
                child = (*child, w)
            yield (step, viol), child

    path, explored = shortest_path(root, expand, lambda edge, child: predicate(edge[0], child, edge[1]), limit)
    return (None if path is None else [cex_step(step) for step, _v in path]), explored


def violation_counterexample(
    an: Analysis, prop: str, limit: int = 200_000, world: WorldModel | None = None
) -> tuple[list[CexStep] | None, int]:
    return shortest_counterexample(an, lambda step, child, viol: any(v[0] == prop for v in viol), limit, world=world)


# --------------------------------------------------------------------------- full enumeration


@dataclass
class Enumeration:
    """The whole reachable configuration space of a small policy."""

    configs: int
    halts: bool
    worst: dict[str, dict[str, int]]
    """"*" and each outcome -> backstop name -> the exact maximum over reachable halts."""
    violations: dict[str, str] = field(default_factory=dict)
    lasso: Counterexample | None = None


def enumerate_all(an: Analysis, limit: int = 200_000) -> Enumeration | None:
    """Explore every reachable (configuration, monitor); None when there are more than ``limit``."""
    policy = an.policy
    root = initial_node(an)
    index: dict[CNode, int] = {root: 0}
    order: list[CNode] = [root]
    succ: list[list[int]] = []
    parents: dict[CNode, tuple[CNode, Step] | None] = {root: None}
    worst: dict[str, dict[str, int]] = {}
    violations: dict[str, str] = {}
    b_idx = [(name, policy.counter_index(name)) for name in policy.backstops]
    head = 0
    while head < len(order):
        node = order[head]
        head += 1
        mine: list[int] = []
        succ.append(mine)
        cfg = node[0]
        if an.kind(cfg.state) == "halt":
            outcome = policy.states[cfg.state].outcome or "?"
            for key in ("*", outcome):
                w = worst.setdefault(key, {n: 0 for n, _ in b_idx})
                for name, i in b_idx:
                    w[name] = max(w[name], cfg.counters[i])
            continue
        for step, child, viol in successors(an, node):
            for name, why in viol:
                violations.setdefault(name, why)
            j = index.get(child)
            if j is None:
                if len(order) >= limit:
                    return None
                j = index[child] = len(order)
                order.append(child)
                parents[child] = (node, step)
            mine.append(j)
    # Kahn: any node left with in-degree > 0 lies on or behind a cycle
    n = len(order)
    indeg = [0] * n
    for lst in succ:
        for j in lst:
            indeg[j] += 1
    stack = [i for i in range(n) if indeg[i] == 0]
    removed = 0
    while stack:
        i = stack.pop()
        removed += 1
        for j in succ[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                stack.append(j)
    halts = removed == n
    lasso = None
    if not halts:
        lasso = _lasso_from(an, order, succ, parents, [i for i in range(n) if indeg[i] > 0])
    return Enumeration(n, halts, worst, violations, lasso)


def _lasso_from(
    an: Analysis,
    order: list[CNode],
    succ: list[list[int]],
    parents: dict[CNode, tuple[CNode, Step] | None],
    candidates: list[int],
) -> Counterexample | None:
    """The shallowest configuration on a cycle, the path to it and the shortest cycle back."""
    cand = set(candidates)
    # nodes on a cycle: those in candidates that can reach themselves; BFS order = depth order
    for i in sorted(cand):
        # shortest cycle from order[i] back to itself
        target = order[i]

        def expand(k: int, i: int = i, target: CNode = target) -> Iterator[tuple[Step, int]]:
            for step, child, _v in successors(an, order[k]):
                if child == target:
                    yield step, i
                    continue
                j = _index_of(order, child, succ, k)
                if j is None or j not in cand:
                    continue
                yield step, j

        def back(step: Step, j: int, i: int = i) -> bool:
            return j == i

        cycle, _n = shortest_path(i, expand, back)
        if cycle is None:
            continue
        prefix = _path(parents, target)
        loop_steps = [cex_step(step) for step in cycle]
        return Counterexample(prefix + loop_steps, "the run repeats from loop_start forever", True, len(prefix))
    return None


def _index_of(order: list[CNode], child: CNode, succ: list[list[int]], k: int) -> int | None:
    for j in succ[k]:
        if order[j] == child:
            return j
    return None


def find_lasso(an: Analysis, limit: int = 100_000) -> tuple[Counterexample | None, int, bool]:
    """A concrete non-halting run within ``limit`` configurations: (lasso, explored, exhaustive)."""
    root = initial_node(an)
    index: dict[CNode, int] = {root: 0}
    order: list[CNode] = [root]
    succ: list[list[int]] = []
    parents: dict[CNode, tuple[CNode, Step] | None] = {root: None}
    head = 0
    complete = True
    while head < len(order):
        if len(order) >= limit:
            complete = False
            break
        node = order[head]
        head += 1
        mine: list[int] = []
        succ.append(mine)
        for step, child, _v in successors(an, node):
            j = index.get(child)
            if j is None:
                j = index[child] = len(order)
                order.append(child)
                parents[child] = (node, step)
            mine.append(j)
    expanded = len(succ)
    # cycles among expanded nodes only
    n = expanded
    indeg = [0] * n
    for lst in succ:
        for j in lst:
            if j < n:
                indeg[j] += 1
    stack = [i for i in range(n) if indeg[i] == 0]
    while stack:
        i = stack.pop()
        for j in succ[i]:
            if j < n:
                indeg[j] -= 1
                if indeg[j] == 0:
                    stack.append(j)
    cyc = [i for i in range(n) if indeg[i] > 0]
    if not cyc:
        return None, expanded, complete
    trimmed = [[j for j in lst if j < n] for lst in succ]
    return _lasso_from(an, order[:n], trimmed, parents, cyc), expanded, complete


# --------------------------------------------------------------------------- witnesses


@dataclass
class Witness:
    best: dict[str, dict[str, int]]
    """"*" and each outcome -> backstop name -> the largest value seen at a reachable halt."""
    walks: int
    steps: int


def witness_walks(
    an: Analysis,
    targets: dict[str, dict[str, int]],
    seconds: float = 0.25,
    seed: int = 1,
    max_walks: int = 6,
    moves_per_second: int = 8_000,
) -> Witness:
    """Greedy depth-first runs that avoid halting (and avoid setting flags) while they can, with
    backtracking out of dead ends, recording every halt one step away. Each run prefers spending a
    retry budget over the tool loop, so streaks get reset between retries. They stop early once
    every target figure is met.

    The budget is counted in moves (``seconds * moves_per_second``), not read off the clock, so the
    figures a check reports are the same on a loaded CI machine as on an idle laptop."""
    policy = an.policy
    rng = random.Random(seed)
    b_idx = [(name, policy.counter_index(name)) for name in policy.backstops]
    best: dict[str, dict[str, int]] = {}
    budget = max(1, int(seconds * moves_per_second))
    walks = steps = 0

    def record(cfg: Config) -> None:
        outcome = policy.states[cfg.state].outcome or "?"
        for key in ("*", outcome):
            w = best.setdefault(key, {n: 0 for n, _ in b_idx})
            for name, i in b_idx:
                if cfg.counters[i] > w[name]:
                    w[name] = cfg.counters[i]

    def met() -> bool:
        for key, figs in targets.items():
            got = best.get(key)
            if got is None:
                return False
            for name, v in figs.items():
                if got.get(name, 0) < v:
                    return False
        return True

    init = policy.initial_config()
    if an.kind(init.state) == "halt":
        record(init)
        return Witness(best, 0, 0)

    tool_kind = "tool_exec"

    def options(cfg: Config, mode: int) -> list[Config]:
        nonlocal steps
        scored: list[tuple[float, int, Config]] = []
        for ev_name in an.events_of(cfg.state):
            for step in an.steps_at(cfg, ev_name):
                steps += 1
                after = step.after
                if an.kind(after.state) == "halt":
                    record(after)
                    continue
                score = rng.random()
                if after.flags - cfg.flags:
                    score -= 4.0
                t = step.transition
                if mode == 0 and t is not None and t.increments():
                    score += 2.0  # spend retry budgets first: the most model calls
                if mode == 1 and an.kind(after.state) == tool_kind:
                    score += 2.0  # run the tool loop first: the most tool batches
                if mode == 1 and t is not None and t.increments():
                    score -= 1.0  # retries spend model calls that tool batches need
                scored.append((score, len(scored), after))
        scored.sort(reverse=True)
        return [c for _s, _i, c in scored]

    modes = (0, 1, 2)
    per_walk = max(64, budget // max_walks)
    while walks < max_walks and not met():
        mode = modes[walks % len(modes)]
        walks += 1
        visited: set[Config] = {init}
        stack: list[tuple[Config, list[Config], int]] = [(init, options(init, mode), 0)]
        moves = 0
        while stack:
            moves += 1
            if moves > per_walk or ((moves & 63) == 0 and met()):
                break
            cfg, opts, i = stack[-1]
            if i >= len(opts):
                stack.pop()
                continue
            stack[-1] = (cfg, opts, i + 1)
            nxt = opts[i]
            if nxt in visited:
                continue
            visited.add(nxt)
            stack.append((nxt, options(nxt, mode), 0))
    return Witness(best, walks, steps)


# --------------------------------------------------------------------------- guided search


def guided_counterexample(
    an: Analysis,
    distance: dict[Any, int],
    predicate: StepPredicate,
    limit: int = 50_000,
    world: WorldModel | None = None,
) -> tuple[list[CexStep] | None, int]:
    """A concrete run to a step satisfying ``predicate`` when it lies too deep for breadth-first
    search (e.g. behind a backstop that needs sixty tool batches).

    Depth-first, always trying first the successor whose abstract node is closest to the goal in the
    abstract graph (``distance``), then the one that spends no retry budget, so counter-free loops
    such as the tool loop are pumped until the backstop phase the goal needs is reached. The run is
    concrete (every step is the model's own) but not necessarily the shortest. ``world`` keeps to
    runs the outside world can produce (its state is appended to each node).
    """
    inf = 1 << 30
    root: tuple[Any, ...] = initial_node(an)
    if world is not None:
        root = (*root, world.start())
    visited: set[tuple[Any, ...]] = {root}
    explored = 0

    def options(node: tuple[Any, ...]) -> tuple[list[tuple[Step, Any]], tuple[Step, Any] | None]:
        nonlocal explored
        explored += 1
        scored: list[tuple[int, int, int, Step, Any]] = []
        for step, cnode, viol in successors(an, (node[0], node[1], node[2])):
            child: tuple[Any, ...] = cnode
            if world is not None:
                w = world.advance(node[-1], step)
                if w is None:
                    continue
                child = (*cnode, w)
            if predicate(step, child, viol):
                return [], (step, child)
            if an.kind(child[0].state) == "halt":
                continue
            d = distance.get(an.node_of(child[0], child[1], child[2]), inf)
            if d >= inf:
                continue
            t = step.transition
            spend = len(t.increments()) if t is not None else 0
            scored.append((d, spend, len(scored), step, child))
        scored.sort(key=lambda x: (x[0] + 2 * x[1], x[1], x[2]))
        return [(st, ch) for _d, _s, _i, st, ch in scored], None

    first, hit = options(root)
    if hit is not None:
        return [cex_step(hit[0])], explored
    stack: list[tuple[Any, Step | None, list[tuple[Step, Any]], int]] = [(root, None, first, 0)]
    while stack:
        if explored > limit:  # a count, not a clock: the same answer on any machine
            return None, explored
        node, via, opts, i = stack[-1]
        if i >= len(opts):
            stack.pop()
            continue
        stack[-1] = (node, via, opts, i + 1)
        step, child = opts[i]
        if child in visited:
            continue
        visited.add(child)
        more, hit = options(child)
        if hit is not None:
            path = [cex_step(v) for _n, v, _o, _i in stack[1:] if v is not None]
            return path + [cex_step(step), cex_step(hit[0])], explored
        stack.append((child, step, more, 0))
    return None, explored
