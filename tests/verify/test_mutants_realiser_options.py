"""The recordings the :class:`Realiser` offers for a model call's errors and a stream's events
(loopspec/verify/realiser.py), pinned against the survivors of its mutation run.

Two promises. Every recording replays to exactly the attributes the realiser says it gives,
in process and, for a call error, over HTTP as litellm words it (``alt``). And the candidates
cover what the policy's guards compare with: the statuses, Retry-After values, message words
and codes around each constant, a wait past ``max_wait``, the text lengths around each ``chars``
constant, and both finish reasons a reply can end on, so that every side of a guard that a
recording can take has one. The natural recordings are what a counterexample cassette shows;
they are pinned too.
"""

from __future__ import annotations

from typing import Any

import pytest

from loopspec.language.alphabet import judge_wait
from loopspec.language.model import Policy
from loopspec.verify.event_options import EMPTY_PARAMETERS, HTTP_CALL_PREFIX, freeze_attrs, observe_error, observe_stream
from loopspec.verify.realiser import Realiser

from test_check import CALL, HALTS, TOOLS, policy, stream


def call_policy(event: str, guard: str) -> Policy:
    """The inline policy with ``guard`` on the call error ``event`` (true: done, false: fail)."""
    return policy(CALL.replace(f"      {event}: fail\n", f"      {event}: [{{when: {guard}, to: done}}, fail]\n"),
                  stream(), TOOLS, HALTS)


def stream_policy(event: str, guard: str) -> Policy:
    return policy(CALL, stream(**{event: f"[{{when: {guard}, to: done}}, fail]"}), TOOLS, HALTS)


def call_options(p: Policy, event: str) -> list[Any]:
    """The call-error recordings for ``event``, each checked to replay to its own attributes."""
    r = Realiser(p)
    options = r._fixed("ask", event)
    for o in options:
        seen = judge_wait(observe_error(o.interaction), p.settings.max_wait)
        assert (seen.name, dict(seen.attrs)) == (event, dict(o.attrs))
        assert o.alt == dict(o.attrs, message=HTTP_CALL_PREFIX + said(o)), "litellm's words over HTTP"
        assert o.text is False, "an error leaves no reply"
    assert len({freeze_attrs(o.attrs) for o in options}) == len(options), "no two recordings give the same event"
    return options


def said(o: Any) -> str:
    return str(o.interaction.body["error"]["message"])


# ------------------------------------------------------------------------------------ call errors


def test_retry_after_values_straddle_each_constant_a_guard_compares_with() -> None:
    """A guard on ``retry_after > 30`` gets recordings that wait 30, just over and just under it,
    as well as none, each said in a Retry-After header; only a 429 carries one."""
    options = call_options(call_policy("rate_limit", "{attr: retry_after, gt: 30}"), "rate_limit")
    assert [o.attrs["retry_after"] for o in options] == [0.0, 30.0, 30.5, 29.5] * 2
    assert [o.interaction.headers for o in options[:4]] == [{}, {"retry-after": "30"}, {"retry-after": "30.5"}, {"retry-after": "29.5"}]
    assert {said(o) for o in options} == {"Rate limit reached for requests", "Too many requests"}
    transient = call_options(call_policy("transient", "{attr: retry_after, gt: 30}"), "transient")
    assert {o.attrs["retry_after"] for o in transient} == {0.0}


def test_a_small_retry_after_constant_keeps_its_values_above_zero() -> None:
    options = call_options(call_policy("rate_limit", "{attr: retry_after, ge: 0.25}"), "rate_limit")
    assert [o.attrs["retry_after"] for o in options] == [0.0, 0.25, 0.75] * 2


def test_a_wait_past_max_wait_is_recorded_when_a_guard_reads_wait_too_long() -> None:
    p = call_policy("rate_limit", "{attr: wait_too_long}")
    options = call_options(p, "rate_limit")
    assert [(o.attrs["retry_after"], o.attrs["wait_too_long"]) for o in options] == [
        (0.0, False), (p.settings.max_wait + 1, True)] * 2


def test_statuses_are_the_events_own_and_those_around_each_constant() -> None:
    options = call_options(call_policy("transient", "{attr: status, eq: 507}"), "transient")
    statuses = [503, 500, 502, 529, 506, 507, 508]
    assert [o.attrs["status"] for o in options] == statuses * 2
    assert [o.interaction.status for o in options] == statuses * 2
    # a constant whose neighbours are not this event's statuses adds only those that are
    options = call_options(call_policy("transient", "{attr: status, eq: 505}"), "transient")
    assert [o.attrs["status"] for o in options] == [503, 500, 502, 529, 505, 506] * 2


def test_message_words_a_guard_looks_for_are_said_alone_and_together() -> None:
    guard = "{all: [{attr: message, contains: quota}, {attr: message, contains: daily}]}"
    options = call_options(call_policy("rate_limit", guard), "rate_limit")
    assert [said(o) for o in options] == [
        "Rate limit reached for requests",
        "Too many requests",
        "Rate limit reached for requests (quota)",
        "Rate limit reached for requests (daily)",
        "Too many requests (quota)",
        "Too many requests (daily)",
        "Rate limit reached for requests (quota, daily)",
    ]
    one = call_options(call_policy("rate_limit", "{attr: message, contains: quota}"), "rate_limit")
    assert [said(o) for o in one] == ["Rate limit reached for requests", "Too many requests",
                                      "Rate limit reached for requests (quota)", "Too many requests (quota)"]


def test_an_error_code_a_guard_compares_with_is_carried_in_the_body_and_the_message() -> None:
    options = call_options(call_policy("rate_limit", "{attr: code, eq: insufficient_quota}"), "rate_limit")
    assert [(o.attrs["code"], said(o)) for o in options] == [
        ("", "Rate limit reached for requests"),
        ("insufficient_quota", "Rate limit reached for requests {'code': 'insufficient_quota'}"),
        ("", "Too many requests"),
        ("insufficient_quota", "Too many requests {'code': 'insufficient_quota'}"),
    ]
    assert [o.interaction.body["error"].get("code") for o in options] == [None, "insufficient_quota", None, "insufficient_quota"]
    assert all(o.interaction.body["error"]["type"] == "requests" for o in options)
    # a code no recorded body can carry as it is (a space) is not offered
    spaced = call_options(call_policy("rate_limit", "{attr: code, eq: 'not a code'}"), "rate_limit")
    assert {o.attrs["code"] for o in spaced} == {""}


def test_a_message_that_makes_another_event_is_skipped_not_the_end_of_the_search() -> None:
    """'maximum context length' said with a 400 makes a context overflow, not a bad request: that
    candidate is skipped, and the same words with the next statuses are still tried."""
    options = call_options(call_policy("bad_request", "{attr: message, contains: maximum context length}"), "bad_request")
    statuses = {m: [o.attrs["status"] for o in options if said(o) == m] for m in {said(o) for o in options}}
    assert statuses == {"Invalid value for 'temperature'": [400, 404, 422], "Malformed request": [400, 404, 422],
                        "Invalid value for 'temperature' (maximum context length)": [404, 422],
                        "Malformed request (maximum context length)": [404, 422]}


def test_every_call_error_has_recordings_on_both_sides_of_each_guard() -> None:
    guards = {"retry_after": "{attr: retry_after, gt: 30}", "wait_too_long": "{attr: wait_too_long}",
              "status": "{attr: status, eq: 507}", "message": "{attr: message, contains: quota}",
              "code": "{attr: code, eq: insufficient_quota}"}
    for attr, guard in guards.items():
        event = "transient" if attr == "status" else "rate_limit"
        p = call_policy(event, guard)
        r = Realiser(p)
        vectors = {r.vector("ask", event, o.attrs) for o in call_options(p, event)}
        assert vectors == {(True,), (False,)}, attr


# ------------------------------------------------------------------------------------ stream events


def stream_options(p: Policy, event: str) -> list[Any]:
    """The stream recordings for ``event``, each checked to replay to its own attributes."""
    r = Realiser(p)
    options = r._fixed("read", event)
    for o in options:
        schemas = {t: EMPTY_PARAMETERS for t in o.tools}
        got = observe_stream(o.interaction, schemas, p.settings.stall_timeout)
        assert (got.event.name, dict(got.event.attrs)) == (event, dict(o.attrs))
        assert (got.text, got.stub, got.calls) == (o.text, o.stub, o.calls)
    return options


def test_a_text_reply_ends_on_stop_or_content_filter_at_the_lengths_a_guard_compares_with() -> None:
    options = stream_options(stream_policy("text", "{attr: chars, ge: 12}"), "text")
    assert [(o.attrs["chars"], o.attrs["finish_reason"]) for o in options] == [
        (n, f) for n in (5, 11, 12, 13) for f in ("stop", "content_filter")]
    plain = stream_options(stream_policy("text", "{attr: finish_reason, eq: stop}"), "text")
    assert [(o.attrs["chars"], o.attrs["finish_reason"]) for o in plain] == [(5, "stop"), (5, "content_filter")]


def test_a_cut_off_reply_is_text_tool_calls_reasoning_or_nothing() -> None:
    options = stream_options(stream_policy("length", "{attr: chars, ge: 30}"), "length")
    shown = [(o.attrs["chars"], o.attrs["has_tool_calls"], tuple(o.attrs["dropped_tools"]), o.attrs["thinking_only"])
             for o in options]
    assert shown == [(26, False, (), False), (29, False, (), False), (30, False, (), False), (31, False, (), False),
                     (0, True, ("tool_a",), False), (29, True, ("tool_a",), False), (30, True, ("tool_a",), False),
                     (31, True, ("tool_a",), False), (0, False, (), True), (0, False, (), False)]


def test_a_cut_off_tool_call_names_the_tool_a_guard_looks_for_among_the_dropped() -> None:
    options = stream_options(stream_policy("length", "{attr: dropped_tools, contains: search}"), "length")
    assert [tuple(o.attrs["dropped_tools"]) for o in options if o.attrs["has_tool_calls"]] == [
        ("tool_a",), ("search",), ("tool_a", "search")]


@pytest.mark.parametrize("event, finish", [("empty", "stop"), ("empty", "content_filter"),
                                           ("thinking_only", "stop"), ("thinking_only", "content_filter")])
def test_an_empty_or_thinking_only_reply_ends_on_either_finish(event: str, finish: str) -> None:
    options = stream_options(stream_policy(event, f"{{attr: finish_reason, eq: {finish}}}"), event)
    assert [o.attrs["finish_reason"] for o in options] == ["stop", "content_filter"]


def test_broken_arguments_and_unknown_tools_are_called_by_the_names_a_guard_reads() -> None:
    malformed = stream_options(stream_policy("malformed_args", "{attr: tools, contains: search}"), "malformed_args")
    assert [(o.attrs["tools"], o.tools) for o in malformed] == [
        (["tool_a"], ("tool_a",)), (["search"], ("search",)), (["tool_a", "search"], ("tool_a", "search"))]
    unknown = stream_options(stream_policy("unknown_tool", "{attr: tools, contains: search}"), "unknown_tool")
    assert [(o.attrs["tools"], o.tools) for o in unknown] == [
        (["no_such_tool"], ()), (["search"], ()), (["no_such_tool", "search"], ())]


def test_a_reply_stalls_after_its_text_or_inside_a_tool_calls_arguments() -> None:
    """A stall after the text's last chunk (at the lengths a guard compares with), or inside a
    tool call's arguments (the stub cuts that call), for longer than the stall timeout."""
    p = stream_policy("stalled", "{attr: chars, ge: 25}")
    options = stream_options(p, "stalled")
    assert [(o.attrs["chars"], o.attrs["mid_tool_call"], o.interaction.stall_after) for o in options] == [
        (19, False, 4), (24, False, 4), (25, False, 5), (26, False, 5),
        (0, True, 3), (24, True, 6), (25, True, 7), (26, True, 7)]
    assert all(o.interaction.stall_seconds > p.settings.stall_timeout for o in options)
    assert [o.stub[0] for o in options] == ["mid_text"] * 4 + ["mid_tool_call"] * 4
    assert {o.calls for o in options[4:]} == {("tool_a",)}, "the call the stall cut is named"


def test_a_broken_stream_says_each_cause_with_the_words_a_guard_looks_for() -> None:
    options = stream_options(stream_policy("broken", "{attr: message, contains: quota}"), "broken")
    assert [(o.attrs["cause"], o.attrs["message"]) for o in options] == [
        ("provider_error", "upstream provider error"), ("provider_error", "upstream provider error (quota)"),
        ("overflow", "maximum context length exceeded"), ("overflow", "maximum context length exceeded (quota)"),
        ("disconnect", "connection dropped mid-stream")]
    assert [o.interaction.chunks[-1]["error"]["code"] for o in options[:4]] == [502, 502, 400, 400]
    for o in options:
        assert o.alt is not None and o.alt["cause"] == o.attrs["cause"] and o.alt["chars"] == o.attrs["chars"] == 7
    assert [o.alt["message"].split(" - ", 1)[1] for o in options[:4]] == [o.attrs["message"] for o in options[:4]]
    assert options[4].interaction.disconnect_after == 2 and "Response payload is not completed" in options[4].alt["message"]


def test_two_secret_shaped_words_that_redact_alike_are_recorded_once_and_the_search_goes_on() -> None:
    """A broken stream's message is redacted, so two key-shaped words a guard looks for say the
    same thing once recorded: one recording of it per cause, and the causes after the repeat are
    still offered (a repeat skipped, not the end of the candidates)."""
    a, b = "sk-" + "a" * 32, "sk-" + "b" * 36
    p = policy(CALL, stream(broken=f"[{{when: {{attr: message, contains: {a}}}, to: done}}, "
                                   f"{{when: {{attr: message, contains: {b}}}, to: done}}, fail]"), TOOLS, HALTS)
    options = stream_options(p, "broken")
    assert [(o.attrs["cause"], o.attrs["message"]) for o in options] == [
        ("provider_error", "upstream provider error"), ("provider_error", "upstream provider error (<redacted>)"),
        ("overflow", "maximum context length exceeded"), ("overflow", "maximum context length exceeded (<redacted>)"),
        ("disconnect", "connection dropped mid-stream")]
    assert [said for o in options[:4] for said in [o.interaction.chunks[-1]["error"]["message"]]] == [
        "upstream provider error", f"upstream provider error ({a})",
        "maximum context length exceeded", f"maximum context length exceeded ({a})"], "the first of the two is kept"


STREAM_GUARDS = {
    "text": ["{attr: chars, ge: 12}", "{attr: chars, le: 1}", "{attr: finish_reason, eq: content_filter}"],
    "tool_calls": ["{attr: tools, contains: ' x '}", "{attr: tools, contains: 'é'}", "{attr: tools, contains: tool_a}",
                   "{attr: tools, eq: [' ', '']}", "{attr: count, ge: 9}", "{attr: chars, ge: 3}"],
    "length": ["{attr: dropped_tools, contains: ' q '}", "{attr: chars, le: 0}", "{attr: thinking_only}"],
    "empty": ["{attr: finish_reason, eq: stop}"],
    "thinking_only": ["{attr: finish_reason, eq: content_filter}"],
    "malformed_args": ["{attr: tools, contains: '{'}", "{attr: tools, contains: tool_a}"],
    "unknown_tool": ["{attr: tools, contains: no_such_tool}", "{attr: tools, contains: tool_a}"],
    "stalled": ["{attr: chars, eq: 0}", "{attr: mid_tool_call}"],
    "broken": ["{attr: message, contains: 'sk-" + "c" * 40 + "'}", "{attr: chars, ge: 100}"],
}


@pytest.mark.parametrize("event", sorted(STREAM_GUARDS))
def test_every_stream_candidate_makes_the_event_it_is_offered_for(event: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The realiser builds each event's candidates to make that event, and drops one that does not
    (its own check): on guards with odd tool names, counts past the name pool, lengths at 0 and
    key-shaped words, no candidate is left for that check to drop, so no recording is lost."""
    import loopspec.verify.realiser as realiser_module

    made: list[str] = []

    def observed(resp: Any, schemas: Any, timeout: float) -> Any:
        got = observe_stream(resp, schemas, timeout)
        made.append(got.event.name)
        return got

    monkeypatch.setattr(realiser_module, "observe_stream", observed)
    for guard in STREAM_GUARDS[event]:
        made.clear()
        options = stream_options(stream_policy(event, guard), event)
        assert options and made and set(made) == {event}, guard


def test_a_broken_stream_breaks_after_the_text_lengths_a_guard_compares_with() -> None:
    options = stream_options(stream_policy("broken", "{attr: chars, ge: 3}"), "broken")
    assert [(o.attrs["chars"], o.attrs["cause"]) for o in options] == [
        (n, c) for n in (7, 2, 3, 4) for c in ("provider_error", "overflow", "disconnect")]


def test_a_tool_call_reply_calls_the_names_and_counts_a_guard_reads_with_text_around_its_lengths() -> None:
    def shown(guard: str) -> list[tuple[Any, ...]]:
        options = stream_options(stream_policy("tool_calls", guard), "tool_calls")
        return [(tuple(o.attrs["tools"]), o.attrs["count"], o.attrs["chars"], o.tools == o.calls == tuple(o.attrs["tools"]))
                for o in options]

    assert shown("{attr: count, ge: 2}") == [(("tool_a",), 1, 0, True), (("tool_a", "tool_a_2"), 2, 0, True),
                                             (("tool_a", "tool_a_2", "tool_a_3"), 3, 0, True)]
    assert shown("{attr: chars, ge: 4}") == [(("tool_a",), 1, n, True) for n in (0, 3, 4, 5)]
    assert shown("{attr: tools, contains: search}") == [(("tool_a",), 1, 0, True), (("search",), 1, 0, True),
                                                        (("tool_a", "search"), 2, 0, True)]


@pytest.mark.parametrize("event, guard, lengths", [
    ("text", "{attr: chars, eq: 1}", [5, 5, 1, 1, 2, 2]),
    ("length", "{attr: chars, eq: 1}", [26, 1, 2, 0, 1, 2, 0, 0]),
    ("stalled", "{attr: chars, eq: 0}", [19, 0, 1, 0, 1]),
    ("broken", "{attr: chars, eq: 0}", [7, 7, 7, 0, 0, 0, 1, 1, 1]),
])
def test_a_whole_reply_holds_at_least_one_character_and_a_cut_or_stalled_one_may_hold_none(
        event: str, guard: str, lengths: list[int]) -> None:
    """A text reply with no text is the 'empty' event, not 'text'; a cut-off or stalled reply may
    have sent nothing yet, so 0 is one of its lengths when a guard compares with it."""
    assert [o.attrs["chars"] for o in stream_options(stream_policy(event, guard), event)] == lengths


# ------------------------------------------------------------------- the natural recordings


def described(o: Any) -> dict[str, Any]:
    """A recording as a reader of a counterexample cassette sees it: what the reply says, its
    calls and finish, where it stalls or breaks; or the error's status, headers and body."""
    i = o.interaction
    if hasattr(i, "status"):
        return {"status": i.status, "headers": dict(i.headers), "body": i.body}
    deltas = [c["choices"][0]["delta"] for c in i.chunks if c.get("choices")]
    calls: dict[int, list[str]] = {}
    for d in deltas:
        for tc in d.get("tool_calls") or []:
            entry = calls.setdefault(tc["index"], ["", ""])
            entry[0] += (tc.get("function") or {}).get("name") or ""
            entry[1] += (tc.get("function") or {}).get("arguments") or ""
    finishes = [c["choices"][0].get("finish_reason") for c in i.chunks if c.get("choices")]
    return {
        "text": "".join(d.get("content") or "" for d in deltas),
        "reasoning": "".join(d.get("reasoning_content") or "" for d in deltas),
        "calls": [tuple(calls[k]) for k in sorted(calls)],
        "finish": next((f for f in finishes if f), None),
        "errors": [c["error"] for c in i.chunks if "error" in c],
        "stall_after": i.stall_after, "stall_seconds": i.stall_seconds, "disconnect_after": i.disconnect_after,
    }


def test_the_natural_recordings_of_every_event_are_those_reviewed(snapshot: Any) -> None:
    """The recordings a counterexample cassette is written from, for every call error and stream
    event with no guard to split on: a change to what users are shown is reviewed here."""
    p = policy(CALL, stream(), TOOLS, HALTS)
    r = Realiser(p)
    shown = {f"ask {e}": [described(o) for o in r._fixed("ask", e)] for e in
             ("rate_limit", "transient", "timeout", "context_overflow", "auth", "bad_request", "effort_unsupported",
              "thinking_signature_invalid")}
    shown |= {f"read {e}": [described(o) for o in r._fixed("read", e)] for e in
              ("text", "tool_calls", "length", "empty", "thinking_only", "malformed_args", "unknown_tool", "stalled", "broken")}
    assert shown == snapshot
