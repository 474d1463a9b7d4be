"""The one breadth-first search with path rebuilding that every search of the checker uses.

Nodes and edges are whatever the caller's graph has: abstract nodes and edges, concrete
configurations and steps, indices into an enumeration. :func:`shortest_path` goes level by level,
tests the goal on every edge it generates (before a node is deduplicated, so an edge back to a
visited node can still be the goal) and rebuilds the path from the parent links with
:func:`path_to`.
"""

from __future__ import annotations

from typing import Callable, Hashable, Iterable, Mapping, TypeVar

N = TypeVar("N", bound=Hashable)
E = TypeVar("E")


def path_to(parents: Mapping[N, tuple[N, E] | None], node: N) -> list[E]:
    """The edges from the root (the node whose parent is None) to ``node``, in order."""
    out: list[E] = []
    cur = node
    while True:
        p = parents[cur]
        if p is None:
            break
        prev, edge = p
        out.append(edge)
        cur = prev
    out.reverse()
    return out


def shortest_path(
    root: N,
    expand: Callable[[N], Iterable[tuple[E, N]]],
    goal: Callable[[E, N], bool],
    limit: int | None = None,
) -> tuple[list[E] | None, int]:
    """The fewest edges from ``root`` whose last edge satisfies ``goal``.

    ``expand`` yields a node's (edge, child) pairs, lazily: the search stops consuming them at the
    goal. ``limit`` is checked between levels against the nodes expanded so far. Returns (the
    edges, ending with the goal edge, or None; nodes expanded).
    """
    parents: dict[N, tuple[N, E] | None] = {root: None}
    frontier = [root]
    explored = 0
    while frontier and (limit is None or explored < limit):
        nxt: list[N] = []
        for node in frontier:
            explored += 1
            for edge, child in expand(node):
                if goal(edge, child):
                    return path_to(parents, node) + [edge], explored
                if child not in parents:
                    parents[child] = (node, edge)
                    nxt.append(child)
        frontier = nxt
    return None, explored
