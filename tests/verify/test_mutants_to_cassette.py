"""Why a counterexample cannot become a cassette (loopspec/verify/to_cassette.py), written against
the survivors of its mutation run: the reason ``NotReplayable`` gives names the first step no
recording reproduces, by number, event, attributes and state, with the reason that fits the
state's kind; or, when every step can happen, says the halt's message cannot be left empty."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from loopspec.verify import CexStep, Counterexample
from loopspec.verify.event_options import NotReplayable
from loopspec.replay.cassette import RecordedStep, ToolSpec
from loopspec.replay.harness import replay
from loopspec.verify.event_options import EMPTY_PARAMETERS, REPRODUCE_MESSAGE
from loopspec.verify.to_cassette import _padding, _reproduces, cassette_from_counterexample, counterexample_cassettes

from _paths import MACHINES
from test_check import CALL, HALTS, TOOLS, machine, policy, stream

OPENED = CexStep("ask", "opened", {}, "read", "ask --opened[0]--> read")


def step(state: str, event: str, to: str, **attrs: Any) -> CexStep:
    return CexStep(state, event, dict(attrs), to, f"{state} --{event}[0]--> {to}")


def why_not(parts: tuple[str, ...], steps: list[CexStep], prop: str = "history_valid") -> str:
    with pytest.raises(NotReplayable) as info:
        cassette_from_counterexample(policy(*parts), Counterexample(steps), prop)
    return str(info.value)


def test_an_attribute_no_recording_has() -> None:
    call = CALL.replace("      rate_limit: fail\n", "      rate_limit: [{when: {attr: status, eq: 200}, to: fail}, fail]\n")
    got = why_not((call, stream(), TOOLS, HALTS), [step("ask", "rate_limit", "fail", status=200, code="x")])
    assert got == (
        "step 1 asks for rate_limit(status=200, code='x') in 'ask', which no recording makes the classifier"
        " (or the interpreter) report there"
    )


def test_a_tool_batch_with_no_call_pending() -> None:
    steps = [OPENED, step("read", "text", "tools"), step("tools", "failed", "ask")]
    got = why_not((CALL, stream(text="tools"), TOOLS, HALTS), steps)
    assert got == (
        "step 3 asks for failed() in 'tools', but no tool call is pending there (the reply's calls were not"
        " sent to run), so the batch is empty and 'ok'"
    )


def test_a_stub_the_stream_did_not_leave() -> None:
    cut = "  cut:\n    kind: stub\n    on: {mid_text: fail, mid_tool_call: fail}\n"
    steps = [OPENED, step("read", "length", "cut", has_tool_calls=False), step("cut", "mid_tool_call", "fail")]
    got = why_not((CALL, stream(length="cut"), TOOLS, cut, HALTS), steps)
    assert got == "step 3 asks for mid_tool_call() in 'cut', which the stream before it did not leave behind"


def test_an_escalation_that_cannot_fail_the_way_it_was_entered() -> None:
    esc = "  nudge:\n    kind: escalate\n    apply: [disable_tools]\n    on: {done: ask, failed: fail}\n"
    steps = [OPENED, step("read", "empty", "nudge"), step("nudge", "failed", "fail")]
    got = why_not((CALL, stream(empty="nudge"), TOOLS, esc, HALTS), steps)
    assert got == "step 3 asks for failed() in 'nudge', which the escalation does not report after the way it was entered"


def test_every_step_can_happen_but_the_response_before_them_is_not_empty() -> None:
    # 'done' renders the response, which after a text reply has visible text
    steps = [OPENED, step("read", "text", "tools"), step("tools", "ok", "done")]
    tools = TOOLS.replace("      ok: ask\n", "      ok: done\n")
    got = why_not((CALL, stream(text="tools"), tools, HALTS), steps, prop="halt_message")
    assert got == "no recording leaves the halt's message empty"


# -- whether a replay shows the counterexample (_reproduces) --------------------------------------


@pytest.fixture(scope="module")
def shown(guardrail_cex: tuple[Any, Any]) -> dict[str, Any]:
    """The arguments a real reproduction hands ``_reproduces`` (hermes' pre-fix silent halt), and
    what it answered: each test below changes one of them."""
    import loopspec.verify.to_cassette as to_cassette

    p, cex = guardrail_cex
    seen: dict[str, Any] = {}
    real = to_cassette._reproduces

    def spy(report: Any, planned: Any, prop: str, c: Any, policy: Any) -> str:
        answer = real(report, planned, prop, c, policy)
        seen.update(report=report, planned=planned, prop=prop, cex=c, policy=policy, answer=answer)
        return answer

    to_cassette._reproduces = spy
    try:
        cassette_from_counterexample(p, cex, "halt_message")
    finally:
        to_cassette._reproduces = real
    assert seen["answer"] == "" and seen["prop"] == "halt_message" and seen["cex"].loop_start is None
    return seen


def reproduces(shown: dict[str, Any], *, trace: list[Any] | None = None, steps: list[Any] | None = None,
               prop: str | None = None, **change: Any) -> str:
    """``_reproduces`` of the captured run, with the report's trace or steps, the property, or the
    counterexample's fields (``loop_start``, ``fires``) or the report's (``verdict``, ``failures``) changed."""
    report, cex = shown["report"], shown["cex"]
    result = report.result
    if trace is not None:
        result = dataclasses.replace(result, trace=trace)
    if steps is not None:
        result = dataclasses.replace(result, steps=steps)
    report = dataclasses.replace(report, result=result, **{k: v for k, v in change.items() if k in ("verdict", "failures")})
    cex = dataclasses.replace(cex, **{k: v for k, v in change.items() if k in ("loop_start", "fires")})
    return _reproduces(report, shown["planned"], prop or shown["prop"], cex, shown["policy"])


def decisions(trace: list[Any]) -> list[tuple[str, str, str]]:
    return [(s.state, s.event, s.target) for s in trace]


def test_a_diverged_replay_is_refused_with_its_first_failure(shown: dict[str, Any]) -> None:
    assert reproduces(shown, verdict="diverged", failures=["diverged: first", "second"]) == "diverged: first"
    failing = ["diverged: x", *shown["report"].failures]  # the property's own failure among them
    assert reproduces(shown, verdict="diverged", failures=failing) == "diverged: x"
    assert reproduces(shown, verdict="fail", failures=failing) == ""


def test_a_replay_that_parts_from_the_counterexample_names_the_step(shown: dict[str, Any]) -> None:
    trace = shown["report"].result.trace
    assert len(trace) >= 3
    want = decisions(trace)
    other = dataclasses.replace(trace[1], target="somewhere_else")
    assert reproduces(shown, trace=[trace[0], other, *trace[2:]]) == (
        f"the replay parts from the counterexample at step 2: [{decisions([other])[0]!r}] instead of [{want[1]!r}]")
    assert reproduces(shown, trace=trace[:2]) == (
        f"the replay parts from the counterexample at step 3: [] instead of [{want[2]!r}]")


def test_a_lasso_needs_the_same_prefix_and_a_turn_that_does_not_halt(shown: dict[str, Any]) -> None:
    trace, steps = shown["report"].result.trace, shown["report"].result.steps
    want = decisions(trace)
    other = dataclasses.replace(trace[0], event="text")
    assert reproduces(shown, loop_start=0, trace=[other, *trace[1:]]) == (
        f"the replay's decisions {decisions([other, *trace[1:]])} differ from the counterexample's {want}")
    assert reproduces(shown, loop_start=0) == "the replayed turn halted"
    assert reproduces(shown, loop_start=0, steps=steps[:1], prop="history_valid") == "the replay does not fail history_valid"


def test_a_run_property_must_fail_in_the_replay(shown: dict[str, Any]) -> None:
    assert reproduces(shown, failures=["property halt_message fails: the halt's message is empty"]) == ""
    assert reproduces(shown, failures=["halt_message fails"]) == "the replay does not fail halt_message"


def test_a_loop_demonstration_must_fire_its_transition_past_the_bound(shown: dict[str, Any]) -> None:
    fires = ("read --text[0]--> ask", 3)
    got = reproduces(shown, prop="no_backstop_only_loops", fires=fires, failures=["read --text[0]--> ask fired 4 times"])
    assert got == ""
    for failures in (["read --text[0]--> ask ran 4 times"], ["other fired 4 times"], []):
        assert reproduces(shown, prop="no_backstop_only_loops", fires=fires, failures=failures) == (
            "the replay does not fire read --text[0]--> ask more than 3 times")
    assert reproduces(shown, prop="no_backstop_only_loops", failures=[]) == ""


# -- what a counterexample cassette holds ---------------------------------------------------------


@pytest.fixture(scope="module")
def guardrail_cex() -> tuple[Any, Any]:
    """hermes' pre-fix guardrail halt: a silent halt that needs a detector fed five batches."""
    from loopspec.verify import check_policy

    p = machine("hermes_pre_30813")
    return p, check_policy(p).counterexamples()["halt_message"]


def test_a_counterexample_cassette_names_its_policy_property_and_plan(guardrail_cex: tuple[Any, Any]) -> None:
    """Its name, file, doc (the counterexample's note, then the plan's notes), source, opening
    message, tools (no parameters, approval as planned), expectations and the decisions its replay
    took, stored as its trace."""
    p, cex = guardrail_cex
    c = cassette_from_counterexample(p, cex, "halt_message")
    assert (c.name, c.file) == ("hermes_pre_30813-halt_message", "hermes_pre_30813-halt_message.cassette.yaml")
    assert c.doc == ("Counterexample for property 'halt_message' of policy 'hermes_pre_30813': ends in 'halt_guardrail' with an"
                     " empty message Notes: repeated_exact_failure: 5 tool batch(es) of 'tool_a' are played before step 3 so"
                     " that the detector fires there")
    assert c.source == {"checker": "loopspec check", "policy": p.file, "property": "halt_message"}
    assert c.messages == (REPRODUCE_MESSAGE,)
    assert c.tools == (ToolSpec("tool_a", EMPTY_PARAMETERS, needs_approval=False),)
    assert (c.expect.properties, c.expect.all_played, c.expect.max_fires) == (("history_valid", "halt_message"), False, ())
    replayed = asyncio.run(replay(c, p))
    assert replayed.divergence is None and replayed.result.trace
    assert c.trace == tuple(RecordedStep(s.state, s.event, s.target, s.transition) for s in replayed.result.trace)
    assert all(s.transition for s in c.trace)


def test_what_the_caller_names_the_cassette_and_its_loop_bounds_are_kept(guardrail_cex: tuple[Any, Any]) -> None:
    p, cex = guardrail_cex
    c = cassette_from_counterexample(p, cex, "halt_message", name="mine", doc="Why.", source={"incident": "x"},
                                     max_fires=(("a --b[0]--> c", 9),))
    assert (c.name, c.source, c.expect.max_fires) == ("mine", {"incident": "x"}, (("a --b[0]--> c", 9),))
    assert c.doc.startswith("Why. Notes: repeated_exact_failure: "), "the plan's notes follow the caller's doc"
    fires = ("read_stream --text[0]--> halt_completed", 4)
    shown = cassette_from_counterexample(p, dataclasses.replace(cex, fires=fires), "halt_message")
    assert shown.expect.max_fires == (fires,), "the counterexample's own loop bound becomes the expectation"
    kept = cassette_from_counterexample(p, dataclasses.replace(cex, fires=fires), "halt_message", max_fires=(("x", 1),))
    assert kept.expect.max_fires == (("x", 1),)


def test_a_silent_stub_cassette_adds_the_answer_a_recovering_policy_would_use() -> None:
    """stub_not_silent: one more reply ('The answer.') after the recorded ones, and every reply
    must be played, so a policy that ends the turn at the stub leaves it unplayed."""
    from loopspec.verify import check_policy

    from test_mutants_cassette_plan import reply_text

    p = machine("hermes_pre_32012")
    c = cassette_from_counterexample(p, check_policy(p).counterexamples()["stub_not_silent"], "stub_not_silent")
    assert (c.expect.properties, c.expect.all_played) == (("history_valid", "stub_not_silent"), True)
    assert reply_text(c.interactions[-1]) == "The answer."
    assert reply_text(c.interactions[0]) != "The answer."


@pytest.mark.parametrize("n, roles", [
    (0, []),
    (1, ["assistant", "user"]),
    (2, ["assistant", "user"]),
    (3, ["assistant", "user", "assistant", "user"]),
])
def test_padding_is_an_earlier_conversation_that_ends_with_the_user(n: int, roles: list[str]) -> None:
    """What a compacting counterexample is replayed with, so that compaction has something to drop:
    n numbered messages, alternating from the assistant, and a user's 'Go on.' if the last was not
    the user's (a request never ends on the assistant)."""
    padding = _padding(n)
    assert [m["role"] for m in padding] == roles
    assert [m["content"] for m in padding[:n]] == [f"Earlier message {i + 1}." for i in range(n)]
    if len(padding) > n:
        assert padding[-1] == {"role": "user", "content": "Go on."}


# -- one cassette per failed property, or the reason there is none ------------------------------

RATE_LIMIT_200 = [step("ask", "rate_limit", "fail", status=200, code="x")]
"""A rate limit with status 200: no recording makes the classifier say that."""


def limited_call() -> Any:
    """A policy whose ask state reads a rate limit's status (so a 200 is a distinct, impossible case)."""
    call = CALL.replace("      rate_limit: fail\n", "      rate_limit: [{when: {attr: status, eq: 200}, to: fail}, fail]\n")
    return policy(call, stream(), TOOLS, HALTS)


def failing_result(p: Any, prop: str, cex: Counterexample) -> Any:
    """A real check result of ``p`` with ``cex`` as the counterexample of a failed ``prop``."""
    from loopspec.verify import check_policy

    r = check_policy(p)
    r.properties[prop].status = "fail"
    r.properties[prop].counterexample = cex
    return r


def test_a_counterexample_no_cassette_reproduces_is_marked_abstract_with_the_first_reason() -> None:
    """No cassette is written, ``concrete`` turns False, and the note gains the first candidate's
    reason (after a space when it had one): the report then says the run was not shown."""
    p = limited_call()
    second = Counterexample([])
    cex = Counterexample(list(RATE_LIMIT_200), note="a silent halt", alternatives=[second])
    r = failing_result(p, "halts", cex)
    assert counterexample_cassettes(p, r) == {}
    assert cex.concrete is False
    assert cex.note == ("a silent halt (no cassette reproduces it: step 1 asks for rate_limit(status=200, code='x') in 'ask',"
                        " which no recording makes the classifier (or the interpreter) report there)")
    bare = Counterexample([])
    counterexample_cassettes(p, failing_result(p, "halts", bare))
    assert (bare.concrete, bare.note) == (False, "(no cassette reproduces it: the counterexample has no steps)")


def test_the_first_candidate_that_reproduces_becomes_the_reported_counterexample(guardrail_cex: tuple[Any, Any]) -> None:
    p, real = guardrail_cex
    cex = Counterexample(list(RATE_LIMIT_200), note="abstract", alternatives=[real])
    r = failing_result(p, "halt_message", cex)
    made = counterexample_cassettes(p, r)
    assert list(made) == ["halt_message"]
    assert r.properties["halt_message"].counterexample is real and cex.concrete is True
    kept = failing_result(p, "halt_message", real)
    counterexample_cassettes(p, kept)
    assert kept.properties["halt_message"].counterexample is real


def test_a_loop_without_its_own_bound_is_expected_to_stay_under_each_loop_counters_cap() -> None:
    """A backstop-only loop shown without a firing bound: the cassette expects each loop edge the
    run takes to fire at most its counter's cap (and only those edges)."""
    from loopspec.verify import check_policy

    p = machine("netclaw_pre_1358")
    r = check_policy(p, strict=True)
    cex = r.counterexamples()["no_backstop_only_loops"]
    assert cex.fires is not None
    r.properties["no_backstop_only_loops"].counterexample = dataclasses.replace(cex, fires=None, alternatives=[])
    made = counterexample_cassettes(p, r)
    cap = p.counters[p.counter_index("post_tool_empty")].max
    assert made["no_backstop_only_loops"].expect.max_fires == (("read_stream --length[1]--> call_model", cap),)
    taken = {s.transition for s in cex.steps}
    assert [loop.edge in taken for loop in r.backstop_only_loops].count(True) == 1, "the other loop edges are not taken"
    with_bound = counterexample_cassettes(p, check_policy(p, strict=True))
    assert with_bound["no_backstop_only_loops"].expect.max_fires == (cex.fires,)


def test_a_path_that_stops_short_of_a_halt_is_closed_by_the_shortest_clean_way_to_one(guardrail_cex: tuple[Any, Any]) -> None:
    """The guardrail counterexample cut after its tool call: the cassette plays those two steps,
    then the shortest recordable way to a halt (here the batch asks for approval), and its
    replay ends there."""
    p, cex = guardrail_cex
    c = cassette_from_counterexample(p, dataclasses.replace(cex, steps=cex.steps[:2]), "no_backstop_only_loops")
    assert [(s.state, s.event, s.target) for s in c.trace] == [
        ("call_model", "opened", "read_stream"), ("read_stream", "tool_calls", "run_tools"),
        ("run_tools", "approval_required", "halt_approval")]
    assert asyncio.run(replay(c, p)).result.halt_state == "halt_approval"


def test_a_lasso_whose_replay_halts_is_refused_with_that_reason(guardrail_cex: tuple[Any, Any]) -> None:
    """A 'halts' counterexample must keep looping when replayed: one that reaches a halt is not
    shown, and the refusal says so (it is what the counterexample's other candidates are tried for)."""
    p, cex = guardrail_cex
    with pytest.raises(NotReplayable) as info:
        cassette_from_counterexample(p, dataclasses.replace(cex, loop_start=0), "halts")
    assert str(info.value) == "the replayed turn halted"


def test_only_a_backstop_loop_demonstration_is_given_the_loops_caps() -> None:
    """A silent-halt counterexample that passes through a backstop-only loop edge once expects
    nothing of that edge: the caps of the loops are the expectation of a loop demonstration only."""
    from loopspec.verify import check_policy

    p = machine("ml_intern_pre_213")
    r = check_policy(p)
    opened, cut = r.counterexamples()["halt_message"].steps
    dropped = CexStep("read_stream", "length", dict(cut.attrs, has_tool_calls=True, dropped_tools=["t"]), "call_model",
                      "read_stream --length[0]--> call_model")
    assert dropped.transition in {loop.edge for loop in r.backstop_only_loops if loop.counter}
    r.properties["halt_message"].counterexample = Counterexample([opened, dropped, opened, cut])
    assert counterexample_cassettes(p, r)["halt_message"].expect.max_fires == ()


def compacting(keep_last: int) -> Any:
    """auth -> fix (compact) -> done -> fail, whose '{code}' renders empty; fix -> failed loops."""
    from test_check import HEAD

    halts = HALTS.replace('message: "failed: {message}"', 'message: "{code}"')
    fix = "  fix:\n    kind: escalate\n    apply: [compact]\n    on: {done: fail, failed: fix}\n"
    head = HEAD + f"settings:\n  compaction_keep_last: {keep_last}\n"
    return policy(CALL.replace("      auth: fail\n", "      auth: fix\n"), stream(), TOOLS, fix, halts, head=head)


AUTH = step("ask", "auth", "fix", status=401, message="no", retry_after=0.0, code="")


@pytest.mark.parametrize("keep_last, padding", [(2, 6), (6, 12), (12, 24)])
def test_a_compaction_that_must_succeed_is_replayed_after_just_enough_earlier_messages(keep_last: int, padding: int) -> None:
    """Compaction shrinks the prompt only when more than ``keep_last`` messages (and the note that
    replaces them) can go: the cassette opens with the first of 0, 6, 12 or 24 earlier messages
    that lets it, and its replay compacts."""
    p = compacting(keep_last)
    c = cassette_from_counterexample(p, Counterexample([AUTH, step("fix", "done", "fail")]), "halt_message")
    assert c.messages == (REPRODUCE_MESSAGE, *_padding(padding))
    assert [(s.state, s.event, s.target) for s in c.trace] == [("ask", "auth", "fix"), ("fix", "done", "fail")]


def test_a_compaction_that_must_fail_is_replayed_without_earlier_messages() -> None:
    p = compacting(6)
    fails = step("fix", "failed", "fix")
    c = cassette_from_counterexample(p, Counterexample([AUTH, fails, fails], loop_start=1), "halts")
    assert c.messages == (REPRODUCE_MESSAGE,)


def test_a_halt_that_is_the_initial_state_needs_no_steps() -> None:
    """A policy that starts in a silent halt: the counterexample is the empty path, and its
    cassette has nothing to play; a policy that does not start in a halt refuses the empty path."""
    from test_check import HEAD

    p = policy(CALL, stream(), TOOLS, HALTS, head=HEAD.replace("initial: ask", "initial: done"))
    c = cassette_from_counterexample(p, Counterexample([]), "halt_message")
    assert (c.interactions, c.trace) == ((), ())
    assert asyncio.run(replay(c, p)).result.halt_state == "done"


def test_a_text_reply_cannot_leave_a_response_halt_empty() -> None:
    """'{response}' entered from the stream on text: the reply's text is the response, so no
    recording leaves it empty (entered on any other event, it can be)."""
    steps = [OPENED, step("read", "text", "done")]
    assert why_not((CALL, stream(), TOOLS, HALTS), steps, "halt_message") == (
        "'done' cannot render an empty message when entered on text")


def test_each_detector_fed_on_the_way_is_noted_in_the_doc() -> None:
    """A warning guardrail, then a halting one: the doc notes the batches played for each, in
    order, separated by '; '."""
    from loopspec import load_policy_text

    text = (MACHINES / "hermes_pre_30813.yaml").read_text()
    warns = text.replace("repeated_exact_failure: {threshold: 5, verdict: halt}", "repeated_exact_failure: {threshold: 2, verdict: warn}")
    assert warns != text
    p = load_policy_text(warns, "warns.yaml")
    opened = step("call_model", "opened", "read_stream")
    calls = CexStep("read_stream", "tool_calls", {"tools": [], "count": 0, "chars": 0}, "run_tools",
                    "read_stream --tool_calls[1]--> run_tools")
    warn = CexStep("run_tools", "repeated_exact_failure", {"tool": "", "verdict": "warn"}, "call_model",
                   "run_tools --repeated_exact_failure[1]--> call_model")
    halt = CexStep("run_tools", "no_progress", {"tool": "", "verdict": "halt"}, "halt_guardrail",
                   "run_tools --no_progress[0]--> halt_guardrail")
    c = cassette_from_counterexample(p, Counterexample([opened, calls, warn, opened, calls, halt]), "halt_message")
    assert c.doc == (
        "Counterexample for property 'halt_message' of policy 'hermes_pre_30813': Notes: repeated_exact_failure: 1 tool"
        " batch(es) of 'tool_a' are played before step 3 so that the detector fires there; no_progress: 5 tool batch(es)"
        " of 'tool_a' are played before step 6 so that the detector fires there")


def test_a_closing_step_keeps_the_attributes_its_guard_reads() -> None:
    """Closed from the stream, the shortest way to a halt is a text reply of at least five
    characters, which the guard sends to 'done': the closing step is taken with those attributes."""
    guarded = stream(text="[{when: {attr: chars, ge: 5}, to: done}, fail]", empty="ask", length="ask", thinking_only="ask",
                     stalled="ask", broken="ask")
    p = policy(CALL, guarded, TOOLS, HALTS)
    c = cassette_from_counterexample(p, Counterexample([OPENED]), "no_backstop_only_loops")
    assert [(s.state, s.event, s.target, s.transition) for s in c.trace] == [
        ("ask", "opened", "read", "ask --opened[0]--> read"), ("read", "text", "done", "read --text[0]--> done")]
