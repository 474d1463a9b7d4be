"""The replay harness's report and bounds (loopspec/replay/harness.py), tested against the
survivors of planting mutmut's mutants of it: ``loopspec replay --json`` prints ``to_json`` for each
cassette, and CI jobs read those fields by name."""

from __future__ import annotations

import asyncio

from loopspec.replay.harness import replay, step_limit

from test_replay import CASSETTES, policy

STALL = CASSETTES["hermes-31998-stall-mid-tool-call"]
PRE_FIX = policy("hermes_pre_32012")


def test_a_failed_replay_in_json_has_every_field_by_its_name() -> None:
    """The pre-fix hermes policy halts at the stall: every field of the report, named as the
    CLI's JSON names it, carries that run (and the trace only when asked for)."""
    r = asyncio.run(replay(STALL, PRE_FIX))
    assert r.divergence is not None
    data = r.to_json()
    assert data == {
        "cassette": STALL.file,
        "name": "hermes-31998-stall-mid-tool-call",
        "transport": "inproc",
        "verdict": "fail",
        "outcome": "completed",
        "halt_state": "halt_stalled_tool_call",
        "model_calls": 1,
        "tool_batches": 0,
        "final_response": r.result.message,
        "failures": r.failures,
        "diverged_at": None,
        "unconsumed": 2,
        "trace_divergence": r.divergence.to_json(),
        "elapsed": 180.0,
        "crash": None,
    }
    assert r.result.message.startswith("\u26a0 Stream stalled mid tool-call (get_capital)")
    assert r.failures[:2] == ["1 model calls, expected 3", "0 tool batches, expected 1"]
    # final_response is what the turn delivered (the halt's message); the expectation reads the
    # model's own last reply, which was empty: the failure says which it read
    assert r.failures[2] == "the model's last reply does not contain 'Mexico City' (it is '')"
    assert data["trace_divergence"]["step"] == 2
    traced = r.to_json(with_trace=True)
    trace = traced.pop("trace")
    assert trace == [s.to_json() for s in r.result.trace] and traced == data
    assert [s["event"] for s in trace] == ["opened", "stalled", "mid_tool_call"]


def test_the_step_limit_allows_every_state_and_every_cap_per_recorded_answer() -> None:
    """3 recorded responses and 1 tool result, plus 2: six answers' worth of 23 states and counter
    caps summing to 196 (the hermes pre-fix policy)."""
    assert (len(STALL.interactions), len(STALL.tool_results), len(PRE_FIX.states)) == (3, 1, 23)
    assert sum(c.max for c in PRE_FIX.counters) == 196
    assert step_limit(STALL, PRE_FIX) == 6 * (23 + 196)
