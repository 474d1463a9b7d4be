"""Event cases: which transition an event can select, each with a concrete witness.

Why this module exists. The checker explores a finite abstraction, so it must turn "the model may
answer anything the alphabet allows" into finitely many events. Sampling a few attribute values
around each guard constant is not enough: it silently dropped edges (a list constant never matched,
two ``contains`` on one string were never true together, nothing fell strictly between two
constants), and a dropped edge can turn a looping policy into a false "proven". Taking the product of
per-attribute (and per-counter) cases instead is exponential. Here the cases are a partition by
OUTCOME, computed by a small decision procedure, with a witness that really realises each.

What an event can change. A state's transitions on one event are tried in document order; the first
enabled one (guard holds, increments within caps) is selected (:meth:`Policy.select`). Everything the
checker records about a step (target, actions, redirect, flags, backstop phases) follows from the
configuration and the selected transition, except what the property monitor reads from the event
(:data:`MONITOR_ATTRS`) and from the counters (whether the continuation budget lasts); the caller
keeps each backstop counter within a region where the redirect and the phase after the step do not
change (:meth:`.abstraction.Analysis.contexts`), or pins every counter and flag to one configuration
(:meth:`.abstraction.Analysis.steps_at`, for the explicit searches). So the outcomes of a state and
event are the triples (selected transition or none, monitor attribute truth, budget truth), and for
T transitions there are at most 4(T+1) of them, whatever the number of attributes, counters or
constants.

How an outcome is decided. Outcome (j, m, b) holds for a configuration and event iff

    not enabled(t_0) and ... and not enabled(t_{j-1}) and enabled(t_j) and monitor = m and budget = b

("none": every transition disabled). Guards are And/Or/Not trees over atoms, and every atom reads one
VARIABLE: an event attribute (:class:`AttrTest`), a counter (:class:`CounterCmp`, also each cap
check ``counter <= max - amount``) or a flag (:class:`FlagIs`). :func:`_solve` searches the atoms'
truth values depth first, pruning a partial assignment only when three-valued evaluation shows that
every completion falsifies the query, and asks a per-variable THEORY whether the literals on one
variable can hold together: ``attr_witness`` for attributes, ``counter_witness`` for counters. Since
each atom reads one variable, a conjunction of literals is realisable iff it is realisable variable by
variable, and the witness is the tuple of per-variable witnesses.

The theories are complete for every atom form the validator admits (proofs in their docstrings):
each builds a finite candidate list from the literals' constants and tests every candidate with the
model's own ``evaluate``, and the candidates meet every region of the domain the literals can tell
apart: an absent attribute; bools; enum strings; numbers at, between, below and above the constants
(and NaN and the infinities for floats); strings equal to a constant, empty, a proper prefix of an
upper bound, or built as a settling prefix followed by the required needles between separators; lists
equal to a constant or made of the required items plus fresh ones. A witness found is therefore a real
value of the attribute's declared type that realises exactly the literals asked for.

Soundness (never drop an edge). Take any configuration in the caller's domains and any event, let
(j, m, b) be its outcome and A its truth assignment to all atoms; A satisfies query (j, m, b). The
search branches on both values of each atom it picks, so one branch agrees with A at every decision.
On that branch no conjunct is ever falsified (three-valued evaluation only reports what every
completion, A included, agrees on) and no theory answers "unsatisfiable" (the literals on each
variable are a subset of A's, which the variable's concrete value realises, and a theory says
"unsatisfiable" only when no value of the declared domain does). Atoms are finitely many, so the
branch ends with every conjunct true. Hence the search never answers UNSAT for (j, m, b): it returns
some witness for it (possibly another one), or keeps the outcome as MAY FIRE (below). Every witnessed
case is stepped with the model's own :meth:`Policy.step`; should that select another transition than
the query said (which would be a bug here), both steps are kept.

Cost. Each query is a depth-first search capped at :data:`SEARCH_BUDGET` decisions, and a state and
event need one query per outcome and counter region: polynomial in the policy size, with no product
over attributes, counters or constants. The results are cached under the values of the counters and
flags the guards read, so abstract nodes that differ elsewhere share them. Deciding a query exactly
is NP-hard in general (counter atoms can encode SAT), so the cap is what keeps the cost polynomial.

May fire. When a theory cannot decide a form (only forms the validator rejects, e.g. ordering on a
list) or a search reaches its cap, the outcome is kept WITHOUT a witness (``Case.witnessed`` is
False): it may fire. Its step comes from :func:`forced_step`, the model's own ``Policy.step`` on a
copy of the policy where that transition's guard is ``Always`` (its cap checks still apply), on
counters chosen to pass its caps. Such an edge over-approximates, which is sound for every proof the
checker makes. For validated policies the forced step only appears past the search cap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from ..language.alphabet import Event, judge_wait
from ..language.model import Config, Policy, Step, Transition

SEARCH_BUDGET = 20_000
"""Decisions one query may take before its outcome is kept as "may fire" without a witness."""


from .atoms import ABSENT, SAT, UNKNOWN, UNSAT, default_value, guard_atoms, realises
from .selection import (
    BUDGET_EVENTS,
    MONITOR_ATTRS,
    OP_AND,
    OP_ATOM,
    OP_NOT,
    OP_OR,
    TRUE,
    Domains,
    Node,
    Selection,
    Var,
    compile_selection,
)
from .witnesses import attr_witness, counter_witness




@dataclass(frozen=True)
class Case:
    """One outcome of a state on an event: the transition selected and a configuration and event for it."""

    transition: Transition | None
    """The transition the witness selects; None: no transition is enabled (policy_error)."""
    event: Event
    counters: tuple[int, ...]
    flags: frozenset[str]
    witnessed: bool = True
    """False: no witness was found but the outcome could not be excluded; it may fire."""
    index: int | None = None
    """The transition's position on the event (None with transition None)."""


def enumerate_cases(sel: Selection, domains: Domains, split_budget: bool = True) -> list[Case]:
    """Every outcome (selected transition, monitor attribute, budget) some configuration in
    ``domains`` and some event can produce, each with a witness (or kept as may-fire).

    The outcomes depend on the domains only through the counters and flags the selection reads, so
    they are cached under that projection and only the cases are rebuilt for other domains."""
    key = (
        tuple(domains.counters[i] for i in sel.counter_vars),
        None if domains.flags is None else domains.flags & sel.flag_vars,
        split_budget,
    )
    found = sel._outcomes.get(key)
    if found is None:
        found = sel._outcomes[key] = _outcomes(sel, domains, split_budget)
    return [_case(sel, domains, j, wit, witnessed) for j, wit, witnessed in found]


def _outcomes(sel: Selection, domains: Domains, split_budget: bool) -> list[tuple[int | None, dict[Var, Any], bool]]:
    fixed = sel.fixed(domains)
    out: list[tuple[int | None, dict[Var, Any], bool]] = []
    n = len(sel.transitions)
    splits: list[list[tuple[Node, bool]]] = [[]]
    for node in sel.monitor:  # the plain value first: counterexamples read naturally
        splits = [s + [(node, m)] for s in splits for m in (False, True)]
    if split_budget and sel.budget is not None:
        splits = [s + [(sel.budget, b)] for s in splits for b in (True, False)]
    for j in [*range(n), None]:
        if j is None:
            base = [(sel.enabled[i], False) for i in range(n)]
        else:
            base = [(sel.enabled[i], False) for i in range(j)] + [(sel.enabled[j], True)]
        status, wit = _solve(sel, domains, fixed, base)
        if status != UNSAT:
            done: list[tuple[Node, bool]] | None = None
            if status == SAT:
                assert wit is not None
                done = _split_of(sel, domains, j, wit, splits)
                out.append((j, wit, True))
            for extra in splits:
                if extra == done:
                    continue
                status, wit = _solve(sel, domains, fixed, base + extra)
                if status == SAT:
                    assert wit is not None
                    out.append((j, wit, True))
                elif status == UNKNOWN:
                    # may fire: a configuration that passes the caps (guards assumed to hold)
                    sel.may += 1
                    reduced = ([(sel.caps[j], True)] if j is not None else []) + extra
                    status, wit = _solve(sel, domains, fixed, reduced)
                    if status != UNSAT:
                        out.append((j, wit or {}, False))
        if j is not None and _eval(sel.enabled[j], fixed) is True:
            break  # enabled whatever the event: no later outcome
    return out


def _split_of(
    sel: Selection, domains: Domains, j: int | None, wit: Mapping[Var, Any], splits: list[list[tuple[Node, bool]]]
) -> list[tuple[Node, bool]]:
    """The split (monitor, budget values) the witness itself realises."""
    case = _case(sel, domains, j, wit, True)
    cfg = Config(sel.state, case.counters, case.flags)
    truth = [a.evaluate(sel.policy, cfg, case.event) for a in sel.atoms]
    for extra in splits:
        if all(_eval(node, truth) is want for node, want in extra):
            return extra
    return []  # pragma: no cover - the splits cover every truth value


def shadowing(sel: Selection, domains: Domains, j: int) -> list[str]:
    """For each transition before ``j`` on the event: SAT when some configuration in ``domains`` and
    some event enable ``j`` while that transition is the one selected (it shadows ``j`` there), UNSAT
    when none does, UNKNOWN when the search could not tell. Each answer is exact, so it does not
    depend on how a place's counter ranges are split into contexts."""
    fixed = sel.fixed(domains)
    if _solve(sel, domains, fixed, [(sel.caps[j], True)])[0] == UNSAT:  # never within its caps here
        return [UNSAT] * j
    out = []
    for k in range(j):
        query = [(sel.enabled[j], True), (sel.enabled[k], True), *((sel.enabled[i], False) for i in range(k))]
        out.append(_solve(sel, domains, fixed, query)[0])
    return out


def _case(sel: Selection, domains: Domains, j: int | None, wit: Mapping[Var, Any], witnessed: bool) -> Case:
    attrs: dict[str, Any] = {}
    for a in sel.attrs:
        v = wit.get(("attr", a.name), default_value(a))
        if v is not ABSENT:
            attrs[a.name] = v
    counters = {i: v for (kind, i), v in wit.items() if kind == "counter"}
    flags = domains.flags
    if flags is None:
        flags = frozenset(name for (kind, name), v in wit.items() if kind == "flag" and v)
    cfg = domains.config(counters)
    return Case(
        sel.transitions[j] if j is not None else None,
        judge_wait(Event(sel.event, attrs), sel.policy.settings.max_wait),
        cfg.counters,
        flags,
        witnessed,
        j,
    )


def case_steps(sel: Selection, cfg: Config, case: Case) -> list[Step]:
    """The model's step(s) for a case from ``cfg`` (a configuration agreeing with the case).

    A policy with budgets gets one step more for each value the budgets' measurement may take when
    the step enters a call state: the amounts are the adversary's (any usage, any cost, any time),
    and only monotone, so every level is possible at every call entry."""
    steps = _case_steps(sel, cfg, case, frozenset())
    levels = sel.policy.budget_levels(sel.policy.guard_flags()) if sel.policy.budgets else ()
    for step in list(steps):
        if sel.policy.states[step.after.state].kind == "call":
            for measured in levels:
                if not measured <= cfg.flags:
                    steps.extend(_case_steps(sel, cfg, case, measured))
    return steps


def _case_steps(sel: Selection, cfg: Config, case: Case, measured: frozenset[str]) -> list[Step]:
    if case.witnessed:
        step = sel.policy.step(cfg, case.event, measured)
        if step.transition is case.transition:
            return [step]
        # The search said another transition is selected: that is a bug here. Keep both edges.
        return [step, forced_step(sel, cfg, case, measured)]  # pragma: no cover
    return [forced_step(sel, cfg, case, measured)]


def forced_step(sel: Selection, cfg: Config, case: Case, measured: frozenset[str] = frozenset()) -> Step:
    """The step of a may-fire case: the model's own step with only that transition, guard Always."""
    step = sel.forced_policy(case.index).step(cfg, case.event, measured)
    return replace(step, transition=case.transition)


# =========================================================================== the search


def _eval(node: Node, assign: Sequence[bool | None]) -> bool | None:
    k = node[0]
    if k == OP_ATOM:
        return assign[node[1]]
    if k == OP_AND:
        res: bool | None = True
        for ch in node[1]:
            v = _eval(ch, assign)
            if v is False:
                return False
            if v is None:
                res = None
        return res
    if k == OP_OR:
        res = False
        for ch in node[1]:
            v = _eval(ch, assign)
            if v is True:
                return True
            if v is None:
                res = None
        return res
    if k == OP_NOT:
        v = _eval(node[1], assign)
        return None if v is None else not v
    return bool(node[1])


def _pick(node: Node, want: bool, assign: Sequence[bool | None]) -> tuple[int, bool] | None:
    """An unassigned atom in an undecided part of ``node``, and the value that moves it toward ``want``."""
    k = node[0]
    if k == OP_ATOM:
        return (node[1], want) if assign[node[1]] is None else None
    if k == OP_NOT:
        return _pick(node[1], not want, assign)
    if k in (OP_AND, OP_OR):
        for ch in node[1]:
            if _eval(ch, assign) is None:
                got = _pick(ch, want, assign)
                if got is not None:
                    return got
    return None


def _solve(
    sel: Selection, domains: Domains, fixed: list[bool | None], query: list[tuple[Node, bool]]
) -> tuple[str, dict[Var, Any] | None]:
    """Decide the conjunction ``query`` of (formula, truth): (SAT, witness), (UNSAT, None) or
    (UNKNOWN, None) when the outcome could not be excluded (theory undecided or budget spent).

    Depth-first over atom truth values. A branch is cut only when three-valued evaluation falsifies a
    conjunct (every completion does) or a variable's theory reports its literals unsatisfiable."""
    sel.queries += 1
    assign: list[bool | None] = list(fixed)
    lits: dict[Var, list[tuple[int, bool]]] = {}
    trail: list[tuple[int, bool, bool]] = []  # (atom, value, the other value was tried already)
    maybe = False

    def push(i: int, value: bool, flipped: bool) -> bool:
        assign[i] = value
        var = sel.vars[i]
        lits.setdefault(var, []).append((i, value))
        trail.append((i, value, flipped))
        return sel.theory(var, lits[var], domains)[0] != UNSAT

    def backtrack() -> bool:
        while trail:
            i, value, flipped = trail.pop()
            assign[i] = None
            lits[sel.vars[i]].pop()
            if not flipped and push(i, not value, True):
                return True
        return False

    for _ in range(SEARCH_BUDGET):
        state: bool | None = True
        choice: tuple[int, bool] | None = None
        for node, want in query:
            v = _eval(node, assign)
            if v is None:
                state = None
                if choice is None:
                    choice = _pick(node, want, assign)
            elif v is not want:
                state = False
                break
        if state is None:
            if choice is None:  # pragma: no cover - an undecided formula has an unassigned atom
                return UNKNOWN, None
            if push(choice[0], choice[1], False):
                continue
        elif state is True:
            wit: dict[Var, Any] = {}
            for var, lst in lits.items():
                if lst:
                    status, value = sel.theory(var, lst, domains)
                    if status != SAT:
                        break
                    wit[var] = value
            else:
                return SAT, wit
            maybe = True  # satisfiable as far as the theories can tell, but no witness
        if not backtrack():
            return (UNKNOWN if maybe else UNSAT), None
    return UNKNOWN, None


# =========================================================================== conveniences


def event_cases_free(policy: Policy, state: str, event: str) -> list[Event]:
    """One witness event per outcome, counters anywhere within their caps and flags free.

    Each outcome the state can produce on the event in SOME configuration has a witness here; a
    particular configuration may need another witness: :func:`enumerate_cases` with its
    :meth:`Domains.of_config` gives the complete set for one configuration.
    """
    sel = compile_selection(policy, state, event)
    domains = Domains(tuple((0, c.max) for c in policy.counters), None)
    out: list[Event] = []
    for case in enumerate_cases(sel, domains):
        if case.event not in out:
            out.append(case.event)
    return out
