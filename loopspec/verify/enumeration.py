"""Exhaustive search of small concrete spaces: :func:`enumerate_all` (every reachable configuration:
exact halting verdict and worst-case figures) and :func:`find_lasso` (a run that never halts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from ..language.model import Step
from .abstraction import Analysis
from .concrete import CNode, cex_path, initial_node, successors
from .counterexample import Counterexample, cex_step
from .search import shortest_path


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
        prefix = cex_path(parents, target)
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
