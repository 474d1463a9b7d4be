"""The incident corpus, both directions: each policy-caused incident fails under a pre-fix policy
modelled on the project's loop, is flagged by `check --strict` with its finding, and passes under
machines/default.yaml. Engine-caused incidents pass under default.yaml (their engine tests live with
the engine)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from loopspec import load_policy
from loopspec.replay.cassette import find_cassettes, load_cassette
from loopspec.replay.harness import replay
from loopspec.verify import check_policy

from _paths import DEFAULT_POLICY, FIXTURES, MACHINES

INCIDENTS = FIXTURES / "incidents"
CASSETTES = {load_cassette(p).name: load_cassette(p) for p in find_cassettes([str(INCIDENTS)])}
DEFAULT = load_policy(str(DEFAULT_POLICY))


@dataclass(frozen=True)
class Incident:
    """A policy-caused incident: its pre-fix policy, the finding `check --strict` must report, and
    how the replay under the pre-fix policy must fail (verdict and one failure it must list).
    ``also`` names findings the same loop really had besides (its header says which)."""

    machine: str
    finding: str
    verdict: str
    failure: str
    also: frozenset[str] = frozenset()


POLICY_CAUSED = {
    "nat-1705-recursion-limit-silent": Incident(
        "nat_pre_1705", "halt_message", "fail", "property halt_message fails: halt halt_recursion_limit delivered an empty message"
    ),
    "ogx-6231-unknown-tool-silent-exit": Incident(
        "ogx_pre_6231", "halt_message", "fail", "property halt_message fails: halt halt_client_call delivered an empty message"
    ),
    "cogtrix-1370-truncated-write-executed": Incident(
        "cogtrix_pre_1370",
        "no_partial_tool_exec",
        "fail",
        "property no_partial_tool_exec fails: truncated tool call(s) from 'length' are routed to tool execution",
    ),
    "zoo-code-1111-empty-retry-unbounded": Incident(
        "zoo_code_pre_1112",
        "no_backstop_only_loops",
        "diverged",
        "the cassette recorded 8 model responses and the policy asked for another, after read_stream --empty--> call_model",
    ),
    # not a shipped loop: the retry-until-stopped loop the issue asked for (the maintainers kept the bound)
    "hermes-webui-4980-rate-limit-exhausted": Incident(
        "hermes_webui_asked_4980",
        "no_backstop_only_loops",
        "diverged",
        "the cassette recorded 5 model responses and the policy asked for another, after call_model --rate_limit--> call_model",
    ),
    # ml-intern's loop had all three lessons' defects at once; each pre-fix policy is the loop at a fix
    "ml-intern-overflow-compaction-loop": Incident(
        "ml_intern_pre_213",
        "no_backstop_only_loops",
        "diverged",
        "the cassette recorded 4 model responses and the policy asked for another, after compact_context --done--> call_model",
        frozenset({"halt_message"}),
    ),
    "ml-intern-malformed-arguments": Incident(
        "ml_intern_pre_213",
        "no_backstop_only_loops",
        "diverged",
        "the cassette recorded 5 model responses and the policy asked for another, after read_stream --malformed_args--> call_model",
        frozenset({"halt_message"}),
    ),
    "ml-intern-length-with-tool-calls": Incident(
        "ml_intern_pre_8e63f40", "halt_message", "fail", "1 model calls, expected 3", frozenset({"no_backstop_only_loops"})
    ),
}


@dataclass(frozen=True)
class ReplayPin:
    """A policy-caused incident whose pre-fix policy no checker property flags: it halts within its
    caps, every halt has a message and no partial call runs (docs/incidents.md says why for each).
    The replay pins it: the cassette fails under the pre-fix policy, with this verdict and failure."""

    machine: str
    verdict: str
    failure: str


REPLAY_ONLY = {
    "litellm-29808-midstream-error-not-retried": ReplayPin(
        "litellm_pre_29808", "fail", "outcome is provider_error (halt_midstream), expected completed"
    ),
    "cline-12018-reasoning-ate-output-budget": ReplayPin(
        "cline_pre_12166", "fail", "outcome is provider_error (halt_connection_error), expected completed"
    ),
    "openhands-sdk-755-reasoning-effort-unsupported": ReplayPin(
        "openhands_sdk_pre_755", "fail", "outcome is bad_request (halt_bad_request), expected completed"
    ),
    "openhands-3663-syntax-error-loop": ReplayPin(
        "openhands_pre_3663",
        "diverged",
        "the cassette recorded 5 model responses and the policy asked for another, after run_action --failed--> call_model",
    ),
    "codex-22472-disconnect-reconnect-loop": ReplayPin("codex_pre_22472", "fail", "6 model calls, expected 3"),
}
# Engine behaviour (waits, classification of provider errors and streams) or policy mechanisms that
# default.yaml answers and no checker property names: they must pass under default.yaml.
DEFAULT_ONLY = {
    "hermes-2642-retry-after-429",
    "claude-code-35792-overloaded-529",
    "claude-code-12186-prompt-too-long",
    "goose-7915-approval-headless",
    "openai-agents-263-forced-tool-choice",
    "hermes-3809-retry-after-one-hour",
    "goose-11679-keepalive-hides-stall",
    "hermes-76460-cancel-mid-tool-batch",
}


def machine_path(name: str) -> Path:
    path = MACHINES / f"{name}.yaml"
    assert path.is_file(), f"{path} is missing: every pre-fix policy this suite names must exist"
    return path


PINNED = set(POLICY_CAUSED) | set(REPLAY_ONLY) | DEFAULT_ONLY


def test_corpus_holds_at_least_twenty_incidents_each_citing_its_source() -> None:
    assert len(CASSETTES) >= 20, sorted(CASSETTES)
    assert PINNED <= set(CASSETTES)
    assert not set(POLICY_CAUSED) & set(REPLAY_ONLY) and not (set(POLICY_CAUSED) | set(REPLAY_ONLY)) & DEFAULT_ONLY
    for name, c in CASSETTES.items():
        assert str(c.source.get("incident", "")).strip(), f"{name} names no source incident"
        assert c.doc.strip(), f"{name} says nothing about what happened"
    for name in PINNED:
        assert str(CASSETTES[name].source.get("url", "")).startswith("https://github.com/"), name


@pytest.mark.parametrize("name", sorted(POLICY_CAUSED))
def test_pre_fix_policy_fails_strict_with_the_incident_finding_alone(name: str) -> None:
    inc = POLICY_CAUSED[name]
    r = check_policy(load_policy(str(machine_path(inc.machine))), strict=True)
    assert r.exit_code == 1
    assert set(r.failed) == {inc.finding} | inc.also, r.failed  # its one defect stands out (and no other)
    assert r.properties["halts"].status == "pass" and r.properties["events_handled"].status == "pass"
    assert r.properties[inc.finding].counterexample is not None


@pytest.mark.parametrize("name", sorted(POLICY_CAUSED))
def test_incident_replays_to_its_failure_under_the_pre_fix_policy(name: str) -> None:
    inc = POLICY_CAUSED[name]
    report = asyncio.run(replay(CASSETTES[name], load_policy(str(machine_path(inc.machine)))))
    assert report.verdict == inc.verdict, report.explain()
    assert any(inc.failure in f for f in report.failures), report.failures


@pytest.mark.parametrize("name", sorted(REPLAY_ONLY))
def test_incident_replays_to_its_failure_under_a_pre_fix_policy_no_property_flags(name: str) -> None:
    pin = REPLAY_ONLY[name]
    policy = load_policy(str(machine_path(pin.machine)))
    report = asyncio.run(replay(CASSETTES[name], policy))
    assert report.verdict == pin.verdict, report.explain()
    assert any(pin.failure in f for f in report.failures), report.failures
    # no checker property names the defect (docs/incidents.md says why); a property that starts
    # to must move this incident to POLICY_CAUSED, with its finding
    r = check_policy(policy, strict=True)
    assert r.exit_code == 0 and r.failed == [], r.failed


@pytest.mark.parametrize("name", sorted(PINNED))
def test_incident_passes_under_the_default_policy(name: str) -> None:
    report = asyncio.run(replay(CASSETTES[name], DEFAULT))
    assert report.verdict == "pass", report.explain()


def test_nat_pre_fix_halts_at_the_recursion_limit_with_nothing_to_say() -> None:
    report = asyncio.run(replay(CASSETTES["nat-1705-recursion-limit-silent"], load_policy(str(machine_path("nat_pre_1705")))))
    usage = report.result.usage
    assert (report.outcome, usage.model_calls, usage.tool_batches) == ("backstop", 16, 15)
    assert report.result.message == ""
    fixed = asyncio.run(replay(CASSETTES["nat-1705-recursion-limit-silent"], DEFAULT))
    assert fixed.outcome == "tool_budget" and "60 tool batches" in fixed.result.message


def test_cogtrix_pre_fix_runs_the_cut_call_and_default_never_does() -> None:
    cassette = CASSETTES["cogtrix-1370-truncated-write-executed"]
    pre = asyncio.run(replay(cassette, load_policy(str(machine_path("cogtrix_pre_1370")))))
    assert [(s.state, s.event, s.target) for s in pre.result.trace[:3]] == [
        ("call_model", "opened", "read_stream"),
        ("read_stream", "length", "run_tools"),
        ("run_tools", "ok", "call_model"),
    ]
    fixed = asyncio.run(replay(cassette, DEFAULT))
    assert ("read_stream", "length", "continue_chunking") in [(s.state, s.event, s.target) for s in fixed.result.trace]


def test_zoo_code_pre_fix_checker_names_the_empty_retry_edges() -> None:
    r = check_policy(load_policy(str(machine_path("zoo_code_pre_1112"))), strict=True)
    flagged = {(b.transition_source, b.event, b.backstop) for b in r.backstop_only_loops}
    assert flagged == {("read_stream", "empty", "model_calls"), ("read_stream", "thinking_only", "model_calls")}


def test_hermes_webui_asked_loop_retries_a_429_with_nothing_counting() -> None:
    """hermes-webui #4980: the loop the issue asked for is bounded only by the model-call
    backstop; the bounded loop (default.yaml) ends at the third 429 with the status."""
    r = check_policy(load_policy(str(machine_path("hermes_webui_asked_4980"))), strict=True)
    flagged = {(b.transition_source, b.event, b.backstop) for b in r.backstop_only_loops}
    assert flagged == {("call_model", "rate_limit", "model_calls")}
    fixed = asyncio.run(replay(CASSETTES["hermes-webui-4980-rate-limit-exhausted"], DEFAULT))
    assert fixed.outcome == "rate_limited" and fixed.result.usage.model_calls == 3 and "429" in fixed.result.message


def test_litellm_pre_fix_retries_a_429_but_not_a_broken_stream() -> None:
    """litellm #29808: the same router retries a pre-stream 429 and surfaces a mid-stream error
    at once; default.yaml retries the broken stream and answers."""
    pre = load_policy(str(machine_path("litellm_pre_29808")))
    report = asyncio.run(replay(CASSETTES["litellm-29808-midstream-error-not-retried"], pre))
    assert [(s.state, s.event, s.target) for s in report.result.trace] == [
        ("call_model", "opened", "read_stream"),
        ("read_stream", "broken", "halt_midstream"),
    ]
    assert "MidStreamFallbackError" in report.result.message
    limited = asyncio.run(replay(CASSETTES["hermes-webui-4980-rate-limit-exhausted"], pre))
    assert [s.target for s in limited.result.trace[:3]] == ["call_model"] * 3  # a 429 is retried


def test_codex_pre_fix_reconnects_five_times_and_ends_with_the_transport_error() -> None:
    """codex #22472: six requests on a stream that keeps dropping, none of the cut calls run, and
    the raw transport error as the message; default.yaml stops after three with a short reason."""
    cassette = CASSETTES["codex-22472-disconnect-reconnect-loop"]
    pre = asyncio.run(replay(cassette, load_policy(str(machine_path("codex_pre_22472")))))
    assert (pre.outcome, pre.result.usage.model_calls, pre.result.usage.tool_batches) == ("provider_error", 6, 0)
    assert pre.result.message.startswith("stream disconnected before completion")
    fixed = asyncio.run(replay(cassette, DEFAULT))
    assert (fixed.outcome, fixed.result.usage.model_calls, fixed.result.usage.tool_batches) == ("provider_error", 3, 0)
    assert "kept failing" in fixed.result.message


def test_ml_intern_pre_213_counts_no_compaction_and_no_malformed_retry() -> None:
    """ml-intern PR #213: overflow -> compaction -> overflow, and the malformed-arguments streak
    that only nudges, are bounded by max_iterations alone; the length lesson was learned by then
    (its cassette passes under this loop)."""
    policy = load_policy(str(machine_path("ml_intern_pre_213")))
    r = check_policy(policy, strict=True)
    flagged = {(b.transition_source, b.event) for b in r.backstop_only_loops}
    assert {("compact_context", "done"), ("compact_context", "failed"), ("read_stream", "malformed_args")} <= flagged
    report = asyncio.run(replay(CASSETTES["ml-intern-length-with-tool-calls"], policy))
    assert report.verdict == "pass", report.explain()


def test_ml_intern_pre_8e63f40_ends_a_cut_tool_call_in_silence() -> None:
    """ml-intern 8e63f40: the cut call is dropped (never run) and the turn ends as completed with
    nothing to say; default.yaml asks for smaller calls and writes the file."""
    cassette = CASSETTES["ml-intern-length-with-tool-calls"]
    pre = asyncio.run(replay(cassette, load_policy(str(machine_path("ml_intern_pre_8e63f40")))))
    assert (pre.outcome, pre.result.message, pre.result.usage.tool_batches) == ("completed", "", 0)
    assert "no_partial_tool_exec" not in " ".join(pre.failures)
    fixed = asyncio.run(replay(cassette, DEFAULT))
    assert fixed.result.usage.tool_batches == 1 and fixed.result.message == "The report is written to report.md."


def test_a_quota_error_is_retried_like_a_rate_limit_without_the_quota_branch() -> None:
    """codex PR #6340, the other direction: default.yaml minus its quota transition backs off and
    asks again (the cassette's second response is one no call should reach), as codex did; with
    it, one call and quota_exhausted."""
    import re

    from loopspec import load_policy_text

    text = DEFAULT_POLICY.read_text()
    branch = re.compile(r"        - when: +# a 429 that no wait fixes.*?\n          to: halt_quota\n", re.S)
    assert len(branch.findall(text)) == 1, "default.yaml's quota branch moved; update this test"
    without = load_policy_text(branch.sub("", text), "default-without-quota.yaml")
    cassette = CASSETTES["codex-6340-insufficient-quota"]
    before = asyncio.run(replay(cassette, without))
    after = asyncio.run(replay(cassette, DEFAULT))
    assert before.verdict == "fail" and before.result.usage.model_calls == 2
    assert before.result.trace[0].target == "call_model"  # the quota error was retried
    assert after.verdict == "pass" and after.result.outcome == "quota_exhausted" and after.result.usage.model_calls == 1


def test_a_forced_tool_choice_stays_forced_without_reset_tool_choice() -> None:
    """openai-agents-python PR #263, the other direction: default.yaml minus `reset_tool_choice` on
    its tool-batch transition sends request 2 with tool_choice still 'required', the loop the PR
    fixed; with it, request 2 carries 'auto'."""
    from loopspec import load_policy_text

    text = DEFAULT_POLICY.read_text()
    edge = "- do: [{reset: empty_streak}, {reset: bad_call_streak}, reset_tool_choice]"
    assert text.count(edge) == 1, "default.yaml's tool-batch transition moved; update this test"
    without = load_policy_text(text.replace(edge, "- do: [{reset: empty_streak}, {reset: bad_call_streak}]"), "default-without-reset.yaml")
    cassette = CASSETTES["openai-agents-263-forced-tool-choice"]
    before = asyncio.run(replay(cassette, without))
    after = asyncio.run(replay(cassette, DEFAULT))
    assert before.verdict == "fail"
    assert before.failures == ["request 2 carried tool_choice 'required', expected 'auto'"]
    assert after.verdict == "pass", after.explain()


def test_an_hour_long_retry_after_is_waited_out_without_the_wait_too_long_branch() -> None:
    """hermes-agent PR #3809, the other direction: default.yaml minus its `wait_too_long` branch
    backs off (as long as `max_wait` lets it) and asks again, where the incident asked for an hour;
    with it, one call, no wait, and a message naming the asked wait."""
    from loopspec import load_policy_text

    text = DEFAULT_POLICY.read_text()
    branch = "        - when: {attr: wait_too_long}      # the provider asks for longer than any backoff waits\n          to: halt_rate_limited_long\n"
    assert text.count(branch) == 1, "default.yaml's wait_too_long branch moved; update this test"
    without = load_policy_text(text.replace(branch, ""), "default-without-wait-too-long.yaml")
    cassette = CASSETTES["hermes-3809-retry-after-one-hour"]
    before = asyncio.run(replay(cassette, without))
    after = asyncio.run(replay(cassette, DEFAULT))
    assert before.verdict == "fail" and before.result.usage.model_calls == 2
    assert before.elapsed is not None and before.elapsed >= 30  # it slept (the longest wait max_wait allows)
    assert after.verdict == "pass", after.explain()
    assert after.result.usage.model_calls == 1 and after.elapsed is not None and after.elapsed < 1
    assert "asks to wait 3600 seconds" in after.result.message


@pytest.mark.parametrize("transport", ["inproc", "http"])
def test_keepalive_pings_do_not_hide_a_stall(transport: str) -> None:
    """goose #11679, engine-caused: 600 s of ': ping' comments inside a tool call. The stall timer
    watches data events, not bytes, so the stall fires at default.yaml's stall_timeout (60 s), well
    inside the pause, once, and the stub continues with the call asked again. No policy can express
    the goose defect (a timer reset by every byte), so the engine's guard is what this pins."""
    cassette = CASSETTES["goose-11679-keepalive-hides-stall"]
    pause = cassette.interactions[0].pauses[0]
    assert (pause.seconds, pause.keepalive) == (600, 15)
    report = asyncio.run(replay(cassette, DEFAULT, transport=transport))
    assert report.verdict == "pass", report.explain()
    steps = [(s.state, s.event, s.target) for s in report.result.trace]
    assert steps[1:3] == [("read_stream", "stalled", "make_stub"), ("make_stub", "mid_tool_call", "continue_after_stall_tool")]
    assert steps.count(("read_stream", "stalled", "make_stub")) == 1
    stall_timeout = DEFAULT.settings.stall_timeout
    assert report.elapsed is not None and stall_timeout <= report.elapsed < pause.seconds, report.elapsed


def test_a_cancel_mid_tool_batch_answers_every_call_as_cancelled() -> None:
    """hermes-agent PR #76460, engine-caused: a cancel while the first of two tools runs. Every tool
    call in the history gets an answer (the unrun ones say the turn was cancelled), so the history
    is valid for the next request; before the PR the interrupted calls were left unanswered."""
    report = asyncio.run(replay(CASSETTES["hermes-76460-cancel-mid-tool-batch"], DEFAULT))
    assert report.verdict == "pass", report.explain()
    messages = report.result.messages
    calls = [tc["id"] for m in messages if m["role"] == "assistant" for tc in m.get("tool_calls") or []]
    answers = {m["tool_call_id"]: m["content"] for m in messages if m["role"] == "tool"}
    assert len(calls) == 2 and set(answers) == set(calls)
    assert all("cancelled" in answers[c] for c in calls), answers
