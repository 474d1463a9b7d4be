"""Tests against the mutants of ``engine/budgets.py`` that the suite let live (a mutation analysis by
hand: each bug planted in the budget meter, seen to survive the engine tests, and killed by a test
here). Whole turns through the public API, in virtual time; each names the plant it kills."""

from __future__ import annotations

import asyncio
from typing import Any

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy_text
from loopspec.replay.interactions import StreamResponse
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
