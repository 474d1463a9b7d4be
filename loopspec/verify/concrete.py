"""Concrete search nodes: a configuration with the property monitor's state, its successors through
:meth:`Policy.step`, and the world model that keeps searches to runs the outside world can produce."""

from __future__ import annotations

from typing import Any, Callable, Hashable, Iterable, Protocol, TypeVar

from ..language.model import Config, Step
from .abstraction import Analysis
from .counterexample import CexStep, cex_step
from .properties import monitor_step
from .search import path_to

CNode = tuple[Config, bool]
"""A concrete configuration with the property monitor's state (a silent stub in flight)."""

SearchNode = tuple[Config, bool, *tuple[Any, ...]]
"""A :data:`CNode`, followed by the ``extra`` search state when :func:`shortest_counterexample` threads one."""

_N = TypeVar("_N", bound=SearchNode)

def successors(an: Analysis, node: CNode) -> Iterable[tuple[Step, CNode, list[tuple[str, str]]]]:
    cfg, silent = node
    if an.kind(cfg.state) == "halt":
        return
    for ev_name in an.events_of(cfg.state):
        for step in an.steps_at(cfg, ev_name):
            an.steps_evaluated += 1
            s2, viol = monitor_step(an, silent, step)
            yield step, (step.after, s2), viol


def initial_node(an: Analysis) -> CNode:
    return (an.policy.initial_config(), False)


def cex_path(parents: dict[_N, tuple[_N, Step] | None], node: _N) -> list[CexStep]:
    return [cex_step(step) for step in path_to(parents, node)]


StepPredicate = Callable[[Step, SearchNode, list[tuple[str, str]]], bool]


class WorldModel(Protocol):
    """What the outside world must have said for a run to be real, as far as a search needs it.

    The adversary of the abstraction may answer anything the alphabet allows; a world model
    follows a run and says when a step asks for something no provider, tool or classifier can
    produce (a rate_limit with status 200, a guardrail verdict the policy does not configure, a
    stub event that contradicts the stream it was cut from). Searches that pass one only return
    runs it accepts; the world is appended to each search node (``node[-1]``). Its states must be
    finitely many: ``usable_edges`` walks every (abstract node, world) pair from the start."""

    def start(self) -> Hashable: ...

    def advance(self, world: Any, step: Step) -> Hashable | None:
        """The world after ``step``, or None when no outside world makes ``step`` happen."""
        ...
