"""Which loops a usage budget bounds, for the report.

A budget's amount is the adversary's (any usage, any cost, any time), so the checker explores every
budget level at every call entry and a budget bounds nothing by itself. With ``min_per_call`` the
interpreter counts each model call entered as at least that much
(:meth:`~loopspec.language.model.Policy.budget_status`), so after ``ceil(max / min_per_call)``
calls the budget is reached whatever was reported, and at most one more call (its ``wrap_up``'s)
follows: the budget is then a model-call ceiling. It bounds exactly the loops whose bound passes
through the model-call backstop (the ones termination eliminated with it, or inside a component
only it broke); no figure of the report is lowered by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..language.model import Policy
from .termination import Termination

MODEL_CALLS = "model_calls"


@dataclass
class BudgetBound:
    budget: str
    max: float
    min_per_call: float | None
    calls: int | None
    """The most model calls a turn makes before this budget ends it; None: it bounds nothing."""
    loops: list[str] = field(default_factory=list)
    """Loop edges whose bound passes through the model calls, which this budget bounds."""

    def text(self) -> str:
        head = f"{self.budget} (max {self.max:g}"
        if self.calls is None:
            return head + "): no min_per_call, so it bounds no loop in this proof (it may still end a turn)"
        head += f", min_per_call {self.min_per_call:g}): at most {self.calls} model calls per turn"
        if not self.loops:
            return head + "; no loop of this policy goes through the model calls"
        return head + "; it bounds: " + ", ".join(self.loops)

    def to_json(self) -> dict[str, Any]:
        return {"budget": self.budget, "max": self.max, "min_per_call": self.min_per_call,
                "model_calls_at_most": self.calls, "bounds_loops": list(self.loops)}


def budget_bounds(policy: Policy, term: Termination) -> list[BudgetBound]:
    """One entry per declared budget, in the alphabet's order."""
    through_calls = sorted({
        e.label
        for el in term.eliminations
        if el.counter == MODEL_CALLS or MODEL_CALLS in el.through
        for e in el.edges
        if e.transition is not None
    })
    out: list[BudgetBound] = []
    for b in policy.budgets.values():
        n = b.call_bound()
        calls = None if n is None else n + (1 if b.wrap_up is not None else 0)
        out.append(BudgetBound(b.name, b.max, b.min_per_call, calls, through_calls if n is not None else []))
    return out
