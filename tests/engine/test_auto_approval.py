"""Auto-approval within a spending cap (ml-intern's YOLO budget): a call the rules mark ``ask`` runs
without a person only when its tool estimates its cost and the estimate fits what is left of the
session's cap; otherwise, and always for ``person`` calls, it waits for a person. The cap holds
across the turns of a session and across a crash."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

import pytest

from loopspec import InProcessProvider, ToolRegistry, Turn, VirtualClock, load_policy_text
from loopspec.engine.approvals import ApprovalSession
from loopspec.journal import SqliteJournal
from loopspec.replay.interactions import StreamResponse

from _paths import DEFAULT_POLICY, FIXTURES

STREAMS = FIXTURES / "streams"
ONE = (STREAMS / "openai_stream_tool_call_single.sse").read_text()  # get_capital
TWO = (STREAMS / "openai_stream_tool_call_parallel.sse").read_text()  # get_weather, get_product_name
TEXT = (STREAMS / "openai_stream_text.sse").read_text()
USER = [{"role": "user", "content": "What is the capital of the UK?"}]


def policy(level: str = "ask", cap: float = 5.0) -> Any:
    rules = (f"approvals:\n  auto_approve: true\n  spending_cap: {cap}\n  rules:\n"
             + "".join(f"    - {{tool: {t}, approval: {level}}}\n" for t in ("get_capital", "get_weather", "get_product_name")))
    text = DEFAULT_POLICY.read_text().replace("\nstates:\n", f"\n{rules}states:\n", 1)
    return load_policy_text(text, "default.yaml")


def registry(ran: list[str], estimate: Callable[..., Any] | None) -> ToolRegistry:
    reg = ToolRegistry()
    for name in ("get_capital", "get_weather", "get_product_name"):
        def tool(_name: str = name, **_: Any) -> str:
            ran.append(_name)
            return "ok"
        reg.register(tool, name=name, parameters={"type": "object", "properties": {}}, cost_estimator=estimate)
    return reg


def run(p: Any, ran: list[str], replies: list[str], *, estimate: Callable[..., Any] | None = lambda **_: 2.0,
        session: ApprovalSession | None = None, approve: Any = None, journal: Any = None) -> Any:
    t = Turn(p, InProcessProvider([StreamResponse(sse=r) for r in replies]), model="openai/x", tools=registry(ran, estimate),
             clock=VirtualClock(), approvals=session, approve=approve, journal=journal, turn_id="t")
    return asyncio.run(t.run(USER)), t


def test_a_call_with_an_estimate_within_the_cap_runs_without_a_person() -> None:
    ran: list[str] = []
    asked: list[str] = []
    result, turn = run(policy(), ran, [ONE, TEXT], approve=lambda c: asked.append(c.id) or False)
    assert result.outcome == "completed" and ran == ["get_capital"] and asked == []
    assert turn.approvals.spent == 2.0


def test_the_cap_holds_across_the_turns_of_a_session() -> None:
    ran: list[str] = []
    session = ApprovalSession(auto_approve=True)
    outcomes = [run(policy(), ran, [ONE, TEXT], session=session)[0].outcome for _ in range(3)]
    assert outcomes == ["completed", "completed", "approval_required"], "2 + 2 fit a cap of 5, the third 2 does not"
    assert ran == ["get_capital", "get_capital"] and session.spent == 4.0


@pytest.mark.parametrize("estimate", [None, lambda **_: None, lambda **_: float("nan"), lambda **_: -1.0,
                                      lambda **_: True, lambda **_: 1 / 0, lambda **_: "2"])
def test_a_call_whose_cost_cannot_be_estimated_goes_to_a_person(estimate: Any) -> None:
    ran: list[str] = []
    result, turn = run(policy(), ran, [ONE, TEXT], estimate=estimate)
    assert result.outcome == "approval_required" and ran == [] and turn.approvals.spent == 0.0


def test_a_person_call_always_goes_to_a_person_even_at_no_cost() -> None:
    ran: list[str] = []
    result, _ = run(policy(level="person"), ran, [ONE, TEXT], estimate=lambda **_: 0.0)
    assert result.outcome == "approval_required" and ran == []
    result, _ = run(policy(level="person"), ran, [ONE, TEXT], estimate=lambda **_: 0.0, approve=lambda c: True)
    assert result.outcome == "completed" and ran == ["get_capital"], "the person (the hook) approves"


def test_without_auto_approval_the_hook_decides() -> None:
    ran: list[str] = []
    result, turn = run(policy(), ran, [ONE, TEXT], session=ApprovalSession(auto_approve=False))
    assert result.outcome == "approval_required" and ran == [] and turn.approvals.spent == 0.0


def test_the_calls_of_a_batch_reserve_in_order_and_a_batch_that_waits_spends_nothing() -> None:
    """Two calls of 3 each against a cap of 5: the first fits, the second does not, so the batch
    waits for a person and neither runs; nothing is charged for a batch that did not run."""
    ran: list[str] = []
    result, turn = run(policy(), ran, [TWO, TEXT], estimate=lambda **_: 3.0)
    assert result.outcome == "approval_required" and ran == [] and turn.approvals.spent == 0.0
    ran2: list[str] = []
    result, turn = run(policy(cap=6.0), ran2, [TWO, TEXT], estimate=lambda **_: 3.0)
    assert result.outcome == "completed" and sorted(ran2) == ["get_product_name", "get_weather"] and turn.approvals.spent == 6.0


def test_a_crash_never_refunds_the_cap(tmp_path: Path) -> None:
    """The journal's checkpoints carry what auto-approval spent; a turn resumed with a fresh session
    goes on from it."""
    ran: list[str] = []
    with SqliteJournal(tmp_path / "whole.db") as whole:
        run(policy(), ran, [ONE, TEXT], journal=whole)
        entries = whole.entries("t")
    second = [i for i, e in enumerate(entries) if e.kind == "checkpoint"][2]  # call, batch, then the second call
    assert entries[second].body["approval_spent"] == 2.0
    with SqliteJournal(tmp_path / "cut.db") as cut:  # the process died right after that checkpoint
        for e in entries[: second + 1]:
            cut.append("t", e.kind, e.body)
        t = Turn(policy(), InProcessProvider([StreamResponse(sse=TEXT)]), model="openai/x", tools=registry(ran, lambda **_: 2.0),
                 clock=VirtualClock(), journal=cut, turn_id="t", approvals=ApprovalSession(auto_approve=True))
        result = asyncio.run(t.resume("t"))
    assert result.outcome == "completed" and t.approvals.spent == 2.0


def test_the_estimate_is_asked_of_the_calls_own_arguments() -> None:
    """mutmut ``estimate_3``: the estimator was called with no arguments, so one that prices the
    call by what it asks for (here by country) failed, and every such call went to a person."""
    ran: list[str] = []
    result, turn = run(policy(), ran, [ONE, TEXT], estimate=lambda country: {"UK": 1.5}[country])
    assert result.outcome == "completed" and ran == ["get_capital"] and turn.approvals.spent == 1.5


def test_a_call_estimated_free_runs_without_a_person_even_with_no_cap_left() -> None:
    """mutmut ``estimate_10``: an estimate of exactly 0 was refused as if it could not be made, so
    a free call waited for a person; 0 is a cost, and it fits any cap, even one spent to the end."""
    ran: list[str] = []
    session = ApprovalSession(auto_approve=True, spent=5.0)
    result, turn = run(policy(cap=5.0), ran, [ONE, TEXT], estimate=lambda **_: 0, session=session)
    assert result.outcome == "completed" and ran == ["get_capital"] and session.spent == 5.0


def test_a_rule_on_the_calls_arguments_decides_by_the_arguments_the_call_sent() -> None:
    """mutmut ``decide_batch_12``/``_13``/``_16``: the rules were matched against no arguments, so
    a rule that lets get_capital(country=UK) through unasked never matched and a person was asked."""

    def unasked_for(country: str) -> Any:
        rules = ("approvals:\n  rules:\n"
                 f"    - {{tool: get_capital, approval: none, when: {{arg: country, eq: {country}}}}}\n"
                 "    - {tool: get_capital, approval: person}\n")
        return load_policy_text(DEFAULT_POLICY.read_text().replace("\nstates:\n", f"\n{rules}states:\n", 1), "default.yaml")

    ran: list[str] = []
    result, _ = run(unasked_for("UK"), ran, [ONE, TEXT], estimate=None)
    assert result.outcome == "completed" and ran == ["get_capital"], "the call asks for the UK"
    result, _ = run(unasked_for("FR"), ran, [ONE, TEXT], estimate=None)
    assert result.outcome == "approval_required" and ran == ["get_capital"], "another country goes to a person"
