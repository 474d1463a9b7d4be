"""The cassette vocabulary an incident needs, on both transports: request options and request
expectations, bounds, counters, elapsed time, keep-alive pauses, Retry-After headers, cancel points,
responses that depend on the request, and usage."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from _paths import ROOT
from loopspec import load_policy
from loopspec.engine.history import history_problems
from loopspec.language import codes
from loopspec.replay.cassette import Cassette, dump_cassette, load_cassette, read_cassette
from loopspec.replay.harness import ReplayReport, replay

POLICY = load_policy(str(ROOT / "machines" / "default.yaml"))
TRANSPORTS = ["inproc", "http"]

HEAD = """loopspec_cassette: 1
name: probe
messages:
  - {role: user, content: "Run the tests."}
tools:
  - {name: run_tests, parameters: {type: object}}
"""
TOOL_THEN_ANSWER = """interactions:
  - reply: {text: "Running them.", tool_calls: [{name: run_tests, arguments: {}}]}
  - reply: {text: "All green."}
tool_results:
  - {tool: run_tests, result: "12 passed"}
"""


def write(tmp_path: Path, text: str, name: str = "probe") -> Path:
    path = tmp_path / f"{name}.cassette.yaml"
    path.write_text(text)
    return path


def run(path: Path, transport: str = "inproc") -> ReplayReport:
    return asyncio.run(replay(load_cassette(str(path)), POLICY, transport=transport))  # type: ignore[arg-type]


def diags(path: Path) -> list[tuple[str, str]]:
    """(code, 'line:col: message') of each diagnostic."""
    _c, ds = read_cassette(str(path))
    return [(d.code, f"{d.pos.line}:{d.pos.col}: {d.message}" if d.pos else d.message) for d in ds]


# -- request options and request expectations ---------------------------------------------------

REQUEST_OPTIONS = HEAD + """request: {tool_choice: required, reasoning_effort: high, max_tokens: 321, extra: {temperature: 0.25}}
""" + TOOL_THEN_ANSWER + """expect:
  outcome: completed
  requests:
    - {index: 1, tool_choice: required, max_tokens: 321, tools: present}
    - {index: -1, tool_choice: auto, max_tokens: 321}
"""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_request_options_reach_the_turn_and_request_expectations_judge_them(tmp_path: Path, transport: str) -> None:
    report = run(write(tmp_path, REQUEST_OPTIONS), transport)
    assert report.verdict == "pass", report.failures
    first, last = report.result.requests
    assert (first.tool_choice, first.max_tokens) == ("required", 321)
    assert last.tool_choice == "auto"  # default.yaml resets a forced choice after a tool batch


def test_a_request_expectation_that_does_not_hold_says_what_the_request_carried(tmp_path: Path) -> None:
    text = REQUEST_OPTIONS.replace("{index: -1, tool_choice: auto", "{index: -1, tool_choice: required")
    report = run(write(tmp_path, text))
    assert report.failures == ["request -1 (call 2) carried tool_choice 'auto', expected 'required'"]


def test_extra_goes_over_the_wire(tmp_path: Path) -> None:
    from loopspec.replay.harness import RecordedTools
    from loopspec.replay.http import run_guarded_over_http

    c = load_cassette(str(write(tmp_path, REQUEST_OPTIONS)))
    tools = RecordedTools(c)
    _result, server, crash = asyncio.run(
        run_guarded_over_http(POLICY, c.interactions, c.messages, tools=tools.registry, **c.request.turn_options())
    )
    assert crash is None
    body = server.requests[0].body
    assert body["temperature"] == 0.25 and body["max_tokens"] == 321 and body["tool_choice"] == "required"


def test_request_index_zero_is_refused_with_its_code_and_position(tmp_path: Path) -> None:
    text = HEAD + TOOL_THEN_ANSWER + "expect:\n  requests:\n    - {index: 0, tools: present}\n"
    assert diags(write(tmp_path, text)) == [(codes.BAD_REQUEST_INDEX, "14:15: request index 0 names no request")]


def test_a_negative_index_past_the_first_request_was_never_made(tmp_path: Path) -> None:
    text = HEAD + TOOL_THEN_ANSWER + "expect:\n  requests:\n    - {index: -3, tools: present}\n"
    assert run(write(tmp_path, text)).failures == ["request -3 was never made (2 calls)"]


# -- bounds ------------------------------------------------------------------------------------------


def test_bounds_pass_where_the_turn_stays_within_them(tmp_path: Path) -> None:
    text = HEAD + TOOL_THEN_ANSWER + """expect:
  outcome: {any_of: [completed, tool_budget]}
  model_calls: {max: 2}
  tool_batches: {min: 1, max: 1}
  message_not_contains: [Error, error]
  counters: {stalls: 0, model_calls: {max: 2}}
"""
    report = run(write(tmp_path, text))
    assert report.verdict == "pass", report.failures


def test_every_bound_that_does_not_hold_is_one_sentence(tmp_path: Path) -> None:
    text = HEAD + TOOL_THEN_ANSWER + """expect:
  outcome: {any_of: [guardrail, tool_budget]}
  model_calls: {max: 1}
  tool_batches: 0
  message_not_contains: green
  tools_never_ran: [run_tests]
  counters: {model_calls: {max: 1}}
"""
    assert run(write(tmp_path, text)).failures == [
        "outcome is completed (halt_completed), expected one of guardrail, tool_budget",
        "2 model calls, expected at most 1",
        "1 tool batches, expected 0",
        "halt message contains 'green', expected it not to (it is 'All green.')",
        "tool run_tests ran 1 times, expected never",
        "counter model_calls reached 2, expected at most 1",
    ]


def test_an_unknown_counter_names_the_cassette_and_the_policy(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + TOOL_THEN_ANSWER + "expect:\n  counters: {stall: {max: 2}}\n")
    (failure,) = run(path).failures
    assert "'stall'" in failure and "default" in failure and str(path) in failure and "did you mean 'stalls'" in failure


@pytest.mark.parametrize(
    "expect, code, message",
    [
        ("model_calls: {most: 3}", codes.BAD_BOUND, "expect.model_calls must be a whole number, or {max: N} and/or {min: N}"),
        ("elapsed: {min: 9, max: 3}", codes.BAD_BOUND, "expect.elapsed: min 9 is above max 3"),
        ("counters: {stalls: -1}", codes.BAD_BOUND, "expect.counters.stalls must be a whole number"),
        ("outcome: {any_of: [completd]}", codes.BAD_CASSETTE, "unknown outcome 'completd'"),
    ],
)
def test_a_malformed_bound_is_refused(tmp_path: Path, expect: str, code: str, message: str) -> None:
    ((got_code, got),) = diags(write(tmp_path, HEAD + TOOL_THEN_ANSWER + f"expect:\n  {expect}\n"))
    assert got_code == code and message in got and got.startswith("13:")


# -- time: Retry-After, elapsed, keep-alive pauses ---------------------------------------------------

RATE_LIMITED = HEAD + """interactions:
  - error: {status: 429, body: {error: {message: slow down}}, headers: {retry-after: "45"}}
  - reply: {text: "All green."}
"""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_retry_after_reaches_the_turn_and_elapsed_counts_the_wait(tmp_path: Path, transport: str) -> None:
    report = run(write(tmp_path, RATE_LIMITED + "expect:\n  elapsed: {min: 45}\n  outcome: completed\n"), transport)
    assert report.verdict == "pass", report.failures
    assert report.result.trace[0].event == "rate_limit" and report.result.trace[0].attrs["retry_after"] == 45


def test_elapsed_above_its_bound_fails_in_turn_seconds(tmp_path: Path) -> None:
    report = run(write(tmp_path, RATE_LIMITED + "expect:\n  elapsed: {max: 10}\n"))
    assert report.failures == ["the turn took 45 s on its clock, expected at most 10 s"]


def keepalive_cassette(pause: float, keepalive: float) -> str:
    return HEAD + f"""interactions:
  - reply: {{text: "Still here."}}
    stall_after: 0
    stall_seconds: {pause}
    keepalive: {keepalive}
  - reply: {{text: "All green."}}
expect:
  outcome: completed
  counters: {{stalls: 1}}
  model_calls: 2
"""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_pause_padded_with_keepalive_pings_is_still_a_stall(tmp_path: Path, transport: str) -> None:
    report = run(write(tmp_path, keepalive_cassette(600, 15)), transport)
    assert report.verdict == "pass", report.failures
    assert report.result.trace[1].event == "stalled" and report.result.trace[1].attrs["chars"] == 0


def test_keepalive_pings_are_served_over_http_during_the_pause() -> None:
    import httpx

    from loopspec.replay.http import scaled
    from loopspec.replay.server import LoopbackServer
    from loopspec.replay.synth import reply

    served = scaled([reply("Hi.", stall_after=1, stall_seconds=90, keepalive=15)], 0.001)
    with LoopbackServer(served) as server:
        body = httpx.post(server.api_base + "/chat/completions", json={"stream": True, "messages": []}, timeout=5).content
    assert body.count(b": ping\n\n") == 6
    assert body.index(b": ping") > body.index(b"data: "), "the pings come after the first data event"


def test_keepalive_must_be_positive(tmp_path: Path) -> None:
    ((code, message),) = diags(write(tmp_path, keepalive_cassette(90, 0)))
    assert code == codes.BAD_CASSETTE and "keepalive must be a positive number of seconds" in message


# -- cancellation at a point -----------------------------------------------------------------------

CANCEL_BASE = HEAD + """interactions:
  - error: {status: 429, body: {error: {message: slow down}}, headers: {retry-after: "45"}}
  - reply: {text: "Running them.", tool_calls: [{name: run_tests, arguments: {}}]}
  - reply: {text: "All green."}
tool_results:
  - {tool: run_tests, RESULT}
"""


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "result, cancel, expect",
    [
        ("result: ok", "{before_call: 2}", "model_calls: 2\n  tool_batches: 0\n  elapsed: {min: 45}\n  tools_never_ran: [run_tests]"),
        ("blocks: true", "{during_tool: run_tests}", "tool_batches: 1\n  message_not_contains: green"),
        ("result: ok", "{during_tool: run_tests}", "tool_batches: 1"),
        ("result: ok", "{during_backoff: 1}", "elapsed: {max: 0}\n  tools_never_ran: [run_tests]"),
    ],
    ids=["before_call", "blocking_tool", "during_tool", "during_backoff"],
)
def test_the_caller_cancels_at_the_point_the_cassette_names(tmp_path: Path, transport: str, result: str, cancel: str, expect: str) -> None:
    text = CANCEL_BASE.replace("RESULT", result) + f"cancel: {cancel}\nexpect:\n  outcome: cancelled\n  {expect}\n  properties: [history_valid]\n"
    report = run(write(tmp_path, text), transport)
    assert report.verdict == "pass", report.failures
    assert report.result.trace[-1].event == "cancelled"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("point", ["{during_call: 2, after_chunks: 2}", "{during_call: 3}"])
def test_cancel_mid_stream_halts_cancelled(tmp_path: Path, transport: str, point: str) -> None:
    """Turn.cancel() from inside the turn's task (here: as a chunk is read) ends the turn in its
    cancelled halt; it once left the task's cancellation armed and the turn raised CancelledError."""
    text = CANCEL_BASE.replace("RESULT", "result: ok") + f"cancel: {point}\nexpect:\n  outcome: cancelled\n  properties: [history_valid]\n"
    report = run(write(tmp_path, text), transport)
    assert report.crash is None and report.verdict == "pass", report.failures
    assert report.result.trace[-1].event == "cancelled"
    assert report.result.messages[-1] == {"role": "assistant", "content": "Cancelled."}


@pytest.mark.parametrize(
    "cancel, message",
    [
        ("{during_tool: run_test}", "cancel.during_tool names 'run_test', which the cassette's tools do not offer"),
        ("{before_call: 0}", "cancel.before_call counts from 1, got 0"),
        ("{before_call: 1, during_backoff: 1}", "cancel has exactly one of: before_call, during_call, during_tool, during_backoff"),
        ("{before_call: 1, after_chunks: 2}", "after_chunks goes with during_call"),
    ],
)
def test_a_bad_cancel_point_is_refused(tmp_path: Path, cancel: str, message: str) -> None:
    text = CANCEL_BASE.replace("RESULT", "result: ok") + f"cancel: {cancel}\n"
    assert [(c, m.split(": ", 1)[1]) for c, m in diags(write(tmp_path, text))] == [(codes.BAD_CANCEL_POINT, message)]


def test_a_blocking_tool_nothing_cancels_is_refused(tmp_path: Path) -> None:
    text = CANCEL_BASE.replace("RESULT", "blocks: true")
    assert diags(write(tmp_path, text)) == [
        (codes.BAD_CANCEL_POINT, "12:5: tool 'run_tests' blocks until the turn is cancelled, and nothing cancels it")
    ]


def test_a_turn_that_raises_anything_but_a_cancellation_propagates() -> None:
    """Only a cancellation the turn failed to absorb is reported as a crash; an interpreter bug
    stays loud (tests/engine/test_machine.py relies on it)."""
    from loopspec.engine.clock import VirtualClock
    from loopspec.engine.tools import ToolRegistry
    from loopspec.engine.turn import Turn
    from loopspec.replay.cancel import run_guarded
    from loopspec.replay.inproc import InProcessProvider
    from loopspec.replay.synth import reply

    class Boom(BaseException):
        pass

    def explode() -> str:
        raise Boom("tool blew up")

    tools = ToolRegistry()
    tools.register(explode, name="explode", parameters={"type": "object"})
    provider = InProcessProvider([reply(tool_calls=[("explode", {})])])
    turn = Turn(POLICY, provider, model="openai/replay", tools=tools, clock=VirtualClock())
    with pytest.raises(Boom, match="tool blew up"):
        asyncio.run(run_guarded(turn, [{"role": "user", "content": "go"}]))


def test_an_outside_cancellation_is_reported_as_a_crash_not_raised() -> None:
    """A cancellation of the turn's task that is not Turn.cancel() is the caller's: the turn halts,
    keeps its result and re-raises it. The replay reports that as a crash and carries on."""
    from loopspec.engine.clock import VirtualClock
    from loopspec.engine.consumers import Consumers
    from loopspec.engine.turn import Turn
    from loopspec.replay.cancel import run_guarded
    from loopspec.replay.inproc import InProcessProvider
    from loopspec.replay.synth import reply

    cancelled: list[str] = []

    async def cancel_my_task(text: str) -> None:  # a consumer runs in the turn's task
        if not cancelled:
            cancelled.append(text)
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)  # the cancellation lands here, inside the stream effect

    provider = InProcessProvider([reply("All green, and more text after it.")])
    turn = Turn(POLICY, provider, model="openai/replay", consumers=Consumers(on_delta=cancel_my_task), clock=VirtualClock())
    result, crash = asyncio.run(run_guarded(turn, [{"role": "user", "content": "go"}]))
    assert crash == "the turn raised CancelledError instead of halting" and result.outcome == "crashed"
    assert turn.result is not None and turn.result.outcome == "cancelled"
    assert history_problems(turn.result.messages) == []


# -- responses that depend on the request --------------------------------------------------------

WHEN_NO_TOOLS = """interactions:
  - reply: {tool_calls: [{name: run_tests, arguments: {}}]}
    when_no_tools:
      reply: {text: "No tools here; the tests were not run."}
  - reply: {text: "All green."}
tool_results:
  - {tool: run_tests, result: "12 passed"}
"""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_when_no_tools_answers_a_request_that_offered_none(tmp_path: Path, transport: str) -> None:
    toolless = HEAD.replace("tools:\n  - {name: run_tests, parameters: {type: object}}\n", "") + WHEN_NO_TOOLS
    report = run(write(tmp_path, toolless, "toolless"), transport)
    assert report.outcome == "completed" and "not run" in report.result.response
    with_tools = run(write(tmp_path, HEAD + WHEN_NO_TOOLS, "tools"), transport)
    assert with_tools.outcome == "completed" and with_tools.result.response == "All green."
    assert with_tools.result.usage.tool_batches == 1


# -- reply without finish_reason, with usage ----------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reply_without_finish_reason_and_with_usage(tmp_path: Path, transport: str) -> None:
    text = HEAD + """interactions:
  - reply: {text: "All green.", finish: null, usage: {prompt_tokens: 120, completion_tokens: 9, reasoning_tokens: 4}}
"""
    c = load_cassette(str(write(tmp_path, text)))
    assert all(ch["choices"][0]["finish_reason"] is None for ch in c.interactions[0].chunks if ch["choices"])  # type: ignore[union-attr]
    report = asyncio.run(replay(c, POLICY, transport=transport))  # type: ignore[arg-type]
    usage = report.result.usage
    assert report.outcome == "completed"
    assert (usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens) == (120, 9, 4)


# -- the writer round-trips the vocabulary -----------------------------------------------------------

EVERYTHING = HEAD + """request: {tool_choice: required, reasoning_effort: low, max_tokens: 50, extra: {temperature: 0}}
interactions:
  - error: {status: 429, body: {error: {message: slow}}, headers: {retry-after: "3"}}
  - reply: {text: "x"}
    stall_after: 1
    stall_seconds: 90
    keepalive: 15
    pauses: [{after: 0, seconds: 2.5}, {after: 2, seconds: 30, keepalive: 10}]
    when_no_tools: {reply: {text: "y", finish: null, usage: {prompt_tokens: 3}}}
tool_results:
  - {tool: run_tests, blocks: true}
cancel: {during_tool: run_tests}
expect:
  outcome: {any_of: [cancelled, completed]}
  model_calls: {max: 4}
  tool_batches: 1
  message_not_contains: [boom]
  tools_never_ran: [deploy]
  counters: {stalls: {min: 1, max: 2}, model_calls: 3}
  elapsed: {max: 3600.5}
  requests:
    - {index: -1, tool_choice: null, reasoning_effort: low, max_tokens: 50, tools: absent}
"""


def test_the_writer_round_trips_every_new_key(tmp_path: Path) -> None:
    first = load_cassette(str(write(tmp_path, EVERYTHING)))
    again_path = tmp_path / "again.cassette.yaml"
    again_path.write_text(dump_cassette(first))
    again = load_cassette(str(again_path))

    def same(c: Cassette) -> dict[str, Any]:
        return {k: v for k, v in vars(c).items() if k not in ("file", "name")}

    assert same(again) == same(first)
    assert again.cancel is not None and again.cancel.during_tool == "run_tests"
    assert again.expect.counters[0][1].max == 2 and again.expect.requests[0].carries[0] == ("tool_choice", None)


def test_engine_over_litellm_sees_a_stream_of_only_comments_as_a_stall() -> None:
    """Stall detection watches content, not bytes: an SSE stream that sends nothing but keep-alive
    comments for ten minutes is a zero-character stall at the policy's stall_timeout, through the
    real client stack (litellm, the openai SDK's SSE decoder, real sockets)."""
    from loopspec.replay.http import run_guarded_over_http
    from loopspec.replay.interactions import StreamResponse
    from loopspec.replay.synth import reply

    only_pings = StreamResponse(sse=": ping\n\n", stall_after=0, stall_seconds=600, keepalive=5)
    result, server, crash = asyncio.run(
        run_guarded_over_http(POLICY, [only_pings, reply("All green.")], [{"role": "user", "content": "hi"}])
    )
    assert crash is None and len(server.requests) == 2
    assert [(s.event, s.attrs.get("chars")) for s in result.trace[:2]] == [("opened", None), ("stalled", 0)]
    assert result.outcome == "completed" and result.response == "All green."


def test_the_schema_accepts_the_new_vocabulary_and_refuses_index_zero(tmp_path: Path) -> None:
    import yaml
    from test_cassette_format import schema_errors

    from loopspec.replay.cassette_schema import cassette_json_schema

    schema = cassette_json_schema()
    for text in (EVERYTHING, (ROOT / "docs" / "examples" / "stop-during-tests.cassette.yaml").read_text()):
        assert schema_errors(yaml.safe_load(text), schema, schema) == []
    bad = yaml.safe_load(EVERYTHING.replace("keepalive: 15", "keepalive: 15\n    pause: 90"))
    assert any("unknown key pause" in e for e in schema_errors(bad, schema, schema))


def test_counters_are_judged_on_their_highest_value_not_the_last(tmp_path: Path) -> None:
    """empty_streak rises to 1 on the empty reply and is reset by the tool call after it: a bound
    of 0 must fail, an exact 1 must hold."""
    text = HEAD + """interactions:
  - reply: {text: ""}
  - reply: {tool_calls: [{name: run_tests, arguments: {}}]}
  - reply: {text: "All green."}
tool_results:
  - {tool: run_tests, result: ok}
expect:
  counters: {empty_streak: {max: 0}, empty_total: 1}
"""
    report = run(write(tmp_path, text))
    assert report.result.trace[-1].counters["empty_streak"] == 0
    assert report.failures == ["counter empty_streak reached 1, expected at most 0"]


GAPS = HEAD + """interactions:
  - reply: {text: "The suite is still running, please wait for it."}
    pauses:
      - {after: 2, seconds: 20, keepalive: 5}   # a gap, shorter than the stall_timeout (60 s)
      - {after: 4, seconds: 90, keepalive: 30}  # a stall behind pings
  - reply: {text: "All green."}
"""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_slow_stream_with_gaps_stalls_only_where_the_gap_passes_the_stall_timeout(tmp_path: Path, transport: str) -> None:
    report = run(write(tmp_path, GAPS + "expect:\n  counters: {stalls: 1}\n  elapsed: {min: 80}\n"), transport)
    assert report.verdict == "pass", report.failures
    stalled = report.result.trace[1]
    assert (stalled.event, stalled.attrs["chars"]) == ("stalled", 24)  # role chunk + three 8-character pieces


def test_pauses_are_checked_against_the_stream(tmp_path: Path) -> None:
    text = GAPS.replace("{after: 4, seconds: 90", "{after: 40, seconds: 90")
    ((code, message),) = diags(write(tmp_path, text))
    assert code == codes.BAD_CASSETTE and "a pause after 40 data events is outside 0..8" in message


def test_keepalive_without_a_pause_is_refused(tmp_path: Path) -> None:
    text = HEAD + "interactions:\n  - reply: {text: hi}\n    keepalive: 15\n"
    assert diags(write(tmp_path, text)) == [(codes.BAD_CASSETTE, "9:16: keepalive pings fill a pause, and this response has no stall")]
