"""The reachable abstract graph: its edges, each realised by one of the compiled model's own steps
from a witness configuration, explored breadth-first from the abstract node of the initial
configuration over the tables of :class:`.abstraction.Analysis`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from ..language.model import Config, Step, Transition
from .abstraction import Analysis, Node
from .cases import BUDGET_EVENTS, case_steps
from .properties import monitor_step


@dataclass
class Edge:
    """One abstract edge: a transition that may fire between two abstract nodes."""

    index: int
    src: Node
    dst: Node
    transition: Transition | None
    step: Step
    """A concrete representative step (model's own result) that realises this edge."""
    incs: frozenset[int]
    """Counters this edge increments under cap enforcement (transition increments, backstop entries)."""
    resets: frozenset[int]
    violations: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        t = self.transition
        if t is None:
            return f"{self.src.state} --{self.step.event.name}--> {self.dst.state} (no transition)"
        lab = t.label
        if self.step.redirected_from is not None:
            lab += f" => {self.dst.state} (backstop redirect)"
        return lab


def counted_increments(an: Analysis, step: Step) -> frozenset[int]:
    """Counters a step increments under cap enforcement (see :attr:`Step.capped`)."""
    return step.capped


def step_resets(an: Analysis, step: Step) -> frozenset[int]:
    """Counters a step resets (see :attr:`Step.resets`)."""
    return step.resets


def iter_base_steps(an: Analysis, state: str, flags: frozenset[str], phases: tuple[int, ...]) -> Iterable[Step]:
    """Every distinct model step from the abstract (state, flags, phases), one per outcome."""
    seen: set[tuple[Any, ...]] = set()
    for ev_name in an.events_of(state):
        sel = an.selection(state, ev_name)
        for case in an.abstract_cases(state, flags, phases, ev_name):
            cfg = Config(state, case.counters, case.flags)
            for step in case_steps(sel, cfg, case):
                an.steps_evaluated += 1
                after = step.after
                key = (
                    ev_name,
                    id(step.transition),
                    after.state,
                    after.flags & an.tracked_flags,
                    an.phases_of(after.counters),
                    step.redirected_from,
                    monitor_signature(an, step),
                )
                if key in seen:
                    continue
                seen.add(key)
                yield step


def monitor_signature(an: Analysis, step: Step) -> tuple[Any, ...]:
    """What the property monitor reads of a step besides its target: two steps of one transition to
    one abstract node differ as edges only if this differs."""
    ev = step.event
    return (
        bool(ev.attrs.get("has_tool_calls")),
        bool(ev.attrs.get("mid_tool_call")),
        an.budget_lasts(step.before) if ev.name in BUDGET_EVENTS else None,
    )


@dataclass
class Graph:
    """The reachable abstract graph, from the abstract node of the initial configuration."""

    initial: Node
    initial_config: Config
    nodes: list[Node]
    edges: list[Edge]
    out: dict[Node, list[Edge]]

    def states(self) -> set[str]:
        return {n.state for n in self.nodes}


def build_graph(an: Analysis) -> Graph:
    policy = an.policy
    cfg0 = policy.initial_config()
    init = an.node_of(cfg0)
    nodes: list[Node] = [init]
    seen: set[Node] = {init}
    out: dict[Node, list[Edge]] = {}
    edges: list[Edge] = []
    base_cache: dict[tuple[str, frozenset[str], tuple[int, ...]], list[Step]] = {}
    queue = [init]
    head = 0
    while head < len(queue):
        n = queue[head]
        head += 1
        mine: list[Edge] = []
        out[n] = mine
        if an.kind(n.state) == "halt":
            continue
        key = (n.state, n.flags, n.phases)
        base = base_cache.get(key)
        if base is None:
            base = base_cache[key] = list(iter_base_steps(an, n.state, n.flags, n.phases))
        dedup: dict[tuple[object, ...], Edge] = {}
        for step in base:
            silent, viol = monitor_step(an, n.silent, step)
            dst = an.node_of(step.after, silent)
            # an unhandled event has no transition: keep one edge per event, so each is a finding
            unhandled = step.event.name if step.transition is None else None
            k = (id(step.transition), dst, step.redirected_from, unhandled)
            e = dedup.get(k)
            if e is not None:
                if viol:
                    known = {name for name, _ in e.violations}
                    e.violations = e.violations + tuple(x for x in viol if x[0] not in known)
                continue
            e = Edge(len(edges), n, dst, step.transition, step, counted_increments(an, step), step_resets(an, step), tuple(viol))
            dedup[k] = e
            edges.append(e)
            mine.append(e)
            if dst not in seen:
                seen.add(dst)
                nodes.append(dst)
                queue.append(dst)
    return Graph(init, cfg0, nodes, edges, out)
