"""The raw-JSON half of chunk conversion: what the in-process replay reads from a recorded stream.

Both replay transports and every cassette go through ``iter_sse_data`` and
``delta_from_chunk_dict``; the recorded streams in ``fixtures/streams`` exercise their common
shapes. These tests pin what those streams never show: an error object named only by its type or
code, a data field split over lines, an event type that must not leak into the next event, usage
in Anthropic's or Groq's spelling, reasoning details without text, a choice that is not first.
"""

from __future__ import annotations

import json

import pytest

from loopspec.providers.base import StreamBroken
from loopspec.providers.chunks import (
    _error_message,
    _event_payload,
    _thinking_from_details,
    delta_from_chunk_dict,
    iter_sse_data,
    usage_from_dict,
)
from loopspec.wire.deltas import Delta, ToolCallFragment, Usage


def broken(fn, *args) -> dict:
    """The attributes of the ``broken`` event that ``fn(*args)`` raises."""
    with pytest.raises(StreamBroken) as info:
        fn(*args)
    assert info.value.event.name == "broken"
    return dict(info.value.event.attrs)


# -- an in-band error's message -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("err", "message"),
    [
        ({"message": "m", "type": "t", "code": "c"}, "m"),
        ({"type": "t", "code": "c"}, "t"),
        ({"message": "", "type": "t", "code": "c"}, "t"),
        ({"code": "c"}, "c"),
        ({"code": 529}, "529"),
        ({"message": None, "type": "", "code": 0, "param": "x"}, '{"message": null, "type": "", "code": 0, "param": "x"}'),
        ({}, "{}"),
        ("upstream went away", "upstream went away"),
        (503, "503"),
    ],
)
def test_an_error_object_is_named_by_its_message_then_type_then_code_then_itself(err, message):
    """An error object says what happened in ``message``; failing that, its ``type``, its ``code``,
    and failing all of them the whole object as JSON. Anything that is not an object is its string."""
    assert _error_message(err) == message


def test_an_error_chunk_breaks_the_stream_with_the_cause_its_message_names():
    """The cause is classified from the message the error object gives, so a context overflow
    told only in ``type`` still reads as an overflow, and a plain failure as a provider error."""
    attrs = broken(delta_from_chunk_dict, {"error": {"type": "context_length_exceeded"}})
    assert attrs == {"cause": "overflow", "chars": 0, "message": "context_length_exceeded"}
    attrs = broken(delta_from_chunk_dict, {"error": {"code": 502, "message": "bad gateway"}, "choices": []})
    assert attrs == {"cause": "provider_error", "chars": 0, "message": "bad gateway"}
    attrs = broken(delta_from_chunk_dict, {"error": "connection reset by peer"})
    assert attrs["cause"] == "disconnect" and attrs["message"] == "connection reset by peer"


def test_an_empty_error_field_is_no_error():
    """OpenRouter and others send ``"error": null`` (or an empty object) in normal chunks."""
    chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}}]}
    assert delta_from_chunk_dict(dict(chunk, error=None)) == Delta("hi")
    assert delta_from_chunk_dict(dict(chunk, error={})) == Delta("hi")


# -- one SSE event's payload -----------------------------------------------------------------------


def test_unparseable_data_breaks_the_stream_quoting_at_most_200_characters():
    """Garbage on the wire is a provider error; the message quotes its start, not all of it."""
    payload = "{" + "x" * 300
    attrs = broken(_event_payload, payload, "")
    assert attrs["cause"] == "provider_error"
    assert attrs["message"] == f"unparseable SSE data: {payload[:200]!r}"
    assert broken(_event_payload, "nope", "message")["message"] == "unparseable SSE data: 'nope'"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"error": {"message": "overloaded"}}', "overloaded"),
        ('{"type": "overloaded_error", "message": "Overloaded"}', "Overloaded"),
        ('{"error": "rate limited"}', "rate limited"),
        ('"stream reset"', "stream reset"),
        ("[1, 2]", "[1, 2]"),
    ],
)
def test_an_error_event_breaks_the_stream_with_its_inner_error(payload, message):
    """``event: error`` carries either ``{"error": ...}`` (Groq) or the error itself (Anthropic),
    or a bare value; the message comes from the inner error when there is one."""
    attrs = broken(_event_payload, payload, "error")
    assert attrs["message"] == message and attrs["chars"] == 0


@pytest.mark.parametrize("event", ["", "message", "message_delta", "errors", "Error"])
def test_only_the_error_event_type_breaks_the_stream(event):
    """An event typed anything else hands its payload on, even one holding an ``error`` key."""
    assert _event_payload('{"error": {"message": "x"}}', event) == {"error": {"message": "x"}}


# -- SSE framing -------------------------------------------------------------------------------


def test_sse_data_fields_are_read_with_or_without_the_space_after_the_colon():
    """``data: {...}`` and ``data:{...}``; a field that starts with two spaces keeps one of them."""
    text = 'data: {"a": 1}\n\ndata:{"b": 2}\n\ndata:  {"c": 3}\n\n'
    assert list(iter_sse_data(text)) == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_sse_bytes_are_decoded_as_utf8():
    """A recorded body may be bytes; non-ASCII text survives the decoding."""
    raw = 'data: {"t": "café ☕"}\n\n'.encode("utf-8")
    assert list(iter_sse_data(raw)) == [{"t": "café ☕"}]
    assert list(iter_sse_data(bytearray(raw))) == [{"t": "café ☕"}]


def test_a_data_field_split_over_lines_is_joined_with_newlines():
    """The SSE spec joins the ``data:`` lines of one event with a newline; JSON reads it whole."""
    assert list(iter_sse_data('data: {"a":\ndata: 1}\n\n')) == [{"a": 1}]
    assert list(iter_sse_data('data: {"a":\ndata: "x"}')) == [{"a": "x"}]
    # the join is a newline, not nothing: two numbers on two lines are not one number
    with pytest.raises(StreamBroken):
        list(iter_sse_data("data: 1\ndata: 2\n\n"))


def test_comments_and_other_fields_are_skipped_and_blank_lines_without_data_are_nothing():
    """Keep-alive comments, ``id:`` and ``retry:`` lines, and runs of blank lines yield nothing."""
    text = ': ping\n\nid: 7\nretry: 100\n\n\n\ndata: {"a": 1}\nid: 8\n\n: ping\n\n'
    assert list(iter_sse_data(text)) == [{"a": 1}]


def test_done_ends_nothing_early_and_yields_nothing():
    """``[DONE]`` is skipped whether or not a blank line follows it, and data after it is still read."""
    assert list(iter_sse_data("data: [DONE]\n\n")) == []
    assert list(iter_sse_data("data: [DONE]")) == []
    assert list(iter_sse_data('data: [DONE]\n\ndata: {"late": 1}\n\n')) == [{"late": 1}]


def test_a_last_event_without_its_blank_line_is_still_read():
    """A stream cut right after a data line still hands that line on."""
    assert list(iter_sse_data('data: {"a": 1}\n\ndata: {"b": 2}')) == [{"a": 1}, {"b": 2}]
    assert list(iter_sse_data('data: {"b": 2}\n')) == [{"b": 2}]


def test_a_last_event_without_its_blank_line_keeps_its_event_type():
    """``event: error`` then a data line, cut before the blank line, still breaks the stream."""
    attrs = broken(lambda: list(iter_sse_data('event: error\ndata: {"error": {"message": "cut"}}')))
    assert attrs["message"] == "cut"


def test_an_event_type_belongs_to_its_own_event_only():
    """The type is reset after each event: after an ``event: error`` frame that held nothing, a
    ``[DONE]``, or a normal typed event, the next data is a plain payload again."""
    assert list(iter_sse_data('event: error\n\ndata: {"a": 1}\n\n')) == [{"a": 1}]
    assert list(iter_sse_data('event: error\ndata: [DONE]\n\ndata: {"a": 1}\n\n')) == [{"a": 1}]
    assert list(iter_sse_data('event: message\ndata: {"a": 1}\n\ndata: {"b": 2}\n\n')) == [{"a": 1}, {"b": 2}]
    with pytest.raises(StreamBroken):
        list(iter_sse_data('event:  error  \ndata: {"error": "x"}\n\n'))  # the type is stripped
    with pytest.raises(StreamBroken):
        list(iter_sse_data('event:error\ndata: {"error": "x"}\n\n'))  # no space after the colon


def test_an_error_event_breaks_only_where_it_stands():
    """The payloads before an ``event: error`` frame are handed on before the break."""
    seen = []
    with pytest.raises(StreamBroken):
        for obj in iter_sse_data('data: {"a": 1}\n\nevent: error\ndata: {"message": "boom"}\n\ndata: {"b": 2}\n\n'):
            seen.append(obj)
    assert seen == [{"a": 1}]


# -- usage ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 10, "completion_tokens": 5}, Usage(10, 5, 0, None)),
        ({"input_tokens": 11, "output_tokens": 6}, Usage(11, 6, 0, None)),
        ({"prompt_tokens": 0, "input_tokens": 3, "completion_tokens": None, "output_tokens": 4}, Usage(3, 4, 0, None)),
        ({"prompt_tokens": 1, "completion_tokens": 9, "completion_tokens_details": {"reasoning_tokens": 7}}, Usage(1, 9, 7, None)),
        ({"prompt_tokens": 1, "completion_tokens": 9, "completion_tokens_details": {"reasoning_tokens": None}}, Usage(1, 9, 0, None)),
        ({"prompt_tokens": 1, "completion_tokens": 9, "completion_tokens_details": None}, Usage(1, 9, 0, None)),
        ({"prompt_tokens": 1, "completion_tokens": 9, "completion_tokens_details": {}}, Usage(1, 9, 0, None)),
        ({"prompt_tokens": 2, "completion_tokens": 3, "cost": 0.25}, Usage(2, 3, 0, 0.25)),
        ({"prompt_tokens": 2, "completion_tokens": 3, "cost": 0}, Usage(2, 3, 0, 0.0)),
        ({"prompt_tokens": 2, "completion_tokens": 3, "cost": -1}, Usage(2, 3, 0, None)),
        ({}, Usage(0, 0, 0, None)),
    ],
)
def test_usage_reads_openai_and_anthropic_spellings(usage, expected):
    """Prompt and completion tokens under either spelling, reasoning tokens from the details, and a
    reported cost only when it is a finite number of 0 or more."""
    got = usage_from_dict(usage)
    assert got == expected
    assert type(got.reasoning_tokens) is int


def test_usage_is_read_from_the_chunk_then_from_groq_x_groq():
    """Groq streams usage under ``x_groq``; a top-level ``usage`` wins when both are there."""
    groq = {"choices": [], "x_groq": {"usage": {"prompt_tokens": 4, "completion_tokens": 2}}}
    assert delta_from_chunk_dict(groq) == Delta(usage=Usage(4, 2, 0, None))
    both = dict(groq, usage={"prompt_tokens": 1, "completion_tokens": 1})
    assert delta_from_chunk_dict(both) == Delta(usage=Usage(1, 1, 0, None))
    assert delta_from_chunk_dict({"choices": [], "x_groq": {"id": "req_1"}}) is None
    assert delta_from_chunk_dict({"choices": [], "x_groq": None}) is None
    assert delta_from_chunk_dict({"choices": [], "usage": None}) is None
    # an empty usage object carries nothing
    assert delta_from_chunk_dict({"choices": [], "usage": {}}) is None


# -- reasoning details --------------------------------------------------------------------------


def test_reasoning_details_become_thinking_blocks_and_their_text():
    """Encrypted reasoning is a redacted block (only with data); reasoning text is a thinking
    block with its signature; a signature-only entry is kept (it is what a replay needs); other
    entries and non-objects are skipped."""
    details = [
        {"type": "reasoning.text", "text": "Let me ", "signature": None},
        "junk",
        {"type": "reasoning.summary", "summary": "s"},
        {"type": "reasoning.encrypted", "data": ""},
        {"type": "reasoning.encrypted", "data": "Zm9v"},
        {"type": "reasoning.text", "text": "think."},
        {"type": "reasoning.text", "text": "", "signature": "sig-1"},
        {"type": "reasoning.text", "text": None},
        {"type": "reasoning.text"},
    ]
    blocks, text = _thinking_from_details(details)
    assert text == "Let me think."
    assert blocks == (
        {"type": "thinking", "thinking": "Let me ", "signature": None},
        {"type": "redacted_thinking", "data": "Zm9v"},
        {"type": "thinking", "thinking": "think.", "signature": None},
        {"type": "thinking", "thinking": "", "signature": "sig-1"},
    )
    assert _thinking_from_details([]) == ((), "")


def chunk(delta: dict, **choice) -> dict:
    return {"choices": [dict({"index": 0, "delta": delta}, **choice)]}


def test_reasoning_details_give_the_reasoning_only_when_no_other_field_does():
    """``reasoning_content`` or ``reasoning`` wins over the details' text; the blocks are kept either way."""
    details = [{"type": "reasoning.text", "text": "from details", "signature": "s"}]
    block = ({"type": "thinking", "thinking": "from details", "signature": "s"},)
    assert delta_from_chunk_dict(chunk({"reasoning_details": details})) == Delta("", "from details", thinking_blocks=block)
    got = delta_from_chunk_dict(chunk({"reasoning": "own", "reasoning_details": details}))
    assert got == Delta("", "own", thinking_blocks=block)
    assert delta_from_chunk_dict(chunk({"reasoning_content": "rc", "reasoning": "r"})) == Delta("", "rc")
    assert delta_from_chunk_dict(chunk({"reasoning_content": "", "reasoning": "r"})) == Delta("", "r")
    assert delta_from_chunk_dict(chunk({"reasoning_content": None, "reasoning": None})) is None


def test_a_signature_only_detail_is_a_delta_of_its_own():
    """A chunk that carries nothing but a signature still reaches the assembler."""
    details = [{"type": "reasoning.text", "text": "", "signature": "sig"}]
    got = delta_from_chunk_dict(chunk({"reasoning_details": details}))
    assert got == Delta(thinking_blocks=({"type": "thinking", "thinking": "", "signature": "sig"},))
    assert delta_from_chunk_dict(chunk({"reasoning_details": [{"type": "reasoning.summary"}]})) is None
    assert delta_from_chunk_dict(chunk({"reasoning_details": []})) is None


# -- choices and deltas -------------------------------------------------------------------------


def test_only_choice_zero_is_read_wherever_it_stands():
    """With n>1 (a proxy may ignore n=1) the chunk's choices can come in any order."""
    d = {"choices": [{"index": 1, "delta": {"content": "one"}}, {"index": 0, "delta": {"content": "zero"}}]}
    assert delta_from_chunk_dict(d) == Delta("zero")
    d = {"choices": [{"index": 2, "delta": {"content": "two"}}, {"delta": {"content": "no index"}}]}
    assert delta_from_chunk_dict(d) == Delta("no index")


def test_a_chunk_without_choice_zero_carries_only_its_usage():
    """A chunk for other choices alone gives nothing, or its usage when it has some."""
    d = {"choices": [{"index": 1, "delta": {"content": "one"}}, {"index": 2, "delta": {"content": "two"}}]}
    assert delta_from_chunk_dict(d) is None
    d["usage"] = {"prompt_tokens": 3, "completion_tokens": 1}
    assert delta_from_chunk_dict(d) == Delta(usage=Usage(3, 1, 0, None))


def test_a_non_streaming_message_is_read_as_one_delta():
    """A recorded non-stream body (``message`` for ``delta``) replays as a stream of one chunk."""
    d = {"choices": [{"index": 0, "message": {"content": "whole"}, "finish_reason": "stop"}]}
    assert delta_from_chunk_dict(d) == Delta("whole", finish_reason="stop")
    d = {"choices": [{"index": 0, "message": None, "finish_reason": "stop"}]}
    assert delta_from_chunk_dict(d) == Delta(finish_reason="stop")
    d = {"choices": [{"index": 0, "delta": {}, "message": {"content": "ignored"}}]}
    assert delta_from_chunk_dict(d) is None


@pytest.mark.parametrize(
    ("native", "mapped"),
    [
        ("max_tokens", "length"),
        ("max_output_tokens", "length"),
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("function_call", "tool_calls"),
        ("stop", "stop"),
        ("length", "length"),
        ("content_filter", "content_filter"),
    ],
)
def test_native_finish_reasons_are_mapped_and_others_kept(native, mapped):
    """Servers that pass a provider's own finish reason through are read as OpenAI's."""
    assert delta_from_chunk_dict(chunk({}, finish_reason=native)) == Delta(finish_reason=mapped)


def test_tool_call_fragments_keep_their_index_id_name_and_arguments():
    """Arguments are a string as streamed; parsed arguments (some proxies) are JSON again; a
    fragment without arguments has the empty string; a fragment without an index takes its place."""
    d = chunk(
        {
            "tool_calls": [
                {"index": 3, "id": "call_a", "function": {"name": "f", "arguments": '{"x"'}},
                {"id": "call_b", "function": {"name": "g", "arguments": {"y": [1, "é"]}}},
                {"index": 5, "function": {"arguments": None}},
                {"index": 6},
            ]
        }
    )
    got = delta_from_chunk_dict(d)
    assert got is not None
    assert got.tool_calls == (
        ToolCallFragment(3, "call_a", "f", '{"x"'),
        ToolCallFragment(1, "call_b", "g", json.dumps({"y": [1, "é"]})),
        ToolCallFragment(5, None, None, ""),
        ToolCallFragment(6, None, None, ""),
    )
    assert got.text == "" and got.reasoning == "" and got.finish_reason is None


def test_a_chunk_that_carries_nothing_is_none_and_one_that_carries_anything_is_a_delta():
    """The replay's hot loop skips empty chunks; each field alone is enough to make a delta."""
    assert delta_from_chunk_dict(chunk({"role": "assistant", "content": ""})) is None
    assert delta_from_chunk_dict(chunk({"content": None, "tool_calls": []})) is None
    assert delta_from_chunk_dict(chunk({"content": "a"})) == Delta("a")
    assert delta_from_chunk_dict(chunk({"reasoning": "r"})) == Delta("", "r")
    assert delta_from_chunk_dict(chunk({}, finish_reason="stop")) == Delta(finish_reason="stop")
    with_usage = dict(chunk({}), usage={"prompt_tokens": 1, "completion_tokens": 0})
    assert delta_from_chunk_dict(with_usage) == Delta(usage=Usage(1, 0, 0, None))
    assert delta_from_chunk_dict({"choices": []}) is None
    assert delta_from_chunk_dict({"choices": None}) is None
    assert delta_from_chunk_dict({}) is None


def test_a_whole_chunk_converts_every_field_at_once():
    """Text, reasoning, a tool call, the finish and usage of one chunk land in one delta."""
    d = {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "content": "t",
                    "reasoning_content": "r",
                    "tool_calls": [{"index": 0, "id": "c", "function": {"name": "n", "arguments": "{}"}}],
                },
                "finish_reason": "tool_use",
            }
        ],
        "usage": {"prompt_tokens": 8, "completion_tokens": 4, "completion_tokens_details": {"reasoning_tokens": 2}},
    }
    assert delta_from_chunk_dict(d) == Delta(
        "t", "r", (ToolCallFragment(0, "c", "n", "{}"),), "tool_calls", Usage(8, 4, 2, None)
    )
