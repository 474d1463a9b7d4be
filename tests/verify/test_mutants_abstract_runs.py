"""Runs read off the abstract graph (loopspec/verify/abstract_runs.py), written against the
survivors of its mutation run: the abstract lasso shown when no concrete one is found goes round
the unbounded cycle itself, not a shorter bounded one through the same node; and the guide of the
guided search keeps exactly the edges a world model lets happen on some run from the start."""

from __future__ import annotations

from loopspec.language.model import Step
from loopspec.verify.abstract_graph import Graph, build_graph
from loopspec.verify.abstract_runs import abstract_loop, usable_edges
from loopspec.verify.abstraction import build_analysis
from loopspec.verify.termination import eliminate

from test_check import CALL, HALTS, TOOLS, policy, stream

# nudge <-> again loops with nothing to bound it; nudge's own retry is a shorter cycle through the
# same abstract node, but the tries counter bounds it
NUDGE = """\
  nudge:
    kind: escalate
    apply: [compact]
    on:
      done: again
      failed: [{when: {counter: tries, lt: max}, do: [{increment: tries}], to: nudge}, fail]
  again:
    kind: continue
    prompt: more
    on: {done: nudge}
"""


def graph(*parts: str) -> tuple[object, Graph]:
    an = build_analysis(policy(*parts))
    return an, build_graph(an)


def test_the_abstract_lasso_repeats_the_unbounded_cycle() -> None:
    an, g = graph(CALL, stream(empty="nudge"), TOOLS, NUDGE, HALTS)
    term = eliminate(an, g)  # type: ignore[arg-type]
    assert not term.halts
    cex = abstract_loop(g, term)  # type: ignore[arg-type]
    assert cex is not None
    # which abstract copy of the loop (backstop phases) is shown is the checker's choice; its shape is not
    start = cex.loop_start
    assert start is not None and start > 0
    assert [(s.state, s.event, s.transition) for s in cex.steps[start:]] == [
        ("nudge", "done", "nudge --done[0]--> again"),
        ("again", "done", "again --done[0]--> nudge"),
    ]
    assert cex.steps[0].state == "ask" and cex.steps[start - 1].to == "nudge"
    assert [a.to for a in cex.steps[:-1]] == [b.state for b in cex.steps[1:]]
    assert cex.to_json() | {"steps": None} == {
        "steps": None,
        "end": "nudge",
        "concrete": False,
        "loop_start": start,
        "note": "abstract: the cycle repeats from loop_start",
    }


def test_no_abstract_lasso_when_every_loop_is_bounded() -> None:
    an, g = graph(CALL, stream(), TOOLS, HALTS)
    assert abstract_loop(g, eliminate(an, g)) is None  # type: ignore[arg-type]


class TwoStepsNoTools:
    """A world in which a turn takes at most two steps and the model never asks for tools."""

    def start(self) -> int:
        return 0

    def advance(self, taken: int, step: Step) -> int | None:
        if taken >= 2 or step.event.name == "tool_calls":
            return None
        return taken + 1


class Anything:
    """A world that lets every step happen, and counts how often it is asked."""

    def __init__(self, most: int) -> None:
        self.asked = 0
        self.most = most

    def start(self) -> str:
        return "any"

    def advance(self, w: str, step: Step) -> str:
        self.asked += 1
        assert self.asked <= self.most, "an abstract edge was put to the world twice from the same world state"
        return w


def test_usable_edges_are_those_the_world_allows_on_a_run_from_the_start() -> None:
    _an, g = graph(CALL, stream(), TOOLS, HALTS)
    first = g.out[g.initial]
    read = {e.dst for e in first if e.dst.state == "read"}
    usable = usable_edges(g, TwoStepsNoTools())
    assert usable == {e.index for e in first} | {e.index for e in g.edges if e.src in read and e.step.event.name != "tool_calls"}
    labels = {g.edges[i].label for i in usable}
    assert "ask --opened[0]--> read" in labels and "read --text[0]--> done" in labels
    assert not any(label.startswith(("read --tool_calls", "tools ")) for label in labels)


def test_a_world_that_allows_everything_is_asked_once_per_edge() -> None:
    _an, g = graph(CALL, stream(), TOOLS, HALTS)
    world = Anything(len(g.edges))
    assert usable_edges(g, world) == {e.index for e in g.edges}
    assert world.asked == len(g.edges)


def test_an_abstract_lasso_is_shown_when_the_graph_has_a_single_unbounded_loop() -> None:
    """The initial escalation pair loops before any call: one unbounded component, no backstop
    phases to copy it, and the abstract lasso goes round it."""
    from test_check import HEAD

    pair = ("  fix:\n    kind: escalate\n    apply: [compact]\n    on: {done: ask, failed: again}\n"
            "  again:\n    kind: escalate\n    apply: [compact]\n    on: {done: ask, failed: fix}\n")
    an = build_analysis(policy(CALL, stream(), TOOLS, pair, HALTS, head=HEAD.replace("initial: ask", "initial: fix")))
    g = build_graph(an)
    term = eliminate(an, g)
    assert len(term.unbounded) == 1
    cex = abstract_loop(g, term)
    assert cex is not None and not cex.concrete and cex.loop_start is not None
    loop = [(s.state, s.event) for s in cex.steps[cex.loop_start:]]
    assert sorted(loop) == [("again", "failed"), ("fix", "failed")]


def test_a_guided_run_reaches_a_goal_behind_the_backstop_within_the_world_and_the_limit() -> None:
    """The guided search behind ``check`` and ``cover``: a concrete run to the model-call backstop
    that the outside world can produce, with the note saying what it is; a limit too small for it
    gives nothing, and a world that allows no step gives nothing either."""
    from loopspec.verify.abstract_runs import deep_counterexample
    from loopspec.verify.realiser import Realiser

    from test_cover import small_policy

    p = small_policy()
    an = build_analysis(p)
    g = build_graph(an)

    def goal(e: object) -> bool:
        return e.dst.state == "out_of_calls"  # type: ignore[attr-defined]

    def predicate(step: Step, child: object, viol: object) -> bool:
        return step.after.state == "out_of_calls"

    cex, n = deep_counterexample(an, g, goal, predicate, "to the backstop", world=Realiser(p))
    assert cex is not None and cex.concrete and cex.steps[-1].to == "out_of_calls"
    assert cex.note == "to the backstop (a concrete run, not necessarily the shortest)"
    assert [a.to for a in cex.steps[:-1]] == [b.state for b in cex.steps[1:]] and n > 0
    assert deep_counterexample(an, g, goal, predicate, "x", world=Realiser(p), limit=2)[0] is None

    class Nothing:
        def start(self) -> object:
            return ()

        def advance(self, state: object, step: Step) -> object:
            return None

    assert deep_counterexample(an, g, goal, predicate, "x", world=Nothing())[0] is None


def _guided_events(text: str) -> list[str]:
    """The events of the guided run to ``out_of_calls`` in ``text``."""
    from loopspec.verify.abstract_runs import deep_counterexample
    from loopspec.verify.realiser import Realiser

    from test_cover import small_policy

    p = small_policy(text.replace("states:", "templates:\n  p: more\nstates:"))
    an = build_analysis(p)
    cex, _n = deep_counterexample(an, build_graph(an), lambda e: e.dst.state == "out_of_calls",
                                  lambda step, child, viol: step.after.state == "out_of_calls", "x", world=Realiser(p))
    assert cex is not None
    return [s.event for s in cex.steps]


def test_the_guided_run_takes_the_successor_nearer_the_goal() -> None:
    """An empty reply leads back to the call through two continuations, the tool loop through none
    (and it spends the tool backstop that ends the run): the guide prefers the tool loop, at
    every round."""
    from test_cover import SMALL

    detour = SMALL.replace("empty: failed", "empty: n1") + (
        "  n1: {kind: continue, prompt: p, on: {done: n2}}\n  n2: {kind: continue, prompt: p, on: {done: ask}}\n")
    assert _guided_events(detour) == ["opened", "tool_calls", "ok"] * 3 + ["opened", "tool_calls"]


def test_the_guided_run_weighs_one_spent_retry_as_two_steps() -> None:
    """Towards the model-call backstop, the tool loop (through one continuation) is two steps longer
    than an empty reply retried at once, but the retry spends a counter, which weighs two steps:
    a tie, which the guide breaks towards spending nothing. Doubling the distances instead would
    make the retry look nearer."""
    from test_cover import SMALL

    text = (SMALL.replace("empty: failed", "empty: {do: [{increment: retries}], to: ask}")
            .replace("ok: ask", "ok: t2").replace("tool_batches: {max: 3", "tool_batches: {max: 50")
            + "  t2: {kind: continue, prompt: p, on: {done: ask}}\n")
    assert _guided_events(text) == ["opened", "tool_calls", "ok", "done"] * 5 + ["rate_limit"]
