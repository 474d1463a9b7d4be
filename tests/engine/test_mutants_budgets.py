"""Tests against the mutants of ``engine/budgets.py`` that the suite let live (a mutation analysis by
hand: each bug planted in the budget meter, seen to survive the engine tests, and killed by a test
here). Whole turns through the public API, in virtual time; each names the plant it kills."""

from __future__ import annotations

import asyncio
from typing import Any

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy_text
from loopspec.replay.interactions import ErrorResponse, StreamResponse
from loopspec.replay.synth import reply, reply_chunks

from _paths import ROOT

EXAMPLE = ROOT / "docs" / "examples" / "budgets.yaml"
USER = [{"role": "user", "content": "Find every mention of the outage."}]


def policy_with(budgets: str) -> Any:
    """docs/examples/budgets.yaml with its budgets: section replaced."""
    text = EXAMPLE.read_text().replace("bounded_by: cost", "bounded_by: tool_batches")
    start, end = text.index("budgets:\n"), text.index("templates:\n")
    return load_policy_text(text[:start] + budgets + text[end:], "budgets.yaml")


def search(usage: dict[str, int]) -> StreamResponse:
    return StreamResponse(chunks=tuple(reply_chunks(tool_calls=[("search", {"query": "q"})], usage=usage)))


def run(policy: Any, interactions: list[Any]) -> Any:
    reg = ToolRegistry()
    reg.register(lambda query: "more", name="search", parameters={"type": "object", "properties": {"query": {"type": "string"}}})
    turn = Turn(policy, InProcessProvider(interactions), model="openai/x", tools=reg, clock=VirtualClock())
    return asyncio.run(turn.run(USER))


def test_each_token_budget_is_charged_its_own_tokens() -> None:
    """Plants U04 (reasoning_tokens charged the completion tokens) and U06 (input_tokens charged
    prompt and completion tokens): a budget spent by tokens it does not count ended the turn early."""
    usage = {"prompt_tokens": 100, "completion_tokens": 100, "reasoning_tokens": 10}
    for budget in ("reasoning_tokens: {max: 50, exhausted: out_of_budget}", "input_tokens: {max: 150, exhausted: out_of_budget}"):
        result = run(policy_with(f"budgets:\n  {budget}\n"), [search(usage), reply("done")])
        assert (result.outcome, result.usage.model_calls) == ("completed", 2), budget
    spent = run(policy_with("budgets:\n  reasoning_tokens: {max: 15, exhausted: out_of_budget}\n"), [search(usage), search(usage), reply("done")])
    assert spent.outcome == "budget" and spent.usage.reasoning_tokens == 20


def test_a_backoff_is_taken_out_of_working_time_once() -> None:
    """Plant U08: the waits were not cleared once taken out, so one 30 s backoff was subtracted
    again from every later stretch of work and a working-time budget was never reached."""
    budgets = "budgets:\n  working_time: {max: 10, exhausted: out_of_budget}\n"
    text = EXAMPLE.read_text().replace("bounded_by: cost", "bounded_by: tool_batches")
    start, end = text.index("budgets:\n"), text.index("templates:\n")
    text = text[:start] + budgets + "backoff: {wait: [30], max_wait: 60}\ncounters: {retries: {max: 5}}\n" + text[end:]
    text = text.replace("      rate_limit: failed\n", "      rate_limit:\n        - when: {counter: retries, lt: max}\n"
                        "          do: [{backoff: wait, attempt: retries}, {increment: retries}]\n          to: ask\n        - to: failed\n", 1)
    clock = VirtualClock()
    reg = ToolRegistry()

    async def slow_search(query: str) -> str:
        await clock.sleep(6)  # six seconds of work per call
        return "more"

    reg.register(slow_search, name="search", parameters={"type": "object", "properties": {"query": {"type": "string"}}})
    limited = ErrorResponse(429, {"error": {"message": "slow down"}})
    calls = search({"prompt_tokens": 1, "completion_tokens": 1})
    turn = Turn(load_policy_text(text, "budgets.yaml"), InProcessProvider([limited, calls, calls, calls, reply("done")]),
                model="openai/x", tools=reg, clock=clock)
    result = asyncio.run(turn.run(USER))
    assert clock.slept[0] == 30
    assert result.outcome == "budget" and 10 <= result.usage.working_time < 30


def test_working_time_is_the_time_between_measurements_less_every_wait_excluded() -> None:
    """mutmut ``BudgetMeter.__init___6`` (the meter started owing a second) and ``exclude_1``
    (a second wait replaced the first instead of adding to it). Inside a turn both hide: the first
    measurement comes at once, and one backoff at most falls between two measurements. The meter's
    own promise is the sum, so it is held here with a clock moved by hand."""
    from loopspec.engine.budgets import BudgetMeter
    from loopspec.engine.results import TurnUsage

    clock = VirtualClock(start=100.0)
    usage = TurnUsage()
    meter = BudgetMeter(policy_with("budgets:\n  working_time: {max: 60, exhausted: out_of_budget}\n"), usage, clock)
    asyncio.run(clock.sleep(2.5))
    assert meter.amounts()["working_time"] == 2.5, "the time since the meter started, all of it work"
    asyncio.run(clock.sleep(20.0))
    meter.exclude(4.0)
    meter.exclude(6.0)
    assert meter.amounts()["working_time"] == 2.5 + 10.0, "both waits are taken out"
    asyncio.run(clock.sleep(3.0))
    meter.exclude(0.0)  # (mutmut exclude_7: a wait of nothing took out a second)
    meter.exclude(-5.0)  # a clock stepped back is no wait either
    assert meter.amounts()["working_time"] == 15.5
    assert usage.working_time == 15.5


def test_each_token_budget_is_spent_by_its_own_tokens() -> None:
    """mutmut ``amounts_2``/``_3``/``_5``/``_6``: the input or output token amount went under
    another name, so its budget never saw a token and the turn ran past it."""
    usage = {"prompt_tokens": 100, "completion_tokens": 40}
    for budget, spent in (("input_tokens: {max: 150, exhausted: out_of_budget}", "prompt_tokens"),
                          ("output_tokens: {max: 60, exhausted: out_of_budget}", "completion_tokens")):
        result = run(policy_with(f"budgets:\n  {budget}\n"), [search(usage), search(usage), reply("done")])
        assert result.outcome == "budget", budget
        assert getattr(result.usage, spent) == 2 * usage[spent]
