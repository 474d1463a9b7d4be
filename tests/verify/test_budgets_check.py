"""`loopspec check` on policies with usage budgets.

A budget's amount is the adversary's, so the checker must explore every budget level at every call
entry: a property broken only once a budget is spent (an empty exhausted message, tools run after
the wrap-up disabled them) must be found. A budget bounds a loop only through ``min_per_call``; a
policy that counts on a budget without it must not be proven to stop at that budget. The reference
explorer of ``_soundness.py`` (which measures budgets through ``Policy.budget_status``) agrees with
the checker on every policy here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given, note, settings

from loopspec import load_policy_text
from loopspec.language.diagnostics import SpecError
from loopspec.verify import check_policy

from _paths import ROOT
from _soundness import compare

EXAMPLE = (ROOT / "docs" / "examples" / "budgets.yaml").read_text()


def variant(budgets: str, *replace: tuple[str, str]) -> str:
    start, end = EXAMPLE.index("budgets:\n"), EXAMPLE.index("templates:\n")
    text = EXAMPLE[:start] + budgets + EXAMPLE[end:]
    for old, new in replace:
        assert old in text, old
        text = text.replace(old, new)
    return text


SMALL = ("model_calls: {max: 100,", "model_calls: {max: 4,"), ("tool_batches: {max: 60,", "tool_batches: {max: 3,")
NO_BUDGET_LOOP = ("bounded_by: cost", "bounded_by: tool_batches")


def test_the_example_is_proven_and_says_which_loop_the_cost_budget_bounds() -> None:
    r = check_policy(load_policy_text(EXAMPLE, "budgets.yaml"), strict=True)
    assert r.proven, r.format_text()
    text = r.format_text()
    assert "cost (max 0.05, min_per_call 0.001): at most 51 model calls per turn; it bounds: tools --ok[0]--> ask" in text
    assert "output_tokens (max 2000): no min_per_call, so it bounds no loop in this proof" in text
    j = r.to_json()
    assert j["budgets"][1] == {"budget": "cost", "max": 0.05, "min_per_call": 0.001, "model_calls_at_most": 51,
                               "bounds_loops": ["tools --ok[0]--> ask"]}
    assert [b["backstop"] for b in j["declared_backstop_loops"]] == ["cost"]
    json.dumps(j)


def test_a_budget_bounds_only_the_loops_whose_bound_passes_through_the_model_calls() -> None:
    """A retry loop the retries counter ends is not the budget's; nor does a budget without
    min_per_call list any loop, in the text or the JSON."""
    text = EXAMPLE.replace("budgets:\n", "counters:\n  retries: {max: 2}\nbudgets:\n", 1).replace(
        "      rate_limit: failed\n",
        "      rate_limit:\n        - when: {counter: retries, lt: max}\n          do: [{increment: retries}]\n"
        "          to: ask\n        - to: failed\n",
        1,
    )
    r = check_policy(load_policy_text(text, "budgets.yaml"))
    assert r.proven, r.format_text()
    output_tokens, cost = r.to_json()["budgets"]
    assert cost["bounds_loops"] == ["tools --ok[0]--> ask"]
    assert output_tokens == {"budget": "output_tokens", "max": 2000.0, "min_per_call": None,
                             "model_calls_at_most": None, "bounds_loops": []}


def test_without_a_wrap_up_no_call_follows_the_budgets_last() -> None:
    """ceil(0.05 / 0.001) = 50 calls reach the budget; only a wrap_up adds one more (51 above)."""
    r = check_policy(load_policy_text(EXAMPLE.replace("    wrap_up: summarize\n", "", 1), "budgets.yaml"))
    cost = r.to_json()["budgets"][1]
    assert cost["model_calls_at_most"] == 50, cost
    assert "cost (max 0.05, min_per_call 0.001): at most 50 model calls per turn" in r.format_text()


def test_a_budget_does_not_lower_the_worst_case_figures() -> None:
    """51 calls by the budget, 100 by the backstop: the figure stays the backstop's (the budget's
    bound is reported beside it, never folded into a figure a concrete search must reach)."""
    r = check_policy(load_policy_text(EXAMPLE, "budgets.yaml"))
    assert r.worst_case["model_calls"].value == 100


def test_an_empty_message_on_the_exhausted_halt_is_found() -> None:
    """Only a spent budget leads to out_of_budget: a checker that never measured a budget would
    call this policy proven."""
    text = variant("budgets:\n  input_tokens: {max: 5000, exhausted: out_of_budget}\n", NO_BUDGET_LOOP,
                   ('message: "The turn\'s budget is spent. {response}"', 'message: ""'))
    r = check_policy(load_policy_text(text, "budgets.yaml"))
    assert not r.properties["halt_message"].passed
    assert "out_of_budget" in r.properties["halt_message"].reason + " ".join(r.properties["halt_message"].findings)


def test_tools_run_after_the_budget_wrap_up_disabled_them_are_found() -> None:
    """The wrap-up disables tools; a stream that runs tool calls regardless is a violation that
    only the budget's wrap-up path reaches."""
    text = variant(
        "budgets:\n  cost: {max: 1, wrap_up: summarize, exhausted: out_of_budget}\n",
        NO_BUDGET_LOOP,
        ("        - when: {flag: tools_disabled}    # the last call offered no tools: run none\n"
         "          do: [drop_tool_calls]\n          to: out_of_budget\n", ""),
    )
    r = check_policy(load_policy_text(text, "budgets.yaml"))
    assert not r.properties["tools_stay_disabled"].passed
    path = [s.to for s in r.properties["tools_stay_disabled"].counterexample.steps]
    assert "summarize" in path


def test_bounded_by_a_budget_without_min_per_call_is_refused() -> None:
    text = variant("budgets:\n  cost: {max: 0.05, exhausted: out_of_budget}\n")
    with pytest.raises(SpecError) as exc:
        load_policy_text(text, "budgets.yaml")
    assert "budget 'cost' bounds no loop: it declares no min_per_call" in str(exc.value)


def test_a_loop_meant_to_end_at_a_budget_without_min_per_call_is_still_a_backstop_only_loop() -> None:
    """Written to fool the checker: a retry loop that only the cost budget is meant to end (every
    retry costs money, surely). Calls may cost nothing, so the loop is bounded only by the model-call
    backstop, and --strict fails it."""
    text = variant(
        "budgets:\n  cost: {max: 0.05, exhausted: out_of_budget}\n",
        NO_BUDGET_LOOP,
        ("      rate_limit: failed\n", "      rate_limit: ask\n"),
    )
    r = check_policy(load_policy_text(text, "budgets.yaml"), strict=True)
    assert not r.properties["no_backstop_only_loops"].passed
    assert any("ask --rate_limit[0]--> ask" in f for f in r.properties["no_backstop_only_loops"].findings)
    assert "cost (max 0.05): no min_per_call, so it bounds no loop in this proof" in r.format_text()


@pytest.mark.parametrize(
    "budgets",
    [
        "budgets:\n  cost: {max: 0.05, warn_at: 0.04, warning: cost_warning, wrap_up: summarize, exhausted: out_of_budget}\n",
        "budgets:\n  cost: {max: 0.003, min_per_call: 0.001, wrap_up: summarize, exhausted: out_of_budget}\n",
        "budgets:\n  output_tokens: {max: 10, exhausted: out_of_budget}\n  working_time: {max: 5, warn_at: 1, warning: cost_warning, exhausted: failed}\n",
    ],
    ids=["warn-and-wrap-up", "min-per-call", "two-budgets"],
)
@pytest.mark.parametrize("mode", ["default", "elim"])
def test_the_reference_explorer_agrees(budgets: str, mode: str) -> None:
    policy = load_policy_text(variant(budgets, NO_BUDGET_LOOP, *SMALL), "budgets.yaml")
    cmp = compare(policy, mode=mode, absent=False)
    assert cmp.ref.skipped is None
    assert "out_of_budget" in cmp.ref.reached
    assert [f for f in cmp.findings if not f.absent_only] == [], [f.detail for f in cmp.findings]


def test_a_budget_built_in_code_without_min_per_call_does_not_declare_a_loop() -> None:
    """The validator refuses bounded_by such a budget; a policy built in code can still name one,
    and the checker must not take the name for a bound."""
    import dataclasses

    policy = load_policy_text(EXAMPLE, "budgets.yaml")
    cost = dataclasses.replace(policy.budgets["cost"], min_per_call=None)
    weak = dataclasses.replace(policy, budgets={**policy.budgets, "cost": cost})
    r = check_policy(weak, strict=True)
    assert not r.properties["no_backstop_only_loops"].passed
    assert "tools --ok[0]--> ask: bounded only by the model_calls backstop" in r.properties["no_backstop_only_loops"].findings


@pytest.mark.parametrize(
    "prop, text",
    [
        ("halt_message", variant("budgets:\n  input_tokens: {max: 5000, exhausted: out_of_budget}\n", NO_BUDGET_LOOP,
                                 ('message: "The turn\'s budget is spent. {response}"', 'message: ""'))),
        ("tools_stay_disabled", EXAMPLE.replace(
            "        - when: {flag: tools_disabled}    # the last call offered no tools: run none\n"
            "          do: [drop_tool_calls]\n          to: out_of_budget\n", "")),
    ],
    ids=["input-tokens-exhausted", "cost-wrap-up"],
)
def test_a_counterexample_through_a_budget_becomes_a_cassette_whose_usage_reaches_it(prop: str, text: str) -> None:
    from loopspec.replay.harness import replay_sync
    from loopspec.verify.to_cassette import cassette_from_counterexample

    policy = load_policy_text(text, "budgets.yaml")
    r = check_policy(policy)
    cex = r.properties[prop].counterexample
    assert cex is not None and cex.concrete and any(s.measured for s in cex.steps)
    cassette = cassette_from_counterexample(policy, cex, prop)
    report = replay_sync(cassette, policy)
    assert any(f.startswith(f"property {prop} fails") for f in report.failures), report.failures
    measured = [tuple(s.measured) for s in report.result.trace if s.measured]
    wanted = [s.measured for s in cex.steps if s.measured]
    # the replay may measure more than the path (a warning no guard reads), never less
    assert all(set(w) <= set(m) for w, m in zip(wanted, measured)) and len(measured) >= len(wanted)
    # every reply of a policy with a cost budget says its cost, so none is measured unknown
    assert not any("cost_unknown" in m for m in measured)
    assert report.result.usage.cost_unknown == ("cost" not in policy.budgets)


# --------------------------------------------------------------------------- generated policies


def _with_budgets(draw: Any) -> str:
    """A generated policy (tests/_soundness.py) with one or two budgets and, sometimes, a guard on
    a budget flag in the call state: exhausted at any halt, wrap_up, warn_at and min_per_call drawn."""
    import _soundness as S
    from hypothesis import strategies as st

    doc = S.generate_document(S.DrawChooser(draw))
    states = doc["states"]
    halts = [s for s, b in states.items() if b["kind"] == "halt"]
    wraps = [s for s, b in states.items() if b["kind"] in ("escalate", "continue")]
    names = draw(st.lists(st.sampled_from(["input_tokens", "cost", "working_time"]), min_size=1, max_size=2, unique=True))
    budgets: dict[str, Any] = {}
    for name in names:
        cap = draw(st.sampled_from([1, 2.5, 10]))
        b: dict[str, Any] = {"max": cap, "exhausted": draw(st.sampled_from(halts))}
        if wraps and draw(st.booleans()):
            b["wrap_up"] = draw(st.sampled_from(wraps))
        if draw(st.booleans()):
            b["warn_at"], b["warning"] = cap / 2, "warn"
        if draw(st.booleans()):
            b["min_per_call"] = draw(st.sampled_from([1, 0.9, 3]))
        budgets[name] = b
    doc["budgets"] = budgets
    flags = [f"{n}_{lv}" for n in names for lv in ("warned", "reached")] + (["cost_unknown"] if "cost" in names else [])
    if draw(st.booleans()):
        flag = draw(st.sampled_from(flags))
        on = states["ask"]["on"]
        first = {"when": {"flag": flag}, "to": draw(st.sampled_from(halts))}
        rest = on["opened"] if isinstance(on["opened"], list) else [on["opened"]]
        on["opened"] = [first, *rest]
    return S.dump(doc)


def budget_policies() -> Any:
    from hypothesis import strategies as st

    return st.composite(lambda draw: _with_budgets(draw))()


KINDS = ("false_proven_halts", "false_proven_bound", "false_proven_events", "outcome_bound_low", "checker_crash",
         "false_claim_dead", "false_claim_unreachable")


@settings(max_examples=25, deadline=None)
@given(text=budget_policies())
def test_generated_policies_with_budgets_agree_with_the_reference(text: str) -> None:
    """The reference explorer measures every budget at nothing, warn_at and max (cost known or
    not) before every step, through Policy.budget_status: the checker must claim nothing it refutes."""
    import _soundness as S

    note(text)
    policy = load_policy_text(text, "generated.yaml")
    ref = S.explore(policy, absent=False)
    assume(ref.skipped is None)
    bad = []
    for mode in ("default", "elim"):
        c = S.compare(policy, mode=mode, absent=False, ref=ref)
        bad += [f"[{mode}] {f.kind}: {f.detail}" for f in c.findings if f.kind in KINDS and not f.absent_only]
    assert not bad, "\n".join(bad)


def test_a_counterexample_that_measures_no_budget_still_says_every_replys_cost() -> None:
    """A cost budget's counterexample whose path measures nothing (an empty halt after one answer):
    its cassette's reply carries a zero cost, so the replay measures the cost as known, as the
    path did, instead of cost_unknown on the next call entry."""
    from loopspec.replay.harness import replay_sync
    from loopspec.verify.to_cassette import cassette_from_counterexample

    policy = load_policy_text(EXAMPLE.replace('done: {kind: halt, outcome: completed, message: "{response}"}',
                                              'done: {kind: halt, outcome: completed, message: ""}'), "budgets.yaml")
    cex = check_policy(policy).properties["halt_message"].counterexample
    assert cex is not None and not any(s.measured for s in cex.steps)
    report = replay_sync(cassette_from_counterexample(policy, cex, "halt_message"), policy)
    assert report.failures == ["property halt_message fails: halt done delivered an empty message"]
    assert report.result.usage.cost_unknown is False and report.result.usage.cost == 0.0


def test_a_cut_reply_that_no_level_needs_still_makes_a_cassette() -> None:
    """A stalled reply cannot carry usage; under a cost budget whose path needs no level of it,
    the reply is left without one (its cost unknown, as a live cut reply's is) rather than the
    counterexample refused as not replayable."""
    from loopspec.replay.harness import replay_sync
    from loopspec.verify.to_cassette import cassette_from_counterexample

    policy = load_policy_text(EXAMPLE.replace("      text: done\n", "      text: failed\n")
                              .replace("      stalled: failed\n", "      stalled: done\n"), "budgets.yaml")
    cex = check_policy(policy).properties["halt_message"].counterexample
    assert cex is not None and [s.event for s in cex.steps] == ["opened", "stalled"]
    cassette = cassette_from_counterexample(policy, cex, "halt_message")
    assert cassette.interactions[0].stall_after is not None
    assert replay_sync(cassette, policy).failures == ["property halt_message fails: halt done delivered an empty message"]


def test_the_call_after_a_budgets_wrap_up_is_always_its_last_call() -> None:
    """A budget once reached stays reached, so the call entered after its wrap-up is always the
    one last call. A transition that fires only in that call without ``last_call`` set is never
    enabled, and the empty halt behind it is unreachable. The abstraction must carry the budget's
    ``reached`` flag to see it (no guard reads it here): without it that call entry may measure the
    budget as not reached, sets no ``last_call``, and the empty halt looks reachable, a false
    alarm on a policy that always says something."""
    text = EXAMPLE.replace(
        "      text: done\n",
        "      text:\n"
        "        - when: {all: [{flag: cost_wrap_up_entered}, {flag: cost_last_call, is: false}]}\n"
        "          to: odd\n"
        "        - to: done\n",
    ).replace("  done: {kind: halt,", "  odd: {kind: halt, outcome: completed, message: \"\"}\n  done: {kind: halt,")
    r = check_policy(load_policy_text(text, "budgets.yaml"))
    assert r.properties["halt_message"].passed, r.format_text()
    assert "unreachable states: odd" in r.format_text()
    assert "summarize" not in r.format_text().split("unreachable states:")[1].splitlines()[0]


def test_a_halt_reached_only_after_the_budgets_last_call_is_checked() -> None:
    """The one last call after a budget's wrap-up goes through; the call entered after it goes to
    ``exhausted``. Here a truncated last reply is continued, so that second entry happens, and it is
    the only way into ``spent``, whose message is empty. The abstraction must carry the budget's
    ``last_call`` flag to see it: without it that entry goes through again and ``spent`` looks
    unreachable, which would prove halt_message for a policy whose turn can end saying nothing."""
    text = variant(
        "budgets:\n  cost: {max: 0.05, min_per_call: 0.001, wrap_up: summarize, exhausted: spent}\n",
        ("backstops:\n", "counters:\n  continuations: {max: 2}\nbackstops:\n"),
        ("      length: failed\n", "      length: {do: [{increment: continuations}], to: more}\n"),
        ("  done: {kind: halt,", "  more: {kind: continue, prompt: summarize_now, on: {done: ask}}\n"
                               "  spent: {kind: halt, outcome: budget, message: \"\"}\n  done: {kind: halt,"),
    )
    r = check_policy(load_policy_text(text, "budgets.yaml"))
    res = r.properties["halt_message"]
    assert not res.passed, r.format_text()
    assert "spent" in res.reason + " ".join(res.findings)
