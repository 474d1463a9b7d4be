"""The compiled selection: a state's transitions for one event as a formula over variables
(attributes, counters, flags), which the outcome search in :mod:`.cases` solves."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Hashable, Mapping, Sequence, cast

from ..language.alphabet import KINDS, WAIT_TOO_LONG, Attr
from ..language.model import (
    AllOf,
    Always,
    AnyOf,
    AttrTest,
    Config,
    CounterCmp,
    FlagIs,
    Guard,
    Not,
    Policy,
    Transition,
)
from .atoms import SAT, UNKNOWN, UNSAT
from .witnesses import attr_witness, counter_witness


# Attributes the property monitor reads, split even when no guard tests them.
MONITOR_ATTRS: dict[tuple[str, str], tuple[str, ...]] = {
    ("stream", "length"): ("has_tool_calls",),
    ("stream", "stalled"): ("mid_tool_call",),
}

BUDGET_EVENTS = ("mid_tool_call", "stalled")
"""Events on which the monitor reads whether the continuation budget lasts."""


@dataclass(frozen=True)
class Domains:
    """Where the counters and flags may be: each counter in an inclusive range; flags fixed or free."""

    counters: tuple[tuple[int, int], ...]
    flags: frozenset[str] | None
    """The set flags, or None when every flag may be either."""

    @staticmethod
    def of_config(cfg: Config) -> "Domains":
        return Domains(tuple((v, v) for v in cfg.counters), cfg.flags)

    def config(self, values: Mapping[int, int] | None = None) -> Config:
        """A configuration in the domains (each counter at ``values`` or its lowest), to evaluate
        counter and flag tests in: no state, which no guard reads."""
        vals = values or {}
        counters = tuple(vals.get(i, lo) for i, (lo, _hi) in enumerate(self.counters))
        return Config("", counters, self.flags or frozenset())


# =========================================================================== compiled selection

# The operators of a compiled guard node: (OP_ATOM, atom index), (OP_AND | OP_OR, parts), (OP_NOT, part),
# (OP_CONST, truth). The case search in cases.py walks these nodes.
OP_ATOM, OP_AND, OP_OR, OP_NOT, OP_CONST = 0, 1, 2, 3, 4
Node = tuple[Any, ...]
TRUE: Node = (OP_CONST, True)

Var = tuple[str, Any]
"""("attr", name), ("counter", index), ("flag", name) or ("opaque", atom index)."""

CONFIG_VARS = ("counter", "flag")
"""The kinds of variable a configuration decides (an opaque atom is undecided everywhere)."""


def _freeze(v: Any) -> Hashable:
    """A hashable stand-in for a guard's value, equal for two values exactly when the guard tests
    them alike: a list is not a tuple (``[1] == (1,)`` is false), while 1, 1.0 and True are equal."""
    if isinstance(v, (list, tuple)):
        return (type(v), tuple(_freeze(x) for x in v))
    if isinstance(v, dict):
        return (dict, tuple(sorted((repr(k), _freeze(x)) for k, x in v.items())))
    try:
        hash(v)
    except TypeError:  # a set in a policy built in code (YAML gives lists, mappings and scalars only)
        return (type(v), repr(v))
    return v


def _config_truth(atom: Guard, cfg: Config) -> bool:
    """A counter or flag atom's truth in ``cfg``, by the guard's own test (as the interpreter
    evaluates it): neither reads the policy or the event."""
    assert isinstance(atom, (CounterCmp, FlagIs)), atom
    return atom.in_config(cfg)


@dataclass
class Selection:
    """A state's transitions on one event, compiled for the outcome search."""

    policy: Policy
    state: str
    event: str
    attrs: tuple[Attr, ...]
    transitions: tuple[Transition, ...]
    atoms: list[Guard] = field(default_factory=list)
    vars: list[Var] = field(default_factory=list)
    enabled: list[Node] = field(default_factory=list)
    """Per transition: its guard and its cap checks (``counter <= max - amount``), as in Policy.enabled."""
    caps: list[Node] = field(default_factory=list)
    """Per transition: its cap checks alone (for a "may fire" step)."""
    monitor: list[Node] = field(default_factory=list)
    """The truthiness of each attribute the monitor reads (:data:`MONITOR_ATTRS`)."""
    budget: Node | None = None
    _keys: dict[Hashable, int] = field(default_factory=dict)
    _theory: dict[Hashable, tuple[str, Any]] = field(default_factory=dict)
    _forced: dict[tuple[int | None, str], Policy] = field(default_factory=dict)
    _outcomes: dict[Hashable, list[tuple[int | None, dict[Var, Any], bool]]] = field(default_factory=dict)
    counter_vars: tuple[int, ...] = ()
    flag_vars: frozenset[str] = frozenset()
    queries: int = 0
    may: int = 0

    # -- compilation -------------------------------------------------------------------------

    def atom(self, g: Guard) -> Node:
        if isinstance(g, AttrTest) and g.attr == WAIT_TOO_LONG:
            return self.derived_wait(g)
        if isinstance(g, AttrTest):
            var: Var = ("attr", g.attr)
            key: Hashable = (var, g.op, _freeze(g.value))
        elif isinstance(g, CounterCmp):
            var = ("counter", g.index)
            key = (var, g.op, _freeze(g.value))
        elif isinstance(g, FlagIs):
            var = ("flag", g.flag)
            key = (var, g.value)
        else:  # a guard form this module does not know (a policy built in code): undecided, may fire
            var = ("opaque", len(self.atoms))
            key = id(g)  # the same guard object is one atom wherever it appears
        i = self._keys.get(key)
        if i is None:
            i = self._keys[key] = len(self.atoms)
            self.atoms.append(g)
            self.vars.append(var)
        return (OP_ATOM, i)

    def derived_wait(self, g: AttrTest) -> Node:
        """A test on ``wait_too_long`` is a test on ``retry_after``: the interpreter sets it to
        ``retry_after > backoff.max_wait`` on every call event (:func:`judge_wait`), so judging the
        two attributes independently would invent events no provider can cause."""
        when_true, when_false = g.holds(True), g.holds(False)
        if when_true == when_false:
            return TRUE if when_true else (OP_NOT, TRUE)
        longer = self.atom(AttrTest("retry_after", "gt", self.policy.settings.max_wait))
        return longer if when_true else (OP_NOT, longer)

    def compile(self, g: Guard) -> Node:
        if isinstance(g, Always):
            return TRUE
        if isinstance(g, AllOf):
            return (OP_AND, tuple(self.compile(p) for p in g.parts))
        if isinstance(g, AnyOf):
            return (OP_OR, tuple(self.compile(p) for p in g.parts))
        if isinstance(g, Not):
            return (OP_NOT, self.compile(g.part))
        return self.atom(g)

    def cap_node(self, t: Transition) -> Node:
        checks = []
        for inc in t.increments():
            c = self.policy.counters[inc.index]
            checks.append(self.atom(CounterCmp(c.name, c.index, "le", c.max - inc.amount)))
        return (OP_AND, tuple(checks))

    # -- per-variable theories -----------------------------------------------------------------

    def theory(self, var: Var, lits: Sequence[tuple[int, bool]], domains: "Domains") -> tuple[str, Any]:
        kind, name = var
        if kind == "counter":
            lo, hi = domains.counters[name]
            key: Hashable = (var, lo, hi, frozenset(lits))
        else:
            key = (var, frozenset(lits))
        got = self._theory.get(key)
        if got is not None:
            return got
        if kind == "attr":
            spec = next((a for a in self.attrs if a.name == name), None)
            got = attr_witness(spec, [(cast(AttrTest, self.atoms[i]), w) for i, w in lits])
        elif kind == "counter":
            got = counter_witness(lo, hi, [(cast(CounterCmp, self.atoms[i]), w) for i, w in lits])
        elif kind == "flag":
            got = (UNSAT, None)
            for present in (False, True):
                if all(cast(FlagIs, self.atoms[i]).holds(present) is w for i, w in lits):
                    got = (SAT, present)
                    break
        else:  # an opaque atom (see atom)
            got = (UNKNOWN, None)
        self._theory[key] = got
        return got

    def context_key(self, cfg: Config) -> tuple[bool, ...]:
        """The truth of every counter and flag atom in ``cfg``: all that the cases depend on in it."""
        return tuple(_config_truth(self.atoms[i], cfg) for i, (kind, _n) in enumerate(self.vars) if kind in CONFIG_VARS)

    def fixed(self, domains: "Domains") -> list[bool | None]:
        """Truth values of the atoms whose variable the domains pin to one value."""
        out: list[bool | None] = [None] * len(self.atoms)
        cfg = domains.config()
        for i, (kind, name) in enumerate(self.vars):
            if kind == "counter":
                lo, hi = domains.counters[name]
                pinned = lo == hi
            else:
                pinned = kind == "flag" and domains.flags is not None
            if pinned:
                out[i] = _config_truth(self.atoms[i], cfg)
        return out

    # -- forced ("may fire") steps ---------------------------------------------------------------

    def forced_policy(self, j: int | None) -> Policy:
        """The policy with transition ``j`` alone on this event, its guard Always (None: no transition)."""
        key = (j, self.event)
        got = self._forced.get(key)
        if got is None:
            p = self.policy
            s = p.states[self.state]
            ts = dict(s.transitions)
            ts[self.event] = () if j is None else (replace(self.transitions[j], guard=Always()),)
            states = dict(p.states)
            states[self.state] = replace(s, transitions=ts)
            got = self._forced[key] = replace(p, states=states)
        return got


def compile_selection(policy: Policy, state: str, event: str, continuation: Sequence[int] = ()) -> Selection:
    """Compile a state's transitions on ``event``; ``continuation``: the counters the budget reads."""
    s = policy.states[state]
    spec = KINDS[s.kind].event(event)
    attrs = spec.attrs if spec is not None else ()
    sel = Selection(policy, state, event, attrs, s.transitions.get(event, ()))
    for t in sel.transitions:
        caps = sel.cap_node(t)
        sel.caps.append(caps)
        sel.enabled.append((OP_AND, (sel.compile(t.guard), caps)))
    sel.monitor = [sel.atom(AttrTest(name, "truthy")) for name in MONITOR_ATTRS.get((s.kind, event), ())]
    if event in BUDGET_EVENTS and continuation:
        parts = []
        for i in continuation:
            c = policy.counters[i]
            parts.append(sel.atom(CounterCmp(c.name, i, "lt", c.max)))
        sel.budget = (OP_OR, tuple(parts))
    sel.counter_vars = tuple(sorted({name for kind, name in sel.vars if kind == "counter"}))
    sel.flag_vars = frozenset(name for kind, name in sel.vars if kind == "flag")
    return sel


# =========================================================================== domains and cases
