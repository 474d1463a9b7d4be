"""Structural findings, read off the abstract graph (which over-approximates every run).

- unreachable states: no abstract path from the initial state (so no run reaches them);
- states with no path to a halt: every run through them is infinite;
- unhandled events: an event case the state's effect can emit with no enabled transition in some
  configuration (the run falls into the ``policy_error`` halt);
- dead transitions: a transition the model never selects in any abstract configuration, because an
  earlier transition on the same event always matches (shadowed) or its guard never holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..language.model import POLICY_ERROR_STATE, Config, Transition
from .atoms import SAT, UNKNOWN
from .abstract_graph import Graph
from .abstraction import Analysis


@dataclass
class Unhandled:
    state: str
    event: str
    attrs: dict
    when: str
    """What about the configuration leaves it unhandled ("with flags a; when tries is at its cap"),
    or "" when the event has no transitions at all."""

    def describe(self) -> str:
        when = f" {self.when}" if self.when else ""
        return f"{self.state}: event '{self.event}'{when} has no enabled transition (the turn would end in policy_error)"


@dataclass
class Dead:
    transition: Transition
    reason: str
    shadowed_by: tuple[str, ...]
    """The earlier transitions selected where this one is enabled, in the state's order (none:
    its guard never holds, or the search could not tell)."""

    def describe(self) -> str:
        return f"{self.transition.label}: {self.reason}"


@dataclass
class Structure:
    unreachable: list[str] = field(default_factory=list)
    no_path_to_halt: list[str] = field(default_factory=list)
    unhandled: list[Unhandled] = field(default_factory=list)
    dead: list[Dead] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "unreachable_states": list(self.unreachable),
            "no_path_to_halt": list(self.no_path_to_halt),
            "unhandled_events": [
                {"state": u.state, "event": u.event, "attrs": u.attrs, "when": u.when or None} for u in self.unhandled
            ],
            "shadowed_transitions": [
                {"transition": d.transition.label, "reason": d.reason, "shadowed_by": list(d.shadowed_by)} for d in self.dead
            ],
        }


def analyse_structure(an: Analysis, g: Graph) -> Structure:
    policy = an.policy
    out = Structure()
    reached = g.states()
    for name in policy.states:
        if name != POLICY_ERROR_STATE and name not in reached:
            out.unreachable.append(name)

    # states with no path to a halt (backward reachability from every halt node)
    preds: dict = {}
    for e in g.edges:
        preds.setdefault(e.dst, []).append(e.src)
    good = {n for n in g.nodes if an.kind(n.state) == "halt"}
    stack = list(good)
    while stack:
        n = stack.pop()
        for p in preds.get(n, ()):
            if p not in good:
                good.add(p)
                stack.append(p)
    bad_states = sorted({n.state for n in g.nodes if n not in good})
    out.no_path_to_halt = bad_states

    # unhandled events
    seen_unhandled: set[tuple[str, str, str]] = set()
    for e in g.edges:
        if e.transition is None:
            ev = e.step.event
            s = policy.states[e.src.state]
            when = ""
            if ev.name in s.transitions:
                when = _describe_config(an, e.step.before, ev)
            key = (e.src.state, ev.name, when)
            if key in seen_unhandled:
                continue
            seen_unhandled.add(key)
            out.unhandled.append(Unhandled(e.src.state, ev.name, dict(ev.attrs), when))

    # dead transitions: never selected on any abstract edge from a reachable state
    selected = {id(e.transition) for e in g.edges if e.transition is not None}
    for name in policy.states:
        if name not in reached:
            continue
        for t in policy.states[name].all_transitions():
            if id(t) in selected:
                continue
            out.dead.append(_why_dead(an, g, t))
    return out


def _describe_config(an: Analysis, cfg: Config, ev) -> str:  # type: ignore[no-untyped-def]
    bits = []
    attrs = {k: v for k, v in ev.attrs.items()}
    if attrs:
        bits.append("with " + ", ".join(f"{k}={v!r}" for k, v in attrs.items()))
    names = an.policy.counter_names
    at_cap = [names[i] for i, v in enumerate(cfg.counters) if v >= an.caps[i] and i not in an.backstop_index]
    if at_cap:
        bits.append("when " + ", ".join(f"{n} is at its cap" for n in at_cap))
    if cfg.flags:
        bits.append("with flags " + ", ".join(sorted(cfg.flags)))
    return "; ".join(bits)


def _why_dead(an: Analysis, g: Graph, t: Transition) -> Dead:
    """Shadowed (wherever its guard holds, an earlier transition is selected: each one that is,
    somewhere, is named, in the state's order) or never enabled."""
    shadowers: set[int] = set()
    undecided = False
    seen: set[tuple[frozenset[str], tuple[int, ...]]] = set()
    for n in g.nodes:
        if n.state != t.source or (n.flags, n.phases) in seen:
            continue
        seen.add((n.flags, n.phases))
        for k, status in enumerate(an.shadowers(t, n.flags, n.phases)):
            if status == SAT:
                shadowers.add(k)
            elif status == UNKNOWN:
                undecided = True
    if shadowers:
        earlier = an.policy.states[t.source].transitions[t.event]
        names = tuple(earlier[k].label for k in sorted(shadowers))
        which = "an earlier transition always matches" if len(names) == 1 else "earlier transitions always match"
        return Dead(t, f"shadowed: {which} first ({', '.join(names)})", names)
    if undecided:  # only past the case search's budget
        return Dead(t, "never selected: an earlier transition matches first wherever this one may be enabled", ())
    return Dead(t, "never enabled: its guard (with its cap checks) never holds in a reachable configuration", ())
