"""The replay judge on a one-reply turn: request expectations (tools present or absent, the last
prompt, a request never made) and the first place a stored decision trace parts from the replay
(a different event, a different target with the deciding guard, a shorter or a longer run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from loopspec import load_policy
from loopspec.replay.cassette import load_cassette
from loopspec.replay.harness import ReplayReport, replay_sync

from _paths import DEFAULT_POLICY

OPENED = {"state": "call_model", "event": "opened", "target": "read_stream"}
TEXT = {"state": "read_stream", "event": "text", "target": "halt_completed"}


def run(tmp_path: Path, tools: bool = True, **extra: Any) -> ReplayReport:
    doc: dict[str, Any] = {
        "loopspec_cassette": 1,
        "messages": [{"role": "user", "content": "say hello"}],
        "interactions": [{"reply": {"text": "hello"}}],
        **extra,
    }
    if tools:
        doc["tools"] = [{"name": "read_file"}]
    path = tmp_path / "one.cassette.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return replay_sync(load_cassette(str(path)), load_policy(str(DEFAULT_POLICY)))


def test_request_expectations_that_hold_pass(tmp_path: Path) -> None:
    r = run(tmp_path, expect={"requests": [{"index": 1, "tools": "present", "prompt_contains": "hello"}]}, trace=[OPENED, TEXT])
    assert r.verdict == "pass", r.failures
    assert r.divergence is None


def test_request_expectations_that_fail_say_why(tmp_path: Path) -> None:
    r = run(tmp_path, expect={"requests": [{"index": 1, "tools": "absent", "prompt_contains": "zzz"}, {"index": 3}]})
    assert r.verdict == "fail"
    assert r.failures == [
        "request 1 carried tools ['read_file'], expected none",
        "request 1's last prompt does not contain 'zzz'",
        "request 3 was never made (1 calls)",
    ]
    assert r.explain().splitlines() == [
        "one.cassette: fail (outcome completed, 1 calls)",
        *(f"  - {f}" for f in r.failures),
    ]
    r = run(tmp_path, tools=False, expect={"requests": [{"index": 1, "tools": "present"}]})
    assert r.failures == ["request 1 carried no tools, expected some"]


DIVERGENCES = {
    "other event": ([{**OPENED, "event": "rate_limit"}, TEXT], 0, "observed opened in call_model, recorded rate_limit in call_model"),
    "other target": (
        [OPENED, {**TEXT, "target": "call_model"}],
        1,
        "in read_stream on text: now -> halt_completed, recorded -> call_model, by transition read_stream --text[2]--> halt_completed (guard: no guard)",
    ),
    "replay longer": ([OPENED], 1, "the replay took more steps than recorded"),
    "replay shorter": ([OPENED, TEXT, {"state": "halt_completed", "event": "x", "target": "y"}], 2, "the replay ended before the recorded trace did"),
}


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_the_first_divergence_from_a_stored_trace(name: str, tmp_path: Path) -> None:
    trace, step, reason = DIVERGENCES[name]
    r = run(tmp_path, trace=trace)
    d = r.divergence
    assert d is not None and (d.step, d.reason) == (step, reason)
    data = d.to_json()
    assert data["step"] == step and data["reason"] == reason
    assert (data["recorded"] is None) == (name == "replay longer")
    assert (data["actual"] is None) == (name == "replay shorter")


def test_a_policy_that_runs_a_tool_more_often_than_recorded_diverges(tmp_path: Path) -> None:
    call = {"reply": {"tool_calls": [{"name": "read_file", "arguments": {"path": "a"}}]}}
    r = run(tmp_path, interactions=[call, call, {"reply": {"text": "hello"}}], tool_results=[{"tool": "read_file", "result": "A"}])
    assert r.verdict == "diverged"
    assert r.failures[0] == "diverged: the policy ran read_file more often than the cassette recorded", r.failures
