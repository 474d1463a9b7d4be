"""The orchestration behind :func:`loopspec.verify.check_policy` (see the package docstring)."""

from __future__ import annotations

import time

from ..language.model import Policy
from .abstract_runs import abstract_loop
from .abstract_graph import build_graph
from .abstraction import Analysis, build_analysis
from .choice import SEARCH_LIMIT
from .counterexample import CexStep, Counterexample
from .budget_bounds import budget_bounds
from .deciders import backstop_demo, decide_events_handled, decide_halt_messages, decide_halts, decide_monitored
from .enumeration import enumerate_all, find_lasso
from .properties import PROPERTY_DOCS
from .report import FAIL, PASS, WARN, CheckResult, Figure, PropertyResult
from .structure import analyse_structure
from .termination import eliminate, worst_case
from .wall_time import wall_time
from .witness import witness_walks

ENUMERATION_LIMIT = 200_000
"""Policies whose configuration space is at most this large are also enumerated in full."""


def estimate_space(policy: Policy, an: Analysis | None = None) -> int:
    """An upper estimate of the concrete configuration space: states x counter values x flags."""
    an = an or build_analysis(policy)
    size = len(policy.states) * (2 ** len(an.tracked_flags)) * 6
    for c in policy.counters:
        size *= c.max + 1
        if size > 10**15:
            break
    return size


def check_file(path: str, strict: bool = False, enumerate_limit: int = ENUMERATION_LIMIT) -> CheckResult:
    from ..language import load_policy

    return check_policy(load_policy(path), strict=strict, enumerate_limit=enumerate_limit)


def check_policy(
    policy: Policy,
    strict: bool = False,
    enumerate_limit: int = ENUMERATION_LIMIT,
    witness_seconds: float = 0.3,
) -> CheckResult:
    """Check a compiled policy. ``strict`` fails loops bounded only by an undeclared backstop."""
    t0 = time.perf_counter()
    an = build_analysis(policy)
    g = build_graph(an)
    st = analyse_structure(an, g)
    term = eliminate(an, g)
    concrete = 0
    method = "counter elimination"

    enum = None
    if estimate_space(policy, an) <= enumerate_limit or not term.halts:
        enum = enumerate_all(an, limit=enumerate_limit)
        if enum is not None:
            concrete += enum.configs
            method = "counter elimination + full enumeration"

    props: dict[str, PropertyResult] = {}

    # -- halts ---------------------------------------------------------------------------------
    props["halts"] = decide_halts(st, term, enum)
    if enum is None and not props["halts"].passed:
        # a concrete run into the loop, which a cassette can replay; the abstract cycle otherwise
        lasso, n, _complete = find_lasso(an, limit=SEARCH_LIMIT // 2)
        concrete += n
        props["halts"].counterexample = lasso or abstract_loop(g, term)

    # -- step-local properties from the monitor ---------------------------------------------------
    for name in ("no_partial_tool_exec", "tools_stay_disabled", "stub_not_silent", "history_valid"):
        res, n = decide_monitored(an, g, name, enum)
        concrete += n
        props[name] = res

    # -- halt messages -------------------------------------------------------------------------
    res, n = decide_halt_messages(an, g)
    concrete += n
    props["halt_message"] = res

    # -- events handled ------------------------------------------------------------------------
    res, n = decide_events_handled(an, g, st)
    concrete += n
    props["events_handled"] = res

    # -- backstop-only loops ---------------------------------------------------------------------
    undeclared = [b for b in term.backstop_loops if not b.declared]
    declared = [b for b in term.backstop_loops if b.declared]
    if undeclared:
        res = PropertyResult(
            "no_backstop_only_loops",
            FAIL if strict else WARN,
            f"{len(undeclared)} loop edge(s) are bounded only through a global backstop; give them a per-turn "
            "counter that nothing resets, or declare bounded_by",
            findings=[f"{b.edge}: {b.bound}" for b in undeclared],
        )
        cex, n = backstop_demo(an, g, term)
        concrete += n
        res.counterexample = cex
    else:
        why = "every loop has a bound of its own"
        if declared:
            why += f"; {len(declared)} declared backstop loop(s): " + ", ".join(sorted({b.edge for b in declared}))
        res = PropertyResult("no_backstop_only_loops", PASS, why)
    props["no_backstop_only_loops"] = res

    # -- worst case ----------------------------------------------------------------------------
    upper = worst_case(an, g, term)
    if enum is not None and enum.halts:
        exact_vals = enum.worst
        wc = {k: Figure(v, True, v) for k, v in exact_vals.get("*", {b: 0 for b in an.backstop_names}).items()}
        by = {o: {k: Figure(v, True, v) for k, v in figs.items()} for o, figs in sorted(exact_vals.items()) if o != "*"}
        exploration_walks = 0
    else:
        wit = witness_walks(an, upper, seconds=witness_seconds)
        concrete += wit.steps
        exploration_walks = wit.walks
        wc = {}
        for b, v in upper["*"].items():
            lo = wit.best.get("*", {}).get(b, 0)
            wc[b] = Figure(v, lo >= v, min(lo, v))
        by = {}
        for o, figs in upper.items():
            if o == "*":
                continue
            by[o] = {}
            for b, v in figs.items():
                lo = wit.best.get(o, {}).get(b, 0)
                by[o][b] = Figure(v, lo >= v, min(lo, v))

    props = {k: props[k] for k in PROPERTY_DOCS if k in props}
    wall = None
    if props["halts"].passed:
        wall = wall_time(an, g, term, wc["model_calls"].value, wc["tool_batches"].value)
    seconds = time.perf_counter() - t0
    return CheckResult(
        file=policy.file,
        policy=policy.name,
        strict=strict,
        properties=props,
        worst_case=wc,
        by_outcome=by,
        wall_time=wall,
        backstop_only_loops=undeclared,
        declared_loops=declared,
        structure=st,
        eliminations=term.eliminations,
        explored=len(g.nodes) + concrete,
        exploration={
            "abstract_nodes": len(g.nodes),
            "abstract_edges": len(g.edges),
            "concrete_configs": concrete,
            "model_steps": an.steps_evaluated,
            "full_enumeration": enum is not None,
            "witness_walks": exploration_walks,
        },
        seconds=seconds,
        method=method,
        budgets=budget_bounds(policy, term),
    )


__all__ = [
    "CheckResult",
    "Counterexample",
    "CexStep",
    "Figure",
    "PropertyResult",
    "check_file",
    "check_policy",
    "estimate_space",
]
