"""Planning the cassette of a counterexample that ends in a tool-loop guardrail
(loopspec/verify/cassette_plan.py), written against the survivors of its mutation run: the
rounds inserted before the guardrail's own round (each a model call, a reply calling the tool and
its batch, with the events the classifier reports for them), the note that says so, the period a
doom loop is planned for, and the reasons a guardrail step cannot be planned."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from loopspec.language.model import Policy, Step
from loopspec.verify import CexStep
from loopspec.language.alphabet import Event
from loopspec.verify.cassette_plan import PlannedStep, check_plan, choose_options, closing_path, plan_run, simulate
from loopspec.verify.event_options import Facts, NotReplayable, Option
from loopspec.verify.realiser import Realiser

from test_check import CALL, HALTS, HEAD, TOOLS, policy, stream

GUARDED = HEAD + (
    "guardrails:\n"
    "  repeated_exact_failure: {threshold: 2, verdict: halt}\n"
    "  doom_loop: {threshold: 2, verdict: halt, max_period: 3}\n"
)
# a doom loop of period 2 or more ends the turn; the guard makes the planner pick such a period
DOOM = TOOLS.replace("      doom_loop: fail\n", "      doom_loop: [{when: {attr: period, ge: 2}, to: fail}, fail]\n")
OPENED = CexStep("ask", "opened", {}, "read", "ask --opened[0]--> read")
CALLS = CexStep("read", "tool_calls", {"tools": [], "count": 0, "chars": 0}, "tools", "read --tool_calls[0]--> tools")


def guard_step(code: str, to: str = "fail", **attrs: Any) -> CexStep:
    return CexStep("tools", code, {"tool": "", "verdict": "halt", **attrs}, to, f"tools --{code}[0]--> {to}")


def planned_for(p: Policy, cex: list[CexStep]) -> tuple[Realiser, list[Step], list[Option]]:
    steps = simulate(p, cex)
    realiser = Realiser(p)
    chosen = choose_options(realiser, steps, Facts(), None)
    assert chosen is not None
    return realiser, steps, chosen[0]


def shown(planned: list[PlannedStep]) -> list[tuple[Any, ...]]:
    """Everything a planned step holds but the recorded reply itself (whether there is one)."""
    out = []
    for p in planned:
        o = p.option
        results = [(r.tool, r.ok, r.content, r.args) for r in o.results]
        out.append((p.state, p.event.name, dict(p.event.attrs), p.to, p.transition, p.inserted,
                    dict(o.attrs), o.text, o.calls, o.tools, results, o.interaction is not None))
    return out


def inserted_round(result: tuple[bool, str, str]) -> list[tuple[Any, ...]]:
    ok, content, args = result
    calls = {"tools": ["tool_a"], "count": 1, "chars": 0}
    batch = {"tools": ["tool_a"]}
    return [
        ("ask", "opened", {}, "read", None, True, {}, False, (), (), [], False),
        ("read", "tool_calls", calls, "tools", None, True, calls, False, ("tool_a",), ("tool_a",), [], True),
        ("tools", "ok" if ok else "failed", batch, "ask", None, True, batch, None, (), (), [("tool_a", ok, content, args)], False),
    ]


def own_round(event: str, attrs: dict[str, Any], result: tuple[bool, str, str]) -> list[tuple[Any, ...]]:
    calls = {"tools": ["tool_a"], "count": 1, "chars": 0}
    return [
        ("ask", "opened", {}, "read", "ask --opened[0]--> read", False, {}, False, (), (), [], False),
        ("read", "tool_calls", calls, "tools", "read --tool_calls[0]--> tools", False, calls, False, ("tool_a",), ("tool_a",), [], True),
        ("tools", event, attrs, "fail", f"tools --{event}[0]--> fail", False, attrs, None, (), (), [("tool_a", *result)], False),
    ]


def test_a_repeated_failure_is_preceded_by_the_batches_that_make_it_fire() -> None:
    p = policy(CALL, stream(), TOOLS, HALTS, head=GUARDED)
    realiser, steps, options = planned_for(p, [OPENED, CALLS, guard_step("repeated_exact_failure")])
    notes: list[str] = []
    planned = plan_run(p, realiser, steps, options, notes)
    failure = (False, "the same failure", "{}")
    assert shown(planned) == [
        *inserted_round(failure),
        *inserted_round((True, "scripted result 0", '{"other": 0}')),
        *own_round("repeated_exact_failure", {"tool": "tool_a", "verdict": "halt"}, failure),
    ]
    assert notes == ["repeated_exact_failure: 2 tool batch(es) of 'tool_a' are played before step 3 so that the detector fires there"]


def test_a_failure_streak_is_preceded_by_distinct_failures_each_written_as_planned() -> None:
    """With a repeated identical failure firing first (threshold 2), the streak (threshold 3) is
    made of failures that differ: the counterexample's cassette holds exactly these results, so a
    reviewer diffing two runs of ``check`` sees the same cassette."""
    head = HEAD.replace("tool_batches: {max: 3", "tool_batches: {max: 6").replace("model_calls: {max: 5", "model_calls: {max: 9")
    head += "guardrails:\n  repeated_exact_failure: {threshold: 2, verdict: halt}\n  same_tool_failure: {threshold: 3, verdict: halt}\n"
    p = policy(CALL, stream(), TOOLS, HALTS, head=head)
    realiser, steps, options = planned_for(p, [OPENED, CALLS, guard_step("same_tool_failure")])
    notes: list[str] = []
    planned = plan_run(p, realiser, steps, options, notes)
    assert shown(planned) == [
        *inserted_round((False, "scripted failure 0", '{"attempt": 0}')),
        *inserted_round((False, "scripted failure 1", '{"attempt": 1}')),
        *own_round("same_tool_failure", {"tool": "tool_a", "verdict": "halt"}, (False, "the last failure", "{}")),
    ]
    assert notes == ["same_tool_failure: 2 tool batch(es) of 'tool_a' are played before step 3 so that the detector fires there"]


def test_a_doom_loop_is_planned_for_the_period_the_path_asks_for() -> None:
    p = policy(CALL, stream(), DOOM, HALTS, head=GUARDED)
    realiser, steps, options = planned_for(p, [OPENED, CALLS, guard_step("doom_loop", period=2)])
    notes: list[str] = []
    planned = plan_run(p, realiser, steps, options, notes)
    cycle, same = (True, "cycle result 0", '{"step": 0}'), (True, "the same result", "{}")
    assert shown(planned) == [
        *inserted_round(cycle),
        *inserted_round(same),
        *inserted_round(cycle),
        *own_round("doom_loop", {"tool": "tool_a", "verdict": "halt", "period": 2}, same),
    ]
    assert notes == ["doom_loop: 3 tool batch(es) of 'tool_a' are played before step 3 so that the detector fires there"]


def plan_error(p: Policy, steps: list[Step], options: list[Option]) -> str:
    with pytest.raises(NotReplayable) as info:
        plan_run(p, Realiser(p), steps, options, [])
    return str(info.value)


def test_a_guardrail_on_a_tool_no_reply_called_cannot_be_planned() -> None:
    p = policy(CALL, stream(), DOOM, HALTS, head=GUARDED)
    _r, steps, options = planned_for(p, [OPENED, CALLS, guard_step("doom_loop", period=2)])
    other = Option({"tool": "other", "verdict": "halt", "period": 2}, guard="doom_loop")
    assert plan_error(p, steps, [*options[:2], other]) == "no sequence of tool batches makes 'doom_loop' fire on 'other' first"


def test_a_guardrail_needs_a_reply_that_called_tools_right_before_it() -> None:
    p = policy(CALL, stream(), DOOM, HALTS, head=GUARDED)
    _r, steps, options = planned_for(p, [OPENED, CALLS, guard_step("doom_loop", period=2)])
    no_calls = [options[0], Option({"tools": [], "count": 0, "chars": 0}), options[2]]
    assert plan_error(p, steps, no_calls) == "'doom_loop' fires on a tool batch, and step 3 does not follow one"


def test_a_guardrail_after_a_stream_no_model_call_opened_cannot_be_planned() -> None:
    # the reply is read in a stream state an escalation went to, not after a model call
    esc = "  nudge:\n    kind: escalate\n    apply: [disable_tools]\n    on: {done: read, failed: fail}\n"
    p = policy(CALL, stream(empty="nudge"), TOOLS, esc, HALTS, head=GUARDED)
    cex = [
        OPENED,
        CexStep("read", "empty", {}, "nudge", "read --empty[0]--> nudge"),
        CexStep("nudge", "done", {}, "read", "nudge --done[0]--> read"),
        CALLS,
        guard_step("repeated_exact_failure"),
    ]
    _r, steps, options = planned_for(p, cex)
    assert plan_error(p, steps, options) == "'repeated_exact_failure' fires on a tool batch, and step 5 does not follow one"


def test_a_guardrail_on_the_turns_second_step_cannot_be_planned() -> None:
    # the turn starts by reading a stream; after the guardrail a model call opens
    head = GUARDED.replace("initial: ask", "initial: read")
    p = policy(CALL, stream(), TOOLS.replace("repeated_exact_failure: fail", "repeated_exact_failure: ask"), HALTS, head=head)
    cex = [CALLS, guard_step("repeated_exact_failure", to="ask"), OPENED]
    _r, steps, options = planned_for(p, cex)
    assert plan_error(p, steps, options) == "'repeated_exact_failure' fires on a tool batch, and step 2 does not follow one"


def test_a_second_guardrail_in_the_run_is_planned_after_the_first() -> None:
    p = policy(CALL, stream(), DOOM.replace("repeated_exact_failure: fail", "repeated_exact_failure: ask"), HALTS, head=GUARDED)
    cex = [OPENED, CALLS, guard_step("repeated_exact_failure", to="ask"), OPENED, CALLS, guard_step("doom_loop", period=2)]
    realiser, steps, options = planned_for(p, cex)
    notes: list[str] = []
    planned = plan_run(p, realiser, steps, options, notes)
    batches = [p.event.name for p in planned if p.state == "tools"]
    assert batches == ["failed", "ok", "repeated_exact_failure", "ok", "ok", "ok", "doom_loop"]
    assert notes == [
        "repeated_exact_failure: 2 tool batch(es) of 'tool_a' are played before step 3 so that the detector fires there",
        "doom_loop: 3 tool batch(es) of 'tool_a' are played before step 6 so that the detector fires there",
    ]


# -- closing a path that stops short of a halt ------------------------------------------------

# every reply but one goes back to the model; tool calls end the turn without being run
BACK = {
    "text": "ask",
    "empty": "ask",
    "length": "ask",
    "thinking_only": "ask",
    "stalled": "ask",
    "broken": "ask",
    "cancelled": "",
    "malformed_args": "{do: [drop_tool_calls], to: ask}",
    "unknown_tool": "{do: [drop_tool_calls], to: ask}",
    "tool_calls": "fail",
}


def closing(p: Policy, state: str, facts: Facts = Facts()) -> list[tuple[str, str, str]]:
    cfg = dataclasses.replace(p.initial_config(), state=state)
    return [(s.before.state, s.event.name, s.after.state) for s in closing_path(p, Realiser(p), cfg, facts)]


def test_the_way_to_a_halt_breaks_no_property_and_takes_a_transition() -> None:
    # one step would do, but unrun tool calls break the history and 'cancelled' has no transition
    p = policy(CALL, stream(**BACK), TOOLS, HALTS)
    assert closing(p, "read") == [("read", "text", "ask"), ("ask", "rate_limit", "fail")]


def test_the_way_to_a_halt_starts_from_what_the_run_left_behind() -> None:
    # with a call pending the batch can wait for approval; with none it can only be empty and 'ok'
    p = policy(CALL, stream(), TOOLS.replace("ok: ask", "ok: tools"), HALTS)
    assert closing(p, "tools", Facts(calls=("tool_a",))) == [("tools", "approval_required", "fail")]
    assert closing(p, "tools") == [("tools", "ok", "tools")] * 3 + [("tools", "ok", "out")]


def test_no_clean_way_to_a_halt() -> None:
    p = policy(CALL, stream(**{k: ("read" if k != "tool_calls" else v) for k, v in BACK.items() if v}), TOOLS, HALTS)
    with pytest.raises(NotReplayable) as info:
        closing(p, "read")
    assert str(info.value) == "no recordable way from 'read' to a halt"


def test_every_planned_tool_answer_differs() -> None:
    """So that no detector fires where the path says none does: results and failures are numbered
    across the run."""
    p = policy(CALL, stream(), TOOLS, HALTS, head=GUARDED)
    ok = CexStep("tools", "ok", {"tools": []}, "ask", "tools --ok[0]--> ask")
    failed = CexStep("tools", "failed", {"tools": []}, "ask", "tools --failed[0]--> ask")
    realiser, steps, options = planned_for(p, [OPENED, CALLS, ok, OPENED, CALLS, failed])
    planned = plan_run(p, realiser, steps, options, [])
    answers = [(r.ok, r.content) for s in planned for r in s.option.results]
    assert answers == [(True, "result 1"), (False, "failure 2")]


def test_a_stub_may_end_the_turn_silently_only_once_the_continuation_budget_is_spent() -> None:
    head = HEAD.replace("  tries: {max: 2}\n", "  tries: {max: 2}\n  cont: {max: 1}\n")
    cut = (
        "  cut:\n    kind: stub\n    on:\n      mid_tool_call: done\n"
        "      mid_text: [{when: {counter: cont, lt: max}, do: [{increment: cont}], to: again}, fail]\n"
        "  again:\n    kind: continue\n    prompt: more\n    on: {done: ask}\n"
    )
    p = policy(CALL, stream(length="cut"), TOOLS, cut, HALTS, head=head)
    cut_in_a_tool_call = Facts(stub=("mid_tool_call", (), False))

    def from_cut(spent: int) -> list[tuple[str, str, str]]:
        cfg = p.initial_config()
        counters = list(cfg.counters)
        counters[p.counter_names.index("cont")] = spent
        cfg = dataclasses.replace(cfg, state="cut", counters=tuple(counters))
        return [(s.before.state, s.event.name, s.after.state) for s in closing_path(p, Realiser(p), cfg, cut_in_a_tool_call)]

    assert from_cut(1) == [("cut", "mid_tool_call", "done")]
    with pytest.raises(NotReplayable):
        from_cut(0)  # a 'completed' halt right after a cut tool call, with a continuation left


def _counted_loop(n: int) -> Any:
    """s prompts again and again, counting to ``n``, then halts at g: the only way from the start
    to a halt is n + 1 steps, through n + 1 distinct configurations."""
    from loopspec import load_policy_text

    return load_policy_text(
        "loopspec: 1\ninitial: s\ntemplates:\n  more: \"more\"\n"
        f"counters:\n  n: {{max: {n}}}\n"
        "backstops:\n  model_calls: {max: 5, exhausted: g}\n  tool_batches: {max: 3, exhausted: g}\n"
        "states:\n"
        "  s: {kind: continue, prompt: more, on: {done: [{when: {counter: n, lt: max}, do: [{increment: n}], to: s}, g]}}\n"
        "  g: {kind: halt, outcome: completed, message: \"ok\"}\n",
        "inline.yaml",
    )


def test_the_closing_search_looks_at_no_more_than_five_thousand_configurations() -> None:
    """A path that stops short is closed by the shortest clean way to a halt, searched within
    5,000 configurations: a halt 5,000 steps away is found, one 5,001 steps away is reported as
    not recordable (kills the mutants that drop or move the limit)."""
    near = _counted_loop(4_999)
    path = closing_path(near, Realiser(near), near.initial_config(), Facts())
    assert len(path) == 5_000 and path[-1].after.state == "g"
    far = _counted_loop(5_000)
    with pytest.raises(NotReplayable, match="no recordable way from 's' to a halt"):
        closing_path(far, Realiser(far), far.initial_config(), Facts())


# -- a tool that waits for approval after it ran (separate_approvals) -----------------------------

OK = CexStep("tools", "ok", {}, "ask", "tools --ok[0]--> ask")
WAITS = CexStep("tools", "approval_required", {}, "fail", "tools --approval_required[0]--> fail")


def reply_calls(interaction: Any) -> list[str]:
    return [tc["function"]["name"] for ch in interaction.chunks if ch["choices"]
            for tc in ch["choices"][0]["delta"].get("tool_calls") or [] if tc.get("function", {}).get("name")]


def reply_text(interaction: Any) -> str:
    return "".join(ch["choices"][0]["delta"].get("content") or "" for ch in interaction.chunks if ch["choices"])


def test_a_tool_that_ran_and_then_waits_for_approval_waits_under_a_name_of_its_own() -> None:
    """A tool needs approval in every batch once a cassette says so, so the batch that waits calls
    it as '<tool>_awaiting_approval' (needing approval), while the batch before ran it under its
    own name (not needing it): the reply, the classifier's event and the approval event all name it."""
    from loopspec.replay.harness import replay_sync
    from loopspec.verify.to_cassette import cassette_from_counterexample
    from loopspec.verify import Counterexample

    p = policy(CALL, stream(), TOOLS, HALTS)
    c = cassette_from_counterexample(p, Counterexample([OPENED, CALLS, OK, OPENED, CALLS, WAITS]), "no_backstop_only_loops")
    assert [(t.name, t.needs_approval) for t in c.tools] == [("tool_a", False), ("tool_a_awaiting_approval", True)]
    assert [reply_calls(i) for i in c.interactions] == [["tool_a"], ["tool_a_awaiting_approval"]]
    assert [reply_text(i) for i in c.interactions] == ["", ""], "no text the plan did not ask for"
    assert [r.tool for r in c.tool_results] == ["tool_a"]
    r = replay_sync(c, p)
    assert r.verdict == "pass" and r.result.halt_state == "fail", r.failures
    second_calls, waits = r.result.trace[4], r.result.trace[5]
    assert (second_calls.event, second_calls.attrs["tools"], second_calls.attrs["count"]) == (
        "tool_calls", ["tool_a_awaiting_approval"], 1)
    assert (waits.event, waits.attrs["tool"]) == ("approval_required", "tool_a_awaiting_approval")


def test_a_tool_that_waits_for_approval_in_its_first_batch_keeps_its_name() -> None:
    from loopspec.verify.to_cassette import cassette_from_counterexample
    from loopspec.verify import Counterexample

    p = policy(CALL, stream(), TOOLS, HALTS)
    c = cassette_from_counterexample(p, Counterexample([OPENED, CALLS, WAITS]), "no_backstop_only_loops")
    assert [(t.name, t.needs_approval) for t in c.tools] == [("tool_a", True)]
    assert [reply_calls(i) for i in c.interactions] == [["tool_a"]]


def test_the_recorded_batches_answer_with_numbered_results_and_failures() -> None:
    """A failed batch, a batch that runs, then one that waits: the cassette records a numbered
    failure, then a numbered result, and nothing for the batch that waits."""
    from loopspec.replay.cassette import ToolOutcome
    from loopspec.verify.to_cassette import cassette_from_counterexample
    from loopspec.verify import Counterexample

    failed = CexStep("tools", "failed", {}, "ask", "tools --failed[0]--> ask")
    p = policy(CALL, stream(), TOOLS, HALTS)
    c = cassette_from_counterexample(p, Counterexample([OPENED, CALLS, failed, OPENED, CALLS, OK, OPENED, CALLS, WAITS]),
                                     "no_backstop_only_loops")
    assert c.tool_results == (ToolOutcome("tool_a", error="failure 1"), ToolOutcome("tool_a", result="result 2"))
    assert [(t.name, t.needs_approval) for t in c.tools] == [("tool_a", False), ("tool_a_awaiting_approval", True)]


@pytest.mark.parametrize("chars, text", [(3, "Don"), (4, "Done")])
def test_the_renamed_batch_keeps_what_the_policy_reads_of_the_reply(chars: int, text: str) -> None:
    """The policy reads the reply's text length and its number of calls before a batch: the reply
    renamed for approval keeps the characters and the one call the guard needs (filler text, as
    the plan has no natural text for it), so the plan, the check of it and the replay agree."""
    from loopspec.replay.harness import replay_sync
    from loopspec.verify.to_cassette import cassette_from_counterexample
    from loopspec.verify import Counterexample

    guard = f"{{all: [{{attr: chars, ge: {chars}}}, {{attr: count, eq: 1}}]}}"
    reads = stream(tool_calls=f"[{{when: {guard}, to: tools, bounded_by: tool_batches}}, fail]")
    p = policy(CALL, reads, TOOLS, HALTS)
    calls = CexStep("read", "tool_calls", {"tools": ["tool_a"], "count": 1, "chars": chars}, "tools",
                    "read --tool_calls[0]--> tools")
    c = cassette_from_counterexample(p, Counterexample([OPENED, calls, OK, OPENED, calls, WAITS]), "no_backstop_only_loops")
    assert [reply_calls(i) for i in c.interactions] == [["tool_a"], ["tool_a_awaiting_approval"]]
    assert [reply_text(i) for i in c.interactions] == [text, text]
    r = replay_sync(c, p)
    assert r.verdict == "pass" and r.result.trace[4].attrs["chars"] == chars and r.result.halt_state == "fail"


# -- the check of a plan against the policy (check_plan) ------------------------------------------


def a_plan() -> tuple[Policy, list[PlannedStep]]:
    """A plain plan: a reply calling a tool, its batch, then a text reply."""
    p = policy(CALL, stream(), TOOLS, HALTS)
    text = CexStep("read", "text", {}, "done", "read --text[0]--> done")
    realiser, steps, options = planned_for(p, [OPENED, CALLS, OK, OPENED, text])
    return p, plan_run(p, realiser, steps, options, [])


def test_a_plan_that_takes_the_counterexamples_decisions_passes_its_check() -> None:
    p, planned = a_plan()
    check_plan(p, planned)  # raises NotReplayable otherwise
    assert [x.to for x in planned] == ["read", "tools", "ask", "read", "done"]


def test_a_plan_whose_attributes_lead_elsewhere_is_refused_at_that_step() -> None:
    """The recordings' own attributes must take the counterexample's transitions: a planned
    event that leads elsewhere, or to the same state by another transition, is refused by number."""
    p, planned = a_plan()
    elsewhere = list(planned)
    elsewhere[4] = dataclasses.replace(planned[4], event=Event("empty", {}))
    with pytest.raises(NotReplayable) as info:
        check_plan(p, elsewhere)
    assert str(info.value) == "with the attributes the classifier reports, step 5 (read: empty) leads to 'fail', not 'done'"
    relabelled = list(planned)
    relabelled[1] = dataclasses.replace(planned[1], transition="read --tool_calls[7]--> tools")
    with pytest.raises(NotReplayable) as info:
        check_plan(p, relabelled)
    assert str(info.value) == "with the attributes the classifier reports, step 2 (read: tool_calls) leads to 'tools', not 'tools'"
    inserted = list(planned)
    inserted[1] = dataclasses.replace(planned[1], transition=None, inserted=True)
    check_plan(p, inserted)  # an inserted round is checked by where it goes, not by its transition


def test_a_plan_that_is_not_where_the_run_is_is_refused() -> None:
    p, planned = a_plan()
    with pytest.raises(NotReplayable) as info:
        check_plan(p, [planned[0], planned[2], *planned[3:]])
    assert str(info.value) == "the recorded run is in 'read' at step 2, not in 'tools'"


def test_a_policy_that_starts_in_an_escalation_gets_its_cassette() -> None:
    """The first step's recording depends on what came before it even there (an escalation's
    outcome depends on how it was entered): the search starts from the empty facts."""
    from test_check import HEAD
    from loopspec.verify import check_policy
    from loopspec.verify.to_cassette import counterexample_cassettes

    fix = "  fix:\n    kind: escalate\n    apply: [compact]\n    on: {done: ask, failed: fail}\n"
    halts = HALTS.replace('message: "failed: {message}"', 'message: "{code}"')
    p = policy(CALL, stream(), TOOLS, fix, halts, head=HEAD.replace("initial: ask", "initial: fix"))
    c = counterexample_cassettes(p, check_policy(p))["halt_message"]
    assert [(s.state, s.event, s.target) for s in c.trace] == [("fix", "done", "ask"), ("ask", "rate_limit", "fail")]


# -- the depth-first choice of recordings, and a waiting batch of two tools (unit level) ----------


class TreeRealiser:
    """A test double for the three calls ``choose_options`` makes of a realiser: the options after
    each path of choices are given as a tree (facts are the path so far)."""

    def __init__(self, tree: dict[tuple[str, ...], list[str]], empty: frozenset[str] = frozenset()) -> None:
        self.tree = tree
        self.empty = empty

    def options(self, facts: Any, step: Any) -> list[str]:
        return list(self.tree.get(facts, []))

    def after(self, facts: Any, step: Any, o: Any) -> Any:
        return facts + (o,)

    def leaves_empty(self, want: Any, facts: Any, step: Any, o: Any) -> bool:
        return o in self.empty


@pytest.mark.parametrize("tree, want", [
    pytest.param({(): ["a", "b"], ("b",): ["c"]}, (["b", "c"], ("b", "c")), id="first choice dead-ends at the next step"),
    pytest.param({(): ["a", "b"], ("a",): ["c"], ("b",): ["d"], ("a", "c"): [], ("b", "d"): ["e"]},
                 (["b", "d", "e"], ("b", "d", "e")), id="first choice dead-ends two steps later"),
    pytest.param({(): ["a"], ("a",): ["c", "d"], ("a", "d"): ["e"]}, (["a", "d", "e"], ("a", "d", "e")),
                 id="the dead end is below the first step"),
    pytest.param({(): ["a", "b"], ("a",): ["c"], ("b",): ["c"]}, None, id="every choice dead-ends"),
])
def test_the_choice_of_recordings_backtracks_past_a_dead_end(tree: dict[tuple[str, ...], list[str]], want: Any) -> None:
    """A recording that makes one step happen may leave nothing that makes a later step happen;
    the search then tries the next recording of an earlier step rather than giving up."""
    steps = [None] * (len(want[0]) if want else 3)
    assert choose_options(TreeRealiser(tree), steps, (), None) == want  # type: ignore[arg-type]


def test_the_last_recording_must_leave_the_halt_message_empty_when_asked() -> None:
    tree = {(): ["a", "b"], ("a",): ["x"], ("b",): ["y"]}
    realiser = TreeRealiser(tree, empty=frozenset({"y"}))
    assert choose_options(realiser, [None, None], (), object()) == (["b", "y"], ("b", "y"))  # type: ignore[arg-type]
    assert choose_options(realiser, [None, None], (), None) == (["a", "x"], ("a", "x"))  # type: ignore[arg-type]


def test_only_the_waiting_tool_of_a_two_tool_batch_is_renamed() -> None:
    """The batch that waits for approval calls two tools; only the one that ran before and now
    waits is called by a fresh name, in the reply, the step's attributes and the tools to register,
    and the approval step names the fresh name."""
    from loopspec.verify.cassette_plan import separate_approvals
    from loopspec.verify.event_options import Result

    def calls(*names: str) -> PlannedStep:
        attrs = {"tools": list(names), "count": len(names), "chars": 0}
        return PlannedStep("read", Event("tool_calls", attrs), Option(attrs, calls=names, tools=names), "tools", "t")

    ran = PlannedStep("tools", Event("ok", {"tools": ["tool_a"]}),
                      Option({"tools": ["tool_a"]}, results=(Result("tool_a", True),)), "ask", "t")
    waits = PlannedStep("tools", Event("approval_required", {"tool": "tool_a"}),
                        Option({"tool": "tool_a"}, approval="tool_a"), "fail", "t")
    planned = [calls("tool_a"), ran, calls("tool_a", "tool_b"), waits]
    separate_approvals(planned)
    fresh = "tool_a_awaiting_approval"
    renamed = planned[2]
    assert renamed.option.calls == (fresh, "tool_b") and renamed.option.tools == (fresh, "tool_b")
    assert dict(renamed.option.attrs) == {"tools": [fresh, "tool_b"], "count": 2, "chars": 0}
    assert renamed.event == Event("tool_calls", {"tools": [fresh, "tool_b"], "count": 2, "chars": 0})
    assert reply_calls(renamed.option.interaction) == [fresh, "tool_b"]
    assert planned[3].option.approval == fresh and dict(planned[3].option.attrs) == {"tool": fresh}
    assert planned[3].event == Event("approval_required", {"tool": fresh})
    assert planned[0].option.calls == ("tool_a",), "the batch that ran keeps the tool's own name"
