"""Every pre-fix policy's counterexample, written as a cassette, replays to the same failure."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loopspec import load_policy
from loopspec.cli import main as cli_main
from loopspec.replay.cassette import find_cassettes, load_cassette
from loopspec.replay.harness import replay

from _paths import DEFAULT_POLICY, MACHINES

EXPECTED_FAILURE = {
    "hermes_pre_32012": ("stub_not_silent", "property stub_not_silent fails: a mid-tool-call stub ends the turn"),
    "hermes_pre_30813": ("halt_message", "property halt_message fails"),
    "netclaw_pre_1358": ("no_backstop_only_loops", "fired 4 times, at most 3 expected"),
    "netclaw_post_1358": ("tools_stay_disabled", "property tools_stay_disabled fails: tools were disabled and"),
    "nat_pre_1705": ("halt_message", "property halt_message fails: halt halt_recursion_limit delivered an empty message"),
    "ogx_pre_6231": ("halt_message", "property halt_message fails: halt halt_client_call delivered an empty message"),
    "cogtrix_pre_1370": ("no_partial_tool_exec", "property no_partial_tool_exec fails: truncated tool call(s) from 'length'"),
    "zoo_code_pre_1112": ("no_backstop_only_loops", "transition read_stream --empty[0]--> call_model fired 2 times"),
    "hermes_webui_asked_4980": ("no_backstop_only_loops", "transition call_model --rate_limit[0]--> call_model fired 2 times"),
    "ml_intern_pre_213": ("no_backstop_only_loops", "--> call_model fired 2 times, at most 1 expected"),
    "ml_intern_pre_8e63f40": ("halt_message", "property halt_message fails: halt halt_turn_complete delivered an empty message"),
}
NO_FINDING = {"litellm_pre_29808", "cline_pre_12166", "openhands_sdk_pre_755", "openhands_pre_3663", "codex_pre_22472"}
"""Pre-fix policies that no checker property flags: their incidents are pinned by replay
(tests/verify/test_incident_corpus.py, REPLAY_ONLY), and docs/incidents.md says why."""


def test_every_pre_fix_policy_has_its_counterexample_pinned_here() -> None:
    pre_fix = {p.stem for p in MACHINES.glob("*.yaml") if p.stem != "default"}
    assert not set(EXPECTED_FAILURE) & NO_FINDING
    assert pre_fix == set(EXPECTED_FAILURE) | NO_FINDING, "a policy in machines/ without an expected counterexample"


@pytest.mark.parametrize("name", sorted(NO_FINDING))
def test_a_pre_fix_policy_no_property_flags_writes_no_counterexample(name: str, tmp_path: Path) -> None:
    out = tmp_path / "none.cassette.yaml"
    assert cli_main(["check", "--strict", str(MACHINES / f"{name}.yaml"), "--counterexample", str(out)]) == 0
    assert not out.exists()


@pytest.mark.parametrize("name", sorted(EXPECTED_FAILURE))
def test_counterexample_cassette_replays_to_the_same_failure(name: str, tmp_path: Path) -> None:
    machine = str(MACHINES / f"{name}.yaml")
    assert cli_main(["check", "--strict", machine, "--counterexample", str(tmp_path) + "/"]) == 1
    prop, failure = EXPECTED_FAILURE[name]
    path = tmp_path / f"{name}-{prop}.cassette.yaml"
    assert path.exists(), sorted(p.name for p in tmp_path.iterdir())
    cassette = load_cassette(str(path))
    report = asyncio.run(replay(cassette, load_policy(machine)))
    assert report.verdict == "fail"
    assert any(failure in f for f in report.failures), report.failures
    assert report.divergence is None, "the replay takes exactly the recorded path"
    assert cassette.trace, "the decision trace is stored with the cassette"


def test_default_policy_writes_no_counterexample(tmp_path: Path) -> None:
    out = tmp_path / "none.cassette.yaml"
    assert cli_main(["check", "--strict", str(DEFAULT_POLICY), "--counterexample", str(out)]) == 0
    assert not out.exists()


def test_counterexample_under_the_fixed_policy_recovers(tmp_path: Path) -> None:
    """The hermes #31998 counterexample, replayed under default.yaml, continues instead of ending."""
    assert cli_main(["check", str(MACHINES / "hermes_pre_32012.yaml"), "--counterexample", str(tmp_path) + "/"]) == 1
    (path,) = find_cassettes([str(tmp_path)])
    report = asyncio.run(replay(load_cassette(path), load_policy(str(DEFAULT_POLICY))))
    assert report.verdict == "pass"
    assert report.divergence is not None and report.divergence.step == 2
    assert "continue_after_stall_tool" in report.divergence.reason
