"""The finite abstraction the checker explores: event cases, counter representatives, abstract nodes.

Nothing here re-implements a guard or an action. Every abstract edge is the result of calling the
compiled model's own :meth:`Policy.step` on a concrete representative configuration and event:

- **Event cases.** The guards on a state's transitions for one event test finitely many attribute
  predicates (``AttrTest``). Each attribute gets a few candidate values derived from the constants
  those predicates mention (``c-1, c, c+1``, every enum value, ``[]`` and ``[c]`` for ``contains``);
  candidates whose predicate truth vectors coincide are one case, and one representative per case is
  kept. An adversary answering anything the alphabet allows can only produce one of these cases.
- **Counter representatives.** For the counters a state's transitions on one event read (guards) or
  increment (cap checks), the values ``0``, ``max`` and ``c-1, c, c+1`` around every constant cover
  every truth combination of the comparisons. Other counters do not influence that decision.
- **Abstract node** = state x the flags any guard reads (plus ``tools_disabled``) x the phase of each
  backstop (``low`` below max-1, ``last`` at max-1, ``spent`` at max: the only distinctions the
  redirect makes) x a small property monitor (pending tool calls, a silent stub in flight).

The abstract graph over-approximates the concrete configuration graph: every concrete step maps to
an abstract edge between the nodes of its configurations (counters are forgotten, so an abstract
edge "may fire"). Termination and the properties are proven on it; see :mod:`.termination`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from ..spec.alphabet import BACKSTOP_KIND, KINDS, Event
from ..spec.properties import budget_lasts, continuation_counters
from ..spec.model import (
    AllOf,
    AnyOf,
    AttrTest,
    Config,
    CounterCmp,
    FlagIs,
    Guard,
    Not,
    Policy,
    Step,
    Transition,
)

TOOLS_DISABLED = "tools_disabled"
from loopspec.spec.model import WRAP_UP_FLAG  # noqa: E402

PHASE_LOW, PHASE_LAST, PHASE_SPENT = 0, 1, 2
PHASE_NAMES = ("low", "last", "spent")

_MAX_CANDIDATES = 4096


# --------------------------------------------------------------------------- guard atoms


def guard_atoms(g: Guard) -> Iterator[Guard]:
    """Every leaf predicate of a guard (AttrTest, CounterCmp, FlagIs)."""
    if isinstance(g, (AllOf, AnyOf)):
        for p in g.parts:
            yield from guard_atoms(p)
    elif isinstance(g, Not):
        yield from guard_atoms(g.part)
    elif isinstance(g, (AttrTest, CounterCmp, FlagIs)):
        yield g


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _attr_candidates(attr_type: str, enum: tuple[str, ...], atoms: list[AttrTest]) -> list[Any]:
    """Candidate values for one attribute: enough to realise every truth value of ``atoms``."""
    if not atoms:
        return [_default_value(attr_type, enum)]
    consts: list[Any] = []
    for a in atoms:
        if a.op == "in":
            consts.extend(a.value or ())
        elif a.value is not None:
            consts.append(a.value)
    out: list[Any] = []

    def add(v: Any) -> None:
        if v not in out:
            out.append(v)

    if attr_type == "bool":
        add(False)
        add(True)
    elif attr_type == "int":
        add(0)
        add(1)
        for c in consts:
            if _numeric(c):
                c = int(c) if float(c).is_integer() else c
                for d in (-1, 0, 1):
                    v = c + d
                    add(int(v) if float(v).is_integer() else v)
                if not float(c).is_integer():
                    add(int(c))
                    add(int(c) + 1)
    elif attr_type == "float":
        add(0.0)
        add(1.0)
        for c in consts:
            if _numeric(c):
                for dx in (-0.5, 0.0, 0.5):
                    add(float(c) + dx)
    elif attr_type == "str":
        if enum:
            for v in enum:
                add(v)
        else:
            add("")
            add("x")
            for c in consts:
                if isinstance(c, str):
                    add(c)
                    add(c + "z")
    elif attr_type == "list":
        add([])
        add(["x"])
        for c in consts:
            add([c])
    else:  # pragma: no cover - alphabet only has the types above
        add(None)
    return out


def _default_value(attr_type: str, enum: tuple[str, ...]) -> Any:
    if attr_type == "bool":
        return False
    if attr_type == "int":
        return 0
    if attr_type == "float":
        return 0.0
    if attr_type == "str":
        return enum[0] if enum else ""
    if attr_type == "list":
        return []
    return None  # pragma: no cover


# Attributes the property monitor reads, split even when no guard tests them.
MONITOR_ATTRS: dict[tuple[str, str], tuple[str, ...]] = {
    ("stream", "length"): ("has_tool_calls",),
    ("stream", "stalled"): ("mid_tool_call",),
}


def event_cases(policy: Policy, state: str, event_name: str) -> list[Event]:
    """One representative event per case the guards of ``state`` on ``event_name`` distinguish."""
    s = policy.states[state]
    spec = KINDS[s.kind].event(event_name)
    assert spec is not None
    atoms: list[AttrTest] = []
    for t in s.transitions.get(event_name, ()):
        for a in guard_atoms(t.guard):
            if isinstance(a, AttrTest) and a not in atoms:
                atoms.append(a)
    monitor = MONITOR_ATTRS.get((s.kind, event_name), ())
    for name in monitor:
        probe = AttrTest(name, "truthy")
        if probe not in atoms:
            atoms.append(probe)
    names = [a.name for a in spec.attrs]
    per_attr = []
    for attr in spec.attrs:
        mine = [a for a in atoms if a.attr == attr.name]
        per_attr.append(_attr_candidates(attr.type, attr.values, mine))
    total = 1
    for c in per_attr:
        total *= len(c)
    if total > _MAX_CANDIDATES:  # pragma: no cover - needs a pathological guard
        raise ValueError(f"{state}.{event_name}: too many attribute combinations ({total})")
    seen: dict[tuple[bool, ...], Event] = {}
    for combo in itertools.product(*per_attr):
        ev = Event(event_name, dict(zip(names, combo)))
        key = tuple(a.evaluate(policy, _DUMMY_CFG, ev) for a in atoms)
        if key not in seen:
            seen[key] = ev
    return list(seen.values())


_DUMMY_CFG = Config("", (), frozenset())  # AttrTest never reads the configuration


# --------------------------------------------------------------------------- counters


def phase_of(value: int, cap: int) -> int:
    if value >= cap:
        return PHASE_SPENT
    if value >= cap - 1:
        return PHASE_LAST
    return PHASE_LOW


@dataclass(frozen=True)
class Node:
    """An abstract configuration: state, tracked flags, backstop phases and the property monitor."""

    state: str
    flags: frozenset[str]
    phases: tuple[int, ...]
    """One entry per backstop, in :attr:`Analysis.backstop_names` order."""
    pending: int = 0
    """Monitor: 0 no tool calls pending, 1 complete calls pending, 2 partial (truncated) calls."""
    silent: bool = False
    """Monitor: a mid-tool-call stub with continuation budget left, not yet followed by a call."""

    def describe(self) -> str:
        bits = [self.state]
        if self.flags:
            bits.append("{" + ",".join(sorted(self.flags)) + "}")
        return " ".join(bits)


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
    def target(self) -> str:
        return self.dst.state

    @property
    def label(self) -> str:
        t = self.transition
        if t is None:
            return f"{self.src.state} --{self.step.event.name}--> {self.dst.state} (no transition)"
        lab = t.label
        if self.step.redirected_from is not None:
            lab += f" => {self.dst.state} (backstop redirect)"
        return lab


@dataclass
class Analysis:
    """Per-policy tables shared by every pass of the checker."""

    policy: Policy
    tracked_flags: frozenset[str]
    backstop_names: tuple[str, ...]
    backstop_index: tuple[int, ...]
    caps: tuple[int, ...]
    continuation_counters: tuple[int, ...]
    cases: dict[tuple[str, str], list[Event]] = field(default_factory=dict)
    rho: dict[tuple[str, str, tuple[int, ...]], list[tuple[int, ...]]] = field(default_factory=dict)
    steps_evaluated: int = 0

    def kind(self, state: str) -> str:
        return self.policy.states[state].kind

    def events_of(self, state: str) -> tuple[str, ...]:
        return KINDS[self.kind(state)].event_names

    def cases_of(self, state: str, event: str) -> list[Event]:
        key = (state, event)
        got = self.cases.get(key)
        if got is None:
            got = self.cases[key] = event_cases(self.policy, state, event)
        return got

    def phases_of(self, counters: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(phase_of(counters[i], self.caps[i]) for i in self.backstop_index)

    def node_of(self, cfg: Config, pending: int = 0, silent: bool = False) -> Node:
        return Node(cfg.state, cfg.flags & self.tracked_flags, self.phases_of(cfg.counters), pending, silent)

    def budget_lasts(self, cfg: Config) -> bool:
        """The continuation budget lasts (the properties' own definition)."""
        return budget_lasts(self.policy, cfg, self.continuation_counters)

    # -- representative configurations ---------------------------------------------------------

    def representatives(self, state: str, event: str, phases: tuple[int, ...]) -> list[tuple[int, ...]]:
        key = (state, event, phases)
        got = self.rho.get(key)
        if got is None:
            got = self.rho[key] = self._representatives(state, event, phases)
        return got

    def _representatives(self, state: str, event: str, phases: tuple[int, ...]) -> list[tuple[int, ...]]:
        p = self.policy
        s = p.states[state]
        values: dict[int, set[int]] = {}

        def want(i: int, v: int) -> None:
            values.setdefault(i, set()).add(v)

        transitions = s.transitions.get(event, ())
        enters_counted: set[str] = set()
        for t in transitions:
            for a in guard_atoms(t.guard):
                if isinstance(a, CounterCmp):
                    for d in (-1, 0, 1):
                        want(a.index, a.value + d)
            for inc in t.increments():
                cap = self.caps[inc.index]
                want(inc.index, cap - inc.amount)
                want(inc.index, cap - inc.amount + 1)
            enters_counted.add(p.states[t.target].kind)
        if (s.kind == "stub" and event == "mid_tool_call") or (s.kind == "stream" and event == "stalled"):
            for i in self.continuation_counters:
                want(i, self.caps[i] - 1)
                want(i, self.caps[i])
        n = len(p.counters)
        axes: list[list[int]] = []
        for i in range(n):
            cap = self.caps[i]
            if i in self.backstop_index:
                b = self.backstop_index.index(i)
                ph = phases[b]
                counted = BACKSTOP_KIND[self.backstop_names[b]] in enters_counted
                if ph == PHASE_LAST:
                    axes.append([cap - 1])
                elif ph == PHASE_SPENT:
                    axes.append([cap])
                else:
                    cand = {0}
                    if counted:
                        cand.add(cap - 2)
                    cand |= {v for v in values.get(i, ()) if 0 <= v <= cap - 2}
                    axes.append(sorted(v for v in cand if 0 <= v <= cap - 2) or [0])
                continue
            if i not in values:
                axes.append([0])
                continue
            cand = {0, cap} | values[i]
            axes.append(sorted(v for v in cand if 0 <= v <= cap))
        return [tuple(c) for c in itertools.product(*axes)]


def build_analysis(policy: Policy) -> Analysis:
    # tools_disabled for the property; the wrap-up flag because the backstop redirect reads it
    tracked = {TOOLS_DISABLED, WRAP_UP_FLAG}
    for s in policy.states.values():
        for t in s.all_transitions():
            for a in guard_atoms(t.guard):
                if isinstance(a, FlagIs):
                    tracked.add(a.flag)
    names = tuple(policy.backstops)
    idx = tuple(policy.counter_index(n) for n in names)
    caps = tuple(c.max for c in policy.counters)
    return Analysis(policy, frozenset(tracked), names, idx, caps, continuation_counters(policy))


def counted_increments(an: Analysis, step: Step) -> frozenset[int]:
    """Counters a step increments under cap enforcement (see :attr:`Step.capped`)."""
    return step.capped


def step_resets(an: Analysis, step: Step) -> frozenset[int]:
    """Counters a step resets (see :attr:`Step.resets`)."""
    return step.resets


def iter_base_steps(an: Analysis, state: str, flags: frozenset[str], phases: tuple[int, ...]) -> Iterable[Step]:
    """Every distinct model step from the abstract (state, flags, phases), one per outcome."""
    policy = an.policy
    seen: set[tuple[Any, ...]] = set()
    for ev_name in an.events_of(state):
        cases = an.cases_of(state, ev_name)
        reps = an.representatives(state, ev_name, phases)
        for ev in cases:
            for rho in reps:
                cfg = Config(state, rho, flags)
                step = policy.step(cfg, ev)
                an.steps_evaluated += 1
                after = step.after
                key = (
                    ev_name,
                    id(step.transition),
                    after.state,
                    after.flags & an.tracked_flags,
                    an.phases_of(after.counters),
                    step.redirected_from,
                    _monitor_signature(an, step),
                )
                if key in seen:
                    continue
                seen.add(key)
                yield step


def _monitor_signature(an: Analysis, step: Step) -> tuple[Any, ...]:
    ev = step.event
    return (
        bool(ev.attrs.get("has_tool_calls")),
        bool(ev.attrs.get("mid_tool_call")),
        an.budget_lasts(step.before) if ev.name in ("mid_tool_call", "stalled") else None,
    )


# --------------------------------------------------------------------------- the abstract graph


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
    from .properties import monitor_step

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
            pending, silent, viol = monitor_step(an, n.pending, n.silent, step)
            dst = an.node_of(step.after, pending, silent)
            k = (id(step.transition), dst, step.redirected_from)
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
