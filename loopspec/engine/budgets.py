"""A turn's usage budgets: the amounts the policy's ``budgets:`` cap, measured outside the configuration.

The policy decides (:meth:`~loopspec.language.model.Policy.budget_status` turns the amounts into the
flags a step reads, and :meth:`~loopspec.language.model.Policy.step` redirects a call like a spent
backstop); this module only measures. Tokens and cost come from the replies' usage (see
:class:`~.results.TurnUsage`, which a journal checkpoint carries, so a resumed turn goes on with its
budgets), working time from the turn's clock with every backoff wait taken out.
"""

from __future__ import annotations

from typing import Mapping

from loopspec.language.config import Config
from loopspec.language.model import Policy

from .clock import Clock
from .results import TurnUsage


_NOTHING: frozenset[str] = frozenset()


class BudgetMeter:
    """Measures one turn's amounts: working time is added up between measurements, less the waits."""

    def __init__(self, policy: Policy, usage: TurnUsage, clock: Clock) -> None:
        self.policy = policy
        self.usage = usage
        self.clock = clock
        self._mark = clock.now()
        self._waited = 0.0

    def exclude(self, seconds: float) -> None:
        """A backoff (a rate-limit wait) took ``seconds``: they are not working time."""
        self._waited += max(0.0, seconds)

    def _count_working_time(self) -> None:
        """Add the working time since the last measurement to the turn's usage."""
        now = self.clock.now()
        self.usage.working_time += max(0.0, now - self._mark - self._waited)
        self._mark, self._waited = now, 0.0

    def amounts(self) -> Mapping[str, float]:
        """Every budget's amount now (working time brought up to date first)."""
        self._count_working_time()
        u = self.usage
        return {
            "input_tokens": float(u.prompt_tokens),
            "output_tokens": float(u.completion_tokens),
            "reasoning_tokens": float(u.reasoning_tokens),
            "cost": u.cost,
            "working_time": u.working_time,
        }

    def measure(self, cfg: Config) -> frozenset[str]:
        """The budget flags for the step taken from ``cfg`` (see ``Policy.step``'s ``measured``)."""
        if not self.policy.budgets:  # nothing to measure; the working time is still the turn's usage
            self._count_working_time()
            return _NOTHING
        return self.policy.budget_status(cfg, self.amounts(), self.usage.cost_unknown)
