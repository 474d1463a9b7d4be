"""The breadth-first search every checker search shares (loopspec/verify/search.py) and the choice
of the counterexample to show (loopspec/verify/choice.py), tested against the survivors of a hand
mutation analysis. The search is driven over hand-written graphs whose shortest paths, visiting
order and expansion counts can be worked out on paper; the choice over small inline policies (the
helpers of test_check.py) where the adversary's shortest run and the run a cassette can record differ."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from loopspec.verify import check_policy
from loopspec.verify import choice, deciders
from loopspec.verify.abstract_graph import build_graph
from loopspec.verify.abstraction import build_analysis
from loopspec.verify.counterexample import CexStep
from loopspec.verify.report import FAIL
from loopspec.verify.search import path_to, shortest_path

from test_check import CALL, HALTS, TOOLS, policy, stream

# --------------------------------------------------------------------------- search.py

# root -> a, root -> b; a -> c, b -> c; c -> d; d -> root (a cycle back); edges are named "x>y"
DIAMOND: dict[str, list[str]] = {"root": ["a", "b"], "a": ["c"], "b": ["c"], "c": ["d"], "d": ["root"]}


def expander(graph: dict[str, list[str]], log: list[str] | None = None) -> Any:
    def expand(node: str) -> Iterator[tuple[str, str]]:
        for child in graph.get(node, ()):
            if log is not None:
                log.append(f"{node}>{child}")
            yield f"{node}>{child}", child

    return expand


def to(node: str) -> Any:
    return lambda edge, child: child == node


def test_path_to_rebuilds_the_edges_from_the_root_in_order() -> None:
    parents: dict[str, tuple[str, str] | None] = {"r": None, "x": ("r", "r>x"), "y": ("x", "x>y"), "z": ("y", "y>z")}
    assert path_to(parents, "z") == ["r>x", "x>y", "y>z"]
    assert path_to(parents, "r") == []


def test_the_shortest_path_ends_with_the_goal_edge_through_the_first_parent() -> None:
    """Fewest edges; a node reached twice on one level keeps its first parent (a, not b); the goal
    edge is the last edge; every node of the levels before the goal's is expanded once."""
    path, explored = shortest_path("root", expander(DIAMOND), to("d"))
    assert path == ["root>a", "a>c", "c>d"]
    assert explored == 4  # root, a, b, c: c once although two edges reach it


def test_an_edge_back_to_a_visited_node_can_be_the_goal() -> None:
    """The goal is tested on every edge generated, before the child is deduplicated: d -> root
    (root visited first of all) is found."""
    path, _ = shortest_path("root", expander(DIAMOND), lambda edge, child: edge == "d>root")
    assert path == ["root>a", "a>c", "c>d", "d>root"]


def test_expansion_stops_consuming_edges_at_the_goal() -> None:
    log: list[str] = []
    path, explored = shortest_path("root", expander(DIAMOND, log), to("a"))
    assert path == ["root>a"] and explored == 1 and log == ["root>a"]


def test_no_path_explores_every_reachable_node_once() -> None:
    path, explored = shortest_path("root", expander(DIAMOND), to("nowhere"))
    assert path is None and explored == 5


def test_the_limit_is_checked_between_levels_against_nodes_expanded() -> None:
    """``limit`` stops the search before a level once that many nodes were expanded: a limit of 1
    expands the root only (its edges are still tested); 2 still finishes level two (a, b), whose
    count passes it; 4 lets the level of c run."""
    assert shortest_path("root", expander(DIAMOND), to("c"), limit=1) == (None, 1)
    assert shortest_path("root", expander(DIAMOND), to("a"), limit=1) == (["root>a"], 1)
    assert shortest_path("root", expander(DIAMOND), to("d"), limit=2) == (None, 3)
    assert shortest_path("root", expander(DIAMOND), to("d"), limit=3) == (None, 3)
    assert shortest_path("root", expander(DIAMOND), to("d"), limit=4)[0] == ["root>a", "a>c", "c>d"]
    assert shortest_path("root", expander(DIAMOND), to("d"), limit=None)[0] == ["root>a", "a>c", "c>d"]


def test_a_search_that_revisits_nothing_expands_each_node_once_even_on_a_cycle() -> None:
    """Deduplication: the DAG part reaches c twice, the cycle leads back to root; every node is
    expanded once (the limit only guards this test against a search that never ends)."""
    log: list[str] = []
    assert shortest_path("root", expander(DIAMOND, log), to("nowhere"), limit=100) == (None, 5)
    assert sorted(log) == ["a>c", "b>c", "c>d", "d>root", "root>a", "root>b"]


# --------------------------------------------------------------------------- choice.py

MUTE = '  mute: {kind: halt, outcome: empty, message: "{response}"}\n  zz_mute: {kind: halt, outcome: empty, message: "{response}"}\n'
# 'mute' (message '{response}') is entered by a cancelled call (the adversary's shortest run; no
# cassette can record a cancel) and by an empty reply; 'zz_mute' by a reply of thinking only
MUTE_POLICY = (CALL.replace("cancelled: fail", "cancelled: mute"), stream(empty="mute", thinking_only="zz_mute"), TOOLS, HALTS, MUTE)
GUIDED = " (a concrete run, not necessarily the shortest)"
LIMBO = "  limbo:\n    kind: escalate\n    apply: [compact]\n    on: {done: fail}\n"
"""Entered only by a cancelled call; its 'failed' has no transition."""


def test_the_shortest_run_a_cassette_can_record_replaces_the_adversarys() -> None:
    """The adversary's shortest run into 'mute' is a cancel, which no cassette records; one way into
    'mute' (the empty reply) is possible, so the recordable run is searched for and shown. It is
    real, so the next silent halt is not searched for (no alternatives)."""
    res = check_policy(policy(*MUTE_POLICY)).properties["halt_message"]
    cex = res.counterexample
    assert cex is not None and [(s.state, s.event) for s in cex.steps] == [("ask", "opened"), ("read", "empty")]
    assert cex.note == "ends in 'mute' with an empty message" and cex.alternatives == []


def test_a_world_search_cut_off_at_its_limit_goes_on_with_a_guided_world_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the breadth-first search for a recordable run stops at its limit, a guided search for
    one follows (and its run, being recordable, ends the search over the halts)."""
    monkeypatch.setattr(choice, "WORLD_LIMIT", 1)  # the root level only: exactly the limit
    cex = check_policy(policy(*MUTE_POLICY)).properties["halt_message"].counterexample
    assert cex is not None and [(s.state, s.event) for s in cex.steps] == [("ask", "opened"), ("read", "empty")]
    assert cex.note == "ends in 'mute' with an empty message" + GUIDED and cex.alternatives == []


def test_the_adversarys_guided_run_uses_the_adversarys_predicate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Breadth-first search cut off at once: the adversary's run into a silent halt comes from the
    guided search, judged by what may leave the message empty (no world model in that search)."""
    monkeypatch.setattr(choice, "SEARCH_LIMIT", 1)
    cex = check_policy(policy(CALL, stream(length="done"), TOOLS, HALTS)).properties["halt_message"].counterexample
    assert cex is not None and [(s.state, s.event) for s in cex.steps] == [("ask", "opened"), ("read", "length")]
    assert cex.note == "ends in 'done' with an empty message" + GUIDED


def test_a_run_no_cassette_can_record_is_still_shown_as_the_adversarys_concrete_run() -> None:
    """'limbo' is entered only by a cancel: no recordable run reaches its unhandled 'failed', so
    the adversary's concrete run is shown (never an abstract path, never none)."""
    res = check_policy(policy(CALL.replace("cancelled: fail", "cancelled: limbo"), stream(), TOOLS, HALTS, LIMBO)).properties["events_handled"]
    cex = res.counterexample
    assert res.status == FAIL and cex is not None and cex.concrete
    assert [(s.state, s.event) for s in cex.steps] == [("ask", "cancelled"), ("limbo", "failed")]
    assert cex.note == "'failed' in 'limbo' has no transition"


def test_without_any_concrete_run_the_abstract_path_is_shown_or_nothing() -> None:
    """No concrete run satisfies the predicate: the abstract path to a goal edge is shown, marked
    not concrete; with no goal edge at all there is no counterexample."""
    an = build_analysis(policy(CALL, stream(), TOOLS, HALTS))
    g = build_graph(an)
    world = choice.world_model(an)

    def never(step: Any, child: Any, viol: Any) -> bool:
        return False

    cex, n, real = choice.select_counterexample(an, g, lambda e: e.dst.state == "done", never, "why", world)
    assert cex is not None and cex.concrete is False and not real and n > 0
    assert cex.note == "why (abstract path: no concrete run found within the search limit)"
    assert [(s.state, s.to) for s in cex.steps] == [("ask", "read"), ("read", "done")]
    assert choice.select_counterexample(an, g, lambda e: False, never, "why", world)[0::2] == (None, False)


def _steps(p: Any, prop: str) -> list[CexStep]:
    cex = check_policy(p).properties[prop].counterexample
    assert cex is not None
    return list(cex.steps)


def test_is_real_replays_the_run_through_the_world_and_the_monitor() -> None:
    """A run is real when it replays, the world can produce each step, and the predicate holds on
    its last step with the violations the monitor found there."""
    from dataclasses import replace

    p = policy(CALL, stream(tool_calls="fail"), TOOLS, HALTS)
    an = build_analysis(p)
    world = choice.world_model(an)
    steps = _steps(p, "history_valid")
    assert [(s.state, s.event) for s in steps] == [("ask", "opened"), ("read", "tool_calls")]

    def violates(prop: str) -> Any:
        return lambda step, child, viol: any(v[0] == prop for v in viol)

    assert choice.is_real(an, world, steps, violates("history_valid"))
    assert not choice.is_real(an, world, steps, violates("stub_not_silent"))
    assert not choice.is_real(an, world, [], lambda *a: True)  # nothing to replay
    wrong = steps[:-1] + [replace(steps[-1], to="done")]  # not where the policy goes
    assert not choice.is_real(an, world, wrong, lambda *a: True)


def test_is_real_refuses_a_step_the_world_cannot_produce() -> None:
    p = policy(CALL.replace("cancelled: fail", "cancelled: limbo"), stream(), TOOLS, HALTS, LIMBO)
    an = build_analysis(p)
    steps = _steps(p, "events_handled")
    assert steps[0].event == "cancelled"
    assert not choice.is_real(an, choice.world_model(an), steps, lambda *a: True)


# Two retry counters, each spent to its cap (4) before the interesting step: its shortest run is
# 16 retries deep, and breadth-first search meets hundreds of configurations on the way
DEEP_HEAD = """\
loopspec: 1
initial: ask
templates:
  more: "more"
counters:
  a: {max: 4}
  b: {max: 4}
backstops:
  model_calls: {max: 20, exhausted: out}
  tool_batches: {max: 3, exhausted: out}
"""
BOTH_SPENT = "{all: [{counter: a, eq: 4}, {counter: b, eq: 4}]}"
RETRIES = {"empty": "[{do: [{increment: a}], to: ask}, fail]", "thinking_only": "[{do: [{increment: b}], to: ask}, fail]"}
DEEP_RUN = ["opened", "empty"] * 4 + ["opened", "thinking_only"] * 4


def test_a_violation_hundreds_of_configurations_deep_gets_the_shortest_run() -> None:
    """The search limit (30,000 configurations) covers a violation behind sixteen retries: the
    counterexample is the breadth-first shortest run, not a guided one."""
    tc = f"[{{when: {BOTH_SPENT}, to: fail}}, {{to: tools, bounded_by: tool_batches}}]"
    res = check_policy(policy(CALL, stream(tool_calls=tc, **RETRIES), TOOLS, HALTS, head=DEEP_HEAD)).properties["history_valid"]
    cex = res.counterexample
    assert res.status == FAIL and cex is not None and [s.event for s in cex.steps] == DEEP_RUN + ["opened", "tool_calls"]
    assert cex.note == res.reason


def test_the_recordable_run_is_searched_for_hundreds_of_configurations_deep() -> None:
    """'limbo' is entered at once by a cancel (no cassette records it) or by a text reply after
    sixteen retries. The world search (10,000 configurations) reaches the recordable run
    breadth-first, so it is the shortest one, not a guided detour through the tool loop."""
    text = f"[{{when: {BOTH_SPENT}, to: limbo}}, done]"
    ask = CALL.replace("cancelled: fail", "cancelled: limbo")
    res = check_policy(policy(ask, stream(text=text, **RETRIES), TOOLS, HALTS, LIMBO, head=DEEP_HEAD)).properties["events_handled"]
    cex = res.counterexample
    assert cex is not None and [s.event for s in cex.steps] == DEEP_RUN + ["opened", "text", "failed"]
    assert cex.note == "'failed' in 'limbo' has no transition"


def _limbo_policy(deep: bool) -> Any:
    """'limbo' is entered by a cancel (no cassette records it) and, in the deep one, by a text
    reply after sixteen retries; its 'failed' has no transition."""
    ask = CALL.replace("cancelled: fail", "cancelled: limbo")
    if not deep:
        return policy(ask, stream(), TOOLS, HALTS, LIMBO)
    text = f"[{{when: {BOTH_SPENT}, to: limbo}}, done]"
    return policy(ask, stream(text=text, **RETRIES), TOOLS, HALTS, LIMBO, head=DEEP_HEAD)


def _limbo_goal(e: Any) -> bool:
    return bool(e.transition is None and e.src.state == "limbo" and e.step.event.name == "failed")


def _limbo_hit(step: Any, child: Any, viol: Any) -> bool:
    return bool(step.transition is None and step.before.state == "limbo" and step.event.name == "failed")


class SearchSpy:
    """Wraps the two searches choice calls, keeping the configurations each run reported."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reported: list[int] = []
        for name in ("shortest_counterexample", "deep_counterexample"):
            monkeypatch.setattr(choice, name, self._spy(getattr(choice, name)))

    def _spy(self, search: Any) -> Any:
        def spied(*args: Any, **kwargs: Any) -> Any:
            found, n = search(*args, **kwargs)
            self.reported.append(n)
            return found, n

        return spied


@pytest.mark.parametrize("deep, search_limit, world_limit, given, searches", [
    (False, None, None, False, 2),  # adversary breadth-first, then the world's breadth-first
    (False, None, None, True, 1),  # the adversary's run handed in: the world's search alone
    (False, 1, None, False, 3),  # the adversary's breadth-first cut off, then its guided search
    (True, None, 30, False, 3),  # the world's breadth-first cut off, then its guided search
])
def test_the_configurations_a_choice_explored_are_the_sum_of_every_search_it_ran(
        monkeypatch: pytest.MonkeyPatch, deep: bool, search_limit: int | None, world_limit: int | None, given: bool,
        searches: int) -> None:
    """mutmut ``select_counterexample_3/29/30/62/86/87``: the count started at 1, or one search's
    count replaced the total or was taken from it. Whichever searches the choice runs, it reports
    the configurations all of them explored, each counted once."""
    if search_limit is not None:
        monkeypatch.setattr(choice, "SEARCH_LIMIT", search_limit)
    if world_limit is not None:
        monkeypatch.setattr(choice, "WORLD_LIMIT", world_limit)
    an = build_analysis(_limbo_policy(deep))
    g = build_graph(an)
    world = choice.world_model(an)
    plain = None
    if given:
        plain, _n = choice.shortest_counterexample(an, _limbo_hit, limit=choice.SEARCH_LIMIT)
        assert plain is not None
    spy = SearchSpy(monkeypatch)
    cex, n, _real = choice.select_counterexample(an, g, _limbo_goal, _limbo_hit, "why", world, plain=plain, searched=given)
    assert cex is not None
    assert len(spy.reported) == searches and all(m > 0 for m in spy.reported)
    assert n == sum(spy.reported)


def test_the_guided_search_for_a_recordable_run_keeps_to_the_world_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """mutmut ``select_counterexample_85``: the guided search for a recordable run was given its
    own default limit (50,000) instead of WORLD_LIMIT. The recordable run into 'limbo' lies sixteen
    retries deep: within 30 configurations the guided search finds it, within 20 it does not, and
    the adversary's cancel is shown."""
    p = _limbo_policy(deep=True)
    monkeypatch.setattr(choice, "WORLD_LIMIT", 30)
    found = check_policy(p).properties["events_handled"].counterexample
    assert found is not None and found.steps[0].event == "opened" and found.note.endswith(GUIDED)
    monkeypatch.setattr(choice, "WORLD_LIMIT", 20)
    shown = check_policy(p).properties["events_handled"].counterexample
    assert shown is not None and [(s.state, s.event) for s in shown.steps] == [("ask", "cancelled"), ("limbo", "failed")]


def test_is_real_starts_the_monitor_with_no_silent_stub() -> None:
    """mutmut ``is_real_11``: the monitor started as if a mid-tool-call stub had just been cut.
    A turn that starts with a compaction and ends as completed, no model call between, has no stub
    in it: a run that ends there does not break stub_not_silent."""
    from test_check import HEAD

    prep = "  prep:\n    kind: escalate\n    apply: [compact]\n    on: {done: done, failed: ask}\n"
    p = policy(prep, CALL, stream(), TOOLS, HALTS, head=HEAD.replace("initial: ask", "initial: prep"))
    an = build_analysis(p)
    world = choice.world_model(an)
    steps, _n = choice.shortest_counterexample(
        an, lambda step, child, viol: step.before.state == "prep" and step.after.state == "done", limit=100)
    assert steps is not None and [(s.state, s.event, s.to) for s in steps] == [("prep", "done", "done")]
    stub_left_silent = lambda step, child, viol: any(v[0] == "stub_not_silent" for v in viol)  # noqa: E731
    assert choice.is_real(an, world, steps, lambda *a: True), "the run itself is one the world can produce"
    assert not choice.is_real(an, world, steps, stub_left_silent)
