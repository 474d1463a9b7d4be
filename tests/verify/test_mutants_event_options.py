"""What one event can be as a recorded interaction (loopspec/verify/event_options.py), tested against
the survivors of a hand mutation analysis. The realiser builds every counterexample cassette from
these helpers: which HTTP statuses may stand for a call error, which lengths, words and tool names
are worth trying against a guard, and what the classifier observes of a recorded error or stream.
A wrong answer here gives a cassette that does not replay to the failure the checker reported."""

from __future__ import annotations

from loopspec.language.guards import AttrTest
from loopspec.replay.interactions import ErrorResponse, StreamResponse
from loopspec.replay.synth import inside_tool_arguments, reply, reply_chunks
from loopspec.verify.event_options import (
    CALL_ERRORS,
    Facts,
    attr_constants,
    attr_words,
    candidate_lengths,
    filler_text,
    freeze_attrs,
    observe_error,
    observe_stream,
    thaw_attrs,
    tool_name_lists,
)
from loopspec.verify.realiser import Realiser

from test_check import CALL, HALTS, TOOLS, policy, stream

SCHEMA = {"type": "object", "properties": {}}


def test_each_call_error_allows_exactly_the_statuses_that_replay_to_it() -> None:
    """A status a cassette records for a call error must be one the classifier turns into that
    error with either natural message, and the first status listed is the one offered first.
    The classifier accepts two more that are never used: 504 as a timeout (litellm over HTTP
    classifies a gateway timeout on its own) and 409 as a client error (the OpenAI client retries
    a conflict, so over HTTP the error would never reach the classifier)."""
    unused: set[tuple[str, int]] = set()
    for name, (preferred, allowed, naturals, etype) in CALL_ERRORS.items():
        assert all(allowed(s) for s in preferred), name
        for s in range(400, 600):
            for message in naturals:
                got = observe_error(ErrorResponse(s, {"error": {"message": message, "type": etype}})).name
                if allowed(s):
                    assert got == name, (name, s, message, got)
                elif got == name:
                    unused.add((name, s))
    assert unused == {("timeout", 504), ("bad_request", 409), ("effort_unsupported", 409), ("thinking_signature_invalid", 409)}
    firsts = {name: spec[0][0] for name, spec in CALL_ERRORS.items()}
    assert firsts == {"rate_limit": 429, "transient": 503, "timeout": 408, "context_overflow": 400, "auth": 401,
                      "bad_request": 400, "effort_unsupported": 400, "thinking_signature_invalid": 400}


def test_a_recorded_error_keeps_its_headers() -> None:
    """Retry-After reaches the event the classifier makes of a recorded 429."""
    resp = ErrorResponse(429, {"error": {"message": "Rate limit reached for requests", "type": "requests"}}, {"retry-after": "3"})
    ev = observe_error(resp)
    assert ev.name == "rate_limit" and ev.attrs["retry_after"] == 3.0


def test_frozen_attributes_are_sorted_hashable_and_thaw_back() -> None:
    attrs = {"tools": ["b", "a"], "chars": 4}
    frozen = freeze_attrs(attrs)
    assert frozen == (("chars", 4), ("tools", ("b", "a")))
    assert hash(frozen) == hash(freeze_attrs({"chars": 4, "tools": ["b", "a"]}))
    assert thaw_attrs(frozen) == attrs


def test_filler_text_has_the_length_asked_for() -> None:
    """The natural text when its length fits, else filler of exactly ``n`` characters."""
    assert filler_text(5, "Done.") == "Done."
    assert filler_text(3, "Done.") == "Don"
    assert filler_text(0, "Done.") == ""
    for n in (1, 14, 15, 16, 29, 30, 31, 100):
        assert len(filler_text(n, "Done.")) == n
    assert filler_text(20, "") == "Done and more. Done "


def test_candidate_lengths_are_the_natural_one_and_the_integers_around_each_constant() -> None:
    assert candidate_lengths([3], 5, 0) == [5, 2, 3, 4]
    assert candidate_lengths([2.5], 5, 0) == [5, 1, 2, 3, 4]
    assert candidate_lengths([3], 5, 2) == [5, 2, 3, 4]
    assert candidate_lengths([3], 5, 3) == [5, 3, 4]  # lo bounds from below, inclusive
    assert candidate_lengths([4000], 7, 0) == [7, 3999, 4000]  # at most 4000 characters
    assert candidate_lengths([True, "x", None], 5, 0) == [5]  # only numbers are lengths
    assert candidate_lengths([], 0, 0) == [0]


def test_attr_constants_collect_every_value_compared_with_the_attribute() -> None:
    atoms = [
        AttrTest("status", "eq", 500),  # another attribute first: skipped, not the end
        AttrTest("chars", "gt", 3),
        AttrTest("chars", "truthy"),  # no value
        AttrTest("chars", "in", [10, 20]),
        AttrTest("chars", "in", None),
    ]
    assert attr_constants(atoms, "chars") == [3, 10, 20]
    assert attr_constants(atoms, "status") == [500]


def test_attr_words_are_the_string_constants_a_json_message_carries_verbatim() -> None:
    atoms = [
        AttrTest("message", "contains", "quota"),
        AttrTest("message", "contains", "quota"),
        AttrTest("message", "contains", ""),
        AttrTest("message", "contains", 'say "hi"'),
        AttrTest("message", "contains", "back\\slash"),
        AttrTest("message", "contains", "naïve"),
        AttrTest("message", "eq", 5),
        AttrTest("message", "in", ["a b", "c"]),
    ]
    assert attr_words(atoms, "message") == ["quota", "a b", "c"]


def test_tool_name_lists_try_the_natural_name_the_guards_names_and_counts() -> None:
    atoms = [AttrTest("tools", "contains", "search"), AttrTest("tools", "eq", ["x", "y"]), AttrTest("count", "ge", 3)]
    assert tool_name_lists(atoms, "t") == [
        ["t"],
        ["search"],
        ["t", "search"],
        ["x", "y"],
        ["t", "t_2"],
        ["t", "t_2", "t_3"],
        ["t", "t_2", "t_3", "t_4"],
    ]
    assert tool_name_lists([AttrTest("count", "gt", 12)], "t")[-1] == ["t"] + [f"t_{i}" for i in range(2, 9)]  # eight at most


def test_tool_name_lists_take_only_lists_of_names_and_one_call_when_nothing_counts() -> None:
    """mutmut ``tool_name_lists_11/12/14/37``: a guard's list is a list of tool names only when it
    is a non-empty list of non-empty strings (an empty list, a list with '' or a number in it is
    no reply's calls); with no guard on the count, the one natural call is the only list."""
    assert tool_name_lists([], "t") == [["t"]]
    odd = [AttrTest("tools", "eq", []), AttrTest("tools", "eq", ["", "x"]), AttrTest("tools", "eq", [1]),
           AttrTest("tools", "eq", ("a", "b"))]
    assert tool_name_lists(odd, "t") == [["t"], ["a", "b"]]


def test_observe_stream_names_a_call_that_never_got_a_name_with_the_empty_string() -> None:
    """mutmut ``observe_stream_58``: a complete call whose name never arrived is pending as ''."""
    chunks = reply_chunks("Hi", tool_calls=[("t", {})])
    for c in chunks:
        for call in c["choices"][0]["delta"].get("tool_calls") or ():
            call["function"].pop("name", None)
    got = observe_stream(StreamResponse(chunks=tuple(chunks)), {"t": SCHEMA}, 10)
    assert got.calls == ("",)


def test_observe_stream_reports_text_stub_and_calls() -> None:
    """Visible text is text after stripping; a reply with complete tool calls leaves a
    mid-tool-call stub behind; a plain reply a mid-text one."""
    text = observe_stream(reply("Hello"), {}, 10)
    assert text.event.name == "text" and text.text and text.stub == ("mid_text", (("chars", 5),), True)
    blank = observe_stream(reply("   "), {}, 10)
    assert blank.event.name == "empty" and not blank.text and blank.stub == ("mid_text", (("chars", 3),), False)
    calls = observe_stream(reply("Hi", tool_calls=[("t", {})]), {"t": SCHEMA}, 10)
    assert calls.event.name == "tool_calls" and calls.calls == ("t",)
    assert calls.stub == ("mid_tool_call", (("chars", 2), ("cut_tools", ())), True)
    assert observe_stream(reply(""), {}, 10).stub == Facts().stub  # before any stream: an empty reply's stub


def test_a_pause_as_long_as_the_stall_timeout_is_a_stall_inside_the_tool_call() -> None:
    chunks = reply_chunks("abc", tool_calls=[("t", {"content": "a long argument"})])
    k = inside_tool_arguments(chunks)[1]
    at = observe_stream(StreamResponse(chunks=tuple(chunks), stall_after=k, stall_seconds=10), {"t": SCHEMA}, 10)
    assert at.event.name == "stalled" and at.event.attrs == {"chars": 3, "mid_tool_call": True}
    below = observe_stream(StreamResponse(chunks=tuple(chunks), stall_after=k, stall_seconds=9.9), {"t": SCHEMA}, 10)
    assert below.event.name == "tool_calls"


def test_a_broken_stream_counts_the_characters_before_the_break() -> None:
    head = reply_chunks("Partial")
    head = head[: 1 + sum(1 for c in head if c["choices"][0]["delta"].get("content"))]
    got = observe_stream(StreamResponse(chunks=tuple(head + [{"error": {"message": "upstream provider error", "code": 502}}])), {}, 10)
    assert got.event.name == "broken" and got.event.attrs["chars"] == 7


def test_the_realiser_splits_what_the_semantics_reads_even_without_a_guard() -> None:
    """Policy.step reads has_tool_calls of a length reply and mid_tool_call of a stall whatever the
    guards say, so the options for those events differ on them."""
    r = Realiser(policy(CALL, stream(), TOOLS, HALTS))
    assert AttrTest("has_tool_calls", "truthy") in r.atoms("read", "length")
    assert AttrTest("mid_tool_call", "truthy") in r.atoms("read", "stalled")
    assert r.atoms("read", "empty") == ()
