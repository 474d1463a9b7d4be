"""The witness walks (loopspec/verify/witness.py): concrete runs whose longest halts are the lower
bounds ``check`` reports ("a run with N found"); where they meet the proven upper bound the figure is
exact. Written against the survivors of planting its mutants: the walks must still find the worst
case of policies whose exact figures full enumeration knows, per outcome, and do it the same way
on every run."""

from __future__ import annotations

import pytest

from loopspec import load_policy
from loopspec.verify import check_policy
from loopspec.verify.termination import worst_case
from loopspec.verify.witness import witness_walks

from _paths import DEFAULT_POLICY
from test_mutants_termination import CASES, RETRY, _proof, _text


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
    """Counted in moves with a fixed seed: two searches report the same figures and the same work."""
    an, g, term, _enum = _proof(CASES["two_loops"])
    upper = worst_case(an, g, term)
    a, b = witness_walks(an, upper, seconds=0.05), witness_walks(an, upper, seconds=0.05)
    assert (a.best, a.walks, a.steps) == (b.best, b.walks, b.steps)


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
    from loopspec.verify.abstraction import build_analysis

    text = CASES["never_reset"].replace("initial: ask", "initial: done")
    found = witness_walks(build_analysis(load_policy_text(text, "halted.yaml")), {"*": {"model_calls": 5}})
    zero = {"model_calls": 0, "tool_batches": 0}
    assert (found.best, found.walks, found.steps) == ({"*": zero, "completed": zero}, 0, 0)


@pytest.mark.parametrize(("calls", "batches", "tries"), [(8, 5, 3), (10, 6, 3), (12, 5, 4)])
def test_the_walks_find_both_maxima_when_the_model_calls_are_scarce(calls: int, batches: int, tries: int) -> None:
    """Few model calls for the tool batches and retries the policy allows: the run with the most
    model calls spends retries, the run with the most tool batches must not. The walks find both
    maxima, for each outcome."""
    text = _text(RETRY.replace("TRIES", str(tries)), "{do: [{reset: tries}], to: tools}", tries=tries, calls=calls, batches=batches)
    an, g, term, enum = _proof(text)
    assert witness_walks(an, worst_case(an, g, term), seconds=0.3).best == enum.worst
