"""What a recorded stream plays and what it says: the checks a StreamResponse makes on its faults,
the plan a transport plays (a stall or a disconnect before the first event included), and the
chunks read back from raw SSE (comments, ``[DONE]``, unparseable data, an ``event: error``)."""

from __future__ import annotations

import pytest

from loopspec.replay.interactions import Disconnect, Stall, StreamResponse, fold_stream, split_sse, stream_chunks, stream_plan

SSE = (
    ": a comment\n\n"
    'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"he"}}]}\n\n'
    "data: not json\n\n"
    "data: [1, 2]\n\n"
    'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"llo"},"finish_reason":"stop"}]}\n\n'
    "data: [DONE]\n\n"
)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of chunks= or sse="),
        ({"chunks": (), "sse": ""}, "exactly one of chunks= or sse="),
        ({"chunks": ({"a": 1},), "stall_after": 2}, "stall_after=2 is outside 0..1"),
        ({"sse": SSE, "disconnect_after": 6}, "disconnect_after=6 is outside 0..5"),
        ({"chunks": (), "stall_seconds": -1.0}, "stall_seconds must be >= 0"),
    ],
)
def test_a_stream_refuses_faults_it_cannot_play(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        StreamResponse(**kwargs)


def test_chunks_given_as_a_list_are_kept_as_a_tuple() -> None:
    r = StreamResponse(chunks=[{"a": 1}])  # type: ignore[arg-type]
    assert r.chunks == ({"a": 1},)


def test_faults_before_the_first_event() -> None:
    assert stream_plan(StreamResponse(chunks=({"a": 1},), stall_after=0, stall_seconds=2.0, disconnect_after=0)) == [
        Stall(2.0),
        Disconnect(),
    ]
    plan = stream_plan(StreamResponse(chunks=({"a": 1},), stall_after=0, stall_seconds=2.0))
    assert plan[0] == Stall(2.0) and plan[1].startswith(b"data: ") and plan[-1] == b"data: [DONE]\n\n"


def test_a_stall_and_a_disconnect_count_data_events_only() -> None:
    plan = stream_plan(StreamResponse(sse=SSE, stall_after=1, stall_seconds=3.0, disconnect_after=2))
    assert plan[0] == b": a comment\n\n", "a comment is played but not counted"
    assert plan[2] == Stall(3.0) and plan[-1] == Disconnect()
    assert [p for p in plan if isinstance(p, bytes)] == split_sse(SSE.encode())[:3]


def test_chunks_read_from_sse_skip_what_is_not_a_json_object() -> None:
    chunks = stream_chunks(StreamResponse(sse=SSE))
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["he", "llo"]
    folded = fold_stream(StreamResponse(sse=SSE))
    assert folded["choices"][0]["message"]["content"] == "hello"
    assert folded["choices"][0]["finish_reason"] == "stop"


def test_an_error_event_is_read_as_an_error() -> None:
    sse = 'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\nevent: error\ndata: {"message":"overloaded"}\n\n'
    assert stream_chunks(StreamResponse(sse=sse))[-1] == {"error": {"message": "overloaded"}}
    assert fold_stream(StreamResponse(sse=sse)) == {"error": {"message": "overloaded"}}
    keyed = 'event: error\ndata: {"error": {"message": "x"}}\n\n'
    assert stream_chunks(StreamResponse(sse=keyed)) == [{"error": {"message": "x"}}]


def test_pauses_at_one_position_add_up_in_process_as_over_http() -> None:
    """A stall and a pause after the same data event are one wait of their sum, on the in-process
    items as in the server's plan (which waits out every pause in turn)."""
    from loopspec.replay.inproc import stream_items
    from loopspec.replay.interactions import Pause
    from loopspec.replay.synth import reply_chunks

    chunks = tuple(reply_chunks("one two three", piece=4))
    resp = StreamResponse(chunks=chunks, stall_after=1, stall_seconds=2.0, pauses=(Pause(1, 3.0), Pause(2, 0.5)))
    assert [resp.pause_at(k) for k in range(4)] == [0.0, 5.0, 0.5, 0.0]
    assert [item.pause for item in stream_items(resp)][:3] == [0.0, 5.0, 0.5]
    served = [step.seconds for step in stream_plan(resp) if isinstance(step, Stall)]
    assert sum(served) == 5.5
