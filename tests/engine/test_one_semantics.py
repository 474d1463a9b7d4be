"""The interpreter carries out exactly what ``Policy.step`` decides, and ``check`` judges the same
steps: tool-call fates, escalate entry effects, and backstops that no entry escapes."""

from __future__ import annotations

import asyncio
from typing import Any

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy_text
from loopspec.engine.history import history_problems
from loopspec.replay.synth import reply
from loopspec.language.alphabet import Event
from loopspec.language.properties import trace_violations
from loopspec.verify import check_policy

from _paths import DEFAULT_POLICY
from _policy_text import handles

USER = [{"role": "user", "content": "go"}]


def _tools(ran: list[str]) -> ToolRegistry:
    reg = ToolRegistry()

    def lookup(q: str = "") -> str:
        ran.append(q)
        return "found"

    reg.register(lookup, parameters={"type": "object", "properties": {"q": {"type": "string"}}})
    return reg


def _turn(policy: Any, interactions: list[Any], ran: list[str]) -> Any:
    turn = Turn(policy, InProcessProvider(interactions), model="replay", tools=_tools(ran), clock=VirtualClock())
    return asyncio.run(turn.run(USER))


HEAD = """\
loopspec: 1
initial: ask
templates:
  refused: "Not run: {tools} needs approval."
  careful: "Be careful."
backstops:
  model_calls: {max: 6, exhausted: out}
  tool_batches: {max: 3, exhausted: out}
states:
  ask:
    kind: call
    on: CALL_EVENTS
  read:
    kind: stream
    on: STREAM_EVENTS
  tools:
    kind: tool_exec
    on: {ok: ask, failed: ask, repeated_exact_failure: out, same_tool_failure: out, no_progress: out,
         doom_loop: out, approval_required: out, timeout: out, cancelled: out}
  warn:
    kind: escalate
    apply: [{append: careful}]
    on: {done: tools, failed: out}
  deny:
    kind: escalate
    apply: [{refuse_tools: refused}]
    on: {done: ask, failed: out}
  done: {kind: halt, outcome: completed, message: "{response}"}
  out: {kind: halt, outcome: backstop, message: "stopped"}
""".replace("CALL_EVENTS", handles("call", "out", opened="read")).replace(
    "STREAM_EVENTS", handles("stream", "out", text='done', tool_calls='{TOOL_CALLS}')
)


def test_calls_routed_through_an_escalation_are_ignored_by_both_the_interpreter_and_check() -> None:
    """tool_calls -> escalate -> tool_exec: the step says the calls are ignored (they never run);
    the interpreter runs nothing, and check reports history_valid with a replayable path."""
    policy = load_policy_text(HEAD.replace("{TOOL_CALLS}", "{to: warn, bounded_by: tool_batches}"))
    step = policy.step(policy.step(policy.initial_config(), Event("opened")).after, Event("tool_calls", {"tools": ["lookup"]}))
    assert (step.fate, step.appended) == ("ignore", ("careful",))
    ran: list[str] = []
    result = _turn(policy, [reply(tool_calls=[("lookup", {"q": "a"})]), reply("done")], ran)
    assert ran == []
    assert history_problems(result.messages) == []
    assert any(p == "history_valid" for p, _ in trace_violations(policy, result.steps))
    assert {"role": "user", "content": "Be careful."} in result.messages
    r = check_policy(policy)
    assert "history_valid" in r.failed


def test_refuse_tools_in_an_escalation_answers_every_call_and_runs_none() -> None:
    policy = load_policy_text(HEAD.replace("{TOOL_CALLS}", "deny"))
    step = policy.step(policy.step(policy.initial_config(), Event("opened")).after, Event("tool_calls", {"tools": ["lookup"]}))
    assert (step.fate, step.refusal) == ("refuse", "refused")
    ran: list[str] = []
    result = _turn(policy, [reply(tool_calls=[("lookup", {"q": "a"}), ("lookup", {"q": "b"})]), reply("ok then")], ran)
    assert ran == []
    assert result.outcome == "completed"
    answers = [m for m in result.messages if m.get("role") == "tool"]
    assert [m["content"] for m in answers] == ["Not run: lookup, lookup needs approval."] * 2
    assert history_problems(result.messages) == []
    assert trace_violations(policy, result.steps) == []
    assert "history_valid" not in check_policy(policy).failed


def test_a_spent_tool_budget_that_redirects_to_a_call_state_still_meets_the_model_call_backstop() -> None:
    """tool_batches.exhausted: call_model used to let the model-call counter stop at its cap while
    calls went on forever. Every entry into a call state now meets the model-call backstop."""
    text = DEFAULT_POLICY.read_text()
    head, sep, rest = text.partition("  tool_batches:\n")
    rest = rest.replace("    exhausted: tools_spent", "    exhausted: call_model", 1)
    assert "exhausted: call_model" in rest
    policy = load_policy_text(head + sep + rest, "escape.yaml")
    cap = policy.backstops["model_calls"].max
    cfg = policy.initial_config()
    script = ["opened", "tool_calls", "ok"]
    for i in range(10 * cap):
        state = policy.states[cfg.state]
        if state.kind == "halt":
            break
        names = [e.name for e in __import__("loopspec.language.alphabet", fromlist=["KINDS"]).KINDS[state.kind].events]
        name = next(n for n in script if n in names) if any(n in names for n in script) else "done"
        cfg = policy.step(cfg, Event(name, {"tools": ["lookup"], "count": 1})).after
        assert policy.value(cfg, "model_calls") <= cap
    assert policy.states[cfg.state].kind == "halt", "the turn ends at the model-call backstop"
    r = check_policy(policy, strict=False)
    assert r.properties["halts"].passed
    assert r.worst_case["model_calls"].value <= cap


def test_the_escape_policy_runs_to_its_backstop_through_the_interpreter() -> None:
    """The same policy as a live turn: the interpreter (and its transitions machine) follow the
    chained redirect, and the turn ends within the model-call cap."""
    text = DEFAULT_POLICY.read_text()
    head, sep, rest = text.partition("  tool_batches:\n")
    policy = load_policy_text(head + sep + rest.replace("    exhausted: tools_spent", "    exhausted: call_model", 1), "escape.yaml")
    cap = policy.backstops["model_calls"].max
    ran: list[str] = []
    calls = [reply(tool_calls=[("lookup", {"q": str(i)})]) for i in range(cap + 5)]
    result = _turn(policy, calls, ran)
    assert result.usage.model_calls <= cap
    assert result.outcome in ("backstop", "tools_disabled")  # the wrap-up call, then its halt
    assert result.usage.model_calls == cap
    assert len(ran) == policy.backstops["tool_batches"].max


def test_a_stream_state_entered_with_no_response_open_hears_broken_not_a_crash() -> None:
    """A stub whose ``mid_text`` goes back to the stream state (LS402 warns): the stream is gone,
    so the stream state hears ``broken`` (``cause: disconnect``) and takes its transition; the
    turn ends where the policy says, with its history valid, and ``check`` covers the same path."""
    text = HEAD.replace("{TOOL_CALLS}", "tools").replace("length: out", "length: cut").replace("broken: out", "broken: done") + (
        "  cut:\n    kind: stub\n    on: {mid_text: read, mid_tool_call: out}\n")
    policy = load_policy_text(text)
    ran: list[str] = []
    result = _turn(policy, [reply("half an answ", finish="length")], ran)
    assert [(s.state, s.event) for s in result.trace] == [("ask", "opened"), ("read", "length"), ("cut", "mid_text"), ("read", "broken")]
    last = result.trace[-1]
    assert last.target == "done" and result.outcome == "completed"
    assert history_problems(result.messages) == []
    # the checker's model of a stream state includes this broken: the property set agrees
    assert check_policy(policy).properties["history_valid"].status == "pass"
