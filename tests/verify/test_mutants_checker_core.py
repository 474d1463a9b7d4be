"""Tests written against surviving mutants of the checker's core modules (cases, selection,
checker, budget_bounds, wall_time): each pins a behaviour no other test observed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from loopspec import load_policy
from loopspec.language.alphabet import Event
from loopspec.language.model import Config
from loopspec.verify.cases import Case, case_steps, forced_step
from loopspec.verify.checker import check_file, check_policy
from loopspec.verify.selection import compile_selection

from _paths import MACHINES, ROOT

DOCS_EXAMPLES = ROOT / "docs" / "examples"

BUDGETS = load_policy(str(DOCS_EXAMPLES / "budgets.yaml"))


TRAP = ("  trap:\n    kind: escalate\n    apply: [compact]\n    on: {done: trap, failed: again}\n"
        "  again:\n    kind: escalate\n    apply: [compact]\n    on: {done: trap, failed: trap}\n")


def trap_policy():  # type: ignore[no-untyped-def]
    """A policy whose cancelled stream falls into a compaction loop no counter bounds."""
    from test_check import CALL, HALTS, TOOLS, policy, stream

    return policy(CALL, stream(cancelled="trap"), TOOLS, TRAP, HALTS)


def configurations_looked_at(policy, enum, walks: bool) -> int:  # type: ignore[no-untyped-def]
    """What the check counts besides the enumeration and the lasso search: each step-local,
    halt-message and event decider, the demonstration of a loop only a backstop bounds, and, when
    the figures are not the enumeration's, the witness walks (at no time budget: a fixed number)."""
    from loopspec.verify.abstract_graph import build_graph
    from loopspec.verify.abstraction import build_analysis
    from loopspec.verify.deciders import backstop_demo, decide_events_handled, decide_halt_messages, decide_monitored
    from loopspec.verify.structure import analyse_structure
    from loopspec.verify.termination import eliminate, worst_case
    from loopspec.verify.witness import witness_walks

    an = build_analysis(policy)
    g = build_graph(an)
    term = eliminate(an, g)
    looked = [decide_monitored(an, g, name, enum)[1]
              for name in ("no_partial_tool_exec", "tools_stay_disabled", "stub_not_silent", "history_valid")]
    looked += [decide_halt_messages(an, g)[1], decide_events_handled(an, g, analyse_structure(an, g))[1]]
    if [b for b in term.backstop_loops if not b.declared]:
        looked.append(backstop_demo(an, g, term)[1])
    if walks:
        looked.append(witness_walks(an, worst_case(an, g, term), seconds=0).steps)
    return sum(looked)



def _may_fire(policy, state: str, event: Event, j: int) -> tuple[object, Config, Case]:  # type: ignore[no-untyped-def]
    sel = compile_selection(policy, state, event.name)
    cfg = Config(state, tuple(0 for _ in policy.counters), frozenset())
    case = Case(sel.transitions[j], event, cfg.counters, cfg.flags, witnessed=False, index=j)
    return sel, cfg, case


def test_a_may_fire_step_is_labelled_with_the_policys_own_transition() -> None:
    """The forced step runs on a copy whose guard is Always, but the edge it gives the checker names
    the policy's transition (its guard, its label in findings), not the copy."""
    sel, cfg, case = _may_fire(BUDGETS, "read", Event("tool_calls", {"tools": ["t"], "count": 1}), 0)
    step = forced_step(sel, cfg, case)  # type: ignore[arg-type]
    assert step.transition is case.transition
    assert step.transition.guard is not sel.forced_policy(0).states["read"].transitions["tool_calls"][0].guard  # type: ignore[attr-defined]
    assert step.after.state == "out_of_budget"


def test_a_may_fire_step_into_a_call_state_takes_each_budget_level() -> None:
    """With budgets, a step entering a call state gets one edge per measured level: the forced
    (may-fire) step too, with the level's flags in its configuration or its redirect taken."""
    sel, cfg, case = _may_fire(BUDGETS, "tools", Event("ok", {}), 0)
    steps = case_steps(sel, cfg, case)  # type: ignore[arg-type]
    assert all(s.transition is case.transition for s in steps)
    assert steps[0].after.state == "ask" and steps[0].after.flags == frozenset()
    afters = {(s.after.state, s.after.flags) for s in steps[1:]}
    assert len(steps) > 2 and len(afters) == len(steps) - 1
    assert all(s.after.flags or s.after.state != "ask" for s in steps[1:])


def test_forced_policies_are_kept_per_transition() -> None:
    """``forced_policy(j)`` keeps only transition ``j`` (guard Always); another ``j``, or None (no
    transition at all), is another policy, never the first one remembered."""
    sel = compile_selection(BUDGETS, "read", "tool_calls")
    first, second, none = sel.forced_policy(0), sel.forced_policy(1), sel.forced_policy(None)
    assert sel.forced_policy(0) is first
    ts = lambda p: p.states["read"].transitions["tool_calls"]  # noqa: E731
    assert [t.target for t in ts(first)] == ["out_of_budget"] and [t.target for t in ts(second)] == ["tools"]
    assert ts(none) == ()
    assert BUDGETS.states["read"].transitions["tool_calls"][0].guard != ts(first)[0].guard


def test_check_file_is_lenient_unless_asked_and_passes_strict_on() -> None:
    """``check_file`` defaults to the lenient check and hands ``strict`` on: a policy whose only
    finding is strict-only proves leniently and fails strictly."""
    path = str(MACHINES / "hermes_webui_asked_4980.yaml")
    lenient, strict = check_file(path), check_file(path, strict=True)
    assert lenient.proven and not lenient.strict
    assert strict.strict and strict.failed == ["no_backstop_only_loops"]
    assert strict.failed == check_policy(load_policy(path), strict=True).failed


def test_a_budget_that_bounds_calls_but_no_loop_says_so() -> None:
    """A budget with ``min_per_call`` bounds the model calls; when no loop of the policy goes
    through them, its line says that instead of listing loops."""
    from loopspec.language import load_policy_text

    text = (DOCS_EXAMPLES / "budgets.yaml").read_text()
    assert "ok: {to: ask, bounded_by: cost}" in text
    result = check_policy(load_policy_text(text.replace("ok: {to: ask, bounded_by: cost}", "ok: done")))
    assert [b.text() for b in result.budgets] == [
        "output_tokens (max 2000): no min_per_call, so it bounds no loop in this proof (it may still end a turn)",
        "cost (max 0.05, min_per_call 0.001): at most 51 model calls per turn; no loop of this policy goes through the model calls",
    ]


def test_the_wall_time_json_names_each_part_of_the_waits() -> None:
    """``wall_time`` in the check's JSON: the bound, and the seconds of each kind of wait it adds."""
    wall = check_policy(load_policy(str(MACHINES / "default.yaml"))).wall_time.to_json()
    assert wall == {
        "seconds": None,
        "bounded": False,
        "waits": 52510.0,
        "parts": {"request_open": 10800.0, "stall_detection": 5400.0, "backoff": 310.0, "tool_runs": 36000.0},
        "unbounded": ["a stream that keeps sending content (each chunk restarts the stall timer)",
                      "a human's approval of a tool call"],
        "turn_deadline": None,
    }


def test_an_empty_halt_message_names_every_condition_it_needs() -> None:
    """How the checker says when a halt's message renders empty: the event, then each condition
    (the reply without text, an empty ``code`` string, an empty list attribute), comma-separated."""
    from loopspec.verify.properties import EmptyWhen

    assert EmptyWhen("stream", "text", ("code", "tools"), response=True).describe() == (
        "text (a reply without visible text, code='', tools=[])"
    )
    assert EmptyWhen("stream", "length", (), response=True).describe() == "length (chars=0)"
    assert EmptyWhen("call", "opened").describe() == "opened"
    assert EmptyWhen(None, "").describe() == "the start of the turn (the initial state is this halt)"


def test_free_event_cases_include_an_outcome_only_a_counter_at_zero_allows() -> None:
    """The representative events of a state are drawn over counters from 0 to their caps: an
    outcome whose guard needs a counter still at 0 (a first retry only on a 503) has its witness
    event among them, or the abstract graph would miss that edge."""
    from loopspec.verify.cases import event_cases_free

    from test_check import CALL, HALTS, TOOLS, policy, stream

    first = "[{when: {all: [{counter: tries, lt: 1}, {attr: status, eq: 503}]}, do: [{increment: tries}], to: ask}, fail]"
    assert "      rate_limit: fail\n" in CALL
    p = policy(CALL.replace("      rate_limit: fail\n", f"      rate_limit: {first}\n"), stream(), TOOLS, HALTS)
    statuses = [e.get("status") for e in event_cases_free(p, "ask", "rate_limit")]
    assert 503 in statuses and any(s != 503 for s in statuses)


def test_a_wall_time_bound_below_the_deadline_is_not_credited_to_it() -> None:
    """The report credits ``turn_deadline`` only when the bound is the deadline itself; a bound
    that is smaller (or one without a deadline) is printed as the number alone."""
    from loopspec.verify.wall_time import WallTime

    parts = {"request_open": 60.0, "backoff": 0.5}
    below = WallTime(120.0, 60.5, parts, (), deadline=900.0).lines()
    assert below == ["worst-case wall time per turn: <= 120 s",
                     "  the engine's own waits <= 60.5 s: request open 60 s, backoff 0.5 s"]
    assert WallTime(120.0, 60.5, parts).lines()[0] == "worst-case wall time per turn: <= 120 s"
    assert WallTime(900.0, 60.5, parts, deadline=900.0).lines()[0] == (
        "worst-case wall time per turn: <= 900 s (settings.turn_deadline), plus delivering the halt")


def test_a_budget_lists_every_loop_it_bounds() -> None:
    from loopspec.verify.budget_bounds import BudgetBound

    bound = BudgetBound("cost", 0.05, 0.001, 51, ["tools --ok[0]--> ask", "read --length[0]--> ask"])
    assert bound.text() == (
        "cost (max 0.05, min_per_call 0.001): at most 51 model calls per turn; "
        "it bounds: tools --ok[0]--> ask, read --length[0]--> ask"
    )


def test_check_file_hands_the_enumeration_limit_on() -> None:
    path = str(DOCS_EXAMPLES / "retry.yaml")  # 85 configurations: enumerated in full by default
    assert check_file(path).exploration["full_enumeration"]
    assert not check_file(path, enumerate_limit=0).exploration["full_enumeration"]


def test_a_loop_that_never_halts_is_one_finding_with_the_states_that_cannot_halt() -> None:
    """The cycle recurs in every backstop phase of the abstract graph; the finding names it once,
    then each state with no path to a halt."""
    halts = check_policy(trap_policy(), enumerate_limit=0).properties["halts"]
    assert halts.status == "fail"
    assert halts.findings == [
        "unbounded cycle through: again --done[0]--> trap; again --failed[0]--> trap; trap --done[0]--> trap; trap --failed[0]--> again",
        "state 'again' has no path to a halt",
        "state 'trap' has no path to a halt",
    ]


def test_a_policy_is_enumerated_in_full_exactly_when_its_estimated_space_fits_the_limit() -> None:
    """mutmut ``estimate_space_*``: the gate before full enumeration is the estimate "states x 2 to
    the tracked flags x 6 x every counter's values", an upper bound on the configurations the
    enumeration visits. A limit one below it skips the enumeration (the halting proof and the
    walks answer), a limit equal to it enumerates: a larger or smaller estimate moves the gate."""
    import math

    from loopspec.verify.abstraction import build_analysis
    from loopspec.verify.checker import estimate_space
    from loopspec.verify.enumeration import enumerate_all

    policy = load_policy(str(DOCS_EXAMPLES / "retry.yaml"))
    an = build_analysis(policy)
    estimate = len(policy.states) * 2 ** len(an.tracked_flags) * 6 * math.prod(c.max + 1 for c in policy.counters)
    assert estimate_space(policy) == estimate_space(policy, an) == estimate
    for path in sorted(MACHINES.glob("*.yaml")):  # policies with none to a dozen tracked flags
        other = load_policy(str(path))
        flags = len(build_analysis(other).tracked_flags)
        product = len(other.states) * 2 ** flags * 6 * math.prod(c.max + 1 for c in other.counters)
        if product <= 10**15:
            assert estimate_space(other) == product, path
        else:  # the product stops once past any enumeration limit
            assert 10**15 < estimate_space(other) <= product, path
    enum = enumerate_all(an, limit=estimate)
    assert enum is not None and enum.configs <= estimate, "an upper bound on what the enumeration visits"
    assert check_policy(policy, enumerate_limit=estimate).exploration["full_enumeration"]
    below = check_policy(policy, enumerate_limit=estimate - 1)
    assert below.properties["halts"].passed and not below.exploration["full_enumeration"]


def _failing_three_deciders():  # type: ignore[no-untyped-def]
    """A policy each search-backed decider fails on: a cut reply runs its tool calls
    (no_partial_tool_exec), an empty reply ends on the ``{response}`` halt (halt_message), and a
    broken stream has no transition (events_handled)."""
    from test_check import CALL, HALTS, TOOLS, policy, stream

    return policy(CALL, stream(length="tools", empty="done", broken=""), TOOLS, HALTS)


@pytest.mark.parametrize("which", ["retry.yaml", "three failing deciders"])
def test_the_concrete_configurations_explored_are_the_enumerations_and_each_deciders_own(which: str) -> None:
    """mutmut ``check_policy_19``: the count started at 1; ``check_policy_91/92/99/100/111/112``:
    a decider's own count replaced the total or was taken from it. On a policy enumerated in full
    (no lasso search, no walks) it is the enumeration's configurations plus what each step-local,
    halt-message and event decider and the backstop demonstration looked at, nothing more. The
    deciders search only for a property that fails, so the second policy fails three."""
    from loopspec.verify.abstract_graph import build_graph
    from loopspec.verify.abstraction import build_analysis
    from loopspec.verify.enumeration import enumerate_all

    policy = load_policy(str(DOCS_EXAMPLES / which)) if which.endswith(".yaml") else _failing_three_deciders()
    result = check_policy(policy)
    assert result.exploration["full_enumeration"] and result.backstop_only_loops
    if not which.endswith(".yaml"):
        failed = {k for k, v in result.properties.items() if v.status == "fail"}
        assert failed == {"no_partial_tool_exec", "halt_message", "events_handled"}
    enum = enumerate_all(build_analysis(policy))
    assert enum is not None
    assert result.exploration["concrete_configs"] == enum.configs + configurations_looked_at(policy, enum, walks=False)
    assert result.explored == result.exploration["abstract_nodes"] + result.exploration["concrete_configs"]
    g = build_graph(build_analysis(policy))
    assert (result.exploration["abstract_nodes"], result.exploration["abstract_edges"]) == (len(g.nodes), len(g.edges))
    assert result.exploration["model_steps"] >= len(g.edges) > 0, "every edge is a step the model took"


def test_a_policy_that_may_not_halt_is_enumerated_within_the_limit_given() -> None:
    """mutmut ``check_policy_35/39/40/56``: when the halting proof fails the check enumerates
    whatever the estimate says, but within the limit it was given (not the default one), says
    which method it used, and takes the enumeration's own lasso without a second search."""
    from loopspec.verify.abstraction import build_analysis
    from loopspec.verify.enumeration import enumerate_all

    p = trap_policy()
    enum = enumerate_all(build_analysis(p))
    assert enum is not None and enum.configs > 1
    cut = check_policy(p, enumerate_limit=enum.configs - 1)
    assert not cut.exploration["full_enumeration"] and cut.method == "counter elimination"
    whole = check_policy(p, enumerate_limit=enum.configs)
    assert whole.exploration["full_enumeration"] and whole.method == "counter elimination + full enumeration"
    assert cut.properties["halts"].status == whole.properties["halts"].status == "fail"
    assert whole.properties["halts"].counterexample == enum.lasso
    explored = check_policy(p, enumerate_limit=enum.configs, witness_seconds=0).exploration["concrete_configs"]
    assert explored == enum.configs + configurations_looked_at(p, enum, walks=True)  # no halt found: the walks give figures


def test_a_halting_counterexample_is_the_concrete_lasso_when_the_enumeration_did_not_run() -> None:
    """mutmut ``check_policy_57/58/69/70/73``: without a full enumeration, a failed halting proof
    gets the concrete lasso the search finds (counted once among the configurations explored); a
    passed one gets no counterexample."""
    from loopspec.verify.abstraction import build_analysis
    from loopspec.verify.choice import SEARCH_LIMIT
    from loopspec.verify.enumeration import find_lasso

    p = trap_policy()
    lasso, n, _complete = find_lasso(build_analysis(p), limit=SEARCH_LIMIT // 2)
    assert lasso is not None and lasso.concrete
    cut = check_policy(p, enumerate_limit=1).properties["halts"]
    assert cut.status == "fail" and cut.counterexample == lasso
    explored = check_policy(p, enumerate_limit=1, witness_seconds=0).exploration["concrete_configs"]
    assert explored == n + configurations_looked_at(p, None, walks=True)
    for limit in (0, 10**6):  # proven by counter elimination, then by enumeration too
        passed = check_policy(load_policy(str(DOCS_EXAMPLES / "retry.yaml")), enumerate_limit=limit).properties["halts"]
        assert passed.passed and passed.counterexample is None


def test_a_loop_bounded_only_by_a_backstop_is_a_warning_with_its_edge_and_a_run_through_it() -> None:
    """mutmut ``check_policy_126-139/149``: the property's name, its reason with what to do, one
    finding per edge and a demonstration run; a warning, a failure under ``--strict``."""
    policy = load_policy(str(DOCS_EXAMPLES / "retry.yaml"))
    for strict, status in ((False, "warn"), (True, "fail")):
        res = check_policy(policy, strict=strict).properties["no_backstop_only_loops"]
        assert (res.name, res.status) == ("no_backstop_only_loops", status)
        assert res.reason == ("1 loop edge(s) are bounded only through a global backstop; give them a per-turn "
                              "counter that nothing resets, or declare bounded_by")
        assert res.findings == ["tools --ok[0]--> ask: bounded only by the model_calls backstop"]
        assert res.counterexample is not None and res.counterexample.steps


def test_declared_backstop_loops_pass_and_are_listed() -> None:
    """mutmut ``check_policy_151-167``: a policy whose only backstop loop is declared passes, and
    says so with the edge it declared."""
    res = check_policy(BUDGETS).properties["no_backstop_only_loops"]
    assert (res.name, res.status) == ("no_backstop_only_loops", "pass")
    assert res.reason == "every loop has a bound of its own; 1 declared backstop loop(s): tools --ok[0]--> ask"


def test_two_declared_backstop_loops_are_listed_in_order() -> None:
    """A cut reply goes back to the model too, declared bounded by the cost budget, and the tool
    loop is declared bounded by the tool batches: both loops are named, sorted, a comma between."""
    from loopspec import load_policy_text

    text = ((DOCS_EXAMPLES / "budgets.yaml").read_text()
            .replace("      length: failed\n", "      length: {to: ask, bounded_by: cost}\n")
            .replace("        - to: tools\n", "        - {to: tools, bounded_by: tool_batches}\n"))
    res = check_policy(load_policy_text(text, "two_loops.yaml")).properties["no_backstop_only_loops"]
    assert (res.status, res.reason) == ("pass", "every loop has a bound of its own; 2 declared backstop loop(s): "
                                                "read --length[0]--> ask, read --tool_calls[1]--> tools")


def test_enumerated_figures_are_exact_and_walked_ones_say_how_many_walks() -> None:
    """mutmut ``check_policy_184-217``: figures from a full enumeration are exact with their own
    value as the lower bound, per outcome without the overall ``*``, and no walk ran; without the
    enumeration the walks that ran are counted."""
    exact = check_policy(load_policy(str(DOCS_EXAMPLES / "retry.yaml")))
    assert exact.exploration["full_enumeration"] and exact.exploration["witness_walks"] == 0
    figures = [*exact.worst_case.values(), *(f for figs in exact.by_outcome.values() for f in figs.values())]
    assert figures and all(f.exact is True and f.lower == f.value for f in figures)
    assert "*" not in exact.by_outcome and exact.by_outcome
    walked = check_policy(BUDGETS)
    assert not walked.exploration["full_enumeration"] and walked.exploration["witness_walks"] > 0
    assert "*" not in walked.by_outcome and walked.by_outcome
    figures = [*walked.worst_case.values(), *(f for figs in walked.by_outcome.values() for f in figs.values())]
    assert all(type(f.lower) is int and 0 <= f.lower <= f.value and f.exact == (f.lower == f.value) for f in figures)
    assert walked.wall_time is not None and check_policy(trap_policy(), enumerate_limit=0).wall_time is None
    # each lower bound is the best walk's (0 where no walk reached the outcome): none is made up
    from loopspec.verify.abstract_graph import build_graph
    from loopspec.verify.abstraction import build_analysis
    from loopspec.verify.termination import eliminate, worst_case
    from loopspec.verify.witness import witness_walks

    an = build_analysis(BUDGETS)
    g = build_graph(an)
    best = witness_walks(an, worst_case(an, g, eliminate(an, g)), seconds=0).best
    timed = check_policy(BUDGETS, witness_seconds=0)
    assert {b: f.lower for b, f in timed.worst_case.items()} == {b: min(best["*"][b], f.value) for b, f in timed.worst_case.items()}
    for outcome, figs in timed.by_outcome.items():
        assert {b: f.lower for b, f in figs.items()} == {b: min(best.get(outcome, {}).get(b, 0), f.value) for b, f in figs.items()}
    assert any(outcome not in best for outcome in timed.by_outcome), "an outcome no walk reached keeps a lower bound of 0"


def test_a_check_result_names_its_policy_and_how_long_it_took() -> None:
    """mutmut ``check_policy_291-293``: the file and name of the policy checked, and its own time."""
    import time

    policy = load_policy(str(DOCS_EXAMPLES / "retry.yaml"))
    before = time.perf_counter()
    result = check_policy(policy)
    took = time.perf_counter() - before
    assert (result.file, result.policy) == (policy.file, policy.name) and policy.name
    assert 0 <= result.seconds <= took


def _deep_trap(second_climb: int):  # type: ignore[no-untyped-def]
    """A turn that compacts 10,000 times, then ``second_climb`` times more, then falls into a
    compaction loop nothing bounds: its concrete lasso lies some 10,000 + ``second_climb``
    configurations deep."""
    from test_check import CALL, HALTS, HEAD, TOOLS, policy, stream

    def climb(name: str, counter: str, then: str) -> str:
        go = "[{when: {counter: %s, lt: max}, do: [{increment: %s}], to: %s}, %s]" % (counter, counter, name, then)
        return f"  {name}:\n    kind: escalate\n    apply: [compact]\n    on:\n      done: {go}\n      failed: {go}\n"

    head = HEAD.replace("initial: ask", "initial: climb").replace(
        "tries: {max: 2}", f"tries: {{max: 2}}\n  steps: {{max: 10000}}\n  more: {{max: {second_climb}}}")
    trap = "  trap:\n    kind: escalate\n    apply: [compact]\n    on: {done: trap, failed: ask}\n"
    return policy(climb("climb", "steps", "higher"), climb("higher", "more", "trap"), trap, CALL, stream(), TOOLS, HALTS, head=head)


def test_the_lasso_search_looks_through_half_the_search_limit_then_shows_the_abstract_cycle() -> None:
    """Not enumerated (the limit is tiny), a policy that does not halt gets a concrete lasso when
    one lies within SEARCH_LIMIT // 2 = 15,000 configurations (12,503 steps here: more than a third
    of the limit), and the abstract cycle from the graph when it lies deeper (15,503)."""
    near = check_policy(_deep_trap(2500), enumerate_limit=100).properties["halts"].counterexample
    assert near is not None and near.concrete and near.note == "the run repeats from loop_start forever"
    assert (len(near.steps), near.loop_start) == (12_503, 12_502)
    assert [(s.state, s.to) for s in near.steps[-2:]] == [("higher", "trap"), ("trap", "trap")]
    far = check_policy(_deep_trap(5500), enumerate_limit=100).properties["halts"].counterexample
    assert far is not None and not far.concrete and far.note == "abstract: the cycle repeats from loop_start"
    assert [(s.state, s.event, s.to) for s in far.steps] == [
        ("climb", "done", "higher"), ("higher", "done", "trap"), ("trap", "done", "trap")]
    assert far.loop_start == 2
