"""Explicit search over concrete configurations, always through :meth:`Policy.step`.

- :func:`enumerate_all` explores the full configuration space of a small policy (exact verdict on
  halting, exact worst-case figures); the differential test keeps it and counter elimination in
  agreement.
- :func:`shortest_counterexample` is a breadth-first search for the shortest event path to a step
  the property monitor rejects (or any predicate), optionally restricted to some transitions.
- :func:`find_lasso` finds a path into a cycle of concrete configurations (a run that never halts).
- :func:`guided_counterexample` reaches findings too deep for breadth-first search (behind a
  backstop that needs sixty tool batches) by a depth-first run ordered by abstract distance.
- :func:`witness_walks` are guided walks that never halt while they can; the longest they find are
  lower bounds that make the elimination's upper bounds exact when they meet.
"""

from __future__ import annotations

from .concrete import CNode, SearchNode, StepPredicate, WorldModel, initial_node, successors
from .counterexample import CexStep, Counterexample, cex_step
from .enumeration import Enumeration, enumerate_all, find_lasso
from .reach import guided_counterexample, shortest_counterexample, violation_counterexample
from .witness import Witness, witness_walks

__all__ = [
    "CNode",
    "CexStep",
    "Counterexample",
    "Enumeration",
    "SearchNode",
    "StepPredicate",
    "Witness",
    "WorldModel",
    "cex_step",
    "enumerate_all",
    "find_lasso",
    "guided_counterexample",
    "initial_node",
    "shortest_counterexample",
    "successors",
    "violation_counterexample",
    "witness_walks",
]
