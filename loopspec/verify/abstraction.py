"""The finite abstraction the checker explores: event cases, counter contexts, abstract nodes.

Nothing here re-implements a guard or an action. Every abstract edge is the result of calling the
compiled model's own :meth:`Policy.step` on a concrete configuration and event (or, for an outcome
kept without a witness, on a copy of the policy that forces that transition; see :mod:`.cases`):

- **Event cases** (:mod:`.cases`). For a state, an event and a region of counter values, every
  outcome some concrete configuration and event can produce (the transition selected first, plus
  what the property monitor reads) is found by a decision procedure over the guards' atoms, with a
  witness event and witness counter values that really realise it. An adversary answering anything
  the alphabet allows can only produce one of these outcomes.
- **Counter contexts.** Ordinary counters range over ``0..max`` and the case search picks the values
  it needs, so their number costs nothing multiplicative. A backstop counter is fixed by its phase
  (``last`` = max-1, ``spent`` = max) or, in phase ``low`` (below max-1), ranges over the intervals
  between the thresholds ``max - k`` at which the redirect or the phase after the step could change;
  within one interval the step's redirect and phases are the same, so one witness per interval and
  outcome covers it. There are at most two backstops, so at most a handful of contexts.
- **Abstract node** = state x the flags any guard reads (plus ``tools_disabled``) x the phase of each
  backstop (``low`` below max-1, ``last`` at max-1, ``spent`` at max: the only distinctions the
  redirect makes) x a small property monitor (a silent stub in flight).

The abstract graph over-approximates the concrete configuration graph: every concrete step maps to
an abstract edge between the nodes of its configurations (counters are forgotten, so an abstract
edge "may fire"). Termination and the properties are proven on it; see :mod:`.termination`.

This module holds the abstract node and the per-policy tables; the reachable graph over them is
built in :mod:`.abstract_graph`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from ..language.alphabet import BACKSTOP_KIND, Event
from ..language.properties import budget_lasts, continuation_counters
from ..language.model import WRAP_UP_FLAG, Config, FlagIs, Increment, Policy, Step, Transition
from .atoms import SAT, UNSAT
from .cases import (
    Case,
    Domains,
    Selection,
    case_steps,
    compile_selection,
    enumerate_cases,
    event_cases_free,
    guard_atoms,
    shadowing,
)

TOOLS_DISABLED = "tools_disabled"

PHASE_LOW, PHASE_LAST, PHASE_SPENT = 0, 1, 2
PHASE_NAMES = ("low", "last", "spent")


# --------------------------------------------------------------------------- event cases


def event_cases(policy: Policy, state: str, event_name: str) -> list[Event]:
    """One witness event per outcome the guards of ``state`` on ``event_name`` can produce, in some
    configuration (see :func:`.cases.event_cases_free`; :meth:`Analysis.steps_at` is complete for one
    configuration)."""
    return event_cases_free(policy, state, event_name)


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
    silent: bool = False
    """Monitor: a mid-tool-call stub with continuation budget left, not yet followed by a call."""


@dataclass
class Analysis:
    """Per-policy tables shared by every pass of the checker."""

    policy: Policy
    tracked_flags: frozenset[str]
    backstop_names: tuple[str, ...]
    backstop_index: tuple[int, ...]
    caps: tuple[int, ...]
    continuation_counters: tuple[int, ...]
    steps_evaluated: int = 0
    selections: dict[tuple[str, str], Selection] = field(default_factory=dict)
    abstract: dict[tuple[Any, ...], list[Case]] = field(default_factory=dict)
    concrete: dict[tuple[Any, ...], list[Case]] = field(default_factory=dict)
    ctx: dict[tuple[str, str, tuple[int, ...]], list[tuple[tuple[int, int], ...]]] = field(default_factory=dict)
    apply_increase: dict[int, int] = field(default_factory=dict)

    def kind(self, state: str) -> str:
        return self.policy.states[state].kind

    def events_of(self, state: str) -> tuple[str, ...]:
        return self.policy.events_of(state)

    def selection(self, state: str, event: str) -> Selection:
        key = (state, event)
        got = self.selections.get(key)
        if got is None:
            got = self.selections[key] = compile_selection(self.policy, state, event, self.continuation_counters)
        return got

    def phases_of(self, counters: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(phase_of(counters[i], self.caps[i]) for i in self.backstop_index)

    def node_of(self, cfg: Config, silent: bool = False) -> Node:
        return Node(cfg.state, cfg.flags & self.tracked_flags, self.phases_of(cfg.counters), silent)

    def budget_lasts(self, cfg: Config) -> bool:
        """The continuation budget lasts (the properties' own definition)."""
        return budget_lasts(self.policy, cfg, self.continuation_counters)

    # -- concrete configurations ----------------------------------------------------------------

    def steps_at(self, cfg: Config, event: str) -> list[Step]:
        """Every distinct outcome of ``event`` from the concrete ``cfg``: one model step each.

        The cases depend on the configuration only through the truth of the counter and flag atoms
        of the state's guards (and cap checks), so they are cached under those truth values."""
        sel = self.selection(cfg.state, event)
        key = (cfg.state, event, sel.context_key(cfg))
        cases = self.concrete.get(key)
        if cases is None:
            cases = self.concrete[key] = enumerate_cases(sel, Domains.of_config(cfg))
        out: list[Step] = []
        for case in cases:
            out.extend(case_steps(sel, cfg, case))
        return out

    # -- abstract configurations ----------------------------------------------------------------

    def contexts(self, state: str, event: str, phases: tuple[int, ...]) -> list[tuple[tuple[int, int], ...]]:
        """Counter ranges to search, one tuple of (lo, hi) per counter for each context.

        Ordinary counters: ``0..max``. Backstops: their phase's value, or in phase ``low`` each
        interval of ``0..max-2`` between thresholds ``max - k`` where the redirect or the phase after
        the step can change (k up to the step's own increase of that counter plus two)."""
        key = (state, event, phases)
        got = self.ctx.get(key)
        if got is not None:
            return got
        axes: list[list[tuple[int, int]]] = []
        for i in range(len(self.policy.counters)):
            cap = self.caps[i]
            if i not in self.backstop_index:
                axes.append([(0, cap)])
                continue
            ph = phases[self.backstop_index.index(i)]
            if ph == PHASE_LAST:
                axes.append([(cap - 1, cap - 1)])
            elif ph == PHASE_SPENT:
                axes.append([(cap, cap)])
            else:
                axes.append(self._low_regions(state, event, i))
        got = self.ctx[key] = list(itertools.product(*axes))
        return got

    def _low_regions(self, state: str, event: str, i: int) -> list[tuple[int, int]]:
        """Phase ``low`` of backstop ``i`` (0..max-2), split where a step on ``event`` could see it.

        Within ``low`` the value matters to a step beyond its guards (which the case search decides
        on the whole range) only through the redirect and the phase after the step. Those read the
        value after the step's own increments of the backstop (the validator forbids them; kept for
        policies built in code), an escalate target's ``apply`` and the entry count, always as
        "value >= max - k"; so the intervals between those thresholds are the regions. When no
        transition on the event can enter a state of the backstop's kind or increase it, the whole
        range is one region."""
        p = self.policy
        cap = self.caps[i]
        top = max(0, cap - 2)
        kind = BACKSTOP_KIND[p.counter_names[i]]
        most = self.apply_increase.get(i)
        if most is None:
            most = self.apply_increase[i] = max(
                (
                    sum(a.amount for a in s.apply if isinstance(a, Increment) and a.index == i)
                    for s in p.states.values()
                    if s.kind == "escalate"
                ),
                default=0,
            )
        extra = {0}
        matters = False
        for t in p.states[state].transitions.get(event, ()):
            own = sum(inc.amount for inc in t.increments() if inc.index == i)
            extra.add(own)
            entered = {t.target, *p.redirect_targets(t.target)}  # chained redirects included
            kinds = {p.states[x].kind for x in entered}
            if own or kind in kinds or (most and "escalate" in kinds):
                matters = True
        if not matters:
            return [(0, top)]
        thresholds = sorted({cap - (e + x + d) for e in extra for x in {0, most} for d in (0, 1, 2)})
        starts = [0] + [th for th in thresholds if 0 < th <= top]
        return [(lo, nxt - 1) for lo, nxt in zip(starts, starts[1:] + [top + 1])]

    def abstract_cases(self, state: str, flags: frozenset[str], phases: tuple[int, ...], event: str) -> list[Case]:
        """Every outcome of ``event`` from any configuration of the abstract (state, flags, phases)."""
        key = (state, event, flags, phases)
        got = self.abstract.get(key)
        if got is None:
            sel = self.selection(state, event)
            got = []
            for counters in self.contexts(state, event, phases):
                got.extend(enumerate_cases(sel, Domains(counters, flags)))
            self.abstract[key] = got
        return got

    def shadowers(self, t: Transition, flags: frozenset[str], phases: tuple[int, ...]) -> list[str]:
        """For each transition before ``t`` on its event, whether it is selected somewhere in the
        abstract (state, flags, phases) where ``t`` is enabled: SAT, UNSAT, or UNKNOWN when a search
        could not tell (SAT in one context wins over the rest)."""
        sel = self.selection(t.source, t.event)
        j = next(k for k, x in enumerate(sel.transitions) if x is t)
        out = [UNSAT] * j
        for counters in self.contexts(t.source, t.event, phases):
            for k, status in enumerate(shadowing(sel, Domains(counters, flags), j)):
                if status == SAT or out[k] == UNSAT:
                    out[k] = status
        return out


def build_analysis(policy: Policy) -> Analysis:
    # tools_disabled for the property; the wrap-up flag because the backstop redirect reads it
    tracked = {TOOLS_DISABLED, WRAP_UP_FLAG}
    for b in policy.budgets.values():  # the budget redirect reads them, like the wrap-up flag
        tracked.update(b.flag(level) for level in ("reached", "wrap_up_entered", "last_call"))
    for s in policy.states.values():
        for t in s.all_transitions():
            for a in guard_atoms(t.guard):
                if isinstance(a, FlagIs):
                    tracked.add(a.flag)
    names = tuple(policy.backstops)
    idx = tuple(policy.counter_index(n) for n in names)
    caps = tuple(c.max for c in policy.counters)
    return Analysis(policy, frozenset(tracked), names, idx, caps, continuation_counters(policy))
