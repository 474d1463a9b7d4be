"""A run that never halts, as the checker shows it: the concrete lasso (``find_lasso`` and the full
enumeration's cycle search) and the abstract loop that stands in when no concrete run is found.

Both policies loop in an escalate state that no counter bounds (``fix --failed--> fix``). In
BEHIND_HALT the loop's other exit reaches a halt configuration BFS met earlier: the cycle search
must skip that halt (behind the cycle, not on it). In BACK_TO_CALL the other exit makes a model call,
so a truncated search has cycle nodes whose successors it never expanded.
"""

from __future__ import annotations

import pytest

from loopspec.language.model import Policy
from loopspec.verify import check_policy
from loopspec.verify import checker as checker_mod
from loopspec.verify.abstract_runs import abstract_loop
from loopspec.verify.abstract_graph import build_graph
from loopspec.verify.abstraction import build_analysis
from loopspec.verify.counterexample import Counterexample
from loopspec.verify.enumeration import enumerate_all, find_lasso
from loopspec.verify.termination import eliminate

from _soundness import replays_as_cycle
from test_check import CALL, HALTS, TOOLS, policy, stream



def fix(done: str) -> str:
    return f"  fix:\n    kind: escalate\n    apply: [compact]\n    on: {{done: {done}, failed: fix}}\n"


# read: text -> fail (BFS reaches that halt first), cancelled -> fix, which fails over to itself forever
BEHIND_HALT = (CALL, stream(text="fail", cancelled="fix"), TOOLS, fix("fail"), HALTS)
BACK_TO_CALL = (CALL, stream(cancelled="fix"), TOOLS, fix("ask"), HALTS)
LOOPING = {"behind_halt": BEHIND_HALT, "back_to_call": BACK_TO_CALL}
HALTING = (CALL, stream(), TOOLS, HALTS)

RUN_INTO_LOOP = [("ask", "opened"), ("read", "cancelled")]
LOOP = [("fix", "failed")]


def looping(name: str = "behind_halt") -> Policy:
    return policy(*LOOPING[name])


def events(cex: Counterexample) -> list[tuple[str, str]]:
    return [(s.state, s.event) for s in cex.steps]


def assert_lasso(p: Policy, cex: Counterexample | None) -> Counterexample:
    """A concrete run that, replayed through Policy.step, comes back to where its loop starts."""
    assert cex is not None and cex.concrete
    assert cex.loop_start is not None
    assert replays_as_cycle(p, [s.as_tuple() for s in cex.steps], cex.loop_start), events(cex)
    return cex


@pytest.mark.parametrize("name", sorted(LOOPING))
@pytest.mark.parametrize("enumerate_limit", [200_000, 0], ids=["enumerated", "find_lasso"])
def test_check_shows_the_shortest_run_into_the_loop(enumerate_limit: int, name: str) -> None:
    p = looping(name)
    r = check_policy(p, enumerate_limit=enumerate_limit)
    assert r.exploration["full_enumeration"] is (enumerate_limit > 0)
    halts = r.properties["halts"]
    assert halts.status == "fail"
    cex = assert_lasso(p, halts.counterexample)
    assert events(cex) == RUN_INTO_LOOP + LOOP
    assert cex.loop_start == len(RUN_INTO_LOOP)


def test_the_halt_behind_the_loop_is_not_taken_for_it() -> None:
    """The configuration 'fail' is reached before the loop (from read) and from it (fix --done-->):
    it is left over by the topological sort, comes first in BFS order, and has no cycle."""
    an = build_analysis(looping())
    enum = enumerate_all(an)
    assert enum is not None and not enum.halts
    cex = assert_lasso(an.policy, enum.lasso)
    assert all(s.to != "fail" for s in cex.steps)


@pytest.mark.parametrize("name", sorted(LOOPING))
def test_find_lasso_at_every_search_limit(name: str) -> None:
    """Below the limit that expands the loop, no lasso; from it on, the same lasso; the search is
    exhaustive exactly when every configuration was expanded."""
    p = looping(name)
    total = enumerate_all(build_analysis(p))
    assert total is not None
    found_at = None
    for limit in range(1, total.configs + 3):
        lasso, explored, complete = find_lasso(build_analysis(p), limit=limit)
        assert explored <= min(limit, total.configs)
        assert complete == (explored == total.configs), (limit, explored)
        if lasso is None:
            assert found_at is None, f"found at limit {found_at}, lost at {limit}"
            continue
        found_at = found_at or limit
        assert_lasso(p, lasso)
        assert events(lasso) == RUN_INTO_LOOP + LOOP
    assert found_at is not None and found_at < total.configs, "a truncated search finds the loop too"


def test_a_halting_policy_has_no_lasso() -> None:
    an = build_analysis(policy(*HALTING))
    lasso, explored, complete = find_lasso(an)
    total = enumerate_all(build_analysis(policy(*HALTING)))
    assert total is not None and total.halts
    assert (lasso, explored, complete) == (None, total.configs, True)


def test_abstract_loop_is_a_cycle_of_the_abstract_graph() -> None:
    an = build_analysis(looping())
    g = build_graph(an)
    term = eliminate(an, g)
    assert not term.halts
    cex = abstract_loop(g, term)
    assert cex is not None and not cex.concrete
    assert cex.loop_start is not None and cex.loop_start < len(cex.steps)
    assert cex.steps[0].state == "ask"
    for a, b in zip(cex.steps, cex.steps[1:]):
        assert a.to == b.state, events(cex)
    assert cex.steps[cex.loop_start].state == cex.steps[-1].to, "the loop returns to where it starts"
    assert ("fix", "failed") in events(cex)[cex.loop_start :]


def test_abstract_loop_of_a_halting_policy_is_none() -> None:
    an = build_analysis(policy(*HALTING))
    g = build_graph(an)
    term = eliminate(an, g)
    assert term.halts and abstract_loop(g, term) is None


def test_check_falls_back_to_the_abstract_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy too large to enumerate whose loop the bounded concrete search misses still gets a
    counterexample: the abstract cycle, marked not concrete."""
    monkeypatch.setattr(checker_mod, "find_lasso", lambda an, limit: (None, 7, False))
    r = check_policy(looping(), enumerate_limit=0)
    halts = r.properties["halts"]
    assert halts.status == "fail"
    cex = halts.counterexample
    assert cex is not None and not cex.concrete and cex.loop_start is not None
    assert cex.steps[cex.loop_start].state == cex.steps[-1].to
    assert r.exploration["concrete_configs"] >= 7


def test_the_search_limit_counts_configurations_held_not_expanded() -> None:
    """``limit`` bounds the configurations the search holds: at exactly the policy's number of
    configurations the last one found is never expanded, so the search is not exhaustive; one more
    and it is."""
    total = enumerate_all(build_analysis(policy(*HALTING)))
    assert total is not None
    _, explored, complete = find_lasso(build_analysis(policy(*HALTING)), limit=total.configs)
    assert not complete and explored < total.configs
    assert find_lasso(build_analysis(policy(*HALTING)), limit=total.configs + 1)[1:] == (total.configs, True)


def test_a_loop_back_to_the_initial_configuration_is_found() -> None:
    """An initial state that is not a call can come back to the very first configuration (no call
    counted in between): the search must recognise the start as the loop's target."""
    from test_check import HEAD

    p = policy(CALL, stream(), TOOLS, "  fix:\n    kind: escalate\n    apply: [compact]\n    on: {done: fix, failed: fix}\n",
               HALTS, head=HEAD.replace("initial: ask", "initial: fix"))
    lasso, explored, complete = find_lasso(build_analysis(p))
    cex = assert_lasso(p, lasso)
    assert cex.loop_start == 0 and events(cex) == [("fix", "done")]
    assert (explored, complete) == (1, True)
    assert check_policy(p, enumerate_limit=0).properties["halts"].status == "fail"


def test_a_two_state_loop_entered_from_outside_is_found() -> None:
    """The loop's entry has two predecessors (the way in and the loop's other state), the other
    state one, and the way in is reached by two events: trimming the configurations no cycle goes
    through (by counting their predecessors down) must keep both of the loop's."""
    two = ("  fix:\n    kind: escalate\n    apply: [compact]\n    on: {done: fail, failed: again}\n"
           "  again:\n    kind: escalate\n    apply: [compact]\n    on: {done: fail, failed: fix}\n")
    assert "      transient: fail\n" in CALL
    p = policy(CALL.replace("      transient: fail\n", "      transient: read\n"), stream(cancelled="fix"), TOOLS, two, HALTS)
    lasso, _explored, complete = find_lasso(build_analysis(p))
    cex = assert_lasso(p, lasso)
    assert complete and cex.loop_start == len(RUN_INTO_LOOP)  # the shallowest loop: the first time round
    assert events(cex) == RUN_INTO_LOOP + [("fix", "failed"), ("again", "failed")]


def test_a_search_cut_right_after_the_loop_finds_it_without_looking_past_the_cut() -> None:
    """The initial escalation pair loops at once. From the first limit that expands both of its
    configurations (a cut that leaves a successor of the loop found but not expanded) the search
    finds the loop, at every limit after it too, and never follows an edge out of what it expanded."""
    from test_check import HEAD

    pair = ("  fix:\n    kind: escalate\n    apply: [compact]\n    on: {done: ask, failed: again}\n"
            "  again:\n    kind: escalate\n    apply: [compact]\n    on: {done: ask, failed: fix}\n")
    p = policy(CALL, stream(), TOOLS, pair, HALTS, head=HEAD.replace("initial: ask", "initial: fix"))
    total = enumerate_all(build_analysis(p))
    assert total is not None
    found_at = None
    for limit in range(1, total.configs + 2):
        lasso, explored, complete = find_lasso(build_analysis(p), limit=limit)
        assert complete == (explored == total.configs)
        if lasso is None:
            assert found_at is None, f"found at limit {found_at}, lost at {limit}"
            continue
        found_at = found_at or limit
        cex = assert_lasso(p, lasso)
        assert events(cex) == [("fix", "failed"), ("again", "failed")] and cex.loop_start == 0, limit
    assert found_at == 6 < total.configs  # the first limit that expands both of the loop's configurations


def test_a_cut_search_still_follows_the_loop_past_a_successor_it_never_expanded() -> None:
    """``again`` leads first to ``out`` (found last, not expanded when the search is cut) and then
    back to ``fix``: the search for the loop must skip the unexpanded successor and go on to the
    next, not stop at it."""
    from test_check import HEAD

    pair = ("  fix:\n    kind: escalate\n    apply: [compact]\n    on: {done: again, failed: ask}\n"
            "  again:\n    kind: escalate\n    apply: [compact]\n    on: {done: out, failed: fix}\n")
    p = policy(CALL, stream(), TOOLS, pair, HALTS, head=HEAD.replace("initial: ask", "initial: fix"))
    lasso, explored, complete = find_lasso(build_analysis(p), limit=4)
    assert (explored, complete) == (2, False)
    cex = assert_lasso(p, lasso)
    assert events(cex) == [("fix", "done"), ("again", "failed")] and cex.loop_start == 0


def test_the_enumeration_limit_is_the_number_of_configurations_it_may_hold() -> None:
    """A limit of exactly the reachable configurations completes; one fewer gives up (None)."""
    an = build_analysis(policy(*HALTING))
    total = enumerate_all(an)
    assert total is not None and total.configs > 2
    assert enumerate_all(build_analysis(policy(*HALTING)), limit=total.configs) is not None
    assert enumerate_all(build_analysis(policy(*HALTING)), limit=total.configs - 1) is None
