"""A raw SSE response is parsed once per process and shared by every replay of it; a chunk-dict
response has its items built once per response object.

Sharing is only safe if nothing a replay does reaches the shared items: two replays of one
cassette must end alike, and a broken stream must raise a new exception each time (a raised
instance carries the traceback and context of every raise)."""

from __future__ import annotations

import asyncio

from loopspec import InProcessProvider, Turn, VirtualClock, load_policy
from loopspec.providers.base import ModelRequest, StreamBroken
from loopspec.replay.inproc import stream_items
from loopspec.replay.interactions import StreamResponse
from loopspec.replay.synth import reply_chunks

from _paths import DEFAULT_POLICY

POLICY = load_policy(str(DEFAULT_POLICY))


def _sse(chunks: list[dict[str, object]]) -> str:
    import json

    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


def test_equal_sse_responses_share_one_parse_and_other_faults_do_not() -> None:
    text = _sse(reply_chunks("hello there", piece=3))
    a, b = StreamResponse(sse=text), StreamResponse(sse=str(text))
    assert stream_items(a) is stream_items(b)
    cut = StreamResponse(sse=text, disconnect_after=1)
    assert stream_items(cut) is not stream_items(a)
    assert [i.broken is not None for i in stream_items(cut)] == [False, True]


def _open_and_drain(resp: StreamResponse) -> StreamBroken:
    async def go() -> StreamBroken:
        provider = InProcessProvider([resp])
        stream = await provider.open(ModelRequest(model="m", messages=[{"role": "user", "content": "hi"}]))
        try:
            async for _ in stream:
                pass
        except StreamBroken as exc:
            return exc
        raise AssertionError("the stream did not break")

    return asyncio.run(go())


def test_a_shared_broken_stream_raises_a_new_exception_each_time() -> None:
    resp = StreamResponse(sse=_sse(reply_chunks("partial answer", piece=4)), disconnect_after=2)
    first, second = _open_and_drain(resp), _open_and_drain(resp)
    assert first is not second
    assert first.event == second.event and first.event.get("cause") == "disconnect"


def test_two_replays_of_one_sse_response_end_alike() -> None:
    resp = StreamResponse(sse=_sse(reply_chunks("the same answer twice", piece=4)))

    def once() -> tuple[str, list[dict[str, object]]]:
        turn = Turn(POLICY, InProcessProvider([resp]), model="replay", clock=VirtualClock())
        result = asyncio.run(turn.run([{"role": "user", "content": "hi"}]))
        return result.outcome, result.messages

    first = once()
    assert first[0] == "completed" and first[1][-1]["content"] == "the same answer twice"
    assert once() == first


def test_a_chunk_response_builds_its_items_once_and_equal_copies_do_not_share() -> None:
    """The second replay of one chunk-dict response takes the items the first built; another
    response object with equal chunks (unhashable: dicts) gets items of its own, and a fault
    changes them."""
    chunks = tuple(reply_chunks("hello there", piece=3))
    a = StreamResponse(chunks=chunks)
    assert stream_items(a) is stream_items(a)
    b = StreamResponse(chunks=tuple(dict(c) for c in chunks))
    assert stream_items(b) is not stream_items(a) and stream_items(b) == stream_items(a)
    cut = StreamResponse(chunks=chunks, disconnect_after=1)
    assert [i.broken is not None for i in stream_items(cut)] == [False, True]


def test_the_chunk_items_cache_keeps_the_last_256_responses() -> None:
    """Built items are kept for the 256 responses used last: a 257th pushes out the one used
    longest ago, and using a response again makes it the newest."""
    from loopspec.replay import inproc

    chunks = tuple(reply_chunks("x", piece=1))
    cached = inproc._CHUNK_ITEMS
    cached.clear()
    first, second = StreamResponse(chunks=chunks), StreamResponse(chunks=chunks)
    items_first = stream_items(first)
    stream_items(second)
    for _ in range(inproc._CHUNK_ITEMS_KEPT - 2):
        stream_items(StreamResponse(chunks=chunks))
    assert len(cached) == 256 and id(first) in cached and id(second) in cached
    assert stream_items(first) is items_first  # used again: now the newest
    stream_items(StreamResponse(chunks=chunks))  # the 257th: out goes the oldest, second
    assert len(cached) == 256 and id(second) not in cached and id(first) in cached


def test_a_broken_chunk_stream_raises_a_new_exception_each_time_and_replays_end_alike() -> None:
    """Sharing the items of a chunk response is safe: a planned disconnect raises a new exception
    on each replay, and two turns on one response end alike."""
    resp = StreamResponse(chunks=tuple(reply_chunks("partial answer", piece=4)), disconnect_after=2)
    first, second = _open_and_drain(resp), _open_and_drain(resp)
    assert first is not second and first.event.get("cause") == "disconnect"
    whole = StreamResponse(chunks=tuple(reply_chunks("the same answer twice", piece=4)))

    def once() -> tuple[str, list[dict[str, object]]]:
        turn = Turn(POLICY, InProcessProvider([whole]), model="replay", clock=VirtualClock())
        result = asyncio.run(turn.run([{"role": "user", "content": "hi"}]))
        return result.outcome, result.messages

    assert once() == once() and once()[1][-1]["content"] == "the same answer twice"
