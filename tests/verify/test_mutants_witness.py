"""The witness walks (loopspec/verify/witness.py): concrete runs whose longest halts are the lower
bounds ``check`` reports ("a run with N found"); where they meet the proven upper bound the figure is
exact. Written against the survivors of planting its mutants: the walks must still find the worst
case of policies whose exact figures full enumeration knows, per outcome, and do it the same way
on every run."""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

import pytest

from loopspec import load_policy
from loopspec.verify import check_policy
from loopspec.verify.termination import worst_case
from loopspec.verify.abstraction import build_analysis
from loopspec.verify.witness import RETRIES_FIRST, TOOLS_FIRST, WALK_MODES, move_bias, witness_walks

from _paths import DEFAULT_POLICY
from _policy_text import tool_loop
from test_mutants_termination import CASES, HALTS, HEAD, RETRY, _proof, _text


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_walks_find_the_exact_worst_case_of_each_outcome(name: str) -> None:
    """Retries reset by a tool loop, never reset, spending two, two loops at once: the longest runs
    the walks find are the exact maxima, overall and for each outcome, and none is above them."""
    an, g, term, enum = _proof(CASES[name])
    found = witness_walks(an, worst_case(an, g, term), seconds=0.3)
    assert found.best == enum.worst
    assert 1 <= found.walks <= 6 and found.steps > 0


def test_the_walks_stop_once_every_target_is_met() -> None:
    """Targets already met by the first walk's halts end the search after that walk; targets
    nothing meets use every walk."""
    an, g, term, enum = _proof(CASES["reset_per_round"])
    easy = witness_walks(an, {"*": {"model_calls": 1}}, seconds=0.3)
    hard = witness_walks(an, {"*": {"model_calls": 10**6}}, seconds=0.3)
    assert easy.walks == 1 and hard.walks == 6 and easy.steps < hard.steps
    assert hard.best == enum.worst


def test_the_walks_are_the_same_on_every_run() -> None:
    """Counted in moves with a fixed seed: two searches report the same figures and the same work,
    on a small policy they walk through and on the default policy, which they cannot (there the
    random draws decide which configurations the budget reaches)."""
    an, g, term, _enum = _proof(CASES["two_loops"])
    upper = worst_case(an, g, term)
    a, b = witness_walks(an, upper, seconds=0.05), witness_walks(an, upper, seconds=0.05)
    assert (a.best, a.walks, a.steps) == (b.best, b.walks, b.steps)
    default = build_analysis(load_policy(str(DEFAULT_POLICY)))
    far = {"*": {"model_calls": 10**6}}
    c, d = witness_walks(default, far, seconds=0.05), witness_walks(default, far, seconds=0.05)
    assert (c.best, c.walks, c.steps, c.moves) == (d.best, d.walks, d.steps, d.moves)


def test_the_default_policy_s_worst_case_is_witnessed_at_its_caps() -> None:
    """The default policy is too large to enumerate: its worst case is exact only because a walk
    reaches the backstops' caps, ninety model calls and sixty tool batches."""
    r = check_policy(load_policy(str(DEFAULT_POLICY)))
    assert {k: (f.value, f.exact, f.lower) for k, f in r.worst_case.items()} == {
        "model_calls": (90, True, 90), "tool_batches": (60, True, 60)}


def test_targets_met_exactly_end_the_search_after_the_first_walk() -> None:
    """A target is met when a run reaches it, not only when one passes it: with the exact figures as
    targets the first walk, which reaches them, is the only one."""
    for name in sorted(CASES):
        _an, _g, _term, enum = _proof(CASES[name])
        assert witness_walks(_an, enum.worst, seconds=0.3).walks == 1, name


def test_a_turn_that_starts_in_a_halt_is_its_own_witness() -> None:
    """The initial state is a halt: no walk is made, and the figures are the start's, under ``*``
    and under the halt's outcome."""
    from loopspec import load_policy_text

    text = CASES["never_reset"].replace("initial: ask", "initial: done")
    found = witness_walks(build_analysis(load_policy_text(text, "halted.yaml")), {"*": {"model_calls": 5}}, seconds=0.3)
    zero = {"model_calls": 0, "tool_batches": 0}
    assert (found.best, found.walks, found.steps, found.moves) == ({"*": zero, "completed": zero}, 0, 0, 0)


@pytest.mark.parametrize(("calls", "batches", "tries"), [(8, 5, 3), (10, 6, 3), (12, 5, 4)])
def test_the_walks_find_both_maxima_when_the_model_calls_are_scarce(calls: int, batches: int, tries: int) -> None:
    """Few model calls for the tool batches and retries the policy allows: the run with the most
    model calls spends retries, the run with the most tool batches must not. The walks find both
    maxima, for each outcome."""
    text = _text(RETRY.replace("TRIES", str(tries)), "{do: [{reset: tries}], to: tools}", tries=tries, calls=calls, batches=batches)
    an, g, term, enum = _proof(text)
    assert witness_walks(an, worst_case(an, g, term), seconds=0.3).best == enum.worst


# -- how the walks choose: written against the survivors of the walks' heuristics ----------------

KINDS_OF_MOVES = [dict(sets_flag=f, retries=r, into_tools=t) for f in (False, True) for r in (False, True) for t in (False, True)]


def _preference(mode: int, move: dict[str, bool]) -> tuple[bool, ...]:
    """What each walk mode promises to prefer, most important first."""
    avoids_flags = not move["sets_flag"]
    if mode == RETRIES_FIRST:
        return (avoids_flags, move["retries"])
    if mode == TOOLS_FIRST:
        return (avoids_flags, move["into_tools"], not move["retries"])
    return (avoids_flags,)


@pytest.mark.parametrize("mode", WALK_MODES)
def test_a_preferred_kind_of_move_outranks_every_other_whatever_the_random_draw(mode: int) -> None:
    """A move's score is its bias plus a draw in [0, 1): a kind of move a mode prefers is biased a
    whole point or more above the kinds it does not, so no draw reorders them; moves of equally
    preferred kinds get the same bias, so only the draw orders them. Flags come last in every mode,
    retries first in RETRIES_FIRST and last in TOOLS_FIRST, the tool loop first in TOOLS_FIRST, and
    UNBIASED prefers nothing but moves that set no flag."""
    for a in KINDS_OF_MOVES:
        for b in KINDS_OF_MOVES:
            pa, pb = _preference(mode, a), _preference(mode, b)
            bias_a, bias_b = move_bias(mode, **a), move_bias(mode, **b)
            if pa > pb:
                assert bias_a >= bias_b + 1.0, (a, b)
            elif pa == pb:
                assert bias_a == bias_b, (a, b)


class StepsAsked:
    """From now on, what the analysis ``an`` is asked: how many times for the steps of each
    configuration and event, and how many steps it hands out in all."""

    def __init__(self, an: Any) -> None:
        self.asked: Counter[tuple[Any, str]] = Counter()
        self.handed = 0
        steps_at = an.steps_at

        def counting(cfg: Any, event: str) -> Any:
            out = steps_at(cfg, event)
            self.asked[(cfg, event)] += 1
            self.handed += len(out)
            return out

        an.steps_at = counting


def _nudge_policy(calls: int, batches: int, tries: int, nudges: int) -> str:
    """An empty reply takes the turn to a continue state that nudges the model, spending a nudge
    on the way back: at the stream state a move into the tool loop competes with a move that
    spends no counter on the spot."""
    head = (HEAD.replace("TRIES", str(tries)).replace("CALLS", str(calls)).replace("BATCHES", str(batches))
            .replace("empties: {max: 2}", f"empties: {{max: {nudges}}}"))
    stream = {"text": RETRY.replace("TRIES", str(tries)), "tool_calls": "{do: [{reset: tries}], to: tools}",
              "empty": "[{when: {counter: empties, lt: %d}, to: more}, done]" % nudges}
    more = "  more:\n    kind: continue\n    prompt: go_on\n    on: {done: {do: [{increment: empties}], to: ask}}\n"
    return head + tool_loop("out", {"opened": "read"}, stream, {"ok": "ask"}) + more + HALTS + "templates:\n  go_on: Go on.\n"


@functools.cache
def _nudge_proof() -> tuple[Any, Any, Any, Any]:
    """The nudge policy's proof and enumeration, made once (it takes seconds): the seeds share it."""
    return _proof(_nudge_policy(calls=40, batches=12, tries=2, nudges=20))


def _flag_policy(calls: int, batches: int, tries: int) -> str:
    """An empty reply sets a flag, and once it is set a tool call ends the turn: a walk that sets
    the flag early closes the tool loop."""
    head = (HEAD.replace("TRIES", str(tries)).replace("CALLS", str(calls)).replace("BATCHES", str(batches))
            .replace("backstops:", "flags:\n  nudged: {}\nbackstops:"))
    stream = {"text": RETRY.replace("TRIES", str(tries)),
              "tool_calls": "[{when: {flag: nudged}, to: done}, {do: [{reset: tries}], to: tools}]",
              "empty": "{do: [{set: nudged}], to: ask}"}
    return head + tool_loop("out", {"opened": "read"}, stream, {"ok": "ask"}) + HALTS


@pytest.mark.parametrize(("calls", "batches", "tries"), [(8, 5, 3), (10, 6, 3), (12, 5, 4), (20, 8, 4), (30, 10, 5)])
def test_the_first_walk_spends_the_retries_first(calls: int, batches: int, tries: int) -> None:
    """One walk of the smallest budget (64 moves): spending every retry before each tool batch, its
    first dive reaches the most model calls a run can make."""
    text = _text(RETRY.replace("TRIES", str(tries)), "{do: [{reset: tries}], to: tools}", tries=tries, calls=calls, batches=batches)
    an, g, term, enum = _proof(text)
    found = witness_walks(an, worst_case(an, g, term), seconds=0.0, max_walks=1)
    assert found.best["*"]["model_calls"] == enum.worst["*"]["model_calls"] == calls


@pytest.mark.parametrize("seed", range(1, 11))
def test_the_second_walk_runs_the_tool_loop_before_anything_else(seed: int) -> None:
    """Two walks of 64 moves on a policy where nudging the model competes with the tool loop and
    the model calls are too few for both: the second walk, which takes the tool loop first, reaches
    the most tool batches a run can make, whatever the seed."""
    an, g, term, enum = _nudge_proof()
    found = witness_walks(an, worst_case(an, g, term), seconds=0.0, max_walks=2, seed=seed)
    assert found.best["*"]["tool_batches"] == enum.worst["*"]["tool_batches"] == 12


@pytest.mark.parametrize("seed", (1, 2, 3))
@pytest.mark.parametrize(("calls", "batches", "tries"), [(20, 8, 3), (30, 10, 3), (40, 12, 2)])
def test_a_walk_sets_a_flag_only_when_nothing_else_is_open(calls: int, batches: int, tries: int, seed: int) -> None:
    """One walk of 64 moves, on a policy where a flag closes the tool loop: the walk runs tool
    batches before it sets the flag, so it reaches at least half the tool-batch cap (a walk that
    sets flags as readily as anything else closes the loop at once and runs none or one)."""
    an, g, term, _enum = _proof(_flag_policy(calls, batches, tries))
    found = witness_walks(an, worst_case(an, g, term), seconds=0.0, max_walks=1, seed=seed)
    assert found.best["*"]["tool_batches"] >= batches // 2


@pytest.mark.parametrize(("seconds", "walks"), [(0.0, 1), (0.0, 6), (0.05, 6), (0.3, 4), (1.0, 1)])
def test_the_walks_spend_their_whole_budget_of_moves_when_the_targets_are_out_of_reach(seconds: float, walks: int) -> None:
    """The budget is ``seconds * moves_per_second`` moves shared evenly by the walks, at least 64
    each; with targets no run reaches, on a policy too large to walk through, every walk spends its
    share to the move."""
    an = build_analysis(load_policy(str(DEFAULT_POLICY)))
    found = witness_walks(an, {"*": {"model_calls": 10**6}}, seconds=seconds, max_walks=walks)
    assert found.walks == walks
    assert found.moves == walks * max(64, int(seconds * 8000) // walks)


def test_a_walk_stops_within_64_moves_of_meeting_its_targets() -> None:
    """Whether the targets are met is asked every 64 moves: targets the first halts meet end the
    search at the first asking, not at the end of the walk's share."""
    an = build_analysis(load_policy(str(DEFAULT_POLICY)))
    found = witness_walks(an, {"*": {"model_calls": 1}}, seconds=0.3)
    assert (found.walks, found.moves) == (1, 64)


def test_the_steps_counted_are_the_steps_examined() -> None:
    """``steps`` (added to the configurations a check reports exploring) is the number of steps
    the walks were handed, each counted once."""
    an, g, term, _enum = _proof(CASES["two_loops"])
    seen = StepsAsked(an)
    found = witness_walks(an, {"*": {"model_calls": 10**6}}, seconds=0.05)
    assert found.steps == seen.handed > 0


def test_a_walk_enters_each_configuration_once() -> None:
    """Runs that meet in the same configuration (a retry then a tool batch, or the other way) are
    walked on from it once: one walk through a whole small policy asks the steps of each
    configuration and event once."""
    an, g, term, enum = _proof(CASES["two_loops"])
    seen = StepsAsked(an)
    found = witness_walks(an, {"*": {"model_calls": 10**6}}, seconds=10.0, max_walks=1)
    assert found.walks == 1 and found.moves < 80_000, "the walk went through the whole policy"
    assert seen.asked and max(seen.asked.values()) == 1
