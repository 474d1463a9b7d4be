"""Usage budgets in a running turn: replay reproduces a cost exhaustion, a warning is appended once,
working time leaves backoff waits out, an unknown cost is recorded for the policy, min_per_call is
charged whatever the provider reports, and a resumed turn goes on with its budgets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy, load_policy_text
from loopspec.replay.cassette_reader import load_cassette
from loopspec.engine.history import history_problems
from loopspec.engine.observers import TurnObserver
from loopspec.journal import SqliteJournal
from loopspec.replay.harness import replay_sync
from loopspec.replay.interactions import ErrorResponse, StreamResponse
from loopspec.replay.synth import reply, reply_chunks

from _doubles import CutAtCall, Stop, answered_before_resume
from _paths import FIXTURES, ROOT

EXAMPLE = ROOT / "docs" / "examples" / "budgets.yaml"
CASSETTE = FIXTURES / "budgets" / "openai-agents-2848-cost-budget.cassette.yaml"
USER = [{"role": "user", "content": "Find every mention of the outage."}]
WARNING = "You have used most of this turn's budget"


def search_reply(cost: float | None, prompt: int = 100) -> StreamResponse:
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": 10}
    if cost is not None:
        usage["cost"] = cost
    return StreamResponse(chunks=tuple(reply_chunks(tool_calls=[("search", {"query": "q"})], usage=usage)))


def tools() -> ToolRegistry:
    reg = ToolRegistry()
    reg.register(lambda query: "more", name="search", parameters={"type": "object", "properties": {"query": {"type": "string"}}})
    return reg


def policy_with(budgets: str, extra_states: str = "") -> Any:
    """docs/examples/budgets.yaml with its budgets: section replaced."""
    text = EXAMPLE.read_text().replace("bounded_by: cost", "bounded_by: tool_batches")
    start, end = text.index("budgets:\n"), text.index("templates:\n")
    return load_policy_text(text[:start] + budgets + text[end:] + extra_states, "budgets.yaml")


def run(policy: Any, interactions: list[Any], clock: VirtualClock | None = None, **kw: Any) -> Any:
    turn = Turn(policy, InProcessProvider(interactions), model="openai/x", tools=tools(), clock=clock or VirtualClock(), **kw)
    return asyncio.run(turn.run(USER))


def test_replay_reproduces_the_cost_exhaustion_of_the_fixture_cassette() -> None:
    report = replay_sync(load_cassette(str(CASSETTE)), load_policy(str(EXAMPLE)))
    r = report.result
    assert report.verdict == "pass", report.failures
    assert (r.outcome, r.halt_state) == ("budget", "out_of_budget")
    # five calls at 1.2 cents pass the 5-cent cap; the sixth is the wrap-up's last call
    assert [s.state for s in r.trace if s.redirected_from == "ask"] == ["tools"]
    assert r.usage.cost == pytest.approx(6 * 0.012) and not r.usage.cost_unknown
    assert r.usage.prompt_tokens == sum(1000 + 200 * i for i in range(6))
    warned = [m for m in r.messages if m["role"] == "user" and WARNING in str(m.get("content"))]
    assert len(warned) == 1, "the warning is appended once, when the amount first reaches warn_at"
    assert history_problems(r.messages) == []


def test_the_trace_records_what_the_budgets_measured_and_only_on_call_entries() -> None:
    r = replay_sync(load_cassette(str(CASSETTE)), load_policy(str(EXAMPLE))).result
    measured = [(s.target, s.measured) for s in r.trace if s.measured]
    assert measured == [("ask", ["cost_warned"]), ("summarize", ["cost_reached"])]
    assert "measured" in r.trace[-1].to_json() or "measured" not in r.trace[0].to_json()


def test_a_reply_missing_from_the_cost_map_is_not_charged_and_the_policy_sees_cost_unknown() -> None:
    extra = """  guarded:
    kind: halt
    outcome: budget
    message: "cost unknown"
"""
    text = EXAMPLE.read_text().replace("      opened: read\n", "      opened:\n        - when: {flag: cost_unknown}\n          to: guarded\n        - to: read\n", 1)
    policy = load_policy_text(text + extra, "budgets.yaml")
    r = run(policy, [search_reply(0.01), search_reply(None), search_reply(0.01)])
    assert r.usage.cost_unknown and r.usage.cost == pytest.approx(0.01)
    assert (r.outcome, r.message, r.usage.model_calls) == ("budget", "cost unknown", 3)


def test_working_time_leaves_rate_limit_waits_out() -> None:
    """Each 429 waits 30 s (virtual); the tools take no time. Ten seconds of working time are
    never reached however long the turn waits, and the turn answers."""
    budgets = "budgets:\n  working_time: {max: 10, exhausted: out_of_budget}\n"
    text = EXAMPLE.read_text().replace("bounded_by: cost", "bounded_by: tool_batches")
    start, end = text.index("budgets:\n"), text.index("templates:\n")
    text = text[:start] + budgets + "backoff: {wait: [30], max_wait: 60}\ncounters: {retries: {max: 5}}\n" + text[end:]
    text = text.replace("      rate_limit: failed\n", "      rate_limit:\n        - when: {counter: retries, lt: max}\n          do: [{backoff: wait, attempt: retries}, {increment: retries}]\n          to: ask\n        - to: failed\n", 1)
    policy = load_policy_text(text, "budgets.yaml")
    limited = ErrorResponse(429, {"error": {"message": "slow down"}})
    clock = VirtualClock()
    r = run(policy, [limited, search_reply(0.0), limited, limited, search_reply(0.0), reply("done")], clock)
    assert r.outcome == "completed", [(s.state, s.event, s.target) for s in r.trace]
    assert clock.now() >= 90 and r.usage.working_time < 10


def test_working_time_counts_the_time_the_turn_works() -> None:
    budgets = "budgets:\n  working_time: {max: 10, exhausted: out_of_budget}\n"
    policy = policy_with(budgets)
    slow = reply(tool_calls=[("search", {"query": "q"})])
    clock = VirtualClock()
    reg = ToolRegistry()

    async def search(query: str) -> str:
        await clock.sleep(6)  # a tool that works six seconds
        return "more"

    reg.register(search, parameters={"type": "object", "properties": {"query": {"type": "string"}}})
    turn = Turn(policy, InProcessProvider([slow, slow, slow]), model="openai/x", tools=reg, clock=clock)
    r = asyncio.run(turn.run(USER))
    assert (r.outcome, r.usage.model_calls) == ("budget", 2) and r.usage.working_time >= 10


def test_min_per_call_is_charged_when_the_provider_reports_nothing() -> None:
    """Replies that cost nothing: the cost budget still ends the turn after max / min_per_call calls."""
    policy = policy_with("budgets:\n  cost: {max: 0.003, min_per_call: 0.001, exhausted: out_of_budget}\n")
    r = run(policy, [search_reply(0.0) for _ in range(10)])
    assert (r.outcome, r.usage.model_calls, r.usage.cost) == ("budget", 3, 0.0)


def test_min_per_call_counts_towards_warn_at_too() -> None:
    policy = policy_with("budgets:\n  cost: {max: 0.01, min_per_call: 0.001, warn_at: 0.002, warning: cost_warning, exhausted: out_of_budget}\n")
    r = run(policy, [search_reply(0.0) for _ in range(3)] + [reply("done")])
    assert r.outcome == "completed"
    assert [s.measured for s in r.trace if s.measured] == [["cost_warned"]]
    assert sum(WARNING in str(m.get("content")) for m in r.messages) == 1


def test_a_policy_without_budgets_records_nothing_new_in_its_trace() -> None:
    policy = policy_with("")
    r = run(policy, [search_reply(0.5), reply("done")])
    assert r.outcome == "completed" and all("measured" not in s.to_json() for s in r.trace)


def test_a_resumed_turn_goes_on_with_its_budgets(tmp_path: Path) -> None:
    """Killed after its third call opened (the budget warned on entering it): the resumed turn has
    spent what the first run spent, so it ends on the same call as the uninterrupted one, not five
    calls later, and its journal's decisions lead where they led, budget flags included."""
    policy = policy_with("budgets:\n  cost: {max: 0.05, warn_at: 0.02, warning: cost_warning, exhausted: out_of_budget}\n")
    replies = [search_reply(0.012) for _ in range(8)]
    whole = run(policy, list(replies))
    assert (whole.outcome, whole.usage.model_calls) == ("budget", 5)
    with SqliteJournal(tmp_path / "cut.db") as journal:
        t = Turn(policy, InProcessProvider(list(replies)), model="openai/x", tools=tools(), clock=VirtualClock(), journal=journal, turn_id="t")

        t.observers.observers.append(CutAtCall(3))
        with pytest.raises(Stop):
            asyncio.run(t.run(USER))
        skip = answered_before_resume(journal, "t")
        again = Turn(policy, InProcessProvider(replies[skip:]), model="openai/x", tools=tools(), clock=VirtualClock(), journal=journal, turn_id="t")
        result = asyncio.run(again.resume("t"))
    # the call the crash cut is sent again (a request more), but the budget counts what it replied once
    assert (result.outcome, result.trace[-1].counters["model_calls"]) == ("budget", 5)
    assert result.usage.cost == pytest.approx(whole.usage.cost)
    assert [s.target for s in result.trace] == [s.target for s in whole.trace]


def test_the_warning_is_not_appended_again_when_another_flag_is_measured() -> None:
    """Warned on the second call, then a reply of unknown cost: the third call entry measures
    cost_unknown, which is new, but the warning was given already."""
    policy = policy_with("budgets:\n  cost: {max: 1, warn_at: 0.01, warning: cost_warning, exhausted: out_of_budget}\n")
    r = run(policy, [search_reply(0.02), search_reply(None), search_reply(0.0), reply("done")])
    assert [s.measured for s in r.trace if s.measured] == [["cost_warned"], ["cost_unknown"]]
    assert sum(WARNING in str(m.get("content")) for m in r.messages) == 1


def test_over_http_litellm_carries_the_recorded_cost_to_the_same_exhaustion() -> None:
    """The product path: litellm reads the served usage (with its cost, as OpenRouter sends it)."""
    report = replay_sync(load_cassette(str(CASSETTE)), load_policy(str(EXAMPLE)), transport="http")
    r = report.result
    assert report.verdict == "pass", report.failures
    assert (r.halt_state, r.usage.model_calls) == ("out_of_budget", 6)
    assert r.usage.cost == pytest.approx(6 * 0.012) and not r.usage.cost_unknown


def test_a_policy_without_budgets_still_counts_working_time_at_every_step() -> None:
    """With no ``budgets:`` nothing is measured for the policy, but the usage a checkpoint (and so
    a journal) carries keeps the working time up to date at every decision: a tool that works 6 s
    counts as soon as the batch is decided, a 30 s rate-limit backoff never does."""
    policy = load_policy(str(ROOT / "machines" / "default.yaml"))
    assert not policy.budgets
    clock = VirtualClock()
    reg = ToolRegistry()

    async def search(query: str) -> str:
        await clock.sleep(6)
        return "more"

    reg.register(search, parameters={"type": "object", "properties": {"query": {"type": "string"}}})
    seen: list[tuple[str, float]] = []
    limited = ErrorResponse(429, {"error": {"message": "rate limited"}}, {"retry-after": "30"})
    provider = InProcessProvider([reply(tool_calls=[("search", {"query": "q"})]), limited, reply("done")])

    class Watch(TurnObserver):
        def step_taken(self, step: Any, record: Any) -> None:
            seen.append((step.event.name, turn.usage.working_time))

    turn = Turn(policy, provider, model="openai/x", tools=reg, clock=clock, observers=[Watch()])
    r = asyncio.run(turn.run(USER))
    assert r.outcome == "completed", [(s.state, s.event, s.target) for s in r.trace]
    assert clock.now() >= 36
    after_batch = [t for name, t in seen if name == "ok"]
    assert after_batch and after_batch[0] >= 6, seen
    assert max(t for _, t in seen) < 30 and 6 <= r.usage.working_time < 30
