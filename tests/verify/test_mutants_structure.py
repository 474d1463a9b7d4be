"""How ``check`` describes an event no transition handles (loopspec/verify/structure.py), written
against the survivors of its mutation run: the event's attributes, the counters at their cap (a
backstop or a counter below its cap is not named) and the flags set, in the ``events_handled``
findings and in the JSON's ``unhandled_events``; and nothing at all when no guard depends on them."""

from __future__ import annotations

from loopspec.verify import check_policy

from test_check import CALL, HALTS, HEAD, TOOLS, policy, stream

RATE_LIMIT = "with status=0, message='', retry_after=0.0, code='', wait_too_long=False"


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
    assert r.structure.to_json()["shadowed_transitions"] == [{
        "transition": "read --text[1]--> fail",
        "reason": "shadowed: an earlier transition always matches first (read --text[0]--> done)",
        "shadowed_by": "read --text[0]--> done",
    }]
