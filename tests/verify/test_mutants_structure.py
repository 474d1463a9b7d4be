"""How ``check`` describes an event no transition handles and a transition that never fires
(loopspec/verify/structure.py), written against the survivors of its mutation runs: the event's
attributes, the counters at their cap (a backstop or a counter below its cap is not named) and the
flags set, in the ``events_handled`` findings and in the JSON's ``unhandled_events``; nothing at all
when no guard depends on them; and for a dead transition, why (shadowed, never enabled, or never
selected past the case search's budget) and which earlier transition shadows it most often."""

from __future__ import annotations

import dataclasses

import pytest

import loopspec.verify.cases as cases_module
from loopspec.verify import check_policy
from loopspec.verify import abstraction as abstraction_module
from loopspec.verify.abstraction import Analysis
from loopspec.verify.atoms import UNKNOWN

from test_check import CALL, HALTS, HEAD, TOOLS, policy, stream

RATE_LIMIT = "with status=0, message='', retry_after=0.0, code='', wait_too_long=False"


NEVER_ENABLED = "never enabled: its guard (with its cap checks) never holds in a reachable configuration"
NEVER_SELECTED = "never selected: an earlier transition matches first wherever this one may be enabled"


def dead(r, text_index: int, reason: str, *shadowed_by: str) -> None:  # type: ignore[no-untyped-def]
    """The check found exactly one dead transition, ``read --text[text_index]--> fail``, for ``reason``."""
    assert r.structure.to_json()["shadowed_transitions"] == [
        {"transition": f"read --text[{text_index}]--> fail", "reason": reason, "shadowed_by": list(shadowed_by)}
    ]


def test_an_unhandled_event_names_its_attributes_capped_counters_and_flags() -> None:
    # a rate limit is retried on 'tries', then on 'more', then unhandled; 'spare' is never at its cap
    # and the backstops are never named; 'a' and 'b' are set together
    head = HEAD.replace("  tries: {max: 2}\n", "  tries: {max: 2}\n  more: {max: 1}\n  spare: {max: 3}\nflags:\n  a:\n  b:\n")
    retry = "{when: {counter: %s, lt: max}, do: [{increment: %s}], to: ask}"
    call = CALL.replace(
        "      rate_limit: fail\n", f"      rate_limit: [{retry % ('tries', 'tries')}, {retry % ('more', 'more')}]\n"
    ).replace("      transient: fail\n", "      transient: [{when: {all: [{flag: b}, {counter: spare, lt: max}]}, to: fail}, fail]\n")
    read = stream(
        broken="[{when: {attr: cause, eq: overflow}, to: fail}]",
        text="[{when: {flag: a, is: false}, do: [{set: a}, {set: b}], to: ask}]",
    )
    r = check_policy(policy(call, read, TOOLS, HALTS, head=head))
    whens = [
        f"{RATE_LIMIT}; when tries is at its cap, more is at its cap",
        "with cause='disconnect', chars=0, message=''",
        f"{RATE_LIMIT}; when tries is at its cap, more is at its cap; with flags a, b",
        "with finish_reason='', chars=0; with flags a, b",
        "with cause='disconnect', chars=0, message=''; with flags a, b",  # its own edge since 2026-12-01
    ]
    assert [(u["state"], u["event"], u["when"]) for u in r.structure.to_json()["unhandled_events"]] == [
        ("ask", "rate_limit", whens[0]),
        ("read", "broken", whens[1]),
        ("ask", "rate_limit", whens[2]),
        ("read", "text", whens[3]),
        ("read", "broken", whens[4]),
    ]
    tail = "has no enabled transition (the turn would end in policy_error)"
    assert r.properties["events_handled"].findings == [
        f"ask: event 'rate_limit' {whens[0]} {tail}",
        f"read: event 'broken' {whens[1]} {tail}",
        f"ask: event 'rate_limit' {whens[2]} {tail}",
        f"read: event 'text' {whens[3]} {tail}",
        f"read: event 'broken' {whens[4]} {tail}",
    ]


def test_an_unhandled_event_with_nothing_to_tell_is_named_alone() -> None:
    esc = "  nudge:\n    kind: escalate\n    apply: [compact]\n    on: {done: [{when: {flag: c}, to: fail}], failed: fail}\n"
    r = check_policy(policy(CALL, stream(empty="nudge"), TOOLS, esc, HALTS, head=HEAD + "flags:\n  c:\n"))
    assert r.structure.to_json()["unhandled_events"] == [{"state": "nudge", "event": "done", "attrs": {}, "when": None}]
    assert r.properties["events_handled"].findings == [
        "nudge: event 'done' has no enabled transition (the turn would end in policy_error)"
    ]


def test_a_shadowed_transition_in_the_json_names_why_and_what_shadows_it() -> None:
    read = stream(text="[{to: done}, {when: {attr: chars, gt: 0}, to: fail}]")
    r = check_policy(policy(CALL, read, TOOLS, HALTS))
    dead(r, 1, "shadowed: an earlier transition always matches first (read --text[0]--> done)", "read --text[0]--> done")


def test_an_unreachable_state_does_not_hide_the_dead_transitions_of_states_after_it() -> None:
    """A halt no run reaches is declared before the stream state: the stream state's shadowed
    transition is still found (the search for dead transitions skips an unreachable state and
    goes on to the next)."""
    lonely = '  lonely: {kind: halt, outcome: completed, message: "never"}\n'
    read = stream(text="[{to: done}, {when: {attr: chars, gt: 0}, to: fail}]")
    r = check_policy(policy(CALL, lonely, read, TOOLS, HALTS))
    assert r.structure.unreachable == ["lonely"]
    dead(r, 1, "shadowed: an earlier transition always matches first (read --text[0]--> done)", "read --text[0]--> done")


FLAGS_HEAD = HEAD + "flags:\n  ran: {doc: a tool batch ran}\n  twice: {doc: two tool batches ran}\n"
# the first batch sets `ran`, the second `twice`: the stream state is reached with no flag, with
# `ran`, and with both, so a transition guarded by `ran` matches in twice as many places
FLAG_TOOLS = TOOLS.replace(
    "      ok: ask\n", "      ok: [{when: {flag: ran}, do: [{set: twice}], to: ask}, {do: [{set: ran}], to: ask}]\n"
)


def test_a_dead_transition_names_every_earlier_transition_selected_where_it_is_enabled() -> None:
    """text[1] (``twice``, set only once ``ran`` is) is taken by text[0] wherever it holds; the
    catch-all text[3] by text[0] where ``ran`` is set and by text[2] where it is not: both are
    named, in the state's order."""
    assert FLAG_TOOLS != TOOLS
    text = "[{when: {flag: ran}, to: done}, {when: {flag: twice}, to: fail}, {to: out}, {to: fail}]"
    r = check_policy(policy(CALL, stream(text=text), FLAG_TOOLS, HALTS, head=FLAGS_HEAD))
    assert r.structure.to_json()["shadowed_transitions"] == [
        {"transition": "read --text[1]--> fail",
         "reason": "shadowed: an earlier transition always matches first (read --text[0]--> done)",
         "shadowed_by": ["read --text[0]--> done"]},
        {"transition": "read --text[3]--> fail",
         "reason": "shadowed: earlier transitions always match first (read --text[0]--> done, read --text[2]--> out)",
         "shadowed_by": ["read --text[0]--> done", "read --text[2]--> out"]},
    ]


CALLS_TO_SPARE = HEAD.replace("model_calls: {max: 5", "model_calls: {max: 10").replace("tool_batches: {max: 3", "tool_batches: {max: 12")
"""Room for a turn to reach 9 model calls with its reply still read (8 tool batches before it)."""


@pytest.mark.parametrize("text, names", [
    ("[{when: {counter: model_calls, eq: 9}, to: done}, {when: {counter: model_calls, le: 7}, to: fail}, "
     "{when: {counter: model_calls, ge: 8}, to: fail}, ask]", ["text[0]--> done", "text[1]--> fail", "text[2]--> fail"]),
    ("[{when: {counter: model_calls, lt: 9}, to: done}, {when: {counter: model_calls, ge: 8}, to: done}, "
     "{when: {counter: model_calls, le: 7}, to: ask}, fail]", ["text[0]--> done", "text[1]--> done"]),
])
def test_a_transition_shadowed_jointly_names_each_earlier_transition_at_its_own_values(text: str, names: list[str]) -> None:
    """The last transition is taken, at each number of calls made so far, by another guard on
    that number. The checker splits a backstop's low phase into contexts and searches each; a name
    chosen by which shadower won the most contexts followed that split (an internal detail), and
    named one of them. Every earlier transition selected somewhere it is enabled is named."""
    p = policy(CALL, stream(text=text), TOOLS, HALTS, head=CALLS_TO_SPARE)
    shadowed = check_policy(p).to_json()["structure"]["shadowed_transitions"]
    last = text.count("{when:")
    assert (shadowed[-1]["transition"], shadowed[-1]["shadowed_by"]) == (
        f"read --text[{last}]--> {text.rsplit(', ', 1)[1].rstrip(']')}", [f"read --{n}" for n in names]
    )


def test_a_transition_whose_guard_never_holds_is_never_enabled() -> None:
    text = "[{when: {counter: tries, gt: 5}, to: fail}, {to: done}]"  # tries stops at 2
    r = check_policy(policy(CALL, stream(text=text), TOOLS, HALTS))
    dead(r, 0, NEVER_ENABLED)


@pytest.mark.parametrize("effect", ["", "do: [{increment: tries}], "], ids=["no_cap", "capped"])
def test_past_the_case_search_budget_a_dead_transition_is_never_selected_not_never_enabled(
    monkeypatch: pytest.MonkeyPatch, effect: str
) -> None:
    """With a search budget of one decision no case of text[1] gets a witness: the checker cannot
    say its guard never holds, only that it was never selected. With an increment, the search for
    a configuration within its cap runs too (on the same counter ranges)."""
    monkeypatch.setattr(cases_module, "SEARCH_BUDGET", 1)
    text = "[{to: done}, {when: {all: [{attr: chars, gt: 3}, {attr: chars, lt: 9}]}, " + effect + "to: fail}]"
    r = check_policy(policy(CALL, stream(text=text), TOOLS, HALTS))
    dead(r, 1, NEVER_SELECTED)


def test_an_undecided_context_does_not_hide_a_shadower_another_context_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first context asked is answered UNKNOWN for every earlier transition (as a search that
    gave up would): the contexts after it still find the shadower, and it is named."""
    real = abstraction_module.shadowing
    asked: list[int] = []

    def undecided_first(sel, domains, j):  # type: ignore[no-untyped-def]
        asked.append(j)
        return [UNKNOWN] * j if len(asked) == 1 else real(sel, domains, j)

    monkeypatch.setattr(abstraction_module, "shadowing", undecided_first)
    r = check_policy(policy(CALL, stream(text="[{to: done}, {to: fail}]"), TOOLS, HALTS))
    assert len(asked) > 1
    dead(r, 1, "shadowed: an earlier transition always matches first (read --text[0]--> done)", "read --text[0]--> done")


def test_only_the_transitions_own_state_decides_why_it_is_dead() -> None:
    """text[1]'s guard holds only with `ran`, which is set on the way out of `read` (into `done`):
    in `read` it never holds. Other states are reached with `ran` set, and there text[0] would
    match first; a reason read off their configurations would say "shadowed"."""
    text = "[{do: [{set: ran}], to: done}, {when: {flag: ran}, to: fail}]"
    r = check_policy(policy(CALL, stream(text=text), TOOLS, HALTS, head=FLAGS_HEAD))
    dead(r, 1, NEVER_ENABLED)


def test_past_the_search_budget_a_transition_its_cap_never_lets_through_is_never_enabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Adding 3 to `tries` (max 2) never fits its cap. With two decisions the search gives up on
    the four-atom guard, but the cap alone shows the transition never enabled, so no "may fire"
    case is kept for it (and the reason is not "never selected")."""
    monkeypatch.setattr(cases_module, "SEARCH_BUDGET", 2)
    guard = "{all: [{attr: chars, gt: 3}, {attr: chars, lt: 9}, {attr: chars, gt: 4}, {attr: chars, lt: 8}]}"
    text = "[{to: done}, {when: " + guard + ", do: [{increment: tries, by: 3}], to: fail}]"
    r = check_policy(policy(CALL, stream(text=text), TOOLS, HALTS))
    dead(r, 1, NEVER_ENABLED)


def test_a_catch_all_shadowed_in_some_places_by_one_transition_and_elsewhere_by_another_names_both() -> None:
    """``nudge`` is reached with and without ``hot``: its catch-all is taken by the first guarded
    transition where ``hot`` is set and by the second where it is not, so both are named."""
    from loopspec import load_policy_text

    from test_mutants_cover import POLICY

    text = (POLICY.replace("stalled: out", "stalled: cut")
            .replace("tries: {max: 2}", "tries: {max: 2}\nflags:\n  hot: {doc: x}\n  warm: {doc: y}")
            .replace("length: out", "length: {do: [{set: hot}], to: ask}")
            .replace("malformed_args: out", "malformed_args: {do: [{set: hot}, {set: warm}], to: ask}")
            .replace("empty: out", "empty: nudge")
            + "  cut:\n    kind: stub\n    on: {mid_text: out, mid_tool_call: [{when: {flag: hot}, to: out}, "
              "{do: [{increment: tries}], to: nudge}]}\n"
            + "  nudge:\n    kind: escalate\n    apply: [compact]\n    on: {done: [{when: {flag: hot}, to: done}, "
              "{when: {not: {flag: hot}}, to: out}, ask], failed: [{when: {flag: warm}, to: out}, out]}\n")
    p = load_policy_text(text, "shadow.yaml")
    [dead] = check_policy(p).to_json()["structure"]["shadowed_transitions"]
    assert dead["transition"] == "nudge --done[2]--> ask"
    assert dead["shadowed_by"] == ["nudge --done[0]--> done", "nudge --done[1]--> out"]
