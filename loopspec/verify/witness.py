"""Witness walks: guided runs that avoid halting while they can; the longest they find are lower
bounds that make the elimination's upper bounds exact when they meet."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..language.model import Config
from .abstraction import Analysis


@dataclass
class Witness:
    best: dict[str, dict[str, int]]
    """"*" and each outcome -> backstop name -> the largest value seen at a reachable halt."""
    walks: int
    steps: int


def witness_walks(
    an: Analysis,
    targets: dict[str, dict[str, int]],
    seconds: float = 0.25,
    seed: int = 1,
    max_walks: int = 6,
    moves_per_second: int = 8_000,
) -> Witness:
    """Greedy depth-first runs that avoid halting (and avoid setting flags) while they can, with
    backtracking out of dead ends, recording every halt one step away. Each run prefers spending a
    retry budget over the tool loop, so streaks get reset between retries. They stop early once
    every target figure is met.

    The budget is counted in moves (``seconds * moves_per_second``), not read off the clock, so the
    figures a check reports are the same on a loaded CI machine as on an idle laptop."""
    policy = an.policy
    rng = random.Random(seed)
    b_idx = [(name, policy.counter_index(name)) for name in policy.backstops]
    best: dict[str, dict[str, int]] = {}
    budget = max(1, int(seconds * moves_per_second))
    walks = steps = 0

    def record(cfg: Config) -> None:
        outcome = policy.states[cfg.state].outcome or "?"
        for key in ("*", outcome):
            w = best.setdefault(key, {n: 0 for n, _ in b_idx})
            for name, i in b_idx:
                if cfg.counters[i] > w[name]:
                    w[name] = cfg.counters[i]

    def met() -> bool:
        for key, figs in targets.items():
            got = best.get(key)
            if got is None:
                return False
            for name, v in figs.items():
                if got.get(name, 0) < v:
                    return False
        return True

    init = policy.initial_config()
    if an.kind(init.state) == "halt":
        record(init)
        return Witness(best, 0, 0)

    tool_kind = "tool_exec"

    def options(cfg: Config, mode: int) -> list[Config]:
        nonlocal steps
        scored: list[tuple[float, int, Config]] = []
        for ev_name in an.events_of(cfg.state):
            for step in an.steps_at(cfg, ev_name):
                steps += 1
                after = step.after
                if an.kind(after.state) == "halt":
                    record(after)
                    continue
                score = rng.random()
                if after.flags - cfg.flags:
                    score -= 4.0
                t = step.transition
                if mode == 0 and t is not None and t.increments():
                    score += 2.0  # spend retry budgets first: the most model calls
                if mode == 1 and an.kind(after.state) == tool_kind:
                    score += 2.0  # run the tool loop first: the most tool batches
                if mode == 1 and t is not None and t.increments():
                    score -= 1.0  # retries spend model calls that tool batches need
                scored.append((score, len(scored), after))
        scored.sort(reverse=True)
        return [c for _s, _i, c in scored]

    modes = (0, 1, 2)
    per_walk = max(64, budget // max_walks)
    while walks < max_walks and not met():
        mode = modes[walks % len(modes)]
        walks += 1
        visited: set[Config] = {init}
        stack: list[tuple[Config, list[Config], int]] = [(init, options(init, mode), 0)]
        moves = 0
        while stack:
            moves += 1
            if moves > per_walk or ((moves & 63) == 0 and met()):
                break
            cfg, opts, i = stack[-1]
            if i >= len(opts):
                stack.pop()
                continue
            stack[-1] = (cfg, opts, i + 1)
            nxt = opts[i]
            if nxt in visited:
                continue
            visited.add(nxt)
            stack.append((nxt, options(nxt, mode), 0))
    return Witness(best, walks, steps)
