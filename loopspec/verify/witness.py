"""Witness walks: guided runs that avoid halting while they can; the longest they find are lower
bounds that make the elimination's upper bounds exact when they meet."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..language.model import Config, Step
from .abstraction import Analysis


RETRIES_FIRST, TOOLS_FIRST, UNBIASED = 0, 1, 2
WALK_MODES = (RETRIES_FIRST, TOOLS_FIRST, UNBIASED)
"""The walks take turns: one that spends retry budgets first (the most model calls), one that runs
the tool loop first and spends retries last (the most tool batches), and one led by chance alone."""


def move_bias(mode: int, *, sets_flag: bool, retries: bool, into_tools: bool) -> float:
    """How much a walk in ``mode`` prefers a move, before a random draw in [0, 1) is added.

    Preferred kinds of moves are a whole point or more apart, so the draw only orders moves of the
    same kind: in every mode a move that sets a flag comes after every move that does not (a new flag
    tends to open a way out); among the rest, RETRIES_FIRST takes a move that spends a counter
    first, TOOLS_FIRST takes a move into the tool loop first and one that spends a counter last, and
    UNBIASED has no preference."""
    bias = -4.0 if sets_flag else 0.0
    if mode == RETRIES_FIRST and retries:
        bias += 2.0
    if mode == TOOLS_FIRST:
        if into_tools:
            bias += 2.0
        if retries:
            bias -= 1.0
    return bias


@dataclass
class Witness:
    best: dict[str, dict[str, int]]
    """"*" and each outcome -> backstop name -> the largest value seen at a reachable halt."""
    walks: int
    steps: int
    """Steps computed: every outcome of every event at each configuration a walk entered, once
    however many walks enter it."""
    moves: int
    """Moves made, the unit of the budget: entering a configuration, skipping a visited one, or
    backing out of one."""


def witness_walks(
    an: Analysis,
    targets: dict[str, dict[str, int]],
    seconds: float,
    seed: int = 1,
    max_walks: int = 6,
    moves_per_second: int = 8_000,
) -> Witness:
    """Greedy depth-first runs that avoid halting (and avoid setting flags) while they can, with
    backtracking out of dead ends, recording every halt one step away. The walks take the
    ``WALK_MODES`` in turn (see ``move_bias``), and stop early once every target figure is met.

    The budget is counted in moves (``seconds * moves_per_second``), not read off the clock, so the
    figures a check reports are the same on a loaded CI machine as on an idle laptop."""
    policy = an.policy
    rng = random.Random(seed)
    b_idx = [(name, policy.counter_index(name)) for name in policy.backstops]
    best: dict[str, dict[str, int]] = {}
    budget = int(seconds * moves_per_second)
    walks = steps = moves_made = 0

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
                if got[name] < v:
                    return False
        return True

    init = policy.initial_config()
    if an.kind(init.state) == "halt":
        record(init)
        return Witness(best, 0, 0, 0)

    # Every walk starts again from the start, so later walks enter the configurations earlier ones
    # did: their steps are kept (the walks' budget bounds how many there are).
    outcomes: dict[tuple[Config, str], list[Step]] = {}

    def steps_at(cfg: Config, event: str) -> list[Step]:
        nonlocal steps
        key = (cfg, event)
        got = outcomes.get(key)
        if got is None:
            got = outcomes[key] = an.steps_at(cfg, event)
            steps += len(got)
        return got

    def options(cfg: Config, mode: int) -> list[Config]:
        scored: list[tuple[float, int, Config]] = []
        for ev_name in an.events_of(cfg.state):
            for step in steps_at(cfg, ev_name):
                after = step.after
                if an.kind(after.state) == "halt":
                    record(after)
                    continue
                t = step.transition
                bias = move_bias(
                    mode,
                    sets_flag=bool(after.flags - cfg.flags),
                    retries=t is not None and bool(t.increments()),
                    into_tools=an.kind(after.state) == "tool_exec",
                )
                scored.append((bias + rng.random(), len(scored), after))
        scored.sort(reverse=True)
        return [c for _s, _i, c in scored]

    per_walk = max(64, budget // max_walks)
    mode: int  # the walk's, set as each walk starts
    visited: set[Config] = set()
    stack: list[tuple[Config, list[Config], int]] = []  # a configuration, its moves, the next to try

    def enter(cfg: Config) -> None:
        visited.add(cfg)
        stack.append((cfg, options(cfg, mode), 0))

    while walks < max_walks and not met():
        mode = WALK_MODES[walks % len(WALK_MODES)]
        walks += 1
        visited.clear()
        stack.clear()
        enter(init)
        moves = 0
        while stack and moves < per_walk:
            moves += 1
            moves_made += 1
            if (moves & 63) == 0 and met():
                break
            cfg, opts, i = stack[-1]
            if i >= len(opts):
                stack.pop()
                continue
            stack[-1] = (cfg, opts, i + 1)
            if opts[i] not in visited:
                enter(opts[i])
    return Witness(best, walks, steps, moves_made)
