"""Searches for a concrete run to a step a predicate accepts (a property violation, a loop firing
too often): :func:`shortest_counterexample` by breadth-first search, :func:`guided_counterexample`
depth-first by abstract distance when the step lies too deep for breadth-first search."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from ..language.model import Step
from .abstraction import Analysis
from .concrete import CNode, SearchNode, StepPredicate, WorldModel, initial_node, successors
from .counterexample import CexStep, cex_step
from .search import shortest_path


def shortest_counterexample(
    an: Analysis,
    predicate: StepPredicate,
    limit: int,
    allowed: set[int] | None = None,
    start: CNode | None = None,
    extra: Callable[[Any, Step | None], Any] | None = None,
    world: WorldModel | None = None,
    world_start: Any = None,
) -> tuple[list[CexStep] | None, int]:
    """BFS for the shortest event path whose last step satisfies ``predicate``.

    ``allowed`` restricts the search to transitions with these ``id()``s (``None``: all).
    ``extra`` threads an additional small search state (e.g. a firing count) through the path; the
    predicate then sees it as ``node[2]``. ``world`` keeps to runs the outside world can produce
    (see :class:`WorldModel`; ``world_start`` replaces its start). Returns (path or None,
    configurations explored).
    """
    root: SearchNode = start or initial_node(an)
    if extra is not None:
        root = (*root, extra(None, None))
    if world is not None:
        root = (*root, world.start() if world_start is None else world_start)

    def expand(node: SearchNode) -> Iterator[tuple[tuple[Step, list[tuple[str, str]]], SearchNode]]:
        for step, cnode, viol in successors(an, (node[0], node[1])):
            if allowed is not None and (step.transition is None or id(step.transition) not in allowed):
                continue
            child: SearchNode = cnode if extra is None else (*cnode, extra(node[2], step))
            if world is not None:
                w = world.advance(node[-1], step)
                if w is None:
                    continue
                child = (*child, w)
            yield (step, viol), child

    path, explored = shortest_path(root, expand, lambda edge, child: predicate(edge[0], child, edge[1]), limit)
    return (None if path is None else [cex_step(step) for step, _v in path]), explored


def violation_counterexample(an: Analysis, prop: str, limit: int) -> tuple[list[CexStep] | None, int]:
    """The shortest run whose last step violates the property ``prop``."""
    return shortest_counterexample(an, lambda step, child, viol: any(v[0] == prop for v in viol), limit)


def guided_counterexample(
    an: Analysis,
    distance: dict[Any, int],
    predicate: StepPredicate,
    limit: int,
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
        for step, cnode, viol in successors(an, (node[0], node[1])):
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
            d = distance.get(an.node_of(child[0], child[1]), inf)
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
