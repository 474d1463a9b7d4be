"""Termination by counter elimination, and worst-case bounds from the elimination order.

On the abstract graph (an over-approximation of every concrete run), take each strongly connected
component. A counter that some edge of the component increments and no edge of the component
resets bounds those edges: a cap is never exceeded, so they fire at most ``cap`` times per entry into
the component (at most ``cap`` times per turn when nothing in the whole turn resets it). Remove
them, recompute the components inside, and repeat. Non-backstop counters go first; only when a
component is stuck is a backstop used (tool batches before model calls when that flags fewer
edges). A component that still has a cycle with no counter left is an unbounded loop.

Every edge eliminated by a backstop, or eliminated inside a component that was only broken by a
backstop, has a bound that *passes through* that backstop. Unless the edge is declared
``bounded_by`` that backstop, it is a backstop-only loop (a warning; ``--strict`` fails it).

Bounds: with ``E`` entries into a component and removed edges grouped by their counter, the groups
fire at most ``cap/amount x E`` times (``cap/amount`` for a counter never reset in the turn), and each
inner component is entered at most ``E + (removed firings)`` times. Model calls are the entries into
``call`` states, tool batches the entries into ``tool_exec`` states; the sums are clipped by the
backstop caps and by the backstop phase in which each outcome's halts are reachable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from .abstract_graph import Edge, Graph
from ..language.model import Policy
from .abstraction import PHASE_LAST, PHASE_LOW, Analysis, Node


def sccs(nodes: Iterable[Node], edges: Iterable[Edge]) -> list[list[Node]]:
    """Tarjan's algorithm, iterative; returns the components in reverse topological order."""
    succ: dict[Node, list[Node]] = {}
    node_list = list(nodes)
    for n in node_list:
        succ[n] = []
    for e in edges:
        if e.src in succ and e.dst in succ:
            succ[e.src].append(e.dst)
    index: dict[Node, int] = {}
    low: dict[Node, int] = {}
    on: set[Node] = set()
    stack: list[Node] = []
    out: list[list[Node]] = []
    counter = 0
    for root in node_list:
        if root in index:
            continue
        work = [(root, 0)]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, i = work[-1]
            nxt = succ[v]
            if i < len(nxt):
                work[-1] = (v, i + 1)
                w = nxt[i]
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, 0))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w is v:
                        break
                out.append(comp)
    return out


@dataclass
class Elimination:
    """One group of edges removed from a component by one counter."""

    counter: str
    backstop: bool
    edges: list[Edge]
    level: int
    entries: int
    """Bound on entries into the component where it was removed."""
    fires: int
    """Bound on how often the group's edges fire in one turn."""
    absolute: bool
    through: tuple[str, ...]
    """Backstops that had to be removed (in enclosing components) before this counter bounded it."""


@dataclass
class BackstopLoop:
    """An edge whose bound passes through a global backstop."""

    edge: str
    backstop: str
    counter: str
    declared: bool
    bound: str
    transition_source: str
    event: str
    order: int


@dataclass
class Termination:
    halts: bool
    eliminations: list[Elimination]
    fires: dict[int, int]
    """Edge index -> bound on firings per turn (every edge of the graph has one when halts)."""
    unbounded: list[list[Edge]] = field(default_factory=list)
    """Stuck components: their remaining edges (a cycle no counter bounds)."""
    backstop_loops: list[BackstopLoop] = field(default_factory=list)
    stuck_components: dict[int, list[Edge]] = field(default_factory=dict)
    """Edge index of a flagged edge -> the edges of the component where the backstop was removed."""


def eliminate(an: Analysis, g: Graph) -> Termination:
    policy = an.policy
    names = policy.counter_names
    backstop_ix = set(an.backstop_index)
    reset_anywhere: set[int] = set()
    for e in g.edges:
        reset_anywhere |= e.resets
    result = Termination(True, [], {})
    fires = result.fires

    def process(nodes: list[Node], edges: list[Edge], entries: int, level: int, through: tuple[str, ...], outer: list[Edge] | None) -> None:
        node_set = set(nodes)
        inner = [e for e in edges if e.src in node_set and e.dst in node_set]
        comps = sccs(nodes, inner)
        comp_of: dict[Node, int] = {}
        for i, c in enumerate(comps):
            for n in c:
                comp_of[n] = i
        for e in inner:
            if comp_of[e.src] != comp_of[e.dst]:
                fires[e.index] = min(fires.get(e.index, entries), entries)
        for c in comps:
            cset = set(c)
            cedges = [e for e in inner if e.src in cset and e.dst in cset]
            if not cedges:
                continue
            component(c, cedges, entries, level, through, outer)

    def component(nodes: list[Node], edges: list[Edge], entries: int, level: int, through: tuple[str, ...], outer: list[Edge] | None) -> None:
        resets: set[int] = set()
        incs: set[int] = set()
        for e in edges:
            resets |= e.resets
            incs |= e.incs
        ordinary = sorted(i for i in incs - resets if i not in backstop_ix)
        chosen: list[int]
        via: tuple[str, ...] = through
        if ordinary:
            chosen = ordinary
        else:
            spendable = [i for i in incs - resets if i in backstop_ix]
            if not spendable:
                result.halts = False
                result.unbounded.append(edges)
                for e in edges:
                    fires.setdefault(e.index, 0)
                return
            best = min(spendable, key=lambda i: _backstop_cost(an, edges, i))
            chosen = [best]
            via = through + (names[best],)
        removed: set[int] = set()
        total = 0
        for ci in chosen:
            group = [e for e in edges if ci in e.incs]
            amount = _min_amount(an, group, ci)
            absolute = ci not in reset_anywhere
            per = an.caps[ci] // amount
            bound = per if absolute else per * entries
            el = Elimination(names[ci], ci in backstop_ix, group, level, entries, bound, absolute, through)
            result.eliminations.append(el)
            total += bound
            for e in group:
                fires[e.index] = min(fires.get(e.index, bound), bound)
                removed.add(e.index)
                if via:
                    _flag(result, e, via, names[ci], bound, edges if ci in backstop_ix else outer, policy)
        rest = [e for e in edges if e.index not in removed]
        process(nodes, rest, entries + total, level + 1, via, edges if via != through else outer)

    process(g.nodes, g.edges, 1, 0, (), None)
    # Edges outside every reachable cycle fire at most once; process() already set them.
    for e in g.edges:
        fires.setdefault(e.index, 1)
    return result


def _min_amount(an: Analysis, group: list[Edge], ci: int) -> int:
    amounts = []
    for e in group:
        t = e.transition
        amt = 1
        if t is not None:
            for inc in t.increments():
                if inc.index == ci:
                    amt = inc.amount
        amounts.append(amt)
    return max(1, min(amounts) if amounts else 1)


def _backstop_cost(an: Analysis, edges: list[Edge], ci: int) -> tuple[int, int]:
    name = an.policy.counter_names[ci]
    group = [e for e in edges if ci in e.incs]
    undeclared = sum(1 for e in group if e.transition is None or e.transition.bounded_by != name)
    return (undeclared, len(group))


def _flag(result: Termination, e: Edge, via: tuple[str, ...], counter: str, bound: int, stuck: list[Edge] | None, policy: Policy) -> None:
    t = e.transition
    if t is None:
        return
    declared = t.bounded_by is not None and t.bounded_by in via
    budget = policy.budgets.get(t.bounded_by or "")
    if not declared and budget is not None and "model_calls" in via:
        # a budget with min_per_call caps the model calls (the validator refuses bounded_by one without)
        declared = budget.min_per_call is not None
    backstop = via[-1] if counter in via else via[0]
    if declared and t.bounded_by not in via:
        backstop = str(t.bounded_by)  # the budget that caps the model calls
    if counter not in via:
        why = f"{counter} bounds it per entry, but the entries are bounded only by {' and '.join(via)}"
    else:
        why = f"bounded only by the {counter} backstop"
    key = e.label
    for bl in result.backstop_loops:
        if bl.edge == key and bl.backstop == backstop:
            return
    result.backstop_loops.append(
        BackstopLoop(key, backstop, counter, declared, why, t.source, t.event, t.order)
    )
    if stuck is not None and not declared:
        result.stuck_components.setdefault(e.index, stuck)


# --------------------------------------------------------------------------- bounds


def worst_case(an: Analysis, g: Graph, term: Termination) -> dict[str, dict[str, int]]:
    """Upper bounds on model calls and tool batches per turn, overall and per outcome."""
    policy = an.policy
    halts_by_outcome: dict[str, list[Node]] = {}
    for n in g.nodes:
        s = policy.states[n.state]
        if s.kind == "halt":
            halts_by_outcome.setdefault(s.outcome or "?", []).append(n)
    # backward reachability to each outcome's halts
    preds: dict[Node, list[Edge]] = {}
    for e in g.edges:
        preds.setdefault(e.dst, []).append(e)

    def reaching(targets: list[Node]) -> set[int]:
        seen_n = set(targets)
        stack = list(targets)
        es: set[int] = set()
        while stack:
            n = stack.pop()
            for e in preds.get(n, ()):
                es.add(e.index)
                if e.src not in seen_n:
                    seen_n.add(e.src)
                    stack.append(e.src)
        return es

    start = g.initial_config.counters
    figures: dict[str, dict[str, int]] = {}

    def bound_for(edge_ids: set[int] | None, halts: list[Node] | None) -> dict[str, int]:
        out: dict[str, int] = {}
        for b, bname in enumerate(an.backstop_names):
            idx = an.backstop_index[b]
            cap = an.caps[idx]
            total = start[idx]  # the initial state's own entry, as the compiled model counted it
            for e in g.edges:
                if edge_ids is not None and e.index not in edge_ids:
                    continue
                if idx in e.incs:  # the step itself says it spends one of this backstop
                    total += term.fires.get(e.index, 1)
            limit = cap
            if halts:
                worst_phase = max(n.phases[b] for n in halts)
                if worst_phase == PHASE_LOW:
                    limit = cap - 2
                elif worst_phase == PHASE_LAST:
                    limit = cap - 1
            out[bname] = max(0, min(total, limit, cap))
        return out

    figures["*"] = bound_for(None, None)
    for outcome, halts in sorted(halts_by_outcome.items()):
        figures[outcome] = bound_for(reaching(halts), halts)
    return figures
