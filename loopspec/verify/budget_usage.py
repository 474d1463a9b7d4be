"""Usage for a counterexample's replies, so that its replay measures what its path measured.

The checker's adversary picks a budget's level at each call entry; a cassette can only say what
the provider reported. This gives the planned replies the usage (tokens, cost) that brings each
budget to exactly the level a step measured: the reply just before that call entry carries the
difference. Working time, a stream cut before its usage, or a level the usage cannot reach without
reaching it earlier are :class:`~.event_options.NotReplayable`. The replay of the cassette checks
the result, as for every counterexample.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from loopspec.language.alphabet import COST_UNKNOWN_FLAG
from loopspec.language.model import Policy
from loopspec.replay.interactions import StreamResponse
from loopspec.replay.synth import usage_body

from .event_options import NotReplayable

FIELDS = {"input_tokens": "prompt_tokens", "output_tokens": "completion_tokens", "reasoning_tokens": "reasoning_tokens", "cost": "cost"}
"""The usage field each budget is charged from."""


def charge_budgets(policy: Policy, planned: Sequence[Any]) -> None:
    """Set the usage of each planned reply (PlannedStep.option.interaction), in place."""
    if not policy.budgets:
        return
    usage: dict[int, dict[str, Any]] = {}
    amounts = {name: 0.0 for name in policy.budgets}
    cfg = policy.initial_config()
    last: int | None = None
    """The planned step holding the latest reply whose usage counts."""
    for i, p in enumerate(planned):
        step = policy.step(cfg, p.event, p.measured)
        if policy.states[step.after.state].kind == "call" or step.redirected_from is not None:
            wanted = step.after.flags | p.measured
            for b in policy.budgets.values():
                level = b.max if b.flag("reached") in wanted else b.warn_at if b.flag("warned") in wanted else None
                if level is None or amounts[b.name] >= level:
                    continue
                if b.name not in FIELDS:
                    raise NotReplayable(f"step {i + 1} measures {b.name}, which a cassette's usage cannot set")
                if last is None:
                    raise NotReplayable(f"step {i + 1} measures {b.name} before any reply could report usage")
                more = level - amounts[b.name]
                if b.name != "cost":
                    more = float(math.ceil(more))
                got = usage.setdefault(last, {})
                got[FIELDS[b.name]] = got.get(FIELDS[b.name], 0) + more
                amounts[b.name] += more
            if COST_UNKNOWN_FLAG in p.measured and last is not None:
                usage.setdefault(last, {})["unknown"] = True
            status = policy.budget_status(cfg, amounts, COST_UNKNOWN_FLAG in wanted)
            # what the checker did not try (a warned or cost_unknown no guard reads) changes no decision
            status = frozenset(f for f in status if f.endswith("_reached") or f in policy.guard_flags())
            if not status <= wanted | step.before.flags:
                raise NotReplayable(f"step {i + 1}: the usage that reaches its budgets reaches {sorted(status - wanted)} too")
        if isinstance(p.option.interaction, StreamResponse) and policy.states[p.state].kind == "stream":
            last = i
        cfg = step.after
    for i, p in enumerate(planned):
        resp = p.option.interaction
        if policy.states[p.state].kind != "stream" or not isinstance(resp, StreamResponse):
            continue
        u = usage.get(i, {})
        needed = bool(u)  # a level (or a cost measured unknown) depends on this reply
        if "unknown" not in u and "cost" in policy.budgets:
            # every reply says its cost (zero unless a level needs more), or the replay would
            # measure cost_unknown where the path measured nothing
            u.setdefault("cost", 0.0)
        u.pop("unknown", None)
        if not u:
            continue
        if resp.chunks is None or resp.stall_after is not None or resp.disconnect_after is not None:
            if needed:
                raise NotReplayable(f"step {i + 1}'s reply cannot carry usage (a cut or raw stream)")
            continue  # only the zero cost: a cut reply leaves its cost unknown, as a live one does
        body = usage_body({k: (v if k == "cost" else int(v)) for k, v in u.items()})
        chunks = (*resp.chunks[:-1], dict(resp.chunks[-1], usage=body))
        p.option = dataclasses.replace(p.option, interaction=dataclasses.replace(resp, chunks=chunks))
