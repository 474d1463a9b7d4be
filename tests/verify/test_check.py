"""`loopspec check`: the default policy is proven with integer bounds; every pre-fix policy fails
with the finding of its incident; small inline policies pin each property and structure check."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from loopspec import load_policy, load_policy_text
from loopspec.cli import main
from loopspec.verify import check_policy
from loopspec.verify.abstraction import build_analysis, event_cases

from _paths import DEFAULT_POLICY, MACHINES

PRE_FIX = {
    "hermes_pre_32012": "stub_not_silent",
    "hermes_pre_30813": "halt_message",
    "netclaw_pre_1358": "no_backstop_only_loops",
    "netclaw_post_1358": "tools_stay_disabled",
    "nat_pre_1705": "halt_message",
    "ogx_pre_6231": "halt_message",
    "cogtrix_pre_1370": "no_partial_tool_exec",
    "zoo_code_pre_1112": "no_backstop_only_loops",
    "hermes_webui_asked_4980": "no_backstop_only_loops",
    "ml_intern_pre_213": "no_backstop_only_loops",
    "ml_intern_pre_8e63f40": "halt_message",
}


def machine(name: str):  # type: ignore[no-untyped-def]
    path = MACHINES / f"{name}.yaml"
    assert path.is_file(), f"{path} is missing: every pre-fix policy this suite names must exist"
    return load_policy(str(path))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


# --------------------------------------------------------------------------- the default policy


def test_default_strict_is_proven_with_integer_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    # the 2 s figure is measured side by side in bench/check_speed.py, not timed here
    code, out = run_cli(capsys, "check", "--strict", str(DEFAULT_POLICY), "--json")
    data = json.loads(out)
    assert code == 0
    assert data["proven"] is True and data["exit_code"] == 0
    wc = data["worst_case"]
    assert type(wc["model_calls"]) is int and type(wc["tool_batches"]) is int
    # the backstops are reachable: 90 model calls, 60 tool batches, both shown by a concrete run
    assert (wc["model_calls"], wc["tool_batches"]) == (90, 60)
    assert wc["exact"] == {"model_calls": True, "tool_batches": True}
    assert data["backstop_only_loops"] == []
    assert [d["edge"] for d in data["declared_backstop_loops"]] == ["read_stream --tool_calls[2]--> run_tools"]
    assert isinstance(data["explored"], int) and data["explored"] > 100
    assert set(data["properties"]) >= {
        "halts",
        "halt_message",
        "no_partial_tool_exec",
        "tools_stay_disabled",
        "stub_not_silent",
        "history_valid",
    }
    assert all(p["status"] == "pass" for p in data["properties"].values()), data["properties"]
    # a turn that ends 'completed' never gets the wrap-up call: at most 89 model calls
    assert wc["by_outcome"]["completed"]["model_calls"] == 89
    assert wc["by_outcome"]["completed"]["exact"]["model_calls"] is True


def test_default_text_report_names_the_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(capsys, "check", str(DEFAULT_POLICY))
    assert code == 0
    assert "PROVEN" in out
    assert "model calls 90" in out and "tool batches 60" in out
    assert "explored" in out


def test_default_eliminates_empty_retries_by_the_per_turn_counter() -> None:
    r = check_policy(load_policy(str(DEFAULT_POLICY)), strict=True)
    by_counter = {el.counter: el for el in r.eliminations}
    el = by_counter["empty_total"]
    assert el.absolute and el.fires == 6 and el.through == ()
    assert any("read_stream --empty[2]--> call_model" == e.label for e in el.edges)
    # the tool loop is the only backstop elimination, and it is declared
    assert by_counter["tool_batches"].backstop
    assert r.backstop_only_loops == []


# --------------------------------------------------------------------------- the pre-fix policies


@pytest.mark.parametrize("name", sorted(PRE_FIX))
def test_every_pre_fix_policy_fails_strict_with_its_incident(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = MACHINES / f"{name}.yaml"
    assert path.is_file(), f"{path} is missing: every pre-fix policy this suite names must exist"
    code, out = run_cli(capsys, "check", "--strict", str(path), "--json")
    data = json.loads(out)
    assert code == 1
    assert data["properties"][PRE_FIX[name]]["status"] == "fail"
    assert data["properties"]["halts"]["status"] == "pass"  # they halt; they are wrong in other ways
    assert type(data["worst_case"]["model_calls"]) is int


def test_hermes_32012_mid_tool_call_stub_is_a_silent_completed_halt() -> None:
    r = check_policy(machine("hermes_pre_32012"), strict=True)
    assert r.failed == ["stub_not_silent"]
    p = r.properties["stub_not_silent"]
    assert "halt_stalled_tool_call" in p.reason and "completed" in p.reason
    cex = p.counterexample
    assert cex is not None and cex.concrete
    assert cex.steps[-1].as_tuple()[:2] == ("make_stub", "mid_tool_call")
    assert cex.end == "halt_stalled_tool_call"
    assert len(cex.steps) == 3  # opened, stalled, mid_tool_call: the shortest path


def test_hermes_30813_guardrail_halt_has_an_empty_message() -> None:
    r = check_policy(machine("hermes_pre_30813"), strict=True)
    assert r.failed == ["halt_message"]
    p = r.properties["halt_message"]
    assert "halt_guardrail" in p.reason and "empty" in p.reason
    cex = p.counterexample
    assert cex is not None and cex.concrete and cex.end == "halt_guardrail"
    assert [s.event for s in cex.steps] == ["opened", "tool_calls", "repeated_exact_failure"]
    assert cex.steps[-1].attrs["verdict"] == "halt"


def test_netclaw_pre_1358_retry_edge_is_bounded_only_by_the_tool_batch_backstop(capsys: pytest.CaptureFixture[str]) -> None:
    policy = machine("netclaw_pre_1358")
    lenient = check_policy(policy)
    assert lenient.exit_code == 0  # a warning without --strict
    assert lenient.properties["no_backstop_only_loops"].status == "warn"
    r = check_policy(policy, strict=True)
    assert r.exit_code == 1 and r.failed == ["no_backstop_only_loops"]
    flagged = {(b.transition_source, b.event): b for b in r.backstop_only_loops}
    b = flagged[("read_stream", "thinking_only")]
    assert b.backstop == "tool_batches" and b.counter == "post_tool_empty" and not b.declared
    assert ("read_stream", "empty") in flagged
    # the retries before any tool ran are not in the loop (tools_ran is never cleared)
    assert all(x.order != 0 for x in r.backstop_only_loops)
    cex = r.properties["no_backstop_only_loops"].counterexample
    assert cex is not None and cex.concrete
    flagged_label = next(x.edge for x in r.backstop_only_loops if x.event == cex.steps[-1].event)
    fired = sum(1 for s in cex.steps if s.transition == flagged_label)
    assert fired == 4  # post_tool_empty caps it at 3; a tool batch in between reset it
    assert any(s.event == "tool_calls" for s in cex.steps[1:-1])
    # JSON shape
    code, out = run_cli(capsys, "check", "--strict", str(MACHINES / "netclaw_pre_1358.yaml"), "--json")
    data = json.loads(out)
    assert code == 1
    assert {"state": "read_stream", "event": "thinking_only", "backstop": "tool_batches"}.items() <= next(
        x for x in data["backstop_only_loops"] if x["event"] == "thinking_only"
    ).items()


def test_netclaw_post_1358_enables_tools_after_they_were_disabled() -> None:
    r = check_policy(machine("netclaw_post_1358"), strict=True)
    assert set(r.failed) == {"tools_stay_disabled", "no_backstop_only_loops"}
    p = r.properties["tools_stay_disabled"]
    assert "enables them again" in p.reason
    cex = p.counterexample
    assert cex is not None and cex.concrete
    # the run spends the whole tool budget (60 batches), then a retry re-enables tools
    assert sum(1 for s in cex.steps if s.to == "run_tools") == 60
    assert any(s.to == "tools_spent" for s in cex.steps)
    assert cex.steps[-1].state == "read_stream"


def test_counterexample_file_is_written(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    path = MACHINES / "hermes_pre_30813.yaml"
    out = tmp_path / "cex.json"
    code, _ = run_cli(capsys, "check", str(path), "--counterexample", str(out))
    assert code == 1
    data = json.loads(out.read_text())
    steps = data["counterexamples"]["halt_message"]["steps"]
    assert [(s["state"], s["event"]) for s in steps] == [
        ("call_model", "opened"),
        ("read_stream", "tool_calls"),
        ("run_tools", "repeated_exact_failure"),
    ]


# --------------------------------------------------------------------------- inline policies

HEAD = """\
loopspec: 1
initial: ask
templates:
  more: "more"
counters:
  tries: {max: 2}
backstops:
  model_calls: {max: 5, exhausted: out}
  tool_batches: {max: 3, exhausted: out}
"""

HALTS = """\
  done: {kind: halt, outcome: completed, message: "{response}"}
  out: {kind: halt, outcome: backstop, message: "stopped"}
  fail: {kind: halt, outcome: provider_error, message: "failed: {message}"}
"""

CALL = """\
  ask:
    kind: call
    on:
      opened: read
      rate_limit: fail
      transient: fail
      timeout: fail
      context_overflow: fail
      auth: fail
      bad_request: fail
      effort_unsupported: fail
      thinking_signature_invalid: fail
      cancelled: fail
"""


def stream(**over: str) -> str:
    events = {
        "text": "done",
        "tool_calls": "{to: tools, bounded_by: tool_batches}",
        "length": "fail",
        "empty": "fail",
        "thinking_only": "fail",
        "malformed_args": "{do: [drop_tool_calls], to: fail}",
        "unknown_tool": "{do: [drop_tool_calls], to: fail}",
        "stalled": "fail",
        "broken": "fail",
        "cancelled": "fail",
    }
    events.update(over)
    body = "".join(f"      {k}: {v}\n" for k, v in events.items() if v)
    return "  read:\n    kind: stream\n    on:\n" + body


TOOLS = """\
  tools:
    kind: tool_exec
    on:
      ok: ask
      failed: ask
      repeated_exact_failure: fail
      same_tool_failure: fail
      no_progress: fail
      doom_loop: fail
      approval_required: fail
      timeout: fail
      cancelled: fail
"""


NUDGE_LOOP = """\
  nudge:
    kind: escalate
    apply: [compact]
    on: {done: again, failed: fail}
  again:
    kind: continue
    prompt: more
    on: {done: nudge}
"""
"""An escalation and a continuation that send the turn to each other forever, no model call between."""


def policy(*parts: str, head: str = HEAD):  # type: ignore[no-untyped-def]
    return load_policy_text(head + "states:\n" + "".join(parts), "inline.yaml")


def test_inline_baseline_is_proven_exactly() -> None:
    r = check_policy(policy(CALL, stream(), TOOLS, HALTS), strict=True)
    assert r.proven, {k: v.reason for k, v in r.properties.items()}
    assert r.exploration["full_enumeration"]
    # 5 calls: the tool loop runs 3 batches (4 calls), and the 4th reply may loop once more... but the
    # tool backstop sends the 4th batch to 'out': exact figures from full enumeration
    assert r.worst_case["model_calls"].value == 4 and r.worst_case["model_calls"].exact
    assert r.worst_case["tool_batches"].value == 3


def test_unbounded_loop_without_a_model_call_fails_halts_with_a_lasso() -> None:
    r = check_policy(policy(CALL, stream(empty="nudge"), TOOLS, NUDGE_LOOP, HALTS))
    assert r.exit_code == 1 and "halts" in r.failed
    cex = r.properties["halts"].counterexample
    assert cex is not None and cex.concrete and cex.loop_start is not None
    loop = cex.steps[cex.loop_start :]
    assert {s.state for s in loop} == {"nudge", "again"}
    assert cex.steps[cex.loop_start - 1].event == "empty"
    assert any("unbounded cycle" in f for f in r.properties["halts"].findings)


def test_loop_bounded_only_by_model_calls_is_flagged_under_strict() -> None:
    r = check_policy(policy(CALL, stream(empty="ask"), TOOLS, HALTS))
    assert r.exit_code == 0
    loops = {(b.transition_source, b.event, b.backstop) for b in r.backstop_only_loops}
    assert ("read", "empty", "model_calls") in loops
    strict = check_policy(policy(CALL, stream(empty="ask"), TOOLS, HALTS), strict=True)
    assert strict.exit_code == 1 and strict.failed == ["no_backstop_only_loops"]


def test_counter_bounded_retry_is_not_a_backstop_loop() -> None:
    retry = "[{do: [{increment: tries}], to: ask}, fail]"
    r = check_policy(policy(CALL, stream(empty=retry), TOOLS, HALTS), strict=True)
    assert r.proven
    assert any(el.counter == "tries" and el.absolute and el.fires == 2 for el in r.eliminations)


def test_truncated_tool_calls_must_not_reach_tool_execution() -> None:
    length = "[{when: {attr: has_tool_calls}, to: tools}, fail]"
    r = check_policy(policy(CALL, stream(length=length), TOOLS, HALTS))
    assert "no_partial_tool_exec" in r.failed
    cex = r.properties["no_partial_tool_exec"].counterexample
    assert cex is not None and cex.steps[-1].event == "length" and cex.steps[-1].attrs["has_tool_calls"] is True
    fixed = "[{when: {attr: has_tool_calls}, do: [drop_tool_calls], to: fail}, fail]"
    assert "no_partial_tool_exec" not in check_policy(policy(CALL, stream(length=fixed), TOOLS, HALTS)).failed


def test_tool_calls_that_are_never_run_break_the_history() -> None:
    r = check_policy(policy(CALL, stream(tool_calls="fail"), TOOLS, HALTS))
    assert "history_valid" in r.failed
    assert "neither run, refused nor dropped" in r.properties["history_valid"].reason
    ok = check_policy(policy(CALL, stream(tool_calls="{do: [drop_tool_calls], to: fail}"), TOOLS, HALTS))
    assert "history_valid" not in ok.failed


def test_unhandled_event_and_shadowed_transition_are_reported() -> None:
    shadow = "[{to: fail}, {when: {attr: cause, eq: overflow}, to: done}]"
    r = check_policy(policy(CALL, stream(cancelled="", broken=shadow), TOOLS, HALTS))
    assert "events_handled" in r.failed
    assert any(u.state == "read" and u.event == "cancelled" for u in r.structure.unhandled)
    dead = [d for d in r.structure.dead if d.transition.event == "broken"]
    assert len(dead) == 1 and dead[0].shadowed_by == ("read --broken[0]--> fail",)
    cex = r.properties["events_handled"].counterexample
    assert cex is not None and cex.steps[-1].event == "cancelled" and cex.end == "__policy_error__"


def test_unreachable_state_and_empty_halt_message() -> None:
    extra = """\
  lonely: {kind: halt, outcome: completed, message: ""}
  mute: {kind: halt, outcome: guardrail, message: "{message}"}
  named: {kind: halt, outcome: guardrail, message: "{tool}"}
"""
    tools = TOOLS.replace("repeated_exact_failure: fail", "repeated_exact_failure: mute")
    tools = tools.replace("same_tool_failure: fail", "same_tool_failure: named")
    r = check_policy(policy(CALL, stream(), tools, HALTS, extra))
    assert r.structure.unreachable == ["lonely"]  # empty, but unreachable: not a finding (nor is the policy error state)
    assert r.failed == ["halt_message"]
    # a guardrail event carries no message, so '{message}' renders empty; it always names its tool
    assert "'mute'" in r.properties["halt_message"].reason and "repeated_exact_failure" in r.properties["halt_message"].reason
    assert not any("'named'" in f for f in r.properties["halt_message"].findings)


def test_tools_re_enabled_after_disable() -> None:
    esc = """\
  no_tools:
    kind: escalate
    apply: [disable_tools]
    on: {done: ask, failed: fail}
"""
    empty = "[{when: {flag: tools_disabled}, do: [enable_tools, {increment: tries}], to: ask}, {to: no_tools}]"
    refuse = "[{when: {flag: tools_disabled}, do: [drop_tool_calls], to: fail}, {to: tools, bounded_by: tool_batches}]"
    r = check_policy(policy(CALL, stream(empty=empty, tool_calls=refuse), TOOLS, esc, HALTS), strict=False)
    assert "tools_stay_disabled" in r.failed
    cex = r.properties["tools_stay_disabled"].counterexample
    assert cex is not None
    assert [s.event for s in cex.steps][-3:] == ["done", "opened", "empty"]


def test_tool_batch_after_tools_were_disabled_fails_tools_stay_disabled() -> None:
    """Tools disabled by an escalation, no tools_disabled branch on tool_calls: a model that asks
    for tools anyway (it can, tools or not) gets a batch run, and check says so."""
    esc = """\
  no_tools:
    kind: escalate
    apply: [disable_tools]
    on: {done: ask, failed: fail}
"""
    r = check_policy(policy(CALL, stream(empty="no_tools"), TOOLS, esc, HALTS), strict=False)
    assert "tools_stay_disabled" in r.failed
    assert "runs them" in r.properties["tools_stay_disabled"].reason
    cex = r.properties["tools_stay_disabled"].counterexample
    assert cex is not None
    assert [s.event for s in cex.steps] == ["opened", "empty", "done", "opened", "tool_calls"]
    fixed = "[{when: {flag: tools_disabled}, do: [drop_tool_calls], to: fail}, {to: tools, bounded_by: tool_batches}]"
    ok = check_policy(policy(CALL, stream(empty="no_tools", tool_calls=fixed), TOOLS, esc, HALTS), strict=False)
    assert "tools_stay_disabled" not in ok.failed


def test_event_cases_split_by_guard_constants() -> None:
    p = policy(CALL, stream(broken="[{when: {attr: cause, eq: overflow}, to: fail}, done]"), TOOLS, HALTS)
    cases = event_cases(p, "read", "broken")
    assert sorted(c.attrs["cause"] == "overflow" for c in cases) == [False, True]
    lengths = event_cases(p, "read", "length")  # the monitor always splits has_tool_calls
    assert {c.attrs["has_tool_calls"] for c in lengths} == {False, True}
    an = build_analysis(p)
    assert "tools_disabled" in an.tracked_flags


# --------------------------------------------------------------------------- CLI behaviour


def test_invalid_file_exits_2(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("loopspec: 1\nstates: {}\n")
    assert main(["check", str(bad)]) == 2
    assert main(["check", str(tmp_path / "missing.yaml")]) == 2
    assert main(["check"]) == 2
    capsys.readouterr()


def test_validate_never_loads_the_checker() -> None:
    code = (
        "import sys\n"
        "from loopspec.cli import main\n"
        f"main(['validate', {str(DEFAULT_POLICY)!r}])\n"
        "bad = [m for m in sys.modules if m.startswith('loopspec.verify.') and m != 'loopspec.verify.cli_check']\n"
        "assert not bad, bad\n"
        "assert 'litellm' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_check_never_imports_litellm() -> None:
    code = (
        "import sys\n"
        "from loopspec.cli import main\n"
        f"rc = main(['check', '--json', {str(DEFAULT_POLICY)!r}])\n"
        "assert rc == 0\n"
        "assert 'litellm' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
