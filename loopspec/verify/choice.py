"""Choosing a counterexample: among the runs that show a failure, prefer one the outside world can
produce (so a cassette can record it), falling back to the adversary's run, a guided run, or an
abstract path."""

from __future__ import annotations

from typing import Any

from .abstract_graph import Graph
from .abstraction import Analysis
from .abstract_runs import abstract_cex, abstract_path, deep_counterexample
from .counterexample import CexStep, Counterexample
from .properties import monitor_step
from .reach import shortest_counterexample

SEARCH_LIMIT = 30_000
"""Concrete configurations a counterexample search may visit."""
WORLD_LIMIT = 10_000
"""Concrete configurations each search for a run the outside world can produce may visit (before
the checker falls back to the adversary's own run)."""


def world_model(an: Analysis, halts: dict[str, str | None] | None = None) -> Any:
    """What the outside world can make happen (see :class:`~loopspec.verify.realiser.Realiser`):
    counterexamples are chosen among the runs a cassette can record."""
    from .realiser import Realiser

    return Realiser(an.policy, halts)


def select_counterexample(
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
    adversary: Counterexample | None
    if plain is not None:
        adversary = Counterexample(plain, note)
    else:  # too deep for breadth-first search: a guided run
        adversary, m = deep_counterexample(an, g, goal, plain_predicate, note)
        n += m
    if adversary is not None and is_real(an, world, adversary.steps, predicate):
        return adversary, n, True
    if any(world.possible(e.step) for e in g.edges if goal(e)):  # else no run ends there for real
        path, m = shortest_counterexample(an, predicate, limit=WORLD_LIMIT, world=world)
        n += m
        if path is not None:
            return Counterexample(path, note), n, True
        if m >= WORLD_LIMIT:
            guided, m = deep_counterexample(an, g, goal, predicate, note, world=world, limit=WORLD_LIMIT)
            n += m
            if guided is not None:
                return guided, n, True
    if adversary is None:
        edges = abstract_path(g, goal)
        if not edges:
            return None, n, False
        steps = [abstract_cex(e) for e in edges]
        return Counterexample(steps, note + " (abstract path: no concrete run found within the search limit)", concrete=False), n, False
    return adversary, n, False


def is_real(an: Analysis, world: Any, steps: list[CexStep], predicate: Any) -> bool:
    """The outside world can produce the run ``steps``, and its last step still satisfies
    ``predicate`` when judged with the world (e.g. it leaves a halt's message empty)."""
    from .cassette_plan import simulate
    from .event_options import NotReplayable

    try:
        sim = simulate(an.policy, steps)
    except NotReplayable:
        return False
    if not sim:
        return False
    w = world.start()
    silent, viol = False, list[tuple[str, str]]()
    for st in sim:
        w = world.advance(w, st)
        if w is None:
            return False
        silent, viol = monitor_step(an, silent, st)
    last = sim[-1]
    return bool(predicate(last, (last.after, silent, w), viol))
