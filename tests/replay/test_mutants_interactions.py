"""What both replay transports play for one interaction, pinned piece by piece.

The loopback server and the in-process transport render a cassette's streams through the same
helpers, so a fault lands on the same event boundary either way. These tests hold each helper to
its exact output: where a pause and its keep-alive comments fall, what counts as a data event,
how raw SSE splits and reads back, and how a stream folds into one ``chat.completion`` body (and
a body back into chunks) field by field.
"""

from __future__ import annotations

import json

import pytest

from loopspec.replay.interactions import (
    DONE_EVENT,
    PING_EVENT,
    CompletionResponse,
    Disconnect,
    ErrorResponse,
    Pause,
    Stall,
    StreamResponse,
    WhenNoTools,
    _event_data,
    choose,
    completion_chunks,
    fold_stream,
    is_data_event,
    split_sse,
    sse_events,
    stream_chunks,
    stream_plan,
)

TWO = ({"n": 1}, {"n": 2})


def data(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


# -- a stream's faults and pauses -------------------------------------------------------------------


def test_all_pauses_are_in_stream_order_with_the_stall_first_at_its_position():
    """The stall is one more pause, carrying its own keep-alive; a tie keeps the stall first."""
    resp = StreamResponse(
        chunks=TWO,
        stall_after=1,
        stall_seconds=4.0,
        keepalive=0.5,
        pauses=[Pause(2, 1.0), Pause(1, 2.0, 0.25), Pause(0, 3.0)],  # type: ignore[arg-type]
    )
    assert resp.pauses == (Pause(2, 1.0), Pause(1, 2.0, 0.25), Pause(0, 3.0))
    assert resp.all_pauses() == [Pause(0, 3.0), Pause(1, 4.0, 0.5), Pause(1, 2.0, 0.25), Pause(2, 1.0)]
    assert StreamResponse(chunks=TWO, pauses=(Pause(1, 1.0),)).all_pauses() == [Pause(1, 1.0)]
    assert StreamResponse(chunks=TWO).all_pauses() == []


def test_a_stall_after_zero_events_is_a_pause_before_the_first():
    """``stall_after=0`` is a stall, not "no stall": only None means none."""
    resp = StreamResponse(chunks=TWO, stall_after=0, stall_seconds=2.0)
    assert resp.all_pauses() == [Pause(0, 2.0, None)]
    assert [resp.pause_at(k) for k in range(3)] == [2.0, 0.0, 0.0]


def test_pause_at_sums_every_wait_at_a_position_and_is_zero_elsewhere():
    resp = StreamResponse(chunks=TWO, stall_after=2, stall_seconds=1.5, pauses=(Pause(2, 0.25), Pause(0, 1.0)))
    assert [resp.pause_at(k) for k in range(4)] == [1.0, 0.0, 1.75, 0.0]
    assert type(resp.pause_at(1)) is float


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunks": TWO, "stall_after": -1}, "stall_after=-1 is outside 0..2 (the stream's data events)"),
        ({"chunks": TWO, "disconnect_after": 3}, "disconnect_after=3 is outside 0..2 (the stream's data events)"),
        ({"chunks": TWO, "disconnect_after": -1}, "disconnect_after=-1 is outside 0..2 (the stream's data events)"),
        ({"sse": 'data: {"a":1}\n\n: c\n\ndata: [DONE]\n\n', "stall_after": 3}, "stall_after=3 is outside 0..2"),
        ({"chunks": TWO, "stall_seconds": -0.001}, "stall_seconds must be >= 0"),
        ({"chunks": TWO, "keepalive": 0}, "keepalive must be a positive number of seconds"),
        ({"chunks": TWO, "keepalive": -1.0}, "keepalive must be a positive number of seconds"),
        ({"chunks": TWO, "pauses": (Pause(3, 1.0),)}, "a pause after 3 data events is outside 0..2 (the stream's data events)"),
        ({"chunks": TWO, "pauses": (Pause(-1, 1.0),)}, "a pause after -1 data events is outside 0..2"),
        ({"chunks": TWO, "pauses": (Pause(1, -0.5),)}, "a pause's seconds must be >= 0"),
        ({"chunks": TWO, "pauses": (Pause(1, 1.0, 0.0),)}, "keepalive must be a positive number of seconds"),
        ({"chunks": TWO, "pauses": (Pause(1, 1.0, -2.0),)}, "keepalive must be a positive number of seconds"),
        ({"chunks": None, "sse": None}, "StreamResponse needs exactly one of chunks= or sse="),
        ({"chunks": TWO, "sse": ""}, "StreamResponse needs exactly one of chunks= or sse="),
    ],
)
def test_a_stream_names_the_fault_it_cannot_play(kwargs, message):
    with pytest.raises(ValueError) as info:
        StreamResponse(**kwargs)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"chunks": TWO, "stall_after": 0, "disconnect_after": 0},
        {"chunks": TWO, "stall_after": 2, "disconnect_after": 2, "stall_seconds": 0.0},
        {"chunks": TWO, "keepalive": 0.001, "pauses": (Pause(0, 0.0), Pause(2, 0.0, 0.001))},
        {"chunks": (), "stall_after": 0, "disconnect_after": 0},
        {"sse": "", "stall_after": 0},
        {"sse": 'data: {"a":1}\n\n: c\n\ndata: [DONE]\n\n', "stall_after": 2, "disconnect_after": 1},
    ],
)
def test_faults_at_each_end_of_the_stream_are_accepted(kwargs):
    """Positions run from 0 (before the first data event) to the number of data events, both ends
    included; a pause may last no time at all."""
    StreamResponse(**kwargs)


def test_raw_sse_counts_data_events_not_comments_or_bare_event_lines():
    sse = ": hi\n\nevent: ping\n\ndata: {}\n\nid: 3\ndata: {}\n\n"
    StreamResponse(sse=sse, disconnect_after=2)
    with pytest.raises(ValueError, match="outside 0..2"):
        StreamResponse(sse=sse, disconnect_after=3)


# -- which response plays ---------------------------------------------------------------------------


def test_choose_plays_the_no_tools_answer_only_to_a_request_without_tools():
    default, no_tools = StreamResponse(chunks=TWO), ErrorResponse(500, "x")
    it = WhenNoTools(default=default, no_tools=no_tools)
    assert choose(it, offered_tools=True) is default
    assert choose(it, offered_tools=False) is no_tools
    plain = CompletionResponse({"choices": []})
    assert choose(plain, offered_tools=False) is plain and choose(plain, offered_tools=True) is plain


# -- SSE events ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "events"),
    [
        (b"data: a\n\ndata: b\n\n", [b"data: a\n\n", b"data: b\n\n"]),
        (b"data: a\r\n\r\ndata: b\r\n\r\n", [b"data: a\r\n\r\n", b"data: b\r\n\r\n"]),
        (b"data: a\r\rdata: b\r\r", [b"data: a\r\r", b"data: b\r\r"]),
        (b"data: a\r\ndata: b\r\n\r\n", [b"data: a\r\ndata: b\r\n\r\n"]),
        (b"data: a\n\ndata: tail", [b"data: a\n\n", b"data: tail"]),
        (b"data: a\n\n\n\n", [b"data: a\n\n", b"\n\n"]),
        (b"", []),
    ],
)
def test_split_sse_cuts_at_blank_lines_of_every_line_ending_and_loses_no_byte(raw, events):
    assert split_sse(raw) == events
    assert b"".join(split_sse(raw)) == raw


@pytest.mark.parametrize(
    ("event", "is_data"),
    [
        (b"data: x\n\n", True),
        (b"data:x\n\n", True),
        (b"event: e\ndata: x\n\n", True),
        (b"event: e\r\ndata: x\r\n\r\n", True),
        (b"event: e\rdata: x\r\r", True),
        (b": data: in a comment\n\n", False),
        (b"event: data\n\n", False),
        (b"xdata: x\n\n", False),
        (b"\n\n", False),
    ],
)
def test_a_data_event_has_a_line_that_starts_with_data(event, is_data):
    assert is_data_event(event) is is_data


def test_chunks_render_as_compact_utf8_json_then_done():
    resp = StreamResponse(chunks=({"t": "é ☕", "n": [1, 2]}, {"b": None}))
    assert sse_events(resp) == [
        'data: {"t":"é ☕","n":[1,2]}\n\n'.encode("utf-8"),
        b'data: {"b":null}\n\n',
        DONE_EVENT,
    ]
    assert sse_events(StreamResponse(chunks=())) == [b"data: [DONE]\n\n"]


def test_raw_sse_renders_as_itself_split_into_events():
    sse = 'data: {"t":"é"}\n\n: ping\n\ndata: [DONE]\n\n'
    assert sse_events(StreamResponse(sse=sse)) == [b'data: {"t":"\xc3\xa9"}\n\n', b": ping\n\n", b"data: [DONE]\n\n"]


# -- the plan a transport plays ------------------------------------------------------------------


def test_a_plan_without_faults_is_the_events_in_order():
    assert stream_plan(StreamResponse(chunks=TWO)) == [data({"n": 1}), data({"n": 2}), DONE_EVENT]


def test_pauses_follow_the_data_event_they_name_and_comments_are_not_counted():
    sse = ": hello\n\ndata: {}\n\n: ping\n\ndata: {}\n\ndata: [DONE]\n\n"
    resp = StreamResponse(sse=sse, pauses=(Pause(0, 1.0), Pause(1, 2.0), Pause(2, 3.0)))
    assert stream_plan(resp) == [
        Stall(1.0),
        b": hello\n\n",
        b"data: {}\n\n",
        Stall(2.0),
        b": ping\n\n",
        b"data: {}\n\n",
        Stall(3.0),
        b"data: [DONE]\n\n",
    ]


def test_a_disconnect_drops_the_connection_after_its_data_event_and_its_pauses():
    resp = StreamResponse(chunks=TWO, stall_after=1, stall_seconds=2.0, disconnect_after=1)
    assert stream_plan(resp) == [data({"n": 1}), Stall(2.0), Disconnect()]
    resp = StreamResponse(chunks=TWO, disconnect_after=2)
    assert stream_plan(resp) == [data({"n": 1}), data({"n": 2}), Disconnect()]
    resp = StreamResponse(chunks=TWO, stall_after=0, stall_seconds=1.0, disconnect_after=0)
    assert stream_plan(resp) == [Stall(1.0), Disconnect()]
    assert stream_plan(StreamResponse(chunks=TWO, disconnect_after=0)) == [Disconnect()]


def test_a_disconnect_counts_data_events_past_comments():
    sse = "data: {}\n\n: ping\n\ndata: {}\n\ndata: [DONE]\n\n"
    assert stream_plan(StreamResponse(sse=sse, disconnect_after=1)) == [b"data: {}\n\n", Disconnect()]
    assert stream_plan(StreamResponse(sse=sse, disconnect_after=2)) == [b"data: {}\n\n", b": ping\n\n", b"data: {}\n\n", Disconnect()]


@pytest.mark.parametrize(
    ("pause", "steps"),
    [
        (Pause(1, 2.5, 1.0), [Stall(1.0), PING_EVENT, Stall(1.0), PING_EVENT, Stall(0.5)]),
        (Pause(1, 2.0, 1.0), [Stall(1.0), PING_EVENT, Stall(1.0), PING_EVENT]),
        (Pause(1, 0.5, 1.0), [Stall(0.5)]),
        (Pause(1, 1.0, 1.0), [Stall(1.0), PING_EVENT]),
        (Pause(1, 0.0, 1.0), []),
        (Pause(1, 0.0), [Stall(0.0)]),
        (Pause(1, 3.0), [Stall(3.0)]),
    ],
)
def test_a_keepalive_pings_after_each_period_and_the_waits_add_up_to_the_pause(pause, steps):
    """Keep-alive comments fall after each whole period inside the pause; what is left after the
    last one is waited without a ping, so the waits always sum to the pause."""
    plan = stream_plan(StreamResponse(chunks=TWO, pauses=(pause,)))
    assert plan == [data({"n": 1}), *steps, data({"n": 2}), DONE_EVENT]
    assert sum(s.seconds for s in plan if isinstance(s, Stall)) == pause.seconds


def test_the_stalls_keepalive_applies_to_the_stall_alone():
    resp = StreamResponse(chunks=TWO, stall_after=1, stall_seconds=2.0, keepalive=1.0, pauses=(Pause(1, 1.5),))
    assert stream_plan(resp) == [
        data({"n": 1}), Stall(1.0), PING_EVENT, Stall(1.0), PING_EVENT, Stall(1.5), data({"n": 2}), DONE_EVENT,
    ]


# -- reading a stream back -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "parsed"),
    [
        (b"data: x\n\n", (None, "x")),
        (b"data:x\n\n", (None, "x")),
        (b"data:  x\n\n", (None, " x")),
        (b"event: error\ndata: {}\n\n", ("error", "{}")),
        (b"event:error\r\ndata: a\r\ndata: b\r\n\r\n", ("error", "a\nb")),
        (b"data: a\rdata: b\r\r", (None, "a\nb")),
        (b"data\n\n", (None, "")),
        (b": data: no\nid: 1\n\n", (None, None)),
        (b": keep-alive\ndata: after a comment\n\n", (None, "after a comment")),
        (b"event: e\n\n", ("e", None)),
        (b"data: caf\xc3\xa9 \xff\n\n", (None, "café \ufffd")),
        (b"data: a: b\n\n", (None, "a: b")),
    ],
)
def test_an_event_reads_by_the_sse_field_rules(event, parsed):
    """One leading space is dropped from a value, a field without a colon has an empty value,
    comments are skipped, data lines join with newlines, bad UTF-8 becomes U+FFFD."""
    assert _event_data(event) == parsed


def test_stream_chunks_of_chunks_are_a_fresh_list():
    resp = StreamResponse(chunks=TWO)
    got = stream_chunks(resp)
    assert got == [{"n": 1}, {"n": 2}] and isinstance(got, list)
    got.append({"n": 3})
    assert stream_chunks(resp) == [{"n": 1}, {"n": 2}]


def test_stream_chunks_of_sse_skip_what_carries_no_json_object():
    sse = (
        "event: ping\n\n"
        'data: {"a":1}\n\n'
        "data:  [DONE]  \n\n"
        "data: {broken\n\n"
        "data: 3\n\n"
        'data: "s"\n\n'
        'data: {"b":\ndata: 2}\n\n'
        "data: [DONE]\n\n"
    )
    assert stream_chunks(StreamResponse(sse=sse)) == [{"a": 1}, {"b": 2}]


def test_an_error_events_payload_is_wrapped_unless_it_is_already_an_error():
    sse = 'event: error\ndata: {"message": "m"}\n\nevent: error\ndata: {"error": "e", "x": 1}\n\nevent: other\ndata: {"message": "n"}\n\n'
    assert stream_chunks(StreamResponse(sse=sse)) == [{"error": {"message": "m"}}, {"error": "e", "x": 1}, {"message": "n"}]


# -- folding a stream into one body --------------------------------------------------------------


def piece(delta: dict | None = None, index: int | None = 0, finish: str | None = None, **top) -> dict:
    choice: dict = {"delta": delta} if delta is not None else {}
    if index is not None:
        choice["index"] = index
    if finish is not None:
        choice["finish_reason"] = finish
    return dict(top, choices=[choice])


def test_an_empty_stream_folds_to_a_body_with_no_choices():
    assert fold_stream(StreamResponse(chunks=())) == {
        "id": "", "object": "chat.completion", "created": 0, "model": "", "choices": [],
    }


def test_the_first_non_empty_id_created_model_fingerprint_and_tier_are_kept():
    chunks = (
        piece({}, id="", created=0, model=None),
        piece({}, id="a", created=5, model="m1", system_fingerprint="fp1", service_tier="default"),
        piece({}, id="b", created=6, model="m2", system_fingerprint="fp2", service_tier="flex"),
    )
    body = fold_stream(StreamResponse(chunks=chunks))
    assert (body["id"], body["created"], body["model"], body["system_fingerprint"], body["service_tier"]) == (
        "a", 5, "m1", "fp1", "default",
    )
    assert body["object"] == "chat.completion"


def test_fields_a_stream_never_names_stay_out_of_the_body():
    body = fold_stream(StreamResponse(chunks=(piece({"content": "x"}),)))
    assert set(body) == {"id", "object", "created", "model", "choices"}


def test_text_reasoning_and_refusal_concatenate_per_choice_and_the_role_is_taken():
    chunks = (
        piece({"role": "assistant", "content": "he", "reasoning_content": "r1", "reasoning": "q1"}),
        piece({"content": "llo", "reasoning_content": "r2", "refusal": "no"}, index=1),
        piece({"role": "", "content": "", "reasoning": "q2", "refusal": None}),
        piece({"content": 5, "refusal": " way"}, index=1),
        piece({"content": "!"}),
        piece({"role": "tool"}, index=2),
    )
    body = fold_stream(StreamResponse(chunks=chunks))
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "he!", "reasoning_content": "r1", "reasoning": "q1q2"},
         "logprobs": None, "finish_reason": None},
        {"index": 1, "message": {"role": "assistant", "content": "llo", "reasoning_content": "r2", "refusal": "no way"},
         "logprobs": None, "finish_reason": None},
        {"index": 2, "message": {"role": "tool", "content": None}, "logprobs": None, "finish_reason": None},
    ]


def test_choices_come_out_by_index_whatever_order_they_stream_in():
    chunks = (piece({"content": "b"}, index=1), piece({"content": "a"}, index=0), piece({"content": "c"}, index=None))
    body = fold_stream(StreamResponse(chunks=chunks))
    assert [(c["index"], c["message"]["content"]) for c in body["choices"]] == [(0, "ac"), (1, "b")]


def test_a_choice_without_a_delta_still_has_its_place_and_finish():
    body = fold_stream(StreamResponse(chunks=(piece(None, finish="stop"), piece({}, finish=None), piece({}, finish=""))))
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": None}, "logprobs": None,
                                "finish_reason": "stop"}]


def test_the_last_finish_reason_and_the_last_usage_win():
    chunks = (
        piece({}, finish="length"),
        dict(piece({}, finish="stop"), usage={"prompt_tokens": 1}),
        {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}},
        {"choices": [], "usage": None},
        {"choices": [], "usage": {}},
    )
    body = fold_stream(StreamResponse(chunks=chunks))
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 3}


def test_tool_call_fragments_merge_by_index_within_their_choice():
    chunks = (
        piece({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "g", "arguments": ""}}]}),
        piece({"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": '{"x"'}}]}),
        piece({"tool_calls": [{"index": 0, "id": "", "function": {"arguments": ": 1}"}}]}),
        piece({"tool_calls": [{"index": 1, "function": {"name": None, "arguments": {"y": 2}}}]}),
        piece({"tool_calls": [{"id": "call_c", "type": "custom"}]}, index=1),
        piece({"tool_calls": [{"index": 1, "function": None}]}),
        piece({"tool_calls": None}),
    )
    body = fold_stream(StreamResponse(chunks=chunks))
    assert body["choices"][0]["message"]["tool_calls"] == [
        {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": ""}},
    ]
    assert body["choices"][1]["message"]["tool_calls"] == [
        {"id": "call_c", "type": "custom", "function": {"name": "", "arguments": ""}},
    ]


def test_a_later_id_replaces_an_earlier_one():
    chunks = (
        piece({"tool_calls": [{"index": 0, "id": "first", "function": {"name": "f"}}]}),
        piece({"tool_calls": [{"index": 0, "id": "second", "type": "function"}]}),
    )
    (call,) = fold_stream(StreamResponse(chunks=chunks))["choices"][0]["message"]["tool_calls"]
    assert call == {"id": "second", "type": "function", "function": {"name": "f", "arguments": ""}}


def test_a_choice_without_tool_calls_has_no_tool_calls_key():
    body = fold_stream(StreamResponse(chunks=(piece({"content": "x"}), piece({"tool_calls": []}))))
    assert "tool_calls" not in body["choices"][0]["message"]


def test_an_error_anywhere_folds_to_the_error_alone():
    chunks = (piece({"content": "partial"}), {"error": {"message": "overloaded"}, "choices": []}, piece({"content": "more"}))
    assert fold_stream(StreamResponse(chunks=chunks)) == {"error": {"message": "overloaded"}}
    assert fold_stream(StreamResponse(chunks=({"error": None, "choices": []},)))["choices"] == []
    assert fold_stream(StreamResponse(chunks=({"error": "", "choices": []},))) == {"error": ""}


# -- a body served as chunks -----------------------------------------------------------------------


def test_a_body_without_optional_fields_renders_with_defaults():
    assert completion_chunks({}) == ()
    (only,) = completion_chunks({"choices": [{"message": {"content": "hi"}}]})
    assert only == {
        "id": "", "object": "chat.completion.chunk", "created": 0, "model": "",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "logprobs": None, "finish_reason": None}],
    }


def test_each_choice_is_one_delta_with_its_non_null_fields_and_numbered_tool_calls():
    body = {
        "id": "x", "created": 7, "model": "m", "system_fingerprint": None,
        "choices": [
            {"index": 1, "message": {"role": "assistant", "content": None, "refusal": "no",
                                     "tool_calls": [{"id": "a", "index": 9, "function": {"name": "f"}}, {"id": "b"}]},
             "finish_reason": "tool_calls"},
            {"index": 0, "message": None, "finish_reason": "stop"},
            {"message": {"content": "c", "tool_calls": []}},
        ],
        "usage": {},
    }
    chunks = completion_chunks(body)
    assert len(chunks) == 3 and all("system_fingerprint" not in c for c in chunks)
    assert all((c["id"], c["created"], c["model"]) == ("x", 7, "m") for c in chunks)
    assert chunks[0]["choices"] == [{
        "index": 1,
        "delta": {"role": "assistant", "refusal": "no", "tool_calls": [{"id": "a", "index": 0, "function": {"name": "f"}}, {"id": "b", "index": 1}]},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }]
    assert chunks[1]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
    assert chunks[2]["choices"][0]["delta"] == {"content": "c"}
    assert body["choices"][0]["message"]["tool_calls"][0]["index"] == 9, "the body itself is left alone"


def test_usage_is_a_chunk_of_its_own_after_the_choices():
    chunks = completion_chunks({"id": "x", "system_fingerprint": "fp", "choices": [], "usage": {"prompt_tokens": 1}})
    assert chunks == ({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "", "system_fingerprint": "fp",
                       "choices": [], "usage": {"prompt_tokens": 1}},)


def test_a_body_rendered_and_folded_again_is_the_same_message():
    body = {
        "id": "c", "created": 3, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi",
                                              "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                     "finish_reason": "tool_calls", "logprobs": None}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2},
    }
    folded = fold_stream(StreamResponse(chunks=completion_chunks(body)))
    assert folded == dict(body, object="chat.completion")


def test_a_fragment_without_an_index_continues_call_zero_and_a_call_never_named_has_an_empty_id():
    chunks = (
        piece({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": '{"a"'}}]}),
        piece({"tool_calls": [{"function": {"arguments": ": 1}"}}]}),
    )
    (call,) = fold_stream(StreamResponse(chunks=chunks))["choices"][0]["message"]["tool_calls"]
    assert call == {"id": "", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
