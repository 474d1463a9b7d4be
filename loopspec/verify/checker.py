"""The orchestration behind :func:`loopspec.verify.check_policy` (see the package docstring)."""

from __future__ import annotations

import time
from typing import Any, Iterator

from ..language.model import Policy, Step
from .abstraction import Analysis, Edge, Graph, Node, build_analysis, build_graph
from .explore import (
    Counterexample,
    CexStep,
    cex_step,
    enumerate_all,
    guided_counterexample,
    find_lasso,
    shortest_counterexample,
    violation_counterexample,
    witness_walks,
)
from .properties import PROPERTY_DOCS, empty_when, message_problem, monitor_step
from .search import shortest_path
from .report import FAIL, PASS, WARN, CheckResult, Figure, PropertyResult
from .structure import analyse_structure
from .termination import Termination, eliminate, worst_case

ENUMERATION_LIMIT = 200_000
"""Policies whose configuration space is at most this large are also enumerated in full."""
SEARCH_LIMIT = 30_000
"""Concrete configurations a counterexample search may visit."""
WORLD_LIMIT = 10_000
"""Concrete configurations each search for a run the outside world can produce may visit (before
the checker falls back to the adversary's own run)."""


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
    props["halts"] = _halts(an, g, st, term, enum)
    if enum is None and not props["halts"].passed:
        # a concrete run into the loop, which a cassette can replay; the abstract cycle otherwise
        lasso, n, _complete = find_lasso(an, limit=SEARCH_LIMIT // 2)
        concrete += n
        props["halts"].counterexample = lasso or _abstract_loop(an, g, term)

    # -- step-local properties from the monitor ---------------------------------------------------
    for name in ("no_partial_tool_exec", "tools_stay_disabled", "stub_not_silent", "history_valid"):
        res, n = _monitored(an, g, name, enum)
        concrete += n
        props[name] = res

    # -- halt messages -------------------------------------------------------------------------
    res, n = _halt_messages(an, g)
    concrete += n
    props["halt_message"] = res

    # -- events handled ------------------------------------------------------------------------
    res, n = _events_handled(an, g, st)
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
        cex, n = _backstop_demo(an, g, term)
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
    seconds = time.perf_counter() - t0
    return CheckResult(
        file=policy.file,
        policy=policy.name,
        strict=strict,
        properties=props,
        worst_case=wc,
        by_outcome=by,
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
    )


# --------------------------------------------------------------------------- properties


def _halts(an: Analysis, g: Graph, st: Any, term: Termination, enum: Any) -> PropertyResult:
    if enum is not None:
        if enum.halts:
            why = f"every path halts (all {enum.configs} reachable configurations enumerated)"
            if not term.halts:
                why += "; counter elimination alone could not prove it"
            return PropertyResult("halts", PASS, why)
        res = PropertyResult("halts", FAIL, "a run can loop forever without calling the model or reaching a cap")
        res.counterexample = enum.lasso
        res.findings = _unbounded_findings(term, st)
        return res
    if term.halts and not st.no_path_to_halt:
        n_loops = len({(el.counter, el.through) for el in term.eliminations})
        return PropertyResult("halts", PASS, f"every path halts: {n_loops} loop bound(s) found by counter elimination")
    res = PropertyResult("halts", FAIL, "a loop has no counter that bounds it (counter elimination is stuck)")
    res.findings = _unbounded_findings(term, st)
    return res


def _unbounded_findings(term: Termination, st: Any) -> list[str]:
    out = []
    for comp in term.unbounded:
        labels = sorted({e.label for e in comp})
        out.append("unbounded cycle through: " + "; ".join(labels))
    for s in st.no_path_to_halt:
        out.append(f"state '{s}' has no path to a halt")
    return out


def _abstract_loop(an: Analysis, g: Graph, term: Termination) -> Counterexample | None:
    if not term.unbounded:
        return None
    comp = term.unbounded[0]
    nodes = {e.src for e in comp}
    prefix = _abstract_path(g, lambda e: e.dst in nodes)
    if prefix is None:
        return None
    start = prefix[-1].dst if prefix else g.initial
    # a cycle inside the component from start back to start
    cyc = _abstract_path(g, lambda e: e.dst == start, start=start, within={e.index for e in comp})
    steps = [_abstract_cex(e) for e in prefix]
    loop_start = len(steps)
    steps += [_abstract_cex(e) for e in (cyc or [])]
    return Counterexample(steps, "abstract: the cycle repeats from loop_start", False, loop_start)


def _abstract_cex(e: Edge) -> CexStep:
    return cex_step(e.step)


def _abstract_path(g: Graph, goal: Any, start: Node | None = None, within: set[int] | None = None) -> list[Edge] | None:
    def expand(n: Node) -> Iterator[tuple[Edge, Node]]:
        for e in g.out.get(n, ()):
            if within is None or e.index in within:
                yield e, e.dst

    path, _n = shortest_path(start or g.initial, expand, lambda e, dst: bool(goal(e)))
    return path


def _monitored(an: Analysis, g: Graph, name: str, enum: Any) -> tuple[PropertyResult, int]:
    bad = [(e, why) for e in g.edges for (p, why) in e.violations if p == name]
    if not bad:
        return PropertyResult(name, PASS, PROPERTY_DOCS[name]), 0
    findings = sorted({f"{e.label}: {why}" for e, why in bad})
    if enum is not None:
        if name not in enum.violations:
            return PropertyResult(name, PASS, PROPERTY_DOCS[name] + " (abstract findings refuted by full enumeration)"), 0
    cex, n = violation_counterexample(an, name, limit=SEARCH_LIMIT)
    if cex is None and n < SEARCH_LIMIT:
        return PropertyResult(name, PASS, PROPERTY_DOCS[name] + " (abstract findings refuted by exhaustive search)"), n
    res = PropertyResult(name, FAIL, bad[0][1], findings=findings)
    res.counterexample, m, _real = _select(
        an,
        g,
        lambda e: any(p == name for p, _ in e.violations),
        lambda step, child, viol: any(v[0] == name for v in viol),
        bad[0][1],
        _world(an),
        plain=cex,
        searched=True,
    )
    return res, n + m


def _world(an: Analysis, halts: dict[str, str | None] | None = None) -> Any:
    """What the outside world can make happen (see :class:`~loopspec.verify.to_cassette.Realiser`):
    counterexamples are chosen among the runs a cassette can record."""
    from .to_cassette import Realiser

    return Realiser(an.policy, halts)


def _select(
    an: Analysis,
    g: Graph,
    goal: Any,
    predicate: Any,
    note: str,
    world: Any,
    plain: list[CexStep] | None = None,
    plain_predicate: Any = None,
    searched: bool = False,
) -> tuple[Counterexample | None, int, bool]:
    """The counterexample to show, the configurations explored, and whether the outside world can
    produce it. The adversary's shortest run (``plain``, or a search with ``plain_predicate``) when
    the world can produce it; else the shortest run it can (breadth-first, then guided); else the
    adversary's run, which a cassette may not be able to reproduce. ``searched``: ``plain`` is what
    a breadth-first search for the adversary's run already found (None: nothing within its limit)."""
    n = 0
    plain_predicate = plain_predicate or predicate
    if plain is None and not searched:
        plain, n = shortest_counterexample(an, plain_predicate, limit=SEARCH_LIMIT)
    deep: Counterexample | None = None
    if plain is None:  # too deep for breadth-first search: a guided run
        deep, m = _deep_counterexample(an, g, goal, plain_predicate, note, abstract=False)
        n += m
    adversary = Counterexample(plain, note) if plain is not None else deep
    if adversary is not None and _real(an, world, adversary.steps, predicate):
        return adversary, n, True
    if any(world.possible(e.step) for e in g.edges if goal(e)):  # else no run ends there for real
        path, m = shortest_counterexample(an, predicate, limit=WORLD_LIMIT, world=world)
        n += m
        if path is not None:
            return Counterexample(path, note), n, True
        if m >= WORLD_LIMIT:
            deep, m = _deep_counterexample(an, g, goal, predicate, note, world=world, abstract=False, limit=WORLD_LIMIT)
            n += m
            if deep is not None:
                return deep, n, True
    if adversary is None:
        edges = _abstract_path(g, goal)
        if not edges:
            return None, n, False
        steps = [_abstract_cex(e) for e in edges]
        return Counterexample(steps, note + " (abstract path: no concrete run found within the search limit)", concrete=False), n, False
    return adversary, n, False


def _real(an: Analysis, world: Any, steps: list[CexStep], predicate: Any) -> bool:
    """The outside world can produce the run ``steps``, and its last step still satisfies
    ``predicate`` when judged with the world (e.g. it leaves a halt's message empty)."""
    from .to_cassette import NotReplayable, _simulate

    try:
        sim = _simulate(an.policy, steps)
    except NotReplayable:
        return False
    if not sim:
        return False
    w = world.start()
    pending, silent, viol = 0, False, list[tuple[str, str]]()
    for st in sim:
        w = world.advance(w, st)
        if w is None:
            return False
        pending, silent, viol = monitor_step(an, pending, silent, st)
    last = sim[-1]
    return bool(predicate(last, (last.after, pending, silent, w), viol))


def _halt_messages(an: Analysis, g: Graph) -> tuple[PropertyResult, int]:
    policy = an.policy
    incoming: dict[str, set[tuple[str | None, str]]] = {}
    for e in g.edges:
        if an.kind(e.dst.state) == "halt":
            incoming.setdefault(e.dst.state, set()).add((an.kind(e.src.state), e.step.event.name))
    if an.kind(g.initial.state) == "halt":
        incoming.setdefault(g.initial.state, set())
    problems = []
    for state in sorted(incoming):
        why = message_problem(policy.states[state].message, incoming[state])
        if why is not None:
            problems.append((state, why))
    if not problems:
        return PropertyResult("halt_message", PASS, f"all {len(incoming)} reachable halts deliver a non-empty message"), 0
    state, why = problems[0]
    res = PropertyResult(
        "halt_message",
        FAIL,
        f"halt '{state}' ({policy.states[state].outcome}): {why}",
        findings=[f"halt '{s}' ({policy.states[s].outcome}): {w}" for s, w in problems],
    )
    if an.kind(g.initial.state) == "halt":
        res.counterexample = Counterexample([], f"the turn starts in '{state}', whose message is empty")
        return res, 0
    total = 0
    found: list[Counterexample] = []
    best: Counterexample | None = None
    for halt, _why in problems:
        # the run must end with an event (and attributes) through which the message renders empty
        template = policy.states[halt].message

        def entered_empty(step: Step, child: Any, viol: Any, halt: str = halt) -> bool:
            return step.after.state == halt and bool(child[-1][1])

        def may_be_empty(step: Step, child: Any, viol: Any, halt: str = halt, template: str | None = template) -> bool:
            return step.after.state == halt and empty_when(template, an.kind(step.before.state), step.event.name) is not None

        cex, n, real = _select(
            an,
            g,
            lambda e, halt=halt: e.dst.state == halt,
            entered_empty,
            f"ends in '{halt}' with an empty message",
            _world(an, {halt: template}),
            plain_predicate=may_be_empty,
        )
        total += n
        if cex is not None:
            found.append(cex)
            if real:
                best = cex
                break
    if found:
        best = best or found[0]
        best.alternatives = [c for c in found if c is not best]
        res.counterexample = best
    return res, total


def _events_handled(an: Analysis, g: Graph, st: Any) -> tuple[PropertyResult, int]:
    if not st.unhandled:
        return PropertyResult("events_handled", PASS, "every event of every reachable state has an enabled transition"), 0
    findings = [u.describe() for u in st.unhandled]
    res = PropertyResult("events_handled", FAIL, findings[0], findings=findings)
    total = 0
    found: list[Counterexample] = []
    best: Counterexample | None = None
    world = _world(an)
    for u in st.unhandled:

        def hit(step: Step, child: Any, viol: Any, u: Any = u) -> bool:
            return step.transition is None and step.before.state == u.state and step.event.name == u.event

        cex, n, real = _select(
            an,
            g,
            lambda e, u=u: e.transition is None and e.src.state == u.state and e.step.event.name == u.event,
            hit,
            f"'{u.event}' in '{u.state}' has no transition",
            world,
        )
        total += n
        if cex is not None:
            found.append(cex)
            if real:
                best = cex
                break
    if found:
        best = best or found[0]
        best.alternatives = [c for c in found if c is not best]
        res.counterexample = best
    return res, total


def _deep_counterexample(
    an: Analysis, g: Graph, goal: Any, predicate: Any, note: str, world: Any = None, abstract: bool = True, limit: int = 50_000
) -> tuple[Counterexample | None, int]:
    """When breadth-first search runs out: a guided concrete run to the goal (see
    :func:`~loopspec.verify.explore.guided_counterexample`); the shortest abstract path otherwise
    (unless ``abstract`` is False)."""
    dist: dict[Node, int] = {}
    preds: dict[Node, list[Node]] = {}
    usable = _usable(g, world) if world is not None else None
    for e in g.edges:
        if usable is not None and e.index not in usable:
            continue  # guide towards the goal along steps the outside world can take
        preds.setdefault(e.dst, []).append(e.src)
        if goal(e):
            dist[e.src] = 0
    frontier = list(dist)
    while frontier:
        nxt = []
        for node in frontier:
            for p in preds.get(node, ()):
                if p not in dist:
                    dist[p] = dist[node] + 1
                    nxt.append(p)
        frontier = nxt
    steps, n = guided_counterexample(an, dist, predicate, limit=limit, world=world)
    if steps is not None:
        return Counterexample(steps, note + " (a concrete run, not necessarily the shortest)"), n
    if not abstract:
        return None, n
    path = _abstract_path(g, goal)
    if not path:
        return None, n
    return Counterexample([_abstract_cex(e) for e in path], note + " (abstract path: no concrete run found within the search limit)", concrete=False), n


def _usable(g: Graph, world: Any) -> set[int]:
    """The abstract edges whose representative step the world model lets happen on some abstract
    run from the start (a guide for the guided search, not a proof)."""
    start = (g.initial, world.start())
    seen = {start}
    todo = [start]
    usable: set[int] = set()
    while todo:
        node, w = todo.pop()
        for e in g.out.get(node, ()):
            w2 = world.advance(w, e.step)
            if w2 is None:
                continue
            usable.add(e.index)
            nxt = (e.dst, w2)
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return usable


def _backstop_demo(an: Analysis, g: Graph, term: Termination) -> tuple[Counterexample | None, int]:
    """A run where a flagged edge fires more often than its own bound allows: its counter's cap
    (which something in the loop resets), or once when it has no counter of its own."""
    policy = an.policy
    total = 0
    found: list[Counterexample] = []
    best: Counterexample | None = None
    world = _world(an)
    for idx, stuck in term.stuck_components.items():
        edge = g.edges[idx]
        t = edge.transition
        if t is None:
            continue
        bl = next((b for b in term.backstop_loops if b.edge == edge.label and not b.declared), None)
        if bl is None:
            continue
        counter = bl.counter
        if counter in an.backstop_names:
            need = 2
            note = f"'{t.label}' repeats with nothing but the {counter} backstop to stop it: it has no counter of its own"
        else:
            ci = policy.counter_index(counter)
            amount = next((i.amount for i in t.increments() if i.index == ci), 1)
            need = an.caps[ci] // amount + 1
            note = (
                f"'{t.label}' fires {need} times although {counter} caps it at {need - 1}: "
                f"something in the loop resets {counter}, so only the {bl.backstop} backstop ends it"
            )
        stuck_nodes = {e.src for e in stuck}
        prefix = _abstract_path(g, lambda e: e.dst in stuck_nodes) or []
        allowed = {id(e.transition) for e in stuck if e.transition is not None}
        allowed |= {id(e.transition) for e in prefix if e.transition is not None}
        target = id(t)

        def bump(count: Any, step: Step | None, target: int = target, need: int = need) -> int:
            if step is None:
                return 0
            c = count + (1 if step.transition is not None and id(step.transition) == target else 0)
            return min(c, need)

        def done(step: Step, child: Any, viol: Any, need: int = need) -> bool:
            return bool(child[3] >= need)

        real = False
        # within the loop's component first; a redirect on the way (a backstop's wrap_up) may lead
        # outside it, so then anywhere
        for w, within in ((world, allowed), (world, None), (None, allowed), (None, None)):
            limit = SEARCH_LIMIT // 4 if within is not None else SEARCH_LIMIT
            path, n = shortest_counterexample(an, done, limit=limit, allowed=within, extra=bump, world=w)
            total += n
            if path is not None:
                found.append(Counterexample(path, note, fires=(t.label, need - 1)))
                real = w is not None
                break
        if real:
            best = found[-1]
            break
    else:
        best = found[0] if found else None
    if best is None:
        return None, total
    best.alternatives = [c for c in found if c is not best]
    return best, total


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
