"""How a counterexample's cassette is given usage (``charge_budgets``): each reply carries what
brings each budget to exactly the level the next call entry measured, and the plans a cassette
cannot express are refused with the step and the reason."""

from __future__ import annotations

from typing import Any

import pytest

from loopspec import load_policy_text
from loopspec.language.alphabet import Event
from loopspec.replay.synth import reply
from loopspec.verify.budget_usage import charge_budgets
from loopspec.verify.cassette_plan import PlannedStep
from loopspec.verify.event_options import NotReplayable, Option
from _policy_text import tool_loop
POLICY = """\
loopspec: 1
initial: ask
templates: {w: "spend less"}
backstops:
  model_calls: {max: 10, exhausted: out}
  tool_batches: {max: 5, exhausted: out}
budgets:
  input_tokens: {max: 100, warn_at: 49.5, warning: w, exhausted: out}
  cost: {max: 2.5, exhausted: out}
states:
LOOP  done: {kind: halt, outcome: completed, message: "{response}"}
  out: {kind: halt, outcome: budget, message: "spent"}
""".replace("LOOP", tool_loop("out", {"opened": "[{when: {flag: input_tokens_warned}, to: read}, read]"},
                              {"text": "done", "tool_calls": "tools"}, {"ok": "ask"}))


def _policy(text: str = POLICY) -> Any:
    return load_policy_text(text, "budgets.yaml")


def _round(measured: tuple[str, ...], interaction: Any = None) -> list[PlannedStep]:
    """One call, its tool-call reply and the tool batch whose way back to the call measures ``measured``."""
    return [PlannedStep("ask", Event("opened", {}), Option({}), "read", None),
            PlannedStep("read", Event("tool_calls", {}), Option({}, interaction=interaction or reply(tool_calls=[("f", {})])), "tools", None),
            PlannedStep("tools", Event("ok", {}), Option({}), "ask", None, measured=frozenset(measured))]


def _usage(planned: list[PlannedStep]) -> list[Any]:
    return [s.option.interaction.chunks[-1].get("usage") for s in planned if s.option.interaction is not None]


def test_each_reply_carries_what_brings_each_budget_to_the_level_measured_next() -> None:
    """The warning level of input_tokens (49.5, rounded up to whole tokens) after the first reply;
    nothing new after the second (it says zero, and its cost); then the rest up to the max and the
    whole cost cap (a float, not rounded) after the third, whose call entry the budgets end."""
    planned = (_round(("input_tokens_warned",)) + _round(())  # the warning stays set: nothing new to measure
               + _round(("input_tokens_warned", "input_tokens_reached", "cost_reached")))
    before = [s.option.interaction.chunks for s in planned if s.option.interaction is not None]
    charge_budgets(_policy(), planned)
    assert _usage(planned) == [
        {"prompt_tokens": 50, "completion_tokens": 0, "total_tokens": 50, "cost": 0.0},
        {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost": 0.0},
        {"prompt_tokens": 50, "completion_tokens": 0, "total_tokens": 50, "cost": 2.5},
    ]
    # the usage goes on the last chunk, which keeps everything else it had
    after = [s.option.interaction.chunks for s in planned if s.option.interaction is not None]
    for old, new in zip(before, after):
        assert new[:-1] == old[:-1] and {k: v for k, v in new[-1].items() if k != "usage"} == old[-1]


def test_two_call_entries_after_one_reply_add_up_on_it() -> None:
    """A rate-limited call enters again with no reply between: the warning level and then the max
    are both charged to the one reply before them."""
    text = POLICY.replace("rate_limit: out", "rate_limit: ask")
    planned = _round(("input_tokens_warned",)) + [
        PlannedStep("ask", Event("rate_limit", {}), Option({}), "ask", None,
                    measured=frozenset({"input_tokens_warned", "input_tokens_reached"}))]
    charge_budgets(_policy(text), planned)
    assert _usage(planned) == [{"prompt_tokens": 100, "completion_tokens": 0, "total_tokens": 100, "cost": 0.0}]


def test_a_reply_whose_cost_the_path_measured_unknown_says_no_cost() -> None:
    """cost_unknown measured after a reply: that reply reports no cost (no usage at all, since it
    needs no tokens either); the reply after it says its cost again."""
    planned = _round(("cost_unknown",)) + _round(())
    charge_budgets(_policy(), planned)
    assert _usage(planned) == [None, {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost": 0.0}]


def test_a_policy_without_budgets_leaves_the_replies_alone() -> None:
    plain = _policy(POLICY.split("budgets:")[0] + "states:" + POLICY.split("states:")[1].replace(
        "[{when: {flag: input_tokens_warned}, to: read}, read]", "read").replace("budget, message", "backstop, message"))
    planned = _round(())
    charge_budgets(plain, planned)
    assert _usage(planned) == [None]


@pytest.mark.parametrize(
    ("measured", "message"),
    [
        # a level no usage can reach without reaching another one the path did not measure
        (("input_tokens_reached",), "step 3: the usage that reaches its budgets reaches ['input_tokens_warned'] too"),
    ],
)
def test_a_level_the_usage_cannot_reach_alone_is_refused(measured: tuple[str, ...], message: str) -> None:
    with pytest.raises(NotReplayable) as info:
        charge_budgets(_policy(), _round(measured))
    assert str(info.value) == message


def test_a_level_measured_before_any_reply_is_refused() -> None:
    """The turn enters the call twice before any reply (a continuation first): no usage can have
    been reported when the second entry measures a level."""
    text = POLICY.replace("initial: ask", "initial: start").replace(
        "states:\n", "states:\n  start:\n    kind: continue\n    prompt: w\n    on: {done: ask}\n")
    planned = [PlannedStep("start", Event("done", {}), Option({}), "ask", None, measured=frozenset({"cost_reached"}))]
    with pytest.raises(NotReplayable) as info:
        charge_budgets(_policy(text), planned)
    assert str(info.value) == "step 1 measures cost before any reply could report usage"


def test_working_time_is_refused_since_a_cassette_cannot_set_it() -> None:
    text = POLICY.replace("  cost: {max: 2.5, exhausted: out}\n", "  working_time: {max: 60, exhausted: out}\n")
    with pytest.raises(NotReplayable) as info:
        charge_budgets(_policy(text), _round(("working_time_reached",)))
    assert str(info.value) == "step 3 measures working_time, which a cassette's usage cannot set"


def test_a_cut_reply_is_refused_only_when_a_level_needs_its_usage() -> None:
    """A stalled reply cannot carry usage: refused when the next entry measures a level, left as it
    is (its cost unknown, as live) when only the zero cost would go on it."""
    cut = reply(tool_calls=[("f", {})], stall_after=2)
    with pytest.raises(NotReplayable) as info:
        charge_budgets(_policy(), _round(("input_tokens_warned",), cut))
    assert str(info.value) == "step 2's reply cannot carry usage (a cut or raw stream)"
    planned = _round((), cut) + _round(("input_tokens_warned",))
    charge_budgets(_policy(), planned)
    assert planned[1].option.interaction is cut
    assert _usage(planned)[1] == {"prompt_tokens": 50, "completion_tokens": 0, "total_tokens": 50, "cost": 0.0}


def test_a_level_the_call_floor_reaches_unmeasured_is_refused() -> None:
    """With min_per_call 100 of a max of 100, the second call entry reaches input_tokens whatever
    the replies say: a path that measured nothing there cannot be replayed."""
    text = POLICY.replace("input_tokens: {max: 100, warn_at: 49.5,", "input_tokens: {max: 100, min_per_call: 100, warn_at: 49.5,")
    with pytest.raises(NotReplayable) as info:
        charge_budgets(_policy(text), _round(()))
    assert str(info.value) == "step 3: the usage that reaches its budgets reaches ['input_tokens_reached', 'input_tokens_warned'] too"


def test_cost_unknown_is_refused_where_a_guard_reads_it_and_the_path_did_not_measure_it() -> None:
    """A guard reads cost_unknown: the replies say their cost, so a path that did not measure it
    replays (and one that did gets a reply without cost)."""
    text = POLICY.replace("[{when: {flag: input_tokens_warned}, to: read}, read]",
                          "[{when: {flag: cost_unknown}, to: out}, {when: {flag: input_tokens_warned}, to: read}, read]")
    planned = _round(()) + _round(("cost_unknown",)) + _round(())
    charge_budgets(_policy(text), planned)
    assert [u and u.get("cost") for u in _usage(planned)] == [0.0, None, 0.0]
