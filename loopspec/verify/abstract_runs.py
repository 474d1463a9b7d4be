"""Runs read off the abstract graph: the shortest abstract path to an edge, an abstract loop, and
the guided concrete run that stands in when breadth-first search runs out."""

from __future__ import annotations

from typing import Any, Iterator

from .abstract_graph import Edge, Graph
from .abstraction import Analysis, Node
from .counterexample import CexStep, Counterexample, cex_step
from .reach import guided_counterexample
from .search import shortest_path
from .termination import Termination


def abstract_loop(g: Graph, term: Termination) -> Counterexample | None:
    """A path in the abstract graph into the first component elimination could not bound, and a cycle
    inside it: what ``check`` shows when no concrete lasso was found within its search."""
    if not term.unbounded:
        return None
    comp = term.unbounded[0]
    nodes = {e.src for e in comp}
    prefix = abstract_path(g, lambda e: e.dst in nodes)
    if prefix is None:
        return None
    start = prefix[-1].dst if prefix else g.initial
    # a cycle inside the component from start back to start
    cyc = abstract_path(g, lambda e: e.dst == start, start=start, within={e.index for e in comp})
    steps = [abstract_cex(e) for e in prefix]
    loop_start = len(steps)
    steps += [abstract_cex(e) for e in (cyc or [])]
    return Counterexample(steps, "abstract: the cycle repeats from loop_start", False, loop_start)


def abstract_cex(e: Edge) -> CexStep:
    return cex_step(e.step)


def abstract_path(g: Graph, goal: Any, start: Node | None = None, within: set[int] | None = None) -> list[Edge] | None:
    def expand(n: Node) -> Iterator[tuple[Edge, Node]]:
        for e in g.out.get(n, ()):
            if within is None or e.index in within:
                yield e, e.dst

    path, _n = shortest_path(start or g.initial, expand, lambda e, dst: bool(goal(e)))
    return path


def deep_counterexample(
    an: Analysis, g: Graph, goal: Any, predicate: Any, note: str, world: Any = None, limit: int = 50_000
) -> tuple[Counterexample | None, int]:
    """When breadth-first search runs out: a guided concrete run to the goal (see
    :func:`~loopspec.verify.explore.guided_counterexample`), or None within ``limit``."""
    dist: dict[Node, int] = {}
    preds: dict[Node, list[Node]] = {}
    usable = usable_edges(g, world) if world is not None else None
    for e in g.edges:
        if usable is not None and e.index not in usable:
            continue  # guide towards the goal along steps the outside world can take
        preds.setdefault(e.dst, []).append(e.src)
        if goal(e):
            dist[e.src] = 0
    frontier = list(dist)
    while frontier:
        nxt = []
        for node in frontier:
            for p in preds.get(node, ()):
                if p not in dist:
                    dist[p] = dist[node] + 1
                    nxt.append(p)
        frontier = nxt
    steps, n = guided_counterexample(an, dist, predicate, limit=limit, world=world)
    if steps is not None:
        return Counterexample(steps, note + " (a concrete run, not necessarily the shortest)"), n
    return None, n


def usable_edges(g: Graph, world: Any) -> set[int]:
    """The abstract edges whose representative step the world model lets happen on some abstract
    run from the start (a guide for the guided search, not a proof)."""
    start = (g.initial, world.start())
    seen = {start}
    todo = [start]
    usable: set[int] = set()
    while todo:
        node, w = todo.pop()
        for e in g.out.get(node, ()):
            w2 = world.advance(w, e.step)
            if w2 is None:
                continue
            usable.add(e.index)
            nxt = (e.dst, w2)
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return usable
