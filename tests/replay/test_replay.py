"""Replay: the incident corpus under both transports, both directions of every incident, the CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from loopspec import load_policy
from loopspec.cli import main as cli_main
from loopspec.replay.cassette import RecordedStep, find_cassettes, load_cassette
from loopspec.replay.harness import replay

from _paths import DEFAULT_POLICY, FIXTURES, MACHINES

INCIDENTS = FIXTURES / "incidents"
DEFAULT = load_policy(str(DEFAULT_POLICY))
CASSETTES = {load_cassette(p).name: load_cassette(p) for p in find_cassettes([str(INCIDENTS)])}


def policy(name: str):  # type: ignore[no-untyped-def]
    return load_policy(str(MACHINES / f"{name}.yaml"))


def test_corpus_has_one_cassette_per_incident_and_pre_fix_policy() -> None:
    assert set(CASSETTES) >= {
        "hermes-31998-stall-mid-tool-call",
        "hermes-30770-guardrail-silent-halt",
        "netclaw-1346-thinking-only-interleaved",
        "netclaw-1358-tools-reenabled",
        "ml-intern-length-with-tool-calls",
        "ml-intern-malformed-arguments",
        "ml-intern-overflow-compaction-loop",
    }


@pytest.mark.parametrize("name", sorted(CASSETTES))
def test_transports_agree_and_default_passes(name: str, loop: asyncio.AbstractEventLoop) -> None:
    c = CASSETTES[name]
    inproc = loop.run_until_complete(replay(c, DEFAULT, transport="inproc"))
    http = loop.run_until_complete(replay(c, DEFAULT, transport="http"))
    assert inproc.verdict == "pass", inproc.explain()
    assert http.verdict == "pass", http.explain()
    for r in (inproc, http):
        assert r.unconsumed == 0 or not c.expect.all_played
    key = lambda r: (r.outcome, r.result.usage.model_calls, r.result.usage.tool_batches, [(s.state, s.event, s.target) for s in r.result.trace])  # noqa: E731
    assert key(inproc) == key(http)


def run(name: str, machine: str):  # type: ignore[no-untyped-def]
    return asyncio.run(replay(CASSETTES[name], policy(machine)))


def test_hermes_31998_pre_fix_ends_the_turn_as_completed_without_recovery() -> None:
    r = run("hermes-31998-stall-mid-tool-call", "hermes_pre_32012")
    assert r.verdict == "fail"
    assert r.outcome == "completed" and r.result.usage.model_calls == 1 and r.result.usage.tool_batches == 0
    assert [s.event for s in r.result.trace] == ["opened", "stalled", "mid_tool_call"]
    assert "2 recorded model responses were never played (the policy stopped early)" in r.failures


def test_hermes_30770_pre_fix_halts_silently() -> None:
    r = run("hermes-30770-guardrail-silent-halt", "hermes_pre_30813")
    assert r.outcome == "guardrail" and r.result.message == ""
    assert any("halt_message fails" in f for f in r.failures)


def test_netclaw_1346_pre_fix_spins_to_the_backstop() -> None:
    r = run("netclaw-1346-thinking-only-interleaved", "netclaw_pre_1358")
    assert r.outcome == "backstop" and r.result.usage.tool_batches == 60
    assert r.result.usage.model_calls == 184
    good = asyncio.run(replay(CASSETTES["netclaw-1346-thinking-only-interleaved"], DEFAULT))
    assert good.verdict == "pass" and good.result.usage.model_calls == 12


def test_netclaw_1346_under_default_is_ended_by_the_per_turn_ceiling_not_the_streak() -> None:
    """Two thinking-only replies between tool batches: the streak never passes 2 of its cap, and
    the 7th such reply in the turn meets empty_total's cap of 6, which escalates to no tools."""
    c = CASSETTES["netclaw-1346-thinking-only-interleaved"]
    r = asyncio.run(replay(c, DEFAULT))
    assert r.verdict == "pass", r.explain()
    thinking = [s for s in r.result.trace if s.event == "thinking_only"]
    assert [s.counters["empty_total"] for s in thinking] == [1, 2, 3, 4, 5, 6, 6, 6]
    assert max(s.counters["empty_streak"] for s in thinking) == 2
    escalation = next(s for s in r.result.trace if s.target == "escalate_no_tools")
    assert escalation.counters["empty_total"] == DEFAULT.counters[DEFAULT.counter_names.index("empty_total")].max
    # the batch just before reset the streak, so one more reply could not pass its cap of 2
    assert r.result.trace[escalation.index - 3].event == "tool_calls"
    assert escalation.counters["empty_streak"] == 0, "the ceiling fired, not the streak"
    assert [bool(req.tools) for req in r.result.requests] == [True] * 11 + [False]


def test_netclaw_1346_with_the_ceiling_raised_tenfold_fails_its_replay() -> None:
    """The cassette depends on the ceiling: raise empty_total's cap from 6 to 60 and the turn no
    longer stops at call 12."""
    from loopspec import load_policy_text

    raised = DEFAULT_POLICY.read_text().replace("empty_total: {max: 6,", "empty_total: {max: 60,")
    assert raised != DEFAULT_POLICY.read_text()
    r = asyncio.run(replay(CASSETTES["netclaw-1346-thinking-only-interleaved"], load_policy_text(raised)))
    assert r.verdict == "fail"
    assert r.result.usage.model_calls > 12 and r.divergence is not None


def test_netclaw_1358_merged_fix_reenables_tools() -> None:
    r = run("netclaw-1358-tools-reenabled", "netclaw_post_1358")
    assert any("tools_stay_disabled fails: tools were disabled and" in f for f in r.failures)
    enabled_again = [req for req in r.result.requests[61:] if req.tools]
    assert enabled_again, "a request after the tool budget carried tools again"


def test_replay_under_an_edited_policy_names_the_step_and_guard_that_changed() -> None:
    c = CASSETTES["hermes-31998-stall-mid-tool-call"]
    recorded = asyncio.run(replay(c, DEFAULT)).result
    with_trace = type(c)(**{**vars(c), "trace": tuple(RecordedStep(s.state, s.event, s.target, s.transition) for s in recorded.trace)})
    assert asyncio.run(replay(with_trace, DEFAULT)).divergence is None
    edited = DEFAULT_POLICY.read_text().replace("stalls: {max: 2,", "stalls: {max: 0,")
    from loopspec import load_policy_text
    from loopspec.language.diagnostics import SpecError

    with pytest.raises(SpecError) as ei:  # max 0 is invalid: caps are at least 1
        load_policy_text(edited)
    assert [(d.code, d.path) for d in ei.value.diagnostics][0] == ("LS204", "counters.stalls.max")
    pre = policy("hermes_pre_32012")
    d = asyncio.run(replay(with_trace, pre)).divergence
    assert d is not None and d.step == 2
    assert "make_stub" in d.reason and "halt_stalled_tool_call" in d.reason
    assert "no guard" in d.reason or "guard:" in d.reason


def test_more_calls_than_recorded_is_a_diverged_verdict_not_an_invention() -> None:
    c = CASSETTES["hermes-31998-stall-mid-tool-call"]
    short = type(c)(**{**vars(c), "interactions": c.interactions[:2]})
    r = asyncio.run(replay(short, DEFAULT))
    assert r.verdict == "diverged" and r.diverged_at == 2
    assert r.failures[0].startswith("diverged at model call 3: the cassette recorded 2 model responses")
    assert "after run_tools --ok--> call_model" in r.failures[0]
    assert "It asked with tools" in r.failures[0]


def test_cli_replay_json_fields_and_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli_main(["replay", str(INCIDENTS), "--machine", str(DEFAULT_POLICY), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and len(data["cassettes"]) == len(CASSETTES)
    for rec in data["cassettes"]:
        assert {"cassette", "outcome", "model_calls", "tool_batches", "final_response", "verdict"} <= set(rec)
    assert cli_main(["replay", str(INCIDENTS), "--machine", str(MACHINES / "hermes_pre_32012.yaml")]) == 1
    out = capsys.readouterr().out
    assert "FAIL     hermes-31998-stall-mid-tool-call" in out
    assert cli_main(["replay", "/nonexistent.cassette.yaml", "--machine", str(DEFAULT_POLICY)]) == 1
    assert "cannot read file" in capsys.readouterr().err
    assert cli_main(["replay", str(tmp_path), "--machine", str(DEFAULT_POLICY)]) == 2  # nothing to replay


def test_cli_diff_reports_outcome_counts_and_first_difference(capsys: pytest.CaptureFixture[str]) -> None:
    old, new = str(MACHINES / "netclaw_pre_1358.yaml"), str(DEFAULT_POLICY)
    assert cli_main(["diff", old, new, "--corpus", str(INCIDENTS), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    row = next(r for r in data["cassettes"] if r["name"] == "netclaw-1346-thinking-only-interleaved")
    assert row["changed"] and row["old"]["outcome"] == "backstop" and row["new"]["outcome"] == "empty"
    assert row["first_difference"]["old"] == ["read_stream", "thinking_only", "call_model"]
    assert row["first_difference"]["new"] == ["read_stream", "thinking_only", "escalate_no_tools"]


def test_bad_cassette_gets_file_line_col(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.cassette.yaml"
    bad.write_text("loopspec_cassette: 1\nmessages:\n  - {role: user, content: hi}\ninteractons: []\n")
    assert cli_main(["replay", str(bad), "--machine", str(DEFAULT_POLICY)]) == 1
    err = capsys.readouterr().err
    assert "bad.cassette.yaml:4:1: error: unknown key 'interactons'" in err and "did you mean 'interactions'" in err


def test_store_trace_keeps_the_file_and_replaces_the_old_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    src = INCIDENTS / "hermes-31998-stall-mid-tool-call.cassette.yaml"
    (tmp_path / "incidents").mkdir()
    (tmp_path / "streams").symlink_to(FIXTURES / "streams")
    dst = tmp_path / "incidents" / src.name
    shutil.copy(src, dst)
    pre = str(MACHINES / "hermes_pre_32012.yaml")
    cli_main(["replay", str(dst), "--machine", pre, "--store-trace"])
    assert cli_main(["replay", str(dst), "--machine", str(DEFAULT_POLICY), "--store-trace"]) == 0
    text = dst.read_text()
    assert text.count("\ntrace:") == 1
    assert "# inside the arguments" in text, "comments survive"
    capsys.readouterr()
    cli_main(["replay", str(dst), "--machine", pre])
    out = capsys.readouterr().out
    assert "decisions part from the recorded trace at step 2: in make_stub on mid_tool_call" in out


def test_fork_replays_k_recorded_calls_then_goes_live(capsys: pytest.CaptureFixture[str]) -> None:
    """fork --at 1: the recorded stall, then live calls (a loopback server stands in for the model)."""
    from loopspec.replay.server import LoopbackServer

    c = CASSETTES["hermes-31998-stall-mid-tool-call"]
    with LoopbackServer(list(c.interactions[1:])) as server:
        code = cli_main(["fork", c.file, "--at", "1", "--machine", str(DEFAULT_POLICY), "--model", "openai/x",
                         "--api-base", server.api_base, "--json"])
        seen = len(server.requests)
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["outcome"] == "completed"
    assert seen == 2, "the first call came from the cassette, the next two from the live side"
    assert [s["event"] for s in out["trace"]][:3] == ["opened", "stalled", "mid_tool_call"]


def test_rerun_runs_the_opening_messages_live(capsys: pytest.CaptureFixture[str]) -> None:
    from loopspec.replay.server import LoopbackServer

    c = CASSETTES["hermes-31998-stall-mid-tool-call"]
    with LoopbackServer([c.interactions[2]]) as server:
        code = cli_main(["rerun", c.file, "--machine", str(DEFAULT_POLICY), "--model", "openai/x", "--api-base", server.api_base])
        body = server.requests[0].body
    assert code == 0 and "Mexico City" in capsys.readouterr().out
    assert body["messages"][0]["content"] == c.messages[0]["content"]
