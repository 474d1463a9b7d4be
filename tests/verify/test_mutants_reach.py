"""The guided depth-first search (``guided_counterexample`` in loopspec/verify/reach.py), tested
directly, written against the survivors of its mutation run. Each policy here is small enough that
the nodes the search expands, and the order it tries them in, can be worked out by hand; the
distance map (the guide) is written by hand too, per state, so each test decides which child is
closest to the goal."""

from __future__ import annotations

from typing import Any

from loopspec import load_policy_text
from loopspec.language.alphabet import Event
from loopspec.language.model import Policy, Step
from loopspec.verify.abstract_graph import build_graph
from loopspec.verify.abstraction import Analysis, build_analysis
from loopspec.verify.counterexample import CexStep
from loopspec.verify.reach import guided_counterexample, shortest_counterexample

HEAD = """\
loopspec: 1
initial: s
templates:
  more: "more"
counters:
  tries: {max: 2}
backstops:
  model_calls: {max: 5, exhausted: g}
  tool_batches: {max: 3, exhausted: g}
states:
"""

GUIDED_LIMIT = 50_000
"""deep_counterexample's default, the limit the checker's deep searches run with."""

G = '  g: {kind: halt, outcome: completed, message: "ok"}\n'
H = '  h: {kind: halt, outcome: completed, message: "other"}\n'


def cont(name: str, to: str) -> str:
    return f"  {name}: {{kind: continue, prompt: more, on: {{done: {to}}}}}\n"


def esc(name: str, done: str, failed: str) -> str:
    return f"  {name}:\n    kind: escalate\n    apply: [compact]\n    on:\n      done: {done}\n      failed: {failed}\n"


# s offers two children, a (on done) and b (on failed), and both go on to the halt g
FREE = esc("s", "a", "b") + cont("a", "g") + cont("b", "g") + G
# the same, but taking a spends one increment of the retry counter
SPEND = esc("s", "{do: [{increment: tries}], to: a}", "b") + cont("a", "g") + cont("b", "g") + G


def analysis(*parts: str, head: str = HEAD) -> Analysis:
    return build_analysis(load_policy_text(head + "".join(parts), "inline.yaml"))


def guide(an: Analysis, **by_state: int) -> dict[Any, int]:
    """A distance map giving every abstract node of each named state the distance named."""
    return {n: by_state[n.state] for n in build_graph(an).nodes if n.state in by_state}


def reaches(state: str) -> Any:
    def predicate(step: Step, child: Any, viol: Any) -> bool:
        return step.after.state == state

    return predicate


def never(step: Step, child: Any, viol: Any) -> bool:
    return False


def states(path: list[CexStep] | None) -> list[str]:
    assert path is not None
    return [path[0].state] + [s.to for s in path]


def replay(policy: Policy, path: list[CexStep]) -> None:
    """The path is a run the policy itself makes: from the initial configuration, each step's event
    leads (through ``Policy.step``) to the state the next step starts in."""
    cfg = policy.initial_config()
    for s in path:
        assert s.state == cfg.state
        step = policy.step(cfg, Event(s.event, s.attrs))
        assert step.after.state == s.to
        assert (step.transition.label if step.transition else None) == s.transition
        cfg = step.after


# --------------------------------------------------------------------------- the root's own hit


def test_a_hit_at_the_roots_first_expansion_is_a_one_step_run() -> None:
    """A goal one step from the start is returned as that single step, the root being the one node
    expanded; it is found before the guide is consulted (the map is empty) and whatever the limit."""
    an = analysis(FREE)
    for limit in (0, 1, 50_000):
        path, explored = guided_counterexample(an, {}, reaches("b"), limit=limit)
        assert path == [CexStep("s", "failed", {"message": ""}, "b", "s --failed[0]--> b")]
        assert explored == 1


# --------------------------------------------------------------------------- the order of the children


def test_the_child_closest_to_the_goal_is_tried_first() -> None:
    """Between two children that spend nothing, the one the guide puts closer to the goal is
    expanded first (whichever event reaches it), and its own hit ends the search: two expansions."""
    an = analysis(FREE)
    path, explored = guided_counterexample(an, guide(an, a=1, b=0), reaches("g"), limit=GUIDED_LIMIT)
    assert states(path) == ["s", "b", "g"] and explored == 2
    path, explored = guided_counterexample(an, guide(an, a=0, b=1), reaches("g"), limit=GUIDED_LIMIT)
    assert states(path) == ["s", "a", "g"] and explored == 2


def test_at_equal_score_the_child_that_spends_no_retry_budget_is_tried_first() -> None:
    """a (taking it increments ``tries``) at distance 0 and b (free) at distance 2 score the same
    (an increment weighs as two steps of distance); then the free child goes first, though a comes
    first in event order."""
    an = analysis(SPEND)
    path, explored = guided_counterexample(an, guide(an, a=0, b=2), reaches("g"), limit=GUIDED_LIMIT)
    assert states(path) == ["s", "b", "g"] and explored == 2
    assert path is not None and path[0].event == "failed"


def test_an_increment_weighs_two_steps_of_distance() -> None:
    """The guide's ordering score is distance plus two per counter increment the step makes: a
    spending child at distance 0 (score 2) beats a free one at distance 3, and loses to a free one at
    distance 1. (The weight is the guide's heuristic; this pins it so a change is deliberate.)"""
    an = analysis(SPEND)
    path, _n = guided_counterexample(an, guide(an, a=0, b=3), reaches("g"), limit=GUIDED_LIMIT)
    assert states(path) == ["s", "a", "g"]
    path, _n = guided_counterexample(an, guide(an, a=0, b=1), reaches("g"), limit=GUIDED_LIMIT)
    assert states(path) == ["s", "b", "g"]


# --------------------------------------------------------------------------- what is never expanded

# s: done -> h (a halt) or failed -> b; b: done -> c; c: done -> g (a halt)
PRUNE = esc("s", "h", "b") + cont("b", "c") + cont("c", "g") + G + H


def test_halting_children_are_never_expanded_even_when_the_guide_knows_them() -> None:
    """With no hit, the search expands exactly the non-halting nodes: s, b and c. The halts h and g
    are in the guide (at the smallest distance), yet a halt has no successor to try, so it is not
    expanded (not counted)."""
    an = analysis(PRUNE)
    path, explored = guided_counterexample(an, guide(an, s=3, b=2, c=1, h=0, g=0), never, limit=GUIDED_LIMIT)
    assert path is None and explored == 3


def test_children_the_guide_does_not_know_are_never_expanded() -> None:
    """A child missing from the distance map cannot lead to the goal: c is left out, so with no hit
    only s and b are expanded."""
    an = analysis(PRUNE)
    path, explored = guided_counterexample(an, guide(an, s=2, b=1), never, limit=GUIDED_LIMIT)
    assert path is None and explored == 2


def test_an_unknown_child_does_not_hide_its_siblings() -> None:
    """s's first child (u, on done) is unknown to the guide and its second (b, on failed) is known:
    the unknown one is skipped and the search goes on to b and finds the goal through it."""
    an = analysis(esc("s", "u", "b"), cont("u", "g"), cont("b", "g"), G)
    path, explored = guided_counterexample(an, guide(an, b=0), reaches("g"), limit=GUIDED_LIMIT)
    assert states(path) == ["s", "b", "g"] and explored == 2


def test_the_guide_is_read_at_the_childs_monitor_state() -> None:
    """The abstract node looked up carries the property monitor's state: a stall cut inside a tool
    call enters the stub state with a silent stub in flight, a stall in plain text does not. The
    guide knows the stub state only as the silent node, so the search goes through the tool-call
    stall (the second of the two, in event order) to the continuation after the stub."""
    from test_check import CALL, HEAD as CHECK_HEAD, TOOLS, stream

    stub = "  cut:\n    kind: stub\n    on: {mid_text: fail, mid_tool_call: goon}\n" + cont("goon", "ask")
    halts = ('  done: {kind: halt, outcome: completed, message: "ok"}\n'
             '  out: {kind: halt, outcome: backstop, message: "stopped"}\n'
             '  fail: {kind: halt, outcome: provider_error, message: "failed"}\n')
    an = analysis(CALL, stream(stalled="cut"), TOOLS, stub, halts, head=CHECK_HEAD + "states:\n")
    g = build_graph(an)
    dist: dict[Any, int] = {n: 1 for n in g.nodes if n.state == "cut" and n.silent}
    dist.update({n: 2 for n in g.nodes if n.state == "read"})
    assert dist and not any(n.silent for n in g.nodes if n.state == "read")
    path, explored = guided_counterexample(an, dist, reaches("goon"), limit=GUIDED_LIMIT)
    assert states(path) == ["ask", "read", "cut", "goon"] and explored == 3
    assert path is not None and path[1].attrs["mid_tool_call"] is True
    replay(an.policy, path)


# --------------------------------------------------------------------------- counting and the limit

# a chain of four continuations before the halt: the goal step is found expanding c4, the 4th node
CHAIN = cont("s", "c2") + cont("c2", "c3") + cont("c3", "c4") + cont("c4", "g") + G


def test_explored_counts_the_nodes_expanded_exactly() -> None:
    """Along a chain s, c2, c3, c4 -> g each node is expanded once, and the hit is found expanding
    the fourth: explored is 4, and the run is the whole chain."""
    an = analysis(CHAIN)
    path, explored = guided_counterexample(an, guide(an, c2=3, c3=2, c4=1), reaches("g"), limit=GUIDED_LIMIT)
    assert states(path) == ["s", "c2", "c3", "c4", "g"] and explored == 4
    assert path is not None
    replay(an.policy, path)


def test_explored_counts_every_distinct_node_once_on_a_pumped_loop() -> None:
    """s retries into a (spending ``tries``, max 2) and a returns to s; s also gives up to b. With no
    hit the search expands every distinct reachable non-halting configuration once, and the guide
    knows them all. By hand: s and a at tries 0..2 where reached -- s0, a1, s1, a2, s2 -- and b
    entered from s0, s1 and s2 (b0, b1, b2): eight."""
    retry = "[{when: {counter: tries, lt: max}, do: [{increment: tries}], to: a}, b]"
    an = analysis(esc("s", retry, "b"), cont("a", "s"), cont("b", "g"), G)
    path, explored = guided_counterexample(an, guide(an, s=1, a=2, b=0), never, limit=GUIDED_LIMIT)
    assert path is None and explored == 8


def test_the_search_gives_up_exactly_when_explored_exceeds_the_limit() -> None:
    """The hit on CHAIN comes expanding the 4th node: with limit 3 the 4th expansion is still made
    (explored may reach limit + 1) and the run is found; with limit 2 the search stops before it,
    having expanded 3."""
    an = analysis(CHAIN)
    dist = guide(an, c2=3, c3=2, c4=1)
    path, explored = guided_counterexample(an, dist, reaches("g"), limit=3)
    assert states(path) == ["s", "c2", "c3", "c4", "g"] and explored == 4
    assert guided_counterexample(an, dist, reaches("g"), limit=2) == (None, 3)
    assert guided_counterexample(an, dist, reaches("g"), limit=0) == (None, 1)


def test_only_the_limit_stops_a_search_with_no_hit() -> None:
    """s loops onto itself on done (incrementing ``tries``, max 10000) and on failed (incrementing
    ``more``, max 10): 10001 x 11 distinct configurations, more than the checker's limit, so with no
    hit only the limit stops the search, after 50,001 expansions."""
    head = HEAD.replace("tries: {max: 2}", "tries: {max: 10000}\n  more: {max: 10}")
    done = "[{when: {counter: tries, lt: max}, do: [{increment: tries}], to: s}, g]"
    failed = "[{when: {counter: more, lt: max}, do: [{increment: more}], to: s}, g]"
    an = analysis(esc("s", done, failed), G, head=head)
    assert guided_counterexample(an, guide(an, s=0), never, limit=GUIDED_LIMIT) == (None, GUIDED_LIMIT + 1)


# --------------------------------------------------------------------------- the world


class NoDoneAtStart:
    """A world in which the first step cannot be ``done``; its state counts the steps taken."""

    def start(self) -> int:
        return 0

    def advance(self, taken: int, step: Step) -> int | None:
        if taken == 0 and step.event.name == "done":
            return None
        return taken + 1


def test_a_step_the_world_refuses_does_not_hide_its_siblings() -> None:
    """The world refuses s's first successor (done, to a, though the guide puts a closest); the
    search goes on to the next one (failed, to b) and reaches the goal through it."""
    an = analysis(FREE)
    path, explored = guided_counterexample(an, guide(an, a=0, b=1), reaches("g"), world=NoDoneAtStart(), limit=GUIDED_LIMIT)
    assert states(path) == ["s", "b", "g"] and explored == 2


class Steps:
    """A world that allows every step; its state counts the steps taken."""

    def start(self) -> int:
        return 0

    def advance(self, taken: int, step: Step) -> int:
        return taken + 1


def test_the_predicate_sees_the_child_with_its_world_state() -> None:
    """The predicate is handed the child node, the world's state appended: on CHAIN, asking for the
    node three steps in (world state 3) ends the run at c4, found expanding c3, not at the halt."""
    an = analysis(CHAIN)

    def third(step: Step, child: Any, viol: Any) -> bool:
        return bool(child[-1] == 3)

    path, explored = guided_counterexample(an, guide(an, c2=3, c3=2, c4=1), third, world=Steps(), limit=GUIDED_LIMIT)
    assert states(path) == ["s", "c2", "c3", "c4"] and explored == 3


def test_a_long_run_is_replayable_step_by_step() -> None:
    """A run through the pumped retry loop is a real run: each step starts where the previous one
    ended, and replaying its events through the policy reproduces it."""
    retry = "[{when: {counter: tries, lt: max}, do: [{increment: tries}], to: a}, b]"
    an = analysis(esc("s", retry, "h"), cont("a", "s"), cont("b", "g"), G, H)

    def out_of_tries(step: Step, child: Any, viol: Any) -> bool:
        return step.after.state == "g"

    path, _n = guided_counterexample(an, guide(an, s=1, a=2, b=0), out_of_tries, limit=GUIDED_LIMIT)
    assert path is not None
    assert [(p.state, p.event) for p in path] == [
        ("s", "done"), ("a", "done"), ("s", "done"), ("a", "done"), ("s", "done"), ("b", "done")
    ]
    assert [p.to for p in path[:-1]] == [p.state for p in path[1:]]
    replay(an.policy, path)


# --------------------------------------------------------------------------- the guide a world shapes


class NoWayOutOfA:
    """A world in which ``a`` can loop but never take ``failed``, its only way to the goal. It has
    one state (a world's states must be finite: usable_edges walks them all)."""

    def start(self) -> int:
        return 0

    def advance(self, state: int, step: Step) -> int | None:
        if step.before.state == "a" and step.event.name == "failed":
            return None
        return state


# s sends ``done`` to a and ``failed`` to b. a pumps itself on done (spending tries, up to 10000,
# then halting at h) and reaches the goal g only on failed; b reaches g on done.
DEAD_END_HEAD = HEAD.replace("tries: {max: 2}", "tries: {max: 10000}")
DEAD_END = (
    esc("s", "a", "b")
    + "  a:\n    kind: escalate\n    apply: [compact]\n    on:\n"
    + "      done: [{when: {counter: tries, lt: max}, do: [{increment: tries}], to: a}, h]\n"
    + "      failed: g\n"
    + cont("b", "g")
    + G
    + H
)


def test_with_a_world_the_guide_leads_only_along_steps_the_world_can_take() -> None:
    """deep_counterexample builds its guide from the abstract edges the world can take. In
    DEAD_END the world never lets a take ``failed``, so a is no way to the goal: the guide must
    not know a, and the search goes straight to b (s, b: two expansions). A guide built from every
    edge puts a as close to the goal as b and first in order, and the search pumps a's loop until
    the limit (kills the mutants that drop the world's filter of the guide)."""
    from loopspec.verify.abstract_graph import build_graph
    from loopspec.verify.abstract_runs import deep_counterexample

    an = analysis(DEAD_END, head=DEAD_END_HEAD)
    g = build_graph(an)
    cex, explored = deep_counterexample(
        an, g, lambda e: e.dst.state == "g", reaches("g"), "note", world=NoWayOutOfA(), limit=100
    )
    assert cex is not None and explored == 2
    assert [s.state for s in cex.steps] == ["s", "b"]


def test_deep_counterexample_gives_up_after_fifty_thousand_expansions_by_default() -> None:
    """Without a limit, the guided search behind deep_counterexample stops after 50,000
    expansions (the 50,001st is the one past the limit): on the 10001 x 11 grid of
    test_the_default_limit_is_fifty_thousand_expansions, with a goal no step satisfies."""
    from loopspec.verify.abstract_graph import build_graph
    from loopspec.verify.abstract_runs import deep_counterexample

    head = HEAD.replace("tries: {max: 2}", "tries: {max: 10000}\n  more: {max: 10}")
    done = "[{when: {counter: tries, lt: max}, do: [{increment: tries}], to: s}, g]"
    failed = "[{when: {counter: more, lt: max}, do: [{increment: more}], to: s}, g]"
    an = analysis(esc("s", done, failed), G, head=head)
    assert deep_counterexample(an, build_graph(an), lambda e: e.dst.state == "g", never, "note") == (None, GUIDED_LIMIT + 1)


# --------------------------------------------------------------------------- the breadth-first search


def _falls_through() -> Analysis:
    """s's done spends a try and goes to a; a goes back to s while no try is spent, and has no
    transition at all once one is: the second time a is left, the turn falls into the policy error."""
    return analysis(esc("s", "{do: [{increment: tries}], to: a}", "b"),
                    cont("a", "[{when: {counter: tries, lt: 1}, to: s}]"), cont("b", "g"), G)


def no_transition(step: Step, child: Any, viol: Any) -> bool:
    return step.transition is None


def test_a_search_kept_to_some_transitions_takes_no_step_that_matched_none() -> None:
    """``allowed`` keeps the search to the transitions named: a step that matched no transition
    (the fall into the policy error) is none of them, so a kept search never takes it, while a
    free one does."""
    an = _falls_through()
    path, _n = shortest_counterexample(an, no_transition, limit=1000)
    assert path is not None and [s.transition for s in path][-1] is None
    every = {id(t) for st in an.policy.states.values() for t in st.all_transitions()}
    kept, explored = shortest_counterexample(an, no_transition, limit=1000, allowed=every)
    assert kept is None and explored > 0


def test_a_search_kept_to_some_transitions_takes_no_other() -> None:
    """Without s's transition to b among those allowed, no kept search reaches b; a free one does
    in one step."""
    an = _falls_through()
    to_b = an.policy.states["s"].transitions["failed"][0]
    every = {id(t) for st in an.policy.states.values() for t in st.all_transitions()}
    free, _n = shortest_counterexample(an, reaches("b"), limit=1000)
    assert states(free) == ["s", "b"]
    assert shortest_counterexample(an, reaches("b"), limit=1000, allowed=every - {id(to_b)})[0] is None


def test_a_search_that_finds_nothing_says_so() -> None:
    """No run reaches the step asked for: the answer is no path, with the count explored."""
    path, explored = shortest_counterexample(analysis(FREE), never, limit=1000)
    assert path is None and explored > 0
