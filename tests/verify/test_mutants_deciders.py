"""The per-property deciders of ``loopspec check`` (loopspec/verify/deciders.py), tested against the
survivors of a hand mutation analysis. Most tests check a small inline policy (the helpers of
test_check.py) and pin the verdict, the finding or the counterexample a plant changed; a few call
a decider on hand-made inputs, where the property's promise is a rule about those inputs (halts is
never proven while a state cannot reach a halt) that no policy of today's abstraction can reach."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from loopspec.verify import check_policy
from loopspec.verify import deciders
from loopspec.verify.counterexample import Counterexample
from loopspec.verify.report import FAIL, PASS

from test_check import CALL, HALTS, NUDGE_LOOP, TOOLS, policy, stream


def events(cex: Counterexample | None) -> list[tuple[str, str]]:
    assert cex is not None
    return [(s.state, s.event) for s in cex.steps]


# --------------------------------------------------------------------------- halts


def _term(halts: bool, eliminations: list[Any] | None = None, unbounded: list[Any] | None = None) -> Any:
    return SimpleNamespace(halts=halts, eliminations=eliminations or [], unbounded=unbounded or [])


def test_halts_is_never_proven_while_a_state_has_no_path_to_a_halt() -> None:
    """Counter elimination succeeding is not enough: a reachable state from which no halt can be
    reached fails ``halts`` too (a second line of defence should elimination ever be wrong)."""
    st = SimpleNamespace(no_path_to_halt=["trap"])
    res = deciders.decide_halts(st, _term(True), None)  # type: ignore[arg-type]
    assert res.status == FAIL
    assert res.findings == ["state 'trap' has no path to a halt"]


def test_halts_fails_when_elimination_is_stuck_even_if_every_state_can_halt() -> None:
    """Without a full enumeration, a stuck elimination is a failure whatever the structure says:
    every state reaching a halt does not make a loop through them finite."""
    st = SimpleNamespace(no_path_to_halt=[])
    res = deciders.decide_halts(st, _term(False), None)  # type: ignore[arg-type]
    assert res.status == FAIL and res.reason == "a loop has no counter that bounds it (counter elimination is stuck)"


def test_a_loop_with_an_exit_fails_halts_by_elimination_alone() -> None:
    """The nudge loop can leave (nudge --failed--> fail), so every state reaches a halt; counter
    elimination alone (no enumeration) must still fail ``halts`` and name the cycle."""
    r = check_policy(policy(CALL, stream(empty="nudge"), TOOLS, NUDGE_LOOP, HALTS), enumerate_limit=0)
    halts = r.properties["halts"]
    assert halts.status == FAIL and r.structure.no_path_to_halt == []
    assert halts.findings == ["unbounded cycle through: again --done[0]--> nudge; nudge --done[0]--> again"]


def test_halts_counts_distinct_loop_bounds() -> None:
    """The pass reason counts loop bounds as (counter, component) pairs, not elimination records."""
    el = [SimpleNamespace(counter="tries", through="a"), SimpleNamespace(counter="tries", through="a"),
          SimpleNamespace(counter="model_calls", through="b")]
    st = SimpleNamespace(no_path_to_halt=[])
    res = deciders.decide_halts(st, _term(True, el), None)  # type: ignore[arg-type]
    assert res.status == PASS and res.reason == "every path halts: 2 loop bound(s) found by counter elimination"


def test_enumeration_decides_halts_and_says_when_elimination_alone_could_not() -> None:
    """With a full enumeration its verdict decides; the reason says whether elimination agreed."""
    st = SimpleNamespace(no_path_to_halt=["x"])
    enum = SimpleNamespace(halts=True, configs=7, lasso=None)
    stuck = deciders.decide_halts(st, _term(False), enum)  # type: ignore[arg-type]
    assert stuck.status == PASS
    assert stuck.reason == ("every path halts (all 7 reachable configurations enumerated); "
                            "counter elimination alone could not prove it")
    agreed = deciders.decide_halts(st, _term(True), enum)  # type: ignore[arg-type]
    assert agreed.reason == "every path halts (all 7 reachable configurations enumerated)"
    lasso = Counterexample([], "loops")
    loops = deciders.decide_halts(st, _term(True), SimpleNamespace(halts=False, configs=7, lasso=lasso))  # type: ignore[arg-type]
    assert loops.status == FAIL and loops.counterexample is lasso
    assert loops.findings == ["state 'x' has no path to a halt"]


def test_unbounded_findings_name_each_cycle_once_with_sorted_labels() -> None:
    """One finding per stuck component, its edge labels sorted and unique; a component that
    recurs (one per backstop phase) is not repeated."""
    e = lambda label: SimpleNamespace(label=label)  # noqa: E731
    comp = [e("b"), e("a"), e("b")]
    term = _term(False, unbounded=[comp, list(comp)])
    st = SimpleNamespace(no_path_to_halt=["s", "t"])
    assert deciders._unbounded_findings(term, st) == [  # type: ignore[arg-type]
        "unbounded cycle through: a; b",
        "state 's' has no path to a halt",
        "state 't' has no path to a halt",
    ]


# --------------------------------------------------------------------------- step-local properties

# a length reply with tool calls is routed to tools only when tries == 2, which no transition makes
# true (nothing increments tries): the abstract graph, which forgets counters, has the violating
# edge, every concrete run refutes it
SPURIOUS = "[{when: {all: [{attr: has_tool_calls}, {counter: tries, eq: 2}]}, to: tools}, {do: [drop_tool_calls], to: fail}]"
# tool calls answered by a halt: history_valid fails two steps in (opened, tool_calls)
UNRUN = stream(tool_calls="fail")


def test_a_spurious_abstract_violation_is_refuted_by_the_enumeration_or_the_search() -> None:
    """An abstract finding that no concrete run realises passes, and the reason says which method
    refuted it: the full enumeration when there is one, else a search that ran to its end."""
    p = policy(CALL, stream(length=SPURIOUS), TOOLS, HALTS)
    doc = "no truncated or partial tool call is routed to tool execution"
    enumerated = check_policy(p).properties["no_partial_tool_exec"]
    assert (enumerated.status, enumerated.reason) == (PASS, doc + " (abstract findings refuted by full enumeration)")
    searched = check_policy(p, enumerate_limit=0).properties["no_partial_tool_exec"]
    assert (searched.status, searched.reason) == (PASS, doc + " (abstract findings refuted by exhaustive search)")


def test_a_search_cut_off_by_its_limit_refutes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A violation deeper than the search limit allows is not refuted by not being found: the
    property fails (with a guided run as its counterexample), it never passes as 'refuted by
    exhaustive search'."""
    monkeypatch.setattr(deciders, "SEARCH_LIMIT", 1)  # the search expands the initial node only
    res = check_policy(policy(CALL, UNRUN, TOOLS, HALTS), enumerate_limit=0).properties["history_valid"]
    assert res.status == FAIL
    assert res.findings == [
        "read --tool_calls[0]--> fail: tool call(s) from 'tool_calls' are neither run, refused nor dropped: "
        "'read --tool_calls[0]--> fail' leads to 'fail', a halt state"
    ]
    # the breadth-first search already ran (and stopped at the limit): not run again, a guided run
    assert res.counterexample is not None and res.counterexample.note.endswith("(a concrete run, not necessarily the shortest)")
    assert events(res.counterexample) == [("ask", "opened"), ("read", "tool_calls")]


def test_a_monitored_failure_shows_the_shortest_run_to_its_own_violation() -> None:
    """The counterexample ends in a step violating this property (not another one), and the
    explored count adds both searches."""
    length = "[{when: {attr: has_tool_calls}, to: tools}, fail]"
    r = check_policy(policy(CALL, stream(length=length, tool_calls="fail"), TOOLS, HALTS), enumerate_limit=0)
    partial = r.properties["no_partial_tool_exec"]
    assert partial.status == FAIL and events(partial.counterexample) == [("ask", "opened"), ("read", "length")]
    history = r.properties["history_valid"]
    assert history.status == FAIL and events(history.counterexample)[-1] == ("read", "tool_calls")


ONE_FINDING = SimpleNamespace(edges=[SimpleNamespace(label="e", violations=(("history_valid", "why"),))])
"""An abstract graph with one edge, flagged by history_valid: what ``decide_monitored`` reads."""


def test_the_explored_count_adds_the_search_and_the_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """``decide_monitored`` reports the configurations of the violation search plus those the
    counterexample choice explored."""
    monkeypatch.setattr(deciders, "violation_counterexample", lambda an, name, limit: ([], 7))
    monkeypatch.setattr(deciders, "select_counterexample", lambda *a, **k: (None, 1000, False))
    res, n = deciders.decide_monitored(SimpleNamespace(policy=None), ONE_FINDING, "history_valid", None)  # type: ignore[arg-type]
    assert res.status == FAIL and n == 1007


# --------------------------------------------------------------------------- halt_message

QUIET = (
    '  aa_quiet: {kind: halt, outcome: cancelled, message: "{response}"}\n'
    '  mute: {kind: halt, outcome: empty, message: "{response}"}\n'
    '  zz_mute: {kind: halt, outcome: empty, message: "{response}"}\n'
)
CANCEL_TO_QUIET = CALL.replace("cancelled: fail", "cancelled: aa_quiet")
"""A cancelled call ends in 'aa_quiet', whose message is empty: a halt no cassette can record."""


def test_a_turn_that_starts_in_a_silent_halt_is_its_own_counterexample() -> None:
    """The initial state is a halt with an empty message: that halt is reachable (with no step), the
    property fails, and the counterexample is the empty run, found without any search."""
    from test_check import HEAD

    r = check_policy(policy(HALTS, head=HEAD.replace("initial: ask", "initial: done")))
    res = r.properties["halt_message"]
    assert res.status == FAIL and res.reason.startswith("halt 'done' (completed): ")
    assert res.reason.endswith("when the halt is reached by the start of the turn (the initial state is this halt)")
    assert res.counterexample is not None and res.counterexample.steps == []
    assert res.counterexample.note == "the turn starts in 'done', whose message is empty"
    assert r.exploration["concrete_configs"] == 1  # the enumeration's one configuration, no search


def test_halt_message_shows_the_first_halt_a_cassette_can_record() -> None:
    """Three halts render empty. The first (by name) is reached only by a cancel, which no cassette
    can record; the counterexample is the second, a run the outside world can produce, with the first
    kept as an alternative; the third is never searched for."""
    r = check_policy(policy(CANCEL_TO_QUIET, stream(empty="mute", thinking_only="zz_mute"), TOOLS, HALTS, QUIET))
    res = r.properties["halt_message"]
    assert res.status == FAIL and [f.split(" (")[0] for f in res.findings] == ["halt 'aa_quiet'", "halt 'mute'", "halt 'zz_mute'"]
    cex = res.counterexample
    assert events(cex) == [("ask", "opened"), ("read", "empty")]
    assert cex is not None and cex.note == "ends in 'mute' with an empty message" and cex.end == "mute"
    assert [a.note for a in cex.alternatives] == ["ends in 'aa_quiet' with an empty message"]
    assert events(cex.alternatives[0]) == [("ask", "cancelled")]


def test_a_halt_entered_with_and_without_text_shows_the_empty_entry() -> None:
    """'done' renders '{response}': non-empty after a text reply, empty after a length reply with no
    characters. The counterexample is the length run, the one that leaves the message empty."""
    r = check_policy(policy(CALL, stream(length="done"), TOOLS, HALTS))
    res = r.properties["halt_message"]
    assert res.status == FAIL and res.reason.endswith("when the halt is reached by length (chars=0)")
    assert events(res.counterexample) == [("ask", "opened"), ("read", "length")]
    assert res.counterexample is not None and res.counterexample.steps[-1].attrs["chars"] == 0


def test_first_real_stops_at_the_first_real_run_and_counts_every_search() -> None:
    """``_first_real`` consumes the searches lazily up to the first run the world can produce, sums
    what every search explored, and keeps the unreal runs found before it as alternatives."""
    a, b, c = Counterexample([], "a"), Counterexample([], "b"), Counterexample([], "c")
    consumed: list[str] = []

    def attempts() -> Any:
        for name, item in (("none", (None, 5, False)), ("a", (a, 7, False)), ("b", (b, 11, True)), ("c", (c, 13, True))):
            consumed.append(name)
            yield item

    chosen, total = deciders._first_real(attempts())
    assert chosen is b and total == 23 and b.alternatives == [a]
    assert consumed == ["none", "a", "b"]


def test_without_a_real_run_the_first_found_is_shown_and_none_when_nothing_was_found() -> None:
    a, b = Counterexample([], "a"), Counterexample([], "b")
    chosen, total = deciders._first_real(iter([(a, 1, False), (None, 2, False), (b, 3, False)]))
    assert chosen is a and total == 6 and a.alternatives == [b]
    assert deciders._first_real(iter([(None, 4, False)])) == (None, 4)
    assert deciders._preferred([], None) is None


# --------------------------------------------------------------------------- events_handled


def test_the_unhandled_case_is_shown_not_a_handled_case_of_the_same_event() -> None:
    """'broken' is handled when its cause is a disconnect (the first case a search meets) and
    unhandled otherwise: the counterexample is a broken stream of another cause, ending in
    policy_error, never the handled disconnect."""
    r = check_policy(policy(CALL, stream(broken="[{when: {attr: cause, eq: disconnect}, to: fail}]"), TOOLS, HALTS))
    res = r.properties["events_handled"]
    assert res.status == FAIL and res.findings and res.reason == res.findings[0]
    cex = res.counterexample
    assert cex is not None and cex.end == "__policy_error__" and cex.note == "'broken' in 'read' has no transition"
    assert cex.steps[-1].event == "broken" and cex.steps[-1].attrs["cause"] != "disconnect"


def test_a_single_unhandled_event_fails_events_handled() -> None:
    """One unhandled event is enough: events_handled fails (a policy_error halt is reachable)."""
    r = check_policy(policy(CALL, stream(stalled=""), TOOLS, HALTS))
    assert len(r.structure.unhandled) == 1
    res = r.properties["events_handled"]
    assert res.status == FAIL and res.findings == [r.structure.unhandled[0].describe()]
    assert events(res.counterexample) == [("ask", "opened"), ("read", "stalled")]


# --------------------------------------------------------------------------- backstop-only loops

CANCEL_LOOP = CALL.replace("cancelled: fail", "cancelled: ask")
"""A cancelled call starts over: a loop bounded only by model_calls that no cassette can record."""


def _backstop(*parts: str) -> Any:
    res = check_policy(policy(*parts)).properties["no_backstop_only_loops"]
    assert res.status == "warn"
    return res


def _note_own(label: str) -> str:
    return f"'{label}' repeats with nothing but the model_calls backstop to stop it: it has no counter of its own"


def test_a_loop_with_no_counter_of_its_own_is_shown_firing_twice() -> None:
    """An edge bounded by nothing but a backstop is demonstrated by a run in which it fires twice
    (once more than a bound of its own would allow); ``fires`` says it was allowed once."""
    cex = _backstop(CALL, stream(empty="ask"), TOOLS, HALTS).counterexample
    assert events(cex) == [("ask", "opened"), ("read", "empty"), ("ask", "opened"), ("read", "empty")]
    assert cex.note == _note_own("read --empty[0]--> ask") and cex.fires == ("read --empty[0]--> ask", 1)
    assert cex.alternatives == []


def test_a_counter_reset_in_the_loop_is_shown_firing_past_its_cap() -> None:
    """The empty retry increments tries (cap 2) but the tool loop resets it: the run fires the
    retry cap // increment + 1 = 3 times, and ``fires`` names the cap it passes."""
    tools = TOOLS.replace("ok: ask", "ok: {do: [{reset: tries}], to: ask}")
    cex = _backstop(CALL, stream(empty="{do: [{increment: tries}], to: ask}"), tools, HALTS).counterexample
    assert [e for _, e in events(cex)] == ["opened", "empty", "opened", "tool_calls", "ok", "opened", "empty", "opened", "empty"]
    assert cex.fires == ("read --empty[0]--> ask", 2)
    assert cex.note == ("'read --empty[0]--> ask' fires 3 times although tries caps it at 2: something in the loop "
                        "resets tries, so only the tool_batches backstop ends it")


def test_the_demonstration_counts_by_the_transitions_increment() -> None:
    """An increment ``by: 2`` against cap 2 lets the retry fire once per entry: the run fires it
    2 // 2 + 1 = 2 times."""
    tools = TOOLS.replace("ok: ask", "ok: {do: [{reset: tries}], to: ask}")
    cex = _backstop(CALL, stream(empty="{do: [{increment: tries, by: 2}], to: ask}"), tools, HALTS).counterexample
    assert cex.fires == ("read --empty[0]--> ask", 1)
    assert sum(1 for _, e in events(cex) if e == "empty") == 2


def test_the_first_loop_a_cassette_can_record_is_shown() -> None:
    """Two backstop-only loops: a cancelled call starting over (no cassette records a cancel) and an
    empty reply retried. The demonstration is the empty retry; the cancel run is an alternative."""
    cex = _backstop(CANCEL_LOOP, stream(empty="ask"), TOOLS, HALTS).counterexample
    assert cex.fires == ("read --empty[0]--> ask", 1)
    assert [(a.fires, events(a)) for a in cex.alternatives] == [
        (("ask --cancelled[0]--> ask", 1), [("ask", "cancelled"), ("ask", "cancelled")])
    ]


def test_the_search_stops_at_the_first_loop_it_can_record() -> None:
    """Two recordable backstop-only loops: the first flagged edge is demonstrated, the second is
    not searched for (no alternatives)."""
    cex = _backstop(CALL, stream(empty="ask", thinking_only="ask"), TOOLS, HALTS).counterexample
    assert cex.fires == ("read --empty[0]--> ask", 1) and cex.alternatives == []


def test_a_loop_no_cassette_can_record_still_gets_the_adversarys_run() -> None:
    """Only a cancel drives the loop: no recordable run exists, and the adversary's concrete run is
    shown rather than none."""
    cex = _backstop(CALL, stream(cancelled="ask"), TOOLS, HALTS).counterexample
    assert cex is not None and cex.concrete
    assert events(cex) == [("ask", "opened"), ("read", "cancelled"), ("ask", "opened"), ("read", "cancelled")]
    assert cex.note == _note_own("read --cancelled[0]--> ask")


def _spy_searches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool, bool, bool]]:
    """Record each search of ``backstop_demo``: (limit, within the component, with the world
    model, found)."""
    real = deciders.shortest_counterexample
    calls: list[tuple[int, bool, bool, bool]] = []

    def spy(an: Any, predicate: Any, limit: int, allowed: Any, extra: Any, world: Any) -> Any:
        path, n = real(an, predicate, limit=limit, allowed=allowed, extra=extra, world=world)
        calls.append((limit, allowed is not None, world is not None, path is not None))
        return path, n

    monkeypatch.setattr(deciders, "shortest_counterexample", spy)
    return calls


def test_the_demonstration_searches_recordable_runs_first_then_the_adversarys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The search order for a backstop-only loop: a recordable run within the loop's component (a
    quarter of the search limit), a recordable run anywhere (the whole limit), then the
    adversary's run within the component. A cancel loop has no recordable run, so all three run."""
    calls = _spy_searches(monkeypatch)
    _backstop(CALL, stream(cancelled="ask"), TOOLS, HALTS)
    quarter = deciders.SEARCH_LIMIT // 4
    assert calls == [(quarter, True, True, False), (deciders.SEARCH_LIMIT, False, True, False), (quarter, True, False, True)]


def test_the_way_into_a_loop_is_part_of_the_component_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop starts one step after the initial state ('start' is outside it): the transitions on
    the way in are allowed in the first search, which therefore finds the run."""
    from test_check import HEAD

    calls = _spy_searches(monkeypatch)
    start = "  start:\n    kind: continue\n    prompt: more\n    on: {done: ask}\n"
    head = HEAD.replace("initial: ask", "initial: start")
    res = check_policy(policy(start, CALL, stream(empty="ask"), TOOLS, HALTS, head=head)).properties["no_backstop_only_loops"]
    assert calls == [(deciders.SEARCH_LIMIT // 4, True, True, True)]
    assert events(res.counterexample) == [("start", "done"), ("ask", "opened"), ("read", "empty"), ("ask", "opened"), ("read", "empty")]


def test_events_handled_never_shows_a_handled_step_as_its_counterexample() -> None:
    """Asked about an event the policy does handle (read: broken goes to 'fail' in every case), the
    counterexample search finds nothing: no concrete run, no abstract path, since every step and
    edge it may end in must have no transition."""
    from loopspec.verify.abstract_graph import build_graph
    from loopspec.verify.abstraction import build_analysis
    from loopspec.verify.structure import Unhandled

    an = build_analysis(policy(CALL, stream(), TOOLS, HALTS))
    st = SimpleNamespace(unhandled=[Unhandled("read", "broken", {}, "")])
    res, n = deciders.decide_events_handled(an, build_graph(an), st)
    assert res.status == FAIL and res.counterexample is None and n > 0


def test_the_recordable_run_into_a_silent_halt_is_one_that_leaves_it_silent() -> None:
    """'mute' renders '{response}'. The adversary enters it by a cancel (not recordable); of the
    recordable ways in, a text reply (met first) leaves a message and a length reply with no
    characters leaves none: the counterexample is the length run."""
    ask = CALL.replace("cancelled: fail", "cancelled: mute")
    mute = '  mute: {kind: halt, outcome: empty, message: "{response}"}\n'
    res = check_policy(policy(ask, stream(text="mute", length="mute"), TOOLS, HALTS, mute)).properties["halt_message"]
    assert events(res.counterexample) == [("ask", "opened"), ("read", "length")]



def test_unhandled_events_of_two_states_are_both_findings_and_the_first_is_the_reason() -> None:
    """'read' lacks 'stalled', 'tools' lacks 'cancelled': two findings, in the order the graph
    meets them; the reason is the first, and so is the counterexample (the first search that
    finds a recordable run)."""
    r = check_policy(policy(CALL, stream(stalled=""), TOOLS.replace("      cancelled: fail\n", ""), HALTS))
    res = r.properties["events_handled"]
    assert res.findings == [
        "read: event 'stalled' has no enabled transition (the turn would end in policy_error)",
        "tools: event 'cancelled' has no enabled transition (the turn would end in policy_error)",
    ]
    assert res.reason == res.findings[0]
    assert events(res.counterexample) == [("ask", "opened"), ("read", "stalled")]


def test_every_unhandled_event_of_a_state_is_a_finding() -> None:
    """'read' handles neither 'stalled' nor 'broken': events_handled fails naming both, so one
    run of the checker lists everything to fix. (build_graph merged a node's edges by transition
    and target, so all unhandled events of a state, none with a transition and all going to
    __policy_error__, became one edge and only the first was reported.)"""
    r = check_policy(policy(CALL, stream(stalled="", broken=""), TOOLS, HALTS))
    res = r.properties["events_handled"]
    assert res.status == FAIL
    assert sorted((u.state, u.event) for u in r.structure.unhandled) == [("read", "broken"), ("read", "stalled")]


def test_the_way_into_a_loop_ends_where_the_loop_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two steps lead into the loop ('start', then 'mid'): the first search may take both, since the
    way in is the path to the loop's own nodes, not to the first node outside them ('mid' is one,
    and a way in that stopped there would leave the first search stranded)."""
    from test_check import HEAD

    calls = _spy_searches(monkeypatch)
    way_in = ("  start:\n    kind: continue\n    prompt: more\n    on: {done: mid}\n"
              "  mid:\n    kind: continue\n    prompt: more\n    on: {done: ask}\n")
    head = HEAD.replace("initial: ask", "initial: start")
    res = check_policy(policy(way_in, CALL, stream(empty="ask"), TOOLS, HALTS, head=head)).properties["no_backstop_only_loops"]
    assert calls == [(deciders.SEARCH_LIMIT // 4, True, True, True)]
    assert events(res.counterexample)[:3] == [("start", "done"), ("mid", "done"), ("ask", "opened")]


def test_each_loop_is_shown_with_its_own_bound() -> None:
    """Two loops the backstops end: a cancelled call starting over (no counter; no cassette records
    it, so it is searched first and kept as an alternative) and an empty retry whose counter the
    tool loop resets. The shown run is the retry's, with the retry's counter and cap in its note,
    not the cancel loop's bound."""
    tools = TOOLS.replace("ok: ask", "ok: {do: [{reset: tries}], to: ask}")
    cex = _backstop(CALL, stream(cancelled="ask", empty="{do: [{increment: tries}], to: ask}"), tools, HALTS).counterexample
    assert cex is not None and cex.fires == ("read --empty[0]--> ask", 2)
    assert cex.note.startswith("'read --empty[0]--> ask' fires 3 times although tries caps it at 2")
    assert [a.note for a in cex.alternatives] == [_note_own("read --cancelled[0]--> ask")]


def test_the_demonstration_counts_the_configurations_of_every_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """The configurations ``backstop_demo`` reports are the sum of its searches', from zero."""
    from loopspec.verify import checker

    real_search, real_demo = deciders.shortest_counterexample, checker.backstop_demo
    explored: list[int] = []
    totals: list[int] = []

    def search(*args: Any, **kwargs: Any) -> Any:
        path, n = real_search(*args, **kwargs)
        explored.append(n)
        return path, n

    def demo(*args: Any) -> Any:
        cex, total = real_demo(*args)
        totals.append(total)
        return cex, total

    monkeypatch.setattr(deciders, "shortest_counterexample", search)
    monkeypatch.setattr(checker, "backstop_demo", demo)
    _backstop(CALL, stream(cancelled="ask"), TOOLS, HALTS)  # three searches, see above
    assert len(explored) == 3 and totals == [sum(explored)]


# --------------------------------------------------------------------------- every decider's result
# (the survivors of planting all 452 of mutmut's mutants of deciders.py, 2026-12-04)

NAMED_POLICIES = {
    "proven": policy(CALL, stream(), TOOLS, HALTS),
    "spurious violation": policy(CALL, stream(length=SPURIOUS), TOOLS, HALTS),
    "unrun tool calls": policy(CALL, UNRUN, TOOLS, HALTS),
    "silent halts": policy(CANCEL_TO_QUIET, stream(empty="mute"), TOOLS, HALTS, QUIET),
    "unhandled stall": policy(CALL, stream(stalled=""), TOOLS, HALTS),
    "escalation loop": policy(CALL, stream(empty="nudge"), TOOLS, NUDGE_LOOP, HALTS),
}


@pytest.mark.parametrize("enumerate_limit", [None, 0], ids=["enumerated", "abstract"])
def test_every_property_result_is_named_by_the_property_it_decides(enumerate_limit: int | None) -> None:
    """``PropertyResult.name`` is public: a caller handed one result (or a list of them) reads which
    property it is from it. Over policies that take each decider down each of its returns (pass and
    fail, enumerated or not, refuted by the enumeration or by the search), every result's name is
    its key in ``CheckResult.properties``."""
    kw = {} if enumerate_limit is None else {"enumerate_limit": enumerate_limit}
    seen: set[tuple[str, str]] = set()
    for label, p in NAMED_POLICIES.items():
        for key, res in check_policy(p, **kw).properties.items():
            assert res.name == key, (label, key, res.name)
            seen.add((key, res.status))
    # the returns those policies reach, so that a policy edited into a passing one is noticed
    assert {("halts", PASS), ("halts", FAIL), ("halt_message", PASS), ("halt_message", FAIL), ("events_handled", PASS),
            ("events_handled", FAIL), ("no_partial_tool_exec", PASS), ("history_valid", FAIL)} <= seen


def test_a_loop_the_enumeration_finds_is_reported_in_the_checkers_words() -> None:
    """The enumerated halting failure says what the lasso is: a run that never calls the model again
    and never reaches a cap (the reason shown by ``loopspec check`` and in its JSON)."""
    res = check_policy(NAMED_POLICIES["escalation loop"]).properties["halts"]
    assert res.status == FAIL and res.counterexample is not None
    assert res.reason == "a run can loop forever without calling the model or reaching a cap"


def test_the_halting_verdicts_name_halts_on_each_return() -> None:
    """``decide_halts`` on each of its four returns, called directly (the enumeration's pass and
    fail, elimination's pass and stuck), names its result ``halts``."""
    st = SimpleNamespace(no_path_to_halt=[])
    results = [
        deciders.decide_halts(st, _term(True), SimpleNamespace(halts=True, configs=3)),  # type: ignore[arg-type]
        deciders.decide_halts(st, _term(False), SimpleNamespace(halts=False, lasso=None)),  # type: ignore[arg-type]
        deciders.decide_halts(st, _term(True), None),  # type: ignore[arg-type]
        deciders.decide_halts(st, _term(False), None),  # type: ignore[arg-type]
    ]
    assert [(r.name, r.status) for r in results] == [("halts", PASS), ("halts", FAIL), ("halts", PASS), ("halts", FAIL)]


def test_a_finding_the_enumeration_refutes_costs_no_search() -> None:
    """When the full enumeration saw no violation of a property, the abstract finding is refuted
    without a search: the decider adds no configurations of its own to the count explored."""
    res, n = deciders.decide_monitored(None, ONE_FINDING, "history_valid", SimpleNamespace(violations={}))  # type: ignore[arg-type]
    assert (res.name, res.status, n) == ("history_valid", PASS, 0)


def test_a_policy_whose_halts_all_speak_costs_no_search() -> None:
    """No halt renders empty: ``halt_message`` passes, named, having searched nothing."""
    node = SimpleNamespace(state="ask")
    an = SimpleNamespace(policy=None, kind=lambda state: "call")
    res, n = deciders.decide_halt_messages(an, SimpleNamespace(edges=[], initial=node))  # type: ignore[arg-type]
    assert (res.name, res.status, res.reason, n) == ("halt_message", PASS, "all 0 reachable halts deliver a non-empty message", 0)


def test_no_recordable_run_is_searched_for_a_halt_only_a_cancel_enters(monkeypatch: pytest.MonkeyPatch) -> None:
    """'aa_quiet' renders empty and only a cancel enters it, which no cassette can record: the
    search for a recordable run (with the world model) is skipped, since no edge into that halt is
    one the world can produce, and the adversary's run is shown. Gated on the edges into *that* halt,
    not on any edge of the graph."""
    from loopspec.verify import choice

    real = choice.shortest_counterexample
    world_searches: list[int] = []

    def spy(an: Any, predicate: Any, limit: int, **kw: Any) -> Any:
        if kw.get("world") is not None:
            world_searches.append(limit)
        return real(an, predicate, limit=limit, **kw)

    monkeypatch.setattr(choice, "shortest_counterexample", spy)
    quiet = QUIET.splitlines(keepends=True)[0]
    r = check_policy(policy(CANCEL_TO_QUIET, stream(), TOOLS, HALTS, quiet))
    res = r.properties["halt_message"]
    assert res.status == FAIL and events(res.counterexample) == [("ask", "cancelled")]
    assert world_searches == []
