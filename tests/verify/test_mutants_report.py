"""The exact text and JSON of ``loopspec check`` (loopspec/verify/report.py), written against the
survivors of its mutation run: the whole report of real policies is compared line by line and dict
by dict, so a renamed key, a changed word or a lost branch of the renderer shows as a difference.
The cases no policy in the repository reaches (more than eight findings, a path with no replayable
run, upper bounds that are not exact) are rendered from a real result with those parts replaced."""

from __future__ import annotations

import dataclasses

import pytest

from loopspec import load_policy
from loopspec.verify import CexStep, CheckResult, Counterexample, Figure, PropertyResult, check_policy
from loopspec.verify.report import FAIL, PASS

from _paths import DEFAULT_POLICY, MACHINES, ROOT
from test_check import CALL, HALTS, NUDGE_LOOP, TOOLS, policy, stream

RETRY = ROOT / "docs" / "examples" / "retry.yaml"

PASSING = [
    "  PASS  halts                   every path halts (all 85 reachable configurations enumerated)",
    "  PASS  halt_message            all 4 reachable halts deliver a non-empty message",
    "  PASS  no_partial_tool_exec    no truncated or partial tool call is routed to tool execution",
    "  PASS  tools_stay_disabled     once tools are disabled in a turn they stay disabled and no tool batch runs",
    "  PASS  stub_not_silent         a mid-tool-call stub is not a silent end of the turn while its continuation budget lasts",
    "  PASS  history_valid           every tool call is run, refused or dropped on purpose; the history stays valid",
    "  PASS  events_handled          every event of every reachable state has an enabled transition",
]
BACKSTOP_REASON = (
    "1 loop edge(s) are bounded only through a global backstop; give them a per-turn counter that"
    " nothing resets, or declare bounded_by"
)
RETRY_CEX = [
    "          counterexample:",
    "              1. ask: opened -> read",
    "              2. read: tool_calls -> tools",
    "              3. tools: ok -> ask",
    "              4. ask: opened -> read",
    "              5. read: tool_calls -> tools",
    "              6. tools: ok -> ask",
]
RETRY_TAIL = [
    "worst case per turn: model calls 6, tool batches 3",
    "  by outcome (model calls/tool batches; + = upper bound): backstop 6/3, completed 6/3, provider_error 6/3, rate_limited 6/3",
    "worst-case wall time per turn: unbounded (set settings.turn_deadline)",
    "  the engine's own waits <= 1200 s: request open 720 s, stall detection 360 s, backoff 120 s",
    "  only turn_deadline bounds a stream that keeps sending content (each chunk restarts the stall timer)",
    "  only turn_deadline bounds tool runs (no tool_timeout or tool_batch_timeout is set)",
    "  only turn_deadline bounds a human's approval of a tool call",
    "loop bounds (each retry/continuation edge, by the counter that bounds it):",
    "  retries              at most 2 per turn  (rate_limit)",
]


@pytest.fixture(scope="module")
def strict() -> CheckResult:
    return check_policy(load_policy(str(RETRY)), strict=True)


@pytest.fixture(scope="module")
def lenient() -> CheckResult:
    return check_policy(load_policy(str(RETRY)))


def explored_line(r: CheckResult) -> str:
    x = r.exploration
    return (
        f"explored {r.explored} configurations ({x['abstract_nodes']} abstract, {x['concrete_configs']} concrete;"
        f" {x['model_steps']} model steps) in {r.seconds:.3f} s by counter elimination + full enumeration"
    )


def backstop_block(status: str) -> list[str]:
    return [
        f"  {status}  no_backstop_only_loops  {BACKSTOP_REASON}",
        "          - tools --ok[0]--> ask: bounded only by the model_calls backstop",
        *RETRY_CEX,
    ]


# --------------------------------------------------------------------------- the text report


def test_strict_text_report_of_a_backstop_only_loop_is_exact(strict: CheckResult) -> None:
    assert strict.format_text().splitlines() == [
        f"{RETRY}: FAILED (strict)  [retry]",
        *PASSING,
        *backstop_block("FAIL"),
        *RETRY_TAIL,
        "loops bounded only by a backstop (error under --strict):",
        "  - tools --ok[0]--> ask: bounded only by the model_calls backstop",
        explored_line(strict),
    ]


def test_lenient_text_report_warns_of_the_same_loop(lenient: CheckResult) -> None:
    assert lenient.format_text().splitlines() == [
        f"{RETRY}: PROVEN  [retry]",
        *PASSING,
        *backstop_block("WARN"),
        *RETRY_TAIL,
        "loops bounded only by a backstop (warning; --strict fails):",
        "  - tools --ok[0]--> ask: bounded only by the model_calls backstop",
        explored_line(lenient),
    ]


def test_exploration_figures_missing_from_a_result_read_as_zero(strict: CheckResult) -> None:
    r = dataclasses.replace(strict, explored=0, exploration={}, seconds=0.0, method="hand")
    last = r.format_text().splitlines()[-1]
    assert last == "explored 0 configurations (0 abstract, 0 concrete; 0 model steps) in 0.000 s by hand"


@pytest.mark.parametrize(
    ("count", "tail"),
    [(8, []), (9, ["          ... and 1 more"]), (10, ["          ... and 2 more"])],
)
def test_findings_show_the_first_eight_and_count_the_rest(strict: CheckResult, count: int, tail: list[str]) -> None:
    findings = [f"finding {i}" for i in range(count)]
    prop = PropertyResult("halts", FAIL, "why", findings=findings)
    r = dataclasses.replace(strict, properties={"halts": prop})
    lines = r.format_text().splitlines()
    end = lines.index(RETRY_TAIL[0])
    assert lines[1:end] == ["  FAIL  halts  why", *(f"          - finding {i}" for i in range(8)), *tail]


def step(state: str, event: str, to: str, **attrs: object) -> CexStep:
    return CexStep(state, event, dict(attrs), to, f"{state} --{event}[0]--> {to}")


def test_a_path_with_no_replayable_run_says_why_and_a_passing_property_hides_its_run(strict: CheckResult) -> None:
    steps = [step("ask", "opened", "read"), step("read", "text", "done")]
    props = {
        "halts": PropertyResult("halts", PASS, "fine", counterexample=Counterexample(steps)),
        "halt_message": PropertyResult("halt_message", FAIL, "noted", counterexample=Counterexample(steps, "search limit", False)),
        "history_valid": PropertyResult("history_valid", FAIL, "bare", counterexample=Counterexample(steps, "", False)),
        "events_handled": PropertyResult("events_handled", FAIL, "no run"),
    }
    r = dataclasses.replace(strict, properties=props)
    lines = r.format_text().splitlines()
    end = lines.index(RETRY_TAIL[0])
    path = ["              1. ask: opened -> read", "              2. read: text -> done"]
    assert lines[1:end] == [
        "  PASS  halts           fine",
        "  FAIL  halt_message    noted",
        "          path (no replayable run: no cassette is written) (search limit):",
        *path,
        "  FAIL  history_valid   bare",
        "          path (no replayable run: no cassette is written):",
        *path,
        "  FAIL  events_handled  no run",
    ]


def test_a_step_shows_its_telling_attributes_only(strict: CheckResult) -> None:
    """Empty, zero and false values are left out, except the two flags whose false is the news."""
    s = step("read", "length", "cut", text="", tools=[], count=0, ratio=0.0, late=False, chars=1, whole=True,
             has_tool_calls=False, mid_tool_call=False, reason="max_tokens")
    cex = Counterexample([s])
    r = dataclasses.replace(strict, properties={"halts": PropertyResult("halts", FAIL, "why", counterexample=cex)})
    lines = r.format_text().splitlines()
    assert lines[3] == (
        "              1. read: length(chars=1, whole=True, has_tool_calls=False, mid_tool_call=False,"
        " reason='max_tokens') -> cut"
    )


def test_a_lasso_marks_where_its_loop_starts() -> None:
    r = check_policy(policy(CALL, stream(empty="nudge"), TOOLS, NUDGE_LOOP, HALTS))
    lines = r.format_text().splitlines()
    start = lines.index("          counterexample:")
    assert lines[start + 1 : start + 5] == [
        "              1. ask: opened -> read",
        "              2. read: empty -> nudge",
        "              3. nudge: done -> again  <- loop",
        "              4. again: done -> nudge",
    ]


def test_upper_bounds_that_no_run_reached_are_marked(strict: CheckResult) -> None:
    upper = {"model_calls": Figure(5, False, 4), "tool_batches": Figure(3, True, 3)}
    exact = {"model_calls": Figure(6, True, 6), "tool_batches": Figure(3, True, 3)}
    r = dataclasses.replace(strict, worst_case=upper, by_outcome={"completed": upper, "backstop": exact})
    lines = r.format_text().splitlines()
    start = lines.index("worst case per turn: model calls <= 5 (a run with 4 found), tool batches 3")
    assert lines[start + 1] == "  by outcome (model calls/tool batches; + = upper bound): completed 5+/3, backstop 6/3"


def test_loop_bounds_per_turn_and_per_entry() -> None:
    lines = check_policy(load_policy(str(DEFAULT_POLICY)), strict=True).format_text().splitlines()
    start = lines.index("loop bounds (each retry/continuation edge, by the counter that bounds it):")
    assert lines[start + 1 : start + 15] == [
        "  continuations        at most 3 per turn  (length)",
        "  stalls               at most 2 per turn  (mid_text, mid_tool_call)",
        "  rate_limit_retries   at most 2 per turn  (rate_limit)",
        "  transient_retries    at most 3 per turn  (timeout, transient)",
        "  stream_retries       at most 2 per turn  (broken)",
        "  compactions          at most 2 per turn  (broken, context_overflow)",
        "  effort_heals         at most 1 per turn  (effort_unsupported)",
        "  signature_heals      at most 1 per turn  (thinking_signature_invalid)",
        "  bad_call_streak      at most 2 per entry into its loop  (malformed_args, unknown_tool)",
        "  bad_calls_total      at most 6 per turn  (malformed_args, unknown_tool)",
        "  empty_streak         at most 2 per entry into its loop  (empty, thinking_only)",
        "  empty_total          at most 6 per turn  (empty, thinking_only)",
        "  tool_timeouts        at most 2 per turn  (timeout)",
        "declared backstop loops: read_stream --tool_calls[2]--> run_tools (bounded_by tool_batches)",
    ]


def test_two_declared_loops_share_one_line() -> None:
    r = check_policy(load_policy(str(MACHINES / "cogtrix_pre_1370.yaml")), strict=True)
    line = (
        "declared backstop loops: read_stream --tool_calls[0]--> run_tools (bounded_by tool_batches);"
        " read_stream --length[0]--> run_tools (bounded_by tool_batches)"
    )
    assert line in r.format_text().splitlines()


def test_unreachable_states_are_listed_on_one_line() -> None:
    orphans = "  lost: {kind: halt, outcome: completed, message: a}\n  gone: {kind: halt, outcome: completed, message: b}\n"
    r = check_policy(policy(CALL, stream(), TOOLS, HALTS, orphans))
    assert r.structure.unreachable == ["lost", "gone"]
    assert "unreachable states: lost, gone" in r.format_text().splitlines()


# --------------------------------------------------------------------------- the JSON report


def test_strict_json_report_is_exact(strict: CheckResult) -> None:
    data = dataclasses.replace(strict, seconds=0.123456).to_json()
    opened = {"state": "ask", "event": "opened", "attrs": {}, "to": "read", "transition": "ask --opened[0]--> read"}
    calls = {
        "state": "read",
        "event": "tool_calls",
        "attrs": {"tools": [], "count": 0, "chars": 0},
        "to": "tools",
        "transition": "read --tool_calls[0]--> tools",
    }
    ok = {"state": "tools", "event": "ok", "attrs": {"tools": []}, "to": "ask", "transition": "tools --ok[0]--> ask"}
    passing = {line.split()[1]: line.split(None, 2)[2] for line in PASSING}
    exact = {"model_calls": True, "tool_batches": True}
    outcome = {"model_calls": 6, "tool_batches": 3, "exact": exact}
    assert data == {
        "file": str(RETRY),
        "policy": "retry",
        "strict": True,
        "proven": False,
        "halts": True,
        "exit_code": 1,
        "properties": {
            **{n: {"status": "pass", "passed": True, "reason": why} for n, why in passing.items()},
            "no_backstop_only_loops": {
                "status": "fail",
                "passed": False,
                "reason": BACKSTOP_REASON,
                "findings": ["tools --ok[0]--> ask: bounded only by the model_calls backstop"],
                "counterexample": {
                    "steps": [opened, calls, ok, opened, calls, ok],
                    "end": "ask",
                    "concrete": True,
                    "fires": {"transition": "tools --ok[0]--> ask", "at_most": 1},
                    "note": "'tools --ok[0]--> ask' repeats with nothing but the model_calls backstop to stop it:"
                    " it has no counter of its own",
                },
            },
        },
        "worst_case": {
            "model_calls": 6,
            "tool_batches": 3,
            "exact": exact,
            "lower": {"model_calls": 6, "tool_batches": 3},
            "by_outcome": {o: outcome for o in ("backstop", "completed", "provider_error", "rate_limited")},
            "wall_time": {
                "seconds": None,
                "bounded": False,
                "waits": 1200.0,
                "parts": {"request_open": 720.0, "stall_detection": 360.0, "backoff": 120.0},
                "unbounded": [
                    "a stream that keeps sending content (each chunk restarts the stall timer)",
                    "tool runs (no tool_timeout or tool_batch_timeout is set)",
                    "a human's approval of a tool call",
                ],
                "turn_deadline": None,
            },
        },
        "backstop_only_loops": [
            {
                "edge": "tools --ok[0]--> ask",
                "state": "tools",
                "event": "ok",
                "order": 0,
                "backstop": "model_calls",
                "counter": "model_calls",
                "declared": False,
                "reason": "bounded only by the model_calls backstop",
            }
        ],
        "declared_backstop_loops": [],
        "structure": {"unreachable_states": [], "no_path_to_halt": [], "unhandled_events": [], "shadowed_transitions": []},
        "loops": [
            {
                "counter": "retries",
                "backstop": False,
                "level": 0,
                "edges": ["ask --rate_limit[0]--> ask"],
                "fires_at_most": 2,
                "per_turn": True,
                "through_backstops": [],
            },
            {
                "counter": "model_calls",
                "backstop": True,
                "level": 1,
                "edges": ["tools --ok[0]--> ask"],
                "fires_at_most": 6,
                "per_turn": True,
                "through_backstops": [],
            },
        ],
        "explored": strict.explored,
        "exploration": strict.exploration,
        "seconds": 0.1235,
        "method": "counter elimination + full enumeration",
    }


def test_a_figure_in_json_names_its_value_exactness_and_lower_bound() -> None:
    assert Figure(5, False, 4).to_json() == {"value": 5, "exact": False, "lower": 4}
    assert Figure(5, False, 4).text() == "<= 5 (a run with 4 found)"
    assert Figure(3, True, 3).text() == "3"


def test_a_property_without_findings_or_run_has_three_keys() -> None:
    assert PropertyResult("halts", "warn", "w").to_json() == {"status": "warn", "passed": True, "reason": "w"}



def test_a_step_that_measured_budget_levels_names_them(strict: CheckResult) -> None:
    """A counterexample step entering a call at budget levels the adversary chose says which."""
    s = dataclasses.replace(step("tools", "ok", "ask"), measured=("input_tokens_warned", "cost_reached"))
    r = dataclasses.replace(strict, properties={"halts": PropertyResult("halts", FAIL, "why", counterexample=Counterexample([s]))})
    assert "              1. tools: ok -> ask  [measured input_tokens_warned, cost_reached]" in r.format_text().splitlines()


def test_the_budgets_have_a_heading_of_their_own() -> None:
    """Each budget's line (what it bounds) comes under ``budgets:``."""
    from loopspec import load_policy_text

    from test_mutants_budget_usage import POLICY as BUDGETS

    lines = check_policy(load_policy_text(BUDGETS, "budgets.yaml")).format_text().splitlines()
    at = lines.index("budgets:")
    assert lines[at + 1].startswith("  input_tokens (max 100") and lines[at + 2].startswith("  cost (max 2.5")


def test_only_failed_properties_give_counterexamples_to_write(lenient: CheckResult, strict: CheckResult) -> None:
    """A warning's run (a backstop-only loop, not --strict) is shown but is no failure: no cassette
    is written for it. Under --strict the same run is a failure's."""
    assert lenient.properties["no_backstop_only_loops"].counterexample is not None
    assert lenient.counterexamples() == {}
    assert set(strict.counterexamples()) == {"no_backstop_only_loops"}


def test_a_policy_that_may_not_halt_has_no_wall_time() -> None:
    """Without a proof of halting there is no worst-case wall time: JSON says null."""
    r = check_policy(policy(CALL, stream(empty="nudge"), TOOLS, NUDGE_LOOP, HALTS))
    assert not r.halts and r.wall_time is None
    assert r.to_json()["worst_case"]["wall_time"] is None


def test_a_loop_bounded_in_several_abstract_copies_is_one_entry_with_the_largest_bound() -> None:
    """The elimination bounds one loop once per abstract copy of it (per backstop phase); the report
    lists each (counter, backstops it goes through) once, with the largest bound and the lowest
    level among its copies, and every edge of all of them."""
    from loopspec import load_policy_text

    from test_mutants_termination import _text

    # the retries, reset by each tool batch, whose own counter (``empties``) bounds the tool loop:
    # a copy of the retry loop is bounded inside the tool loop (level 1, three entries), another
    # where the tool loop cannot go round (level 0, one entry)
    nested = _text("[{when: {counter: tries, lt: 2}, do: [{increment: tries}], to: ask}, done]",
                   "{do: [{reset: tries}, {increment: empties}], to: tools}")
    r = check_policy(load_policy_text(nested, "nested.yaml"))
    assert {(el.level, el.fires) for el in r.eliminations if el.counter == "tries"} == {(0, 2), (1, 6)}
    loops = r.to_json()["loops"]
    keys = [(x["counter"], tuple(x["through_backstops"])) for x in loops]
    assert len(keys) == len(set(keys)) and len(r.eliminations) > len(loops)
    for x in loops:
        copies = [el for el in r.eliminations if (el.counter, el.through) == (x["counter"], tuple(x["through_backstops"]))]
        assert x["fires_at_most"] == max(el.fires for el in copies)
        assert x["level"] == min(el.level for el in copies)
        assert x["edges"] == sorted({e.label for el in copies for e in el.edges})
