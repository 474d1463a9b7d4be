"""The per-property deciders of ``loopspec check``: each reads its verdict off the abstract graph (or
the full enumeration) and searches for a counterexample when it fails."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from ..language.model import Step
from .abstract_graph import Graph
from .abstraction import Analysis
from .abstract_runs import abstract_path
from .choice import SEARCH_LIMIT, select_counterexample, world_model
from .counterexample import Counterexample
from .properties import PROPERTY_DOCS, empty_when, message_problem
from .reach import shortest_counterexample, violation_counterexample
from .report import FAIL, PASS, PropertyResult
from .termination import Termination


def decide_halts(st: Any, term: Termination, enum: Any) -> PropertyResult:
    """Halting: the enumeration's verdict when there is one (with its lasso), else the elimination's."""
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
    return list(dict.fromkeys(out))  # one finding per cycle, not one per backstop phase it recurs in


def decide_monitored(an: Analysis, g: Graph, name: str, enum: Any) -> tuple[PropertyResult, int]:
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
    res.counterexample, m, _real = select_counterexample(
        an,
        g,
        lambda e: any(p == name for p, _ in e.violations),
        lambda step, child, viol: any(v[0] == name for v in viol),
        bad[0][1],
        world_model(an),
        plain=cex,
        searched=True,
    )
    return res, n + m


def decide_halt_messages(an: Analysis, g: Graph) -> tuple[PropertyResult, int]:
    policy = an.policy
    incoming: dict[str, set[tuple[str, str]]] = {}
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
    def attempts() -> Iterator[tuple[Counterexample | None, int, bool]]:
        for halt, _why in problems:
            # the run must end with an event (and attributes) through which the message renders empty
            template = policy.states[halt].message

            def entered_empty(step: Step, child: Any, viol: Any, halt: str = halt) -> bool:
                return step.after.state == halt and bool(child[-1][1])

            def may_be_empty(step: Step, child: Any, viol: Any, halt: str = halt, template: str | None = template) -> bool:
                return step.after.state == halt and empty_when(template, an.kind(step.before.state), step.event.name) is not None

            yield select_counterexample(
                an,
                g,
                lambda e, halt=halt: e.dst.state == halt,
                entered_empty,
                f"ends in '{halt}' with an empty message",
                world_model(an, {halt: template}),
                plain_predicate=may_be_empty,
            )

    res.counterexample, total = _first_real(attempts())
    return res, total


def decide_events_handled(an: Analysis, g: Graph, st: Any) -> tuple[PropertyResult, int]:
    if not st.unhandled:
        return PropertyResult("events_handled", PASS, "every event of every reachable state has an enabled transition"), 0
    findings = [u.describe() for u in st.unhandled]
    res = PropertyResult("events_handled", FAIL, findings[0], findings=findings)
    world = world_model(an)

    def attempts() -> Iterator[tuple[Counterexample | None, int, bool]]:
        for u in st.unhandled:

            def hit(step: Step, child: Any, viol: Any, u: Any = u) -> bool:
                return step.transition is None and step.before.state == u.state and step.event.name == u.event

            yield select_counterexample(
                an,
                g,
                lambda e, u=u: e.transition is None and e.src.state == u.state and e.step.event.name == u.event,
                hit,
                f"'{u.event}' in '{u.state}' has no transition",
                world,
            )

    res.counterexample, total = _first_real(attempts())
    return res, total


def _first_real(attempts: Iterable[tuple[Counterexample | None, int, bool]]) -> tuple[Counterexample | None, int]:
    """Run the searches in order until one finds a run the outside world can produce: the
    counterexample to show (see :func:`_preferred`) and the configurations explored in all."""
    total = 0
    found: list[Counterexample] = []
    best: Counterexample | None = None
    for cex, n, real in attempts:
        total += n
        if cex is not None:
            found.append(cex)
            if real:
                best = cex
                break
    return _preferred(found, best), total


def _preferred(found: list[Counterexample], best: Counterexample | None) -> Counterexample | None:
    """The counterexample to show: a real run if one was found, else the first; the others are kept
    as alternatives for the cassette writer to try."""
    if not found:
        return None
    chosen = best or found[0]
    chosen.alternatives = [c for c in found if c is not chosen]
    return chosen


def backstop_demo(an: Analysis, g: Graph, term: Termination) -> tuple[Counterexample | None, int]:
    """A run where a flagged edge fires more often than its own bound allows: its counter's cap
    (which something in the loop resets), or once when it has no counter of its own."""
    policy = an.policy
    total = 0
    found: list[Counterexample] = []
    best: Counterexample | None = None
    world = world_model(an)
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
        prefix = abstract_path(g, lambda e: e.dst in stuck_nodes) or []
        allowed = {id(e.transition) for e in stuck if e.transition is not None}
        allowed |= {id(e.transition) for e in prefix if e.transition is not None}
        target = id(t)

        def bump(count: Any, step: Step | None, target: int = target, need: int = need) -> int:
            if step is None:
                return 0
            c = count + (1 if step.transition is not None and id(step.transition) == target else 0)
            return min(c, need)

        def done(step: Step, child: Any, viol: Any, need: int = need) -> bool:
            return bool(child[2] >= need)

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
