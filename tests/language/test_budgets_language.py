"""The budgets: section: what the validator refuses (with file:line:col), and how Policy.step reads
a budget's measurement: only on entering a call, a warning once, wrap_up with one last call, then
exhausted; min_per_call makes the measurement reach the cap after ceil(max / min_per_call) calls."""

from __future__ import annotations

import pytest

from loopspec import load_policy_text
from loopspec.language.alphabet import Event
from loopspec.language.diagnostics import SpecError
from loopspec.language.model import Policy
from loopspec.language.schema import json_schema

from _paths import ROOT

EXAMPLE = (ROOT / "docs" / "examples" / "budgets.yaml").read_text()
TOOL_CALLS = Event("tool_calls", {"tools": ["search"], "count": 1, "chars": 0})


def with_budgets(budgets: str, extra: str = "") -> str:
    start, end = EXAMPLE.index("budgets:\n"), EXAMPLE.index("templates:\n")
    return (EXAMPLE[:start] + budgets + extra + EXAMPLE[end:]).replace("bounded_by: cost", "bounded_by: tool_batches")


@pytest.mark.parametrize(
    "budgets, where, message",
    [
        ("budgets:\n  cost: {max: 0, exhausted: out_of_budget}\n", "budgets.cost.max", "max 0 must be a finite number more than 0"),
        ("budgets:\n  cost: {max: .inf, exhausted: out_of_budget}\n", "budgets.cost.max", "must be a finite number"),
        ("budgets:\n  cost: {max: yes, exhausted: out_of_budget}\n", "budgets.cost.max", "max must be a number, got"),
        ("budgets:\n  cost: {exhausted: out_of_budget}\n", "budgets.cost", "budget 'cost' needs a 'max'"),
        ("budgets:\n  cost: {max: 1}\n", "budgets.cost", "needs 'exhausted'"),
        ("budgets:\n  cost: {max: 1, exhausted: ask}\n", "budgets.cost.exhausted", "cost.exhausted must be a halt state, 'ask' is a call state"),
        ("budgets:\n  cost: {max: 1, exhausted: nowhere}\n", "budgets.cost.exhausted", "unknown state 'nowhere'"),
        ("budgets:\n  cost: {max: 1, exhausted: done, wrap_up: ask}\n", "budgets.cost.wrap_up", "wrap_up must be an escalate (or continue) state"),
        ("budgets:\n  cost: {max: 1, exhausted: done, warn_at: 2, warning: cost_warning}\n", "budgets.cost.warn_at", "warn_at 2 is above max 1"),
        ("budgets:\n  cost: {max: 1, exhausted: done, warn_at: 0.5}\n", "budgets.cost", "warn_at needs a 'warning' template"),
        ("budgets:\n  cost: {max: 1, exhausted: done, warning: cost_warning}\n", "budgets.cost", "a warning needs 'warn_at'"),
        ("budgets:\n  cost: {max: 1, exhausted: done, min_per_call: -1}\n", "budgets.cost.min_per_call", "min_per_call -1 must be"),
        ("budgets:\n  cost: {max: 1, exhausted: done, per_call: 1}\n", "budgets.cost.per_call", "unknown key 'per_call'"),
        ("budgets:\n  dollars: {max: 1, exhausted: done}\n", "budgets.dollars", "unknown key 'dollars' in budgets"),
        ("budgets:\n  cost: {max: 1, exhausted: done}\nflags: {cost_reached: {}}\n", "flags.cost_reached", "flag 'cost_reached' is built in"),
    ],
)
def test_the_validator_refuses_a_bad_budget_where_it_is_written(budgets: str, where: str, message: str) -> None:
    with pytest.raises(SpecError) as exc:
        load_policy_text(with_budgets(budgets), "budgets.yaml")
    diags = exc.value.diagnostics
    hit = [d for d in diags if message in d.message]
    assert hit, [d.message for d in diags]
    assert hit[0].path == where and hit[0].pos is not None and hit[0].pos.line > 1


def test_no_action_may_set_or_clear_a_budget_flag() -> None:
    text = with_budgets("budgets:\n  cost: {max: 1, exhausted: out_of_budget}\n").replace(
        "          do: [drop_tool_calls]\n", "          do: [drop_tool_calls, {clear: cost_reached}]\n")
    with pytest.raises(SpecError, match="'cost_reached' is a budget's flag"):
        load_policy_text(text, "budgets.yaml")


def test_a_guard_may_read_a_budget_flag() -> None:
    text = with_budgets("budgets:\n  cost: {max: 1, warn_at: 0.5, warning: cost_warning, exhausted: out_of_budget}\n").replace(
        "        - when: {flag: tools_disabled}", "        - when: {any: [{flag: tools_disabled}, {flag: cost_warned}]}")
    assert "cost_warned" in load_policy_text(text, "budgets.yaml").flags


def to_call(policy: Policy, cfg: object, measured: frozenset[str] = frozenset()) -> object:
    """opened, tool_calls, ok: back at the call state, with ``measured`` given on entering it."""
    s = policy.step(cfg, Event("opened"))  # type: ignore[arg-type]
    s = policy.step(s.after, TOOL_CALLS)
    return policy.step(s.after, Event("ok"), measured)


def test_a_measurement_joins_only_on_entering_a_call() -> None:
    p = load_policy_text(EXAMPLE, "budgets.yaml")
    cfg = p.initial_config()
    s = p.step(cfg, Event("opened"), frozenset({"cost_reached"}))
    assert s.after.state == "read" and "cost_reached" not in s.after.flags and s.measured == frozenset()


def test_warning_then_wrap_up_then_one_last_call_then_exhausted() -> None:
    # the stream runs tool calls even after the wrap-up disabled tools, so the last call leads to another
    text = EXAMPLE.replace("        - when: {flag: tools_disabled}    # the last call offered no tools: run none\n"
                           "          do: [drop_tool_calls]\n          to: out_of_budget\n", "")
    p = load_policy_text(text, "budgets.yaml")
    warned = to_call(p, p.initial_config(), frozenset({"cost_warned"}))
    assert warned.after.state == "ask" and warned.appended == ("cost_warning",)  # type: ignore[attr-defined]
    again = to_call(p, warned.after, frozenset({"cost_warned"}))  # type: ignore[attr-defined]
    assert again.appended == () and again.measured == frozenset()  # type: ignore[attr-defined]
    spent = to_call(p, again.after, frozenset({"cost_warned", "cost_reached"}))  # type: ignore[attr-defined]
    assert (spent.after.state, spent.redirected_from) == ("summarize", "ask")  # type: ignore[attr-defined]
    last = p.step(spent.after, Event("done"))  # type: ignore[attr-defined]
    assert last.after.state == "ask" and "cost_last_call" in last.after.flags
    end = to_call(p, last.after)
    assert (end.after.state, end.redirected_from) == ("out_of_budget", "ask")  # type: ignore[attr-defined]


def test_without_wrap_up_a_spent_budget_ends_the_turn_at_once() -> None:
    p = load_policy_text(with_budgets("budgets:\n  input_tokens: {max: 100, exhausted: out_of_budget}\n"), "budgets.yaml")
    s = to_call(p, p.initial_config(), frozenset({"input_tokens_reached"}))
    assert s.after.state == "out_of_budget"  # type: ignore[attr-defined]


@pytest.mark.parametrize("cap, least, calls", [(0.05, 0.001, 50), (0.07, 0.01, 7), (0.3, 0.1, 3), (1, 3, 1), (10, 3, 4)])
def test_min_per_call_reaches_the_cap_after_ceil_max_over_min_calls(cap: float, least: float, calls: int) -> None:
    p = load_policy_text(with_budgets(f"budgets:\n  cost: {{max: {cap}, min_per_call: {least}, exhausted: out_of_budget}}\n"), "budgets.yaml")
    assert p.budgets["cost"].call_bound() == calls
    cfg = p.initial_config()
    at = lambda n: cfg.__class__(cfg.state, (n, 0), cfg.flags)  # noqa: E731 - model_calls entered so far
    assert p.budget_status(at(calls - 1), {"cost": 0.0}) == frozenset()
    assert p.budget_status(at(calls), {"cost": 0.0}) == frozenset({"cost_reached"})


def test_budget_levels_are_monotone_combinations() -> None:
    p = load_policy_text(EXAMPLE, "budgets.yaml")
    levels = set(p.budget_levels())
    assert frozenset({"cost_reached"}) not in levels  # reached is past warn_at: warned too
    assert frozenset({"cost_reached", "cost_warned", "output_tokens_reached", "cost_unknown"}) in levels
    assert len(levels) == 3 * 2 * 2


def test_the_schema_describes_budgets() -> None:
    props = json_schema()["properties"]["budgets"]["properties"]
    assert set(props) == {"input_tokens", "output_tokens", "reasoning_tokens", "cost", "working_time"}
    assert props["cost"]["required"] == ["max", "exhausted"]


def test_the_last_call_needs_both_the_wrap_up_and_the_spent_budget() -> None:
    """A call entered after the budget's wrap_up state but before the budget is spent is not its
    last call: once the budget is spent, the turn still gets the one last call the wrap_up grants
    (a ``last_call`` flag set early would end it at once)."""
    from loopspec.language.config import Config

    p = load_policy_text(EXAMPLE, "budgets.yaml")
    cfg = p.initial_config()
    wrapped = Config("summarize", cfg.counters, frozenset({"cost_wrap_up_entered"}))
    early = p.step(wrapped, Event("done"))
    assert early.after.state == "ask" and "cost_last_call" not in early.after.flags
    spent = to_call(p, early.after, frozenset({"cost_reached"}))
    assert spent.after.state == "ask" and "cost_last_call" in spent.after.flags  # type: ignore[attr-defined]


@pytest.mark.parametrize("cap, least, calls", [(0.11, 0.011, 10), (0.22, 0.044, 5)])
def test_a_budget_reached_by_its_call_bound_is_warned_too_when_the_calls_fall_a_rounding_short(
        cap: float, least: float, calls: int) -> None:
    """Reached always means warned. With warn_at at max, ``calls * min_per_call`` at the call bound
    can be a rounding short of max (10 * 0.011 is 0.10999999999999999 < 0.11): the bound says
    reached, and warned must follow from that, not from the floor of the calls."""
    p = load_policy_text(with_budgets(f"budgets:\n  cost: {{max: {cap}, min_per_call: {least}, warn_at: {cap}, "
                                      f"warning: cost_warning, exhausted: out_of_budget}}\n"), "budgets.yaml")
    assert p.budgets["cost"].call_bound() == calls and calls * least < cap
    cfg = p.initial_config()
    at = lambda n: cfg.__class__(cfg.state, (n, 0), cfg.flags)  # noqa: E731 - model_calls entered so far
    assert p.budget_status(at(calls - 1), {"cost": 0.0}) == frozenset()
    assert p.budget_status(at(calls), {"cost": 0.0}) == frozenset({"cost_reached", "cost_warned"})
